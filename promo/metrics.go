package promo

import (
	"cmp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// metrics are the promotion service's Prometheus metrics.
type metrics struct {
	quotes     *prometheus.CounterVec
	quoteTime  prometheus.Histogram
	activities prometheus.Gauge
	postings   prometheus.Gauge
	lagTime    prometheus.Histogram
	uses       *prometheus.CounterVec
	discount   *prometheus.CounterVec
	rebates    *prometheus.CounterVec
}

// Register registers the service's metrics: surge_promo_quotes_total{outcome} and
// surge_promo_quote_seconds; surge_promo_index_activities and surge_promo_index_postings (the
// live activities a node's index holds, and their keys); surge_promo_index_lag_seconds (from an
// activity's change to this node's index taking it); surge_promo_activity_uses_total{step} and
// surge_promo_discount_minor_total{step} (locked, used, released: what orders took of
// activities); surge_promo_rebates_total{outcome}. Without it the service counts nothing.
func (s *Service) Register(reg prometheus.Registerer) {
	m := &metrics{
		quotes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_promo_quotes_total",
			Help: "Price quotes by outcome: quoted, or the refusal's error code."}, []string{"outcome"}),
		quoteTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_promo_quote_seconds",
			Help: "Time to price a quote in the node, from its lines to its best price.", Buckets: prometheus.ExponentialBuckets(0.00002, 2.5, 12)}),
		activities: prometheus.NewGauge(prometheus.GaugeOpts{Name: "surge_promo_index_activities",
			Help: "Live activities in this node's index."}),
		postings: prometheus.NewGauge(prometheus.GaugeOpts{Name: "surge_promo_index_postings",
			Help: "Keys (SKUs, shops, categories) under which this node's index files its live activities."}),
		lagTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_promo_index_lag_seconds",
			Help: "From an activity's saved change to this node's index holding it.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		uses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_promo_activity_uses_total",
			Help: "Activities taken by orders, by step: locked (an order made), used (paid), released (cancelled, expired or refunded)."}, []string{"step"}),
		discount: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_promo_discount_minor_total",
			Help: "Minor units activities took off orders, by step: locked, used, released."}, []string{"step"}),
		rebates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_promo_rebates_total",
			Help: "Rebate coupons of paid orders, by outcome: given, or the refusal's error code."}, []string{"outcome"}),
	}
	reg.MustRegister(m.quotes, m.quoteTime, m.activities, m.postings, m.lagTime, m.uses, m.discount, m.rebates)
	s.metrics = m
	m.indexed(s.index)
}

func (m *metrics) quote(err error, took time.Duration) {
	if m == nil {
		return
	}
	m.quotes.WithLabelValues(cmp.Or(surge.ErrorCode(err), "quoted")).Inc()
	if err == nil {
		m.quoteTime.Observe(took.Seconds())
	}
}

func (m *metrics) indexed(ix *Index) {
	if m == nil {
		return
	}
	n, p := ix.Size()
	m.activities.Set(float64(n))
	m.postings.Set(float64(p))
}

func (m *metrics) lag(d time.Duration) {
	if m != nil && d >= 0 {
		m.lagTime.Observe(d.Seconds())
	}
}

func (m *metrics) step(step string, taken []surge.ActivityTaken) {
	if m == nil {
		return
	}
	for _, t := range taken {
		m.uses.WithLabelValues(step).Inc()
		m.discount.WithLabelValues(step).Add(float64(t.Amount))
	}
}

func (m *metrics) rebate(outcome string) {
	if m != nil {
		m.rebates.WithLabelValues(outcome).Inc()
	}
}
