package http

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the HTTP layer's Prometheus series.
type metrics struct {
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	suppressed prometheus.Counter

	// The series already in use, found without hashing their labels again. Routes, methods,
	// traffic kinds and statuses are all few, so this stays small.
	mu     sync.RWMutex
	series map[seriesKey]seriesPair
}

type seriesKey struct {
	route, method, traffic string
	code                   int
}

type seriesPair struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics(reg *prometheus.Registry, checks []Check) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "surge_http_requests_total", Help: "HTTP requests by route pattern, method, status code and traffic (live, or test: a load test's).",
		}, []string{"route", "method", "code", "traffic"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "surge_http_request_duration_seconds", Help: "HTTP request latency by route pattern, method and traffic.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method", "traffic"}),
		series: make(map[seriesKey]seriesPair),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "surge_http_log_lines_suppressed_total",
			Help: "Request log lines (slow or failed answers) left out past the log's rate bound; each logged line says how many it follows.",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.suppressed, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range checks {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "surge_backend_up", Help: "1 if the backend answered its health check at scrape time.",
			ConstLabels: prometheus.Labels{"backend": c.Name},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
			defer cancel()
			if c.Check(ctx) != nil {
				return 0
			}
			return 1
		}))
	}
	return m
}

// TestTrafficHeader marks a request as a load test's ("1"): its metrics are counted apart, so a
// rehearsal before a sale never mixes with the numbers of the real one.
const TestTrafficHeader = "X-Surge-Test"

func trafficLabel(r *http.Request) string {
	if r.Header.Get(TestTrafficHeader) == "1" {
		return "test"
	}
	return "live"
}

func (m *metrics) observe(route, method, traffic string, code int, d time.Duration) {
	k := seriesKey{route: route, method: method, traffic: traffic, code: code}
	m.mu.RLock()
	p, ok := m.series[k]
	m.mu.RUnlock()
	if !ok {
		p = seriesPair{requests: m.requests.WithLabelValues(route, method, strconv.Itoa(code), traffic),
			latency: m.latency.WithLabelValues(route, method, traffic)}
		m.mu.Lock()
		m.series[k] = p
		m.mu.Unlock()
	}
	p.requests.Inc()
	p.latency.Observe(d.Seconds())
}
