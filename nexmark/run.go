package nexmark

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/surgecommerce/surge/stream"
)

// DefaultOutOfOrderness is the pipelines' out-of-orderness bound.
const DefaultOutOfOrderness = 2 * time.Second

// Query is a Nexmark query on the stream engine, with the batch computation that checks it.
type Query[R comparable] struct {
	Name string
	// Build adds the query to a pipeline reading events.
	Build func(stream.Stream[Event]) stream.Stream[R]
	// Batch computes the same results from all the events at once.
	Batch func([]Event) []R
	// Final, if set, reduces the stream's results, in the order they were emitted, to the ones
	// that stand at the end (for queries that emit updates).
	Final func([]R) []R
	// Compare orders results, to compare the two computations.
	Compare func(a, b R) int
}

// Outcome is what one run of a query did.
type Outcome struct {
	Query   string
	Events  int
	Results int
	Elapsed time.Duration
	// CPU is the process's CPU time (user and system, every thread) during the run.
	CPU time.Duration
	// Correct says whether the results equal the batch computation's.
	Correct bool
}

// EventsPerSec is the run's throughput.
func (o Outcome) EventsPerSec() float64 { return float64(o.Events) / o.Elapsed.Seconds() }

// EventsPerCoreSec is the throughput per core: events per second of CPU time.
func (o Outcome) EventsPerCoreSec() float64 { return float64(o.Events) / o.CPU.Seconds() }

// Runner runs any query without knowing its result type.
type Runner interface {
	QueryName() string
	// RunEvents runs the query over events in memory and checks its results.
	RunEvents(ctx context.Context, cfg stream.Config, events []Event) (Outcome, error)
	// RunGenerated runs the query over events generated as it reads them, and checks its
	// results against events (the same ones, generated beforehand).
	RunGenerated(ctx context.Context, cfg stream.Config, gen Config, events []Event) (Outcome, error)
	// NewResults, ResumeLog and CheckResults run the query over a durable log, possibly in
	// several runs that each resume from the last checkpoint, and check what they gathered.
	NewResults() Results
	ResumeLog(ctx context.Context, cfg stream.Config, name string, log stream.Log, ckpt stream.Checkpoints, until uint64, res Results) error
	CheckResults(res Results, events []Event) error
}

// Results are a query's results gathered by id.
type Results interface {
	// Len is the number of distinct results.
	Len() int
	// Replays is how many results came again after a restart.
	Replays() int
}

// Queries are q0–q8 without q6.
func Queries() []Runner { return []Runner{Q0, Q1, Q2, Q3, Q4, Q5, Q7, Q8} }

// Lookup finds a query by name ("q5").
func Lookup(name string) (Runner, error) {
	for _, q := range Queries() {
		if q.QueryName() == name {
			return q, nil
		}
	}
	return nil, fmt.Errorf("nexmark: no query %q (have q0–q5, q7, q8)", name)
}

// QueryName is the query's name.
func (q Query[R]) QueryName() string { return q.Name }

// RunEvents runs the query over events in memory, collecting its results, and checks them.
func (q Query[R]) RunEvents(ctx context.Context, cfg stream.Config, events []Event) (Outcome, error) {
	return q.runSeq(ctx, cfg, slices.Values(events), events)
}

// RunGenerated runs the query over freshly generated events.
func (q Query[R]) RunGenerated(ctx context.Context, cfg stream.Config, gen Config, events []Event) (Outcome, error) {
	return q.runSeq(ctx, cfg, Events(gen), events)
}

func (q Query[R]) runSeq(ctx context.Context, cfg stream.Config, in iter.Seq[Event], events []Event) (Outcome, error) {
	p, src := stream.New(q.Name, cfg, Event.Time)
	var got []R
	stream.To(q.Build(src), stream.SinkFunc[R](func(_ uint64, _ int64, r R) error {
		got = append(got, r)
		return nil
	}))
	start, cpu0 := time.Now(), CPUTime()
	err := p.RunSeq(ctx, in)
	o := Outcome{Query: q.Name, Events: len(events), Results: len(got), Elapsed: time.Since(start), CPU: CPUTime() - cpu0}
	if err != nil {
		return o, err
	}
	o.Correct = q.Check(got, events) == nil
	return o, nil
}

// NewResults returns an empty set of results for ResumeLog.
func (q Query[R]) NewResults() Results { return &ByID[R]{} }

// ResumeLog runs the query over a log from its last checkpoint (saved under name) to the record
// with sequence until, into res. Results are kept by id, so runs that restart from a checkpoint
// and replay part of the log hold each result once.
func (q Query[R]) ResumeLog(ctx context.Context, cfg stream.Config, name string, log stream.Log, ckpt stream.Checkpoints, until uint64, res Results) error {
	p, src := stream.New(name, cfg, Event.Time)
	stream.To(q.Build(src), stream.Sink[R](res.(*ByID[R])))
	return p.RunLog(ctx, stream.LogRun[Event]{Log: log, Decode: Decode, Checkpoints: ckpt, Until: until})
}

// CheckResults compares results gathered by ResumeLog with the batch computation.
func (q Query[R]) CheckResults(res Results, events []Event) error {
	return q.Check(res.(*ByID[R]).Results(), events)
}

// Check compares the stream's results (in emission order) with the batch computation.
func (q Query[R]) Check(got []R, events []Event) error {
	if q.Final != nil {
		got = q.Final(got)
	}
	got = slices.Clone(got)
	want := q.Batch(events)
	slices.SortFunc(got, q.Compare)
	slices.SortFunc(want, q.Compare)
	if len(got) != len(want) {
		return fmt.Errorf("%s: %d results; the batch computation has %d", q.Name, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("%s: result %d is %+v; the batch computation has %+v", q.Name, i, got[i], want[i])
		}
	}
	return nil
}

// ByID is a sink that keeps results by id: a result replayed after a restart replaces itself.
type ByID[R any] struct {
	mu       sync.Mutex
	results  map[uint64]R
	replayed int
}

// Len is the number of distinct results.
func (s *ByID[R]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.results)
}

// Replays is how many results came more than once.
func (s *ByID[R]) Replays() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replayed
}

// Write keeps a result.
func (s *ByID[R]) Write(id uint64, _ int64, r R) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.results == nil {
		s.results = map[uint64]R{}
	}
	if _, ok := s.results[id]; ok {
		s.replayed++
	}
	s.results[id] = r
	return nil
}

// Flush has nothing to do: results are kept in memory.
func (s *ByID[R]) Flush(context.Context) error { return nil }

// Results are the results in id (emission) order.
func (s *ByID[R]) Results() []R {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(s.results))
	out := make([]R, len(ids))
	for i, id := range ids {
		out[i] = s.results[id]
	}
	return out
}

// cpuTime is the CPU time the process has used.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
