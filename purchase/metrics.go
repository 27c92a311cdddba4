package purchase

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// metrics are the purchase path's Prometheus series.
type metrics struct {
	outcomes *prometheus.CounterVec
	batches  prometheus.Histogram
}

// NewMetrics registers the purchase metrics.
func NewMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "surge_purchase_attempts_total", Help: "Purchase attempts by outcome (success, queued, or the refusal's error code).",
		}, []string{"outcome"}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "surge_purchase_batch_size", Help: "Attempts one queue hands the stock engine at once.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
	}
	reg.MustRegister(m.outcomes, m.batches)
	return m
}

func (m *metrics) outcome(r *Result, err error) {
	label := surge.ErrorCode(err)
	if err == nil && r != nil {
		label = r.Status
	}
	m.outcomes.WithLabelValues(label).Inc()
}

func (m *metrics) batch(n int) { m.batches.Observe(float64(n)) }
