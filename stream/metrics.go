package stream

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of every pipeline that is given them.
type Metrics struct {
	in, out, late *prometheus.CounterVec
	state         *prometheus.GaugeVec
	lag, wmDelay  *prometheus.GaugeVec
	invalid       *prometheus.CounterVec
	ckptSeconds   *prometheus.HistogramVec
	ckptBytes     *prometheus.GaugeVec
}

// NewMetrics registers the stream metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	op := []string{"pipeline", "operator"}
	pl := []string{"pipeline"}
	m := &Metrics{
		in:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_stream_records_in_total", Help: "Records an operator received."}, op),
		out:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_stream_records_out_total", Help: "Records an operator emitted."}, op),
		late:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_stream_late_records_total", Help: "Records that arrived after their windows closed, sent to the late output."}, op),
		state:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "surge_stream_state_entries", Help: "Entries in an operator's keyed state."}, op),
		lag:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "surge_stream_lag_records", Help: "Records in the log not yet read by the pipeline."}, pl),
		wmDelay:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "surge_stream_watermark_delay_seconds", Help: "How far the watermark is behind the wall clock."}, pl),
		invalid:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_stream_invalid_records_total", Help: "Log records the pipeline could not decode."}, pl),
		ckptSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "surge_stream_checkpoint_seconds", Help: "Time to flush the sinks and save a checkpoint.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}, pl),
		ckptBytes:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "surge_stream_checkpoint_bytes", Help: "Size of the last checkpoint."}, pl),
	}
	reg.MustRegister(m.in, m.out, m.late, m.state, m.lag, m.wmDelay, m.invalid, m.ckptSeconds, m.ckptBytes)
	return m
}

func (m *Metrics) checkpoint(pipeline string, took time.Duration, size int) {
	m.ckptSeconds.WithLabelValues(pipeline).Observe(took.Seconds())
	m.ckptBytes.WithLabelValues(pipeline).Set(float64(size))
}

// report sends the counters gathered since the last report to the metrics.
func (p *Pipeline[In]) report(pending uint64) {
	m := p.g.cfg.Metrics
	if m == nil {
		return
	}
	name := p.g.name
	for _, s := range p.g.stats {
		now := [3]int64{s.in, s.out, s.late}
		for i, c := range []*prometheus.CounterVec{m.in, m.out, m.late} {
			if d := now[i] - s.reported[i]; d > 0 {
				c.WithLabelValues(name, s.name).Add(float64(d))
			}
		}
		s.reported = now
		if s.size != nil {
			m.state.WithLabelValues(name, s.name).Set(float64(s.size()))
		}
	}
	m.lag.WithLabelValues(name).Set(float64(pending))
	if wm := p.g.wm; wm != MinWatermark && wm != EndOfInput {
		m.wmDelay.WithLabelValues(name).Set(time.Since(time.UnixMilli(wm)).Seconds())
	}
	if p.invalid > 0 {
		m.invalid.WithLabelValues(name).Add(float64(p.invalid))
		p.invalid = 0
	}
}
