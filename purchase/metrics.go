package purchase

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/shed"
)

// metrics are the purchase path's Prometheus series.
type metrics struct {
	outcomes      *prometheus.CounterVec
	outcomesMu    sync.RWMutex
	byOutcome     map[string]prometheus.Counter // the outcomes' series once used: a handful
	batches       prometheus.Histogram
	lookupBatch   prometheus.Histogram
	lookupsAlone  prometheus.Counter
	droppedEvents prometheus.Counter
	// droppedReturns counts refused attempts whose coupons the returner could not take: the
	// coupon sweep returns them after coupon.LockTTL.
	droppedReturns prometheus.Counter
	shedBy         map[string]prometheus.Counter // by reason: a fixed few
	queueWait      prometheus.Histogram
	recordTime     prometheus.Histogram
	unshared       prometheus.Counter
}

// NewMetrics registers the purchase metrics.
func NewMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "surge_purchase_attempts_total", Help: "Purchase attempts by outcome (success, queued, or the refusal's error code).",
		}, []string{"outcome"}),
		byOutcome: make(map[string]prometheus.Counter),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "surge_purchase_batch_size", Help: "Attempts one queue hands the stock engine at once.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
	}
	m.lookupBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "surge_purchase_lookup_batch_size", Help: "Sold-out answers' reservation lookups sent to the stock engine in one call.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9),
	})
	m.lookupsAlone = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "surge_purchase_lookups_alone_total", Help: "Sold-out answers' reservation lookups sent one by one because the batch queue was full.",
	})
	m.droppedEvents = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "surge_purchase_events_dropped_total", Help: "Purchase events the bus would not take.",
	})
	m.droppedReturns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "surge_purchase_coupon_returns_dropped_total", Help: "Refused attempts' coupons left for the coupon sweep because the returner's queue was full.",
	})
	shedVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "surge_purchase_shed_total",
		Help: "Attempts refused 503 with a retry hint for load: work_ahead (more ahead in the item's line than it answers in --purchase-max-wait), standing (a share turned away while the line's shortest wait stands above a fifth of it), in_flight, queue_full.",
	}, []string{"reason"})
	m.shedBy = map[string]prometheus.Counter{}
	for _, r := range []string{shed.WorkAhead, shed.Standing, "in_flight", "queue_full"} {
		m.shedBy[r] = shedVec.WithLabelValues(r)
	}
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "surge_purchase_queue_wait_seconds", Help: "How long the oldest attempt of each batch waited in its item's queue.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	m.unshared = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "surge_purchase_answers_unshared_total",
		Help: "Answers to queued attempts not stored for other nodes (the sharer behind or the bus refusing); other nodes find their orders in the store.",
	})
	m.recordTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "surge_purchase_record_seconds", Help: "Time to store the order commands of an item's decided batches on the bus, before their shoppers are answered.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	reg.MustRegister(m.outcomes, m.batches, m.lookupBatch, m.lookupsAlone, m.droppedEvents, m.droppedReturns, shedVec, m.queueWait, m.recordTime, m.unshared)
	return m
}

func (m *metrics) shed(reason string) { m.shedBy[reason].Inc() }

func (m *metrics) waited(d time.Duration) { m.queueWait.Observe(d.Seconds()) }

func (m *metrics) recorded(d time.Duration) { m.recordTime.Observe(d.Seconds()) }

func (m *metrics) outcome(r *Result, err error) string {
	label := surge.ErrorCode(err)
	if err == nil && r != nil {
		label = r.Status
	}
	m.outcomesMu.RLock()
	c, ok := m.byOutcome[label]
	m.outcomesMu.RUnlock()
	if !ok {
		c = m.outcomes.WithLabelValues(label)
		m.outcomesMu.Lock()
		m.byOutcome[label] = c
		m.outcomesMu.Unlock()
	}
	c.Inc()
	return label
}

func (m *metrics) batch(n int) { m.batches.Observe(float64(n)) }
