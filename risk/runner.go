package risk

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// The risk pipeline's name (its checkpoint's), its watermark bound and how often it
// checkpoints. The name's version changes whenever the encoding of its state does: a checkpoint
// of another version is not read back, and the pipeline starts from the oldest event the log
// holds (an hour), which is also how long its longest window is.
const (
	PipelineName       = "risk-features-v2"
	OutOfOrderness     = 5 * time.Second
	checkpointInterval = 10 * time.Second
	// storeBatch is how many verdicts are stored at once, maxQueued how many wait at most
	// (the pipeline waits past it), and storeTimeout bounds one write.
	storeBatch   = 512
	maxQueued    = 100_000
	storeTimeout = 10 * time.Second
)

// Metrics counts what the rules decide and what the pipeline keeps.
type Metrics struct {
	hits     *prometheus.CounterVec
	failures *prometheus.CounterVec
	keys     prometheus.Gauge
	verdicts prometheus.Counter
	mu       sync.Mutex
	logged   map[int64]bool // rules whose failure was logged
	log      *slog.Logger
}

// NewMetrics registers the risk pipeline's metrics.
func NewMetrics(reg prometheus.Registerer, log *slog.Logger) *Metrics {
	m := &Metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_risk_rule_hits_total",
			Help: "Times a rule held for a subject without a verdict of it: a verdict made (block, challenge) or an allow."}, []string{"rule", "mode"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_risk_rule_errors_total",
			Help: "Evaluations of a rule that failed (a division by zero, say): it did not hold."}, []string{"rule"}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{Name: "surge_risk_feature_subjects",
			Help: "Subjects (users, devices, IPs, networks, addresses, accounts) the risk pipeline keeps counts of."}),
		verdicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_risk_verdicts_made_total", Help: "Verdicts the risk pipeline made."}),
		logged:   map[int64]bool{}, log: log,
	}
	reg.MustRegister(m.hits, m.failures, m.keys, m.verdicts)
	return m
}

// Hit implements Hits.
func (m *Metrics) Hit(r *Rule) { m.hits.WithLabelValues(strconv.FormatInt(r.ID, 10), r.Mode).Inc() }

// Failed implements Hits: counted, and logged once per rule.
func (m *Metrics) Failed(r *Rule, err error) {
	m.failures.WithLabelValues(strconv.FormatInt(r.ID, 10)).Inc()
	m.mu.Lock()
	first := !m.logged[r.ID]
	m.logged[r.ID] = true
	m.mu.Unlock()
	if first {
		m.log.Warn("risk: a rule's evaluation failed; it does not hold when it fails", "rule", r.ID, "err", err)
	}
}

// Keys implements Hits.
func (m *Metrics) Keys(n int) { m.keys.Set(float64(n)) }

// Sink sends each verdict to every gate as it is made (a note on the bus) and to the events log
// (risk.verdict), and stores it from a
// goroutine of its own, in batches, at once: support sees a verdict as soon as it acts, while
// the pipeline goes on counting. A checkpoint waits until every verdict written before it is
// stored. A replay after a restart makes the same verdicts with the same ids: the gates and the
// store take each once.
type Sink struct {
	store surge.RiskStore
	notes Notes
	bus   surge.EventEmitter
	log   *slog.Logger
	made  prometheus.Counter

	mu              sync.Mutex
	cond            *sync.Cond
	queue           []surge.Verdict
	storing         bool
	written, stored uint64
	err             error // a batch the store refused: the next Flush returns it
}

// NewSink returns the pipeline's sink.
func NewSink(store surge.RiskStore, notes Notes, bus surge.EventEmitter, m *Metrics, log *slog.Logger) *Sink {
	s := &Sink{store: store, notes: notes, bus: bus, log: log}
	s.cond = sync.NewCond(&s.mu)
	if m != nil {
		s.made = m.verdicts
	}
	return s
}

// Write implements stream.Sink. It waits while maxQueued verdicts wait to be stored.
func (s *Sink) Write(_ uint64, _ int64, v surge.Verdict) error {
	if err := s.notes.Send(Note{Verdicts: []surge.Verdict{v}}); err != nil {
		s.log.Warn("risk: a verdict's note was not sent; the gates read it from the store within a second", "err", err)
	}
	if s.made != nil {
		s.made.Inc()
	}
	surge.TellBus(context.Background(), s.bus, s.log, surge.EventRiskVerdict, v.ID, v.CreatedAt, v) // its id: sent again, stored once
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.queue) >= maxQueued {
		s.cond.Wait()
	}
	s.queue = append(s.queue, v)
	s.written++
	if !s.storing {
		s.storing = true
		go s.storeAll()
	}
	return nil
}

// storeAll stores what is queued, a batch at a time, until the queue is empty.
func (s *Sink) storeAll() {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.storing = false
			s.cond.Broadcast()
			s.mu.Unlock()
			return
		}
		batch := s.queue[:min(len(s.queue), storeBatch)]
		s.queue = s.queue[len(batch):]
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		err := s.store.PutVerdicts(ctx, batch)
		cancel()
		s.mu.Lock()
		s.stored += uint64(len(batch))
		if err != nil {
			// The rest is not tried against a store that failed: the flush returns the error,
			// the pipeline restarts from its last checkpoint and makes these verdicts again.
			if s.err == nil {
				s.err = err
			}
			s.stored += uint64(len(s.queue))
			s.queue = s.queue[:0]
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// Flush implements stream.Sink: it waits until every verdict written is stored, or ctx ends,
// and returns the error of a batch the store refused (the pipeline then restarts from its last
// checkpoint, and makes those verdicts again).
func (s *Sink) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.stored < s.written && ctx.Err() == nil {
		s.cond.Wait()
	}
	if err := s.err; err != nil {
		s.err = nil
		return err
	}
	return ctx.Err()
}

// Runner keeps the risk pipeline running on the events log, restarting it from its last
// checkpoint after a failure. Run it on one node (the one that computes the live metrics).
type Runner struct {
	Log         stream.Log
	Checkpoints stream.Checkpoints
	Rules       func() *RuleSet
	Sink        *Sink
	Metrics     *Metrics
	Stream      *stream.Metrics
	Logger      *slog.Logger
}

// Run computes features and verdicts until ctx ends.
func (r Runner) Run(ctx context.Context) { stream.Keep(ctx, "risk pipeline", r.Logger, r.runOnce) }

func (r Runner) runOnce(ctx context.Context, fresh bool) error {
	p, src := stream.New(PipelineName, stream.Config{OutOfOrderness: OutOfOrderness, Metrics: r.Stream, CheckpointInterval: checkpointInterval},
		func(s Signal) int64 { return s.At })
	var hits Hits
	if r.Metrics != nil {
		hits = r.Metrics
	}
	stream.To(Build(src, r.Rules, hits), stream.Sink[surge.Verdict](r.Sink))
	return p.RunLog(ctx, stream.LogRun[Signal]{Log: r.Log, DecodeAll: DecodeSignals, Checkpoints: r.Checkpoints, Fresh: fresh,
		TimeOnly: func(s Signal) bool { return s.Kind == signalTick },
		Invalid: func(seq uint64, _ []byte, err error) {
			r.Logger.Warn("events log record skipped by risk control: not readable", "seq", seq, "err", err)
		},
		OnGap: func(err error) bool {
			r.Logger.Error("risk features miss events: the log dropped them before the pipeline read them", "err", err)
			return true
		}})
}
