// Package stream is Surge's stream processor: typed pipelines of map, filter, keyed windows,
// keyed process functions with state and timers, and joins, in event time with watermarks,
// checkpointed together with the position in a durable log (NATS JetStream) so that a restart
// neither loses nor double-counts results.
//
// # Execution model
//
// A pipeline runs as one task: one goroutine that pulls records from one source and pushes each
// through the chain of operators (Flink's operator chaining). Nothing inside a task is shared, so
// there are no locks on the record path, and a checkpoint is a consistent cut taken between two
// records: no barriers to align.
//
// Work is split by key across tasks and nodes through partitioned subjects, as Kafka Streams
// splits it through partitioned topics: producers publish a record to the subject of its key's
// partition (Partition), and each partition is read by exactly one task, with its own state and
// its own checkpoint. A pipeline that re-keys by something else writes to the partitioned
// subjects of a second stage (a Publish sink) rather than shuffling inside the process.
//
// # Event time
//
// The source assigns every record its event time (milliseconds) and keeps the watermark: the
// largest event time seen, less the configured out-of-orderness, less one. A watermark w says no
// record at or before w is still expected. Windows fire and timers run when the watermark passes
// them. A record that arrives after its windows were fired and cleaned up (out-of-orderness plus
// allowed lateness) is late: it is counted and sent to the operator's late output, never dropped
// without a trace. The watermark depends only on the records, never on the wall clock, so a
// replay from a checkpoint makes exactly the same decisions.
//
// # Exactly-once effect
//
// A checkpoint holds the source position, every operator's state, the watermark and every sink's
// output count, saved as one object after the sinks have flushed. After a crash the task restores
// the last checkpoint and replays the log from its position; being deterministic, it emits the
// same outputs with the same ids, and sinks drop what they already have (JetStream message-id
// dedup, or the store's upsert by id).
//
// State is checkpointed with encoding/gob: keys, accumulators and process state must be types
// gob can encode, and only their exported fields are kept.
package stream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Watermark bounds.
const (
	// MinWatermark is the watermark before the first record.
	MinWatermark int64 = math.MinInt64
	// EndOfInput is the watermark of a finite source that has been read to its end: every window
	// fires and every timer runs.
	EndOfInput int64 = math.MaxInt64
)

// Default bounds of a pipeline.
const (
	DefaultMaxStateEntries    = 10_000_000
	DefaultCheckpointInterval = 5 * time.Second
	DefaultCheckpointTimeout  = time.Minute
	statsFlushRecords         = 4096
)

// ErrStateFull is returned by Run when an operator would hold more than Config.MaxStateEntries
// entries: the pipeline stops rather than drop state, and resumes from its last checkpoint once
// the bound is raised.
var ErrStateFull = errors.New("stream: operator state limit reached")

// Config sets a pipeline's event-time and state bounds.
type Config struct {
	// OutOfOrderness is how far behind the newest event time a record may arrive and still be on
	// time.
	OutOfOrderness time.Duration
	// AllowedLateness keeps a fired window's state this much longer: a record arriving within it
	// updates the window and fires it again.
	AllowedLateness time.Duration
	// MaxStateEntries bounds each operator's keyed state (keys, windows, buffered records).
	MaxStateEntries int
	// CheckpointInterval is how often a task running on a log checkpoints.
	CheckpointInterval time.Duration
	// CheckpointTimeout bounds the storing of one checkpoint, with the wait for the
	// acknowledgements of the sinks that split their flush (AsyncFlusher): a store or a log
	// that has not answered by then makes RunLog return the error, rather than run on with no
	// checkpoint taken while the save hangs. Whoever runs the task restarts it, from its last
	// stored checkpoint.
	CheckpointTimeout time.Duration
	// Metrics, if set, receives the pipeline's counters.
	Metrics *Metrics
}

func (c Config) withDefaults() Config {
	if c.MaxStateEntries <= 0 {
		c.MaxStateEntries = DefaultMaxStateEntries
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.CheckpointTimeout <= 0 {
		c.CheckpointTimeout = DefaultCheckpointTimeout
	}
	return c
}

// Window is the event-time interval [Start, End) in milliseconds.
type Window struct{ Start, End int64 }

// graph is one task's operators, built by the functions that derive streams.
type graph struct {
	name     string
	cfg      Config
	lateness int64
	timed    []timed    // operators that act on the watermark, in build (topological) order
	states   []stateful // operators with checkpointed state, in build order
	stats    []*opStats
	sinks    []flusher
	wm       int64
	err      error // first failure of an operator or sink; stops the task
}

// timed is an operator that fires windows or timers as the watermark passes them.
type timed interface{ advance(wm int64) }

// flusher is a sink that buffers: a checkpoint is saved only after flush succeeded.
type flusher interface {
	flush(ctx context.Context) error
	// flushAsync sends what the sink holds and returns what waits for it to be durable (nil
	// when the sink cannot split its flush: it has then flushed, waiting).
	flushAsync(ctx context.Context) (func(context.Context) error, error)
}

func (g *graph) fail(err error) {
	if g.err == nil {
		g.err = err
	}
}

// stat registers an operator's counters.
func (g *graph) stat(kind string, size func() int) *opStats {
	s := &opStats{name: fmt.Sprintf("%02d-%s", len(g.stats), kind), size: size}
	g.stats = append(g.stats, s)
	return s
}

// checkSize fails the task when an operator's state is at its bound.
func (g *graph) checkSize(n int, st *opStats) bool {
	if n < g.cfg.MaxStateEntries {
		return true
	}
	g.fail(fmt.Errorf("%w: %s holds %d entries", ErrStateFull, st.name, n))
	return false
}

// advance moves the watermark: each operator in build order fires what the watermark passed,
// so results of an upstream window reach a downstream window before it sees the watermark.
func (g *graph) advance(wm int64) {
	if wm <= g.wm {
		return
	}
	g.wm = wm
	for _, t := range g.timed {
		t.advance(wm)
	}
}

// opStats counts one operator's work. It is written by the task's goroutine only, and copied
// to the metrics every few thousand records.
type opStats struct {
	name          string
	in, out, late int64
	size          func() int
	reported      [3]int64 // in, out, late as last sent to the metrics
}

// receiver takes records pushed by the operator upstream.
type receiver[T any] interface{ push(ts int64, v T) }

// node is an operator's output: it fans records out to every operator reading the stream.
type node[T any] struct {
	outs []receiver[T]
	st   *opStats
}

func (n *node[T]) emit(ts int64, v T) {
	n.st.out++
	for _, o := range n.outs {
		o.push(ts, v)
	}
}

// Stream is a typed stream of records with event times, inside one pipeline.
type Stream[T any] struct {
	g *graph
	n *node[T]
}

func derive[T, U any](s Stream[T], kind string, r receiver[T], size func() int) (Stream[U], *opStats) {
	st := s.g.stat(kind, size)
	s.n.outs = append(s.n.outs, r)
	return Stream[U]{g: s.g, n: &node[U]{st: st}}, st
}

type mapOp[T, U any] struct {
	f   func(T) U
	out *node[U]
	st  *opStats
}

func (o *mapOp[T, U]) push(ts int64, v T) { o.st.in++; o.out.emit(ts, o.f(v)) }

// Map transforms every record.
func Map[T, U any](s Stream[T], f func(T) U) Stream[U] {
	o := &mapOp[T, U]{f: f}
	out, st := derive[T, U](s, "map", o, nil)
	o.out, o.st = out.n, st
	return out
}

type filterOp[T any] struct {
	f   func(T) bool
	out *node[T]
	st  *opStats
}

func (o *filterOp[T]) push(ts int64, v T) {
	o.st.in++
	if o.f(v) {
		o.out.emit(ts, v)
	}
}

// Filter keeps the records for which keep is true.
func Filter[T any](s Stream[T], keep func(T) bool) Stream[T] {
	o := &filterOp[T]{f: keep}
	out, st := derive[T, T](s, "filter", o, nil)
	o.out, o.st = out.n, st
	return out
}

type flatMapOp[T, U any] struct {
	f    func(T, func(U))
	out  *node[U]
	st   *opStats
	ts   int64
	emit func(U)
}

func (o *flatMapOp[T, U]) push(ts int64, v T) {
	o.st.in++
	o.ts = ts
	o.f(v, o.emit)
}

// FlatMap turns every record into zero or more records, each with the input's event time.
func FlatMap[T, U any](s Stream[T], f func(v T, emit func(U))) Stream[U] {
	o := &flatMapOp[T, U]{f: f}
	out, st := derive[T, U](s, "flatmap", o, nil)
	o.out, o.st = out.n, st
	o.emit = func(u U) { o.out.emit(o.ts, u) }
	return out
}

type unionIn[T any] struct{ out *node[T] }

func (u unionIn[T]) push(ts int64, v T) { u.out.emit(ts, v) }

// Union merges streams of one type, in the order their records arrive.
func Union[T any](first Stream[T], rest ...Stream[T]) Stream[T] {
	st := first.g.stat("union", nil)
	out := &node[T]{st: st}
	for _, s := range append([]Stream[T]{first}, rest...) {
		s.n.outs = append(s.n.outs, unionIn[T]{out: out})
	}
	return Stream[T]{g: first.g, n: out}
}

// Keyed is a stream partitioned by key: keyed operators keep state and timers per key.
type Keyed[K comparable, T any] struct {
	s   Stream[T]
	key func(T) K
}

// KeyBy partitions a stream by key.
func KeyBy[K comparable, T any](s Stream[T], key func(T) K) Keyed[K, T] {
	return Keyed[K, T]{s: s, key: key}
}
