package stream

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"time"
)

// Pipeline is one task's pipeline over input records of type In. Build it with New and the
// functions that derive streams, then run it once, on a slice or on a log.
type Pipeline[In any] struct {
	g         *graph
	src       *node[In]
	eventTime func(In) int64
	maxTS     int64
	position  uint64        // sequence of the last log record handled
	saved     uint64        // the position of the last checkpoint saved or restored
	moved     bool          // an input other than time alone handled since that checkpoint (LogRun.TimeOnly)
	saving    chan saveDone // the checkpoint being stored, if any: its result
	invalid   int64
	spare     []byte // the buffer for the next checkpoint, handed back by the last save
}

// New starts a pipeline named name (unique per partition: it names the checkpoint and the ids
// of its outputs). eventTime gives each input record's event time in milliseconds.
func New[In any](name string, cfg Config, eventTime func(In) int64) (*Pipeline[In], Stream[In]) {
	cfg = cfg.withDefaults()
	g := &graph{name: name, cfg: cfg, lateness: cfg.AllowedLateness.Milliseconds(), wm: MinWatermark}
	src := &node[In]{st: g.stat("source", nil)}
	return &Pipeline[In]{g: g, src: src, eventTime: eventTime, maxTS: MinWatermark}, Stream[In]{g: g, n: src}
}

// Name is the pipeline's name.
func (p *Pipeline[In]) Name() string { return p.g.name }

// Watermark is the pipeline's current watermark.
func (p *Pipeline[In]) Watermark() int64 { return p.g.wm }

// process pushes one record through the pipeline and moves the watermark; it is what the Run
// methods do per record.
func (p *Pipeline[In]) process(v In) {
	ts := p.eventTime(v)
	p.src.emit(ts, v)
	if ts > p.maxTS {
		p.maxTS = ts
		p.g.advance(ts - p.g.cfg.OutOfOrderness.Milliseconds() - 1)
	}
}

// RunSlice runs the pipeline over a finite input, in order, then ends it: every window fires,
// every timer runs, and the sinks are flushed.
func (p *Pipeline[In]) RunSlice(ctx context.Context, in []In) error {
	return p.RunSeq(ctx, slices.Values(in))
}

// RunSeq runs the pipeline over a finite sequence, such as a generator, as RunSlice does.
func (p *Pipeline[In]) RunSeq(ctx context.Context, in iter.Seq[In]) error {
	i := 0
	for v := range in {
		p.process(v)
		if p.g.err != nil {
			return p.g.err
		}
		if i++; i%statsFlushRecords == 0 {
			p.report(0)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return p.end(ctx)
}

// end fires everything still open and flushes the sinks.
func (p *Pipeline[In]) end(ctx context.Context) error {
	p.g.advance(EndOfInput)
	if p.g.err != nil {
		return p.g.err
	}
	p.report(0)
	return p.flush(ctx)
}

func (p *Pipeline[In]) flush(ctx context.Context) error {
	for _, s := range p.g.sinks {
		if err := s.flush(ctx); err != nil {
			return fmt.Errorf("stream %s: flush sink: %w", p.g.name, err)
		}
	}
	return nil
}

// flushAsync sends what every sink holds and returns what waits for the sinks that split their
// flush (AsyncFlusher); the others have flushed, waiting.
func (p *Pipeline[In]) flushAsync(ctx context.Context) ([]func(context.Context) error, error) {
	var waits []func(context.Context) error
	for _, s := range p.g.sinks {
		wait, err := s.flushAsync(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream %s: flush sink: %w", p.g.name, err)
		}
		if wait != nil {
			waits = append(waits, wait)
		}
	}
	return waits, nil
}

// Log is a durable, ordered log of records, such as a JetStream subject.
type Log interface {
	// Open reads the records with a sequence greater than after, in order.
	Open(ctx context.Context, after uint64) (Reader, error)
}

// LogFunc is a Log made of its Open function: it adapts a log whose reader is a concrete type.
type LogFunc func(ctx context.Context, after uint64) (Reader, error)

// Open calls f.
func (f LogFunc) Open(ctx context.Context, after uint64) (Reader, error) { return f(ctx, after) }

// ErrLogGap is what a Log's Open wraps when it no longer holds the records after the position
// (they aged out): reading on would skip them without a trace.
var ErrLogGap = errors.New("the log no longer holds the records after this position")

// Reader reads a Log.
type Reader interface {
	// Next returns the next record, waiting up to wait for one; ok is false when none came.
	Next(wait time.Duration) (seq uint64, data []byte, ok bool, err error)
	// Pending is how many records the log holds past the last one returned.
	Pending() uint64
	// Close stops reading.
	Close()
}

// Checkpoints stores a pipeline's checkpoints, one per pipeline name.
type Checkpoints interface {
	// Load returns the last saved checkpoint of name; ok is false when there is none.
	Load(ctx context.Context, name string) (data []byte, ok bool, err error)
	// Save replaces the checkpoint of name, atomically. It keeps nothing of data once it has
	// returned: the pipeline encodes its next checkpoint into the same memory.
	Save(ctx context.Context, name string, data []byte) error
}

// LogRun says where a pipeline reads and keeps its checkpoints.
type LogRun[In any] struct {
	Log    Log
	Decode func([]byte) (In, error)
	// DecodeAll, instead of Decode, reads a log record that carries several inputs (a batch);
	// they are handled in order, each with its own event time.
	DecodeAll   func([]byte) ([]In, error)
	Checkpoints Checkpoints
	// Until, when not zero, ends the input after the record with this sequence: everything
	// fires, the sinks flush, a final checkpoint is saved and Run returns nil.
	Until uint64
	// Invalid, if set, is told about every record Decode refused (they are counted either way).
	Invalid func(seq uint64, data []byte, err error)
	// OnGap, if set, is told when the log no longer holds the records after the checkpoint's
	// position (ErrLogGap); if it returns true the pipeline goes on from the oldest record the
	// log holds. Without it, RunLog fails.
	OnGap func(err error) bool
	// TimeOnly, if set, reports an input that carries nothing but its time (a tick written to
	// the log so that the watermark moves when nothing else comes). The pipeline handles it like
	// any other; but while only such inputs came since the last checkpoint, it checkpoints every
	// IdleCheckpointInterval rather than every Config.CheckpointInterval: an idle pipeline does
	// not encode and store its whole state every few seconds for the ticks. A restart replays the
	// ticks since, and decides the same.
	TimeOnly func(In) bool
	// Fresh ignores the saved checkpoint: the pipeline starts from the oldest record the log
	// holds, and its first checkpoint replaces the one it ignored. For a checkpoint that cannot
	// be read back (ErrCheckpointMismatch, ErrCheckpointUnreadable), which would otherwise stop
	// every restart.
	Fresh bool
}

// idleWait is how long a task waits for a record before it looks at the clock again, and
// clockRecords how many records it handles between looks.
const (
	idleWait     = 25 * time.Millisecond
	clockRecords = 256
)

// IdleCheckpointInterval is how often a pipeline that reads nothing but time (LogRun.TimeOnly)
// checkpoints: seldom, and still well within a log that keeps an hour, so that a restart's
// replay stays short.
const IdleCheckpointInterval = 10 * time.Minute

// RunLog restores the last checkpoint, then reads the log from its position until ctx ends
// (or past run.Until), checkpointing every Config.CheckpointInterval, and flushing the sinks
// whenever the log is quiet. When ctx ends RunLog returns without a checkpoint, as a crash
// would: a restart replays from the last one. It looks at ctx every clockRecords records and
// whenever the log is quiet.
func (p *Pipeline[In]) RunLog(ctx context.Context, run LogRun[In]) error {
	if !run.Fresh {
		if err := p.restore(ctx, run.Checkpoints); err != nil {
			return err
		}
	}
	if run.Until > 0 && p.position >= run.Until {
		return nil // this input was already read to its end
	}
	r, err := run.Log.Open(ctx, p.position)
	if errors.Is(err, ErrLogGap) && run.OnGap != nil && run.OnGap(err) {
		r, err = run.Log.Open(ctx, 0)
	}
	if err != nil {
		return fmt.Errorf("stream %s: open log: %w", p.g.name, err)
	}
	defer r.Close()    // after the read-ahead has stopped: deferred calls run last first
	defer p.waitSave() // a checkpoint on its way to the store is not left behind
	ahead, stop := readAhead(r, run)
	defer stop()
	last := time.Now()
	for n := 0; ; n++ {
		rec := <-ahead
		if rec.err != nil {
			return fmt.Errorf("stream %s: read log: %w", p.g.name, rec.err)
		}
		if rec.ok {
			p.handle(rec, run)
			if p.g.err != nil {
				return p.g.err
			}
			if run.Until > 0 && rec.seq >= run.Until {
				if err := p.end(ctx); err != nil {
					return err
				}
				if err := p.checkpoint(ctx, run.Checkpoints); err != nil {
					return err
				}
				return p.waitSave()
			}
		}
		if !rec.ok || n%clockRecords == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := p.savedYet(); err != nil {
				return err
			}
			if !rec.ok || n%statsFlushRecords == 0 {
				p.report(rec.pending)
			}
			if !rec.ok { // a quiet log: what the sinks hold goes out now, not at the next record
				if err := p.flush(ctx); err != nil {
					return err
				}
			}
			// A pipeline that read nothing since its last checkpoint holds the same state: an
			// idle pipeline does not encode and store it again. While one checkpoint is being
			// stored, the next waits for it rather than holding up the records.
			since := time.Since(last)
			if since >= p.g.cfg.CheckpointInterval && p.position != p.saved && p.saving == nil &&
				(p.moved || since >= IdleCheckpointInterval) {
				if err := p.checkpoint(ctx, run.Checkpoints); err != nil {
					return err
				}
				last = time.Now()
			}
		}
	}
}

// readAheadRecords bounds the decoded log records waiting for the operators (one more may be
// decoded, waiting for room).
const readAheadRecords = 4

// logRecord is one read of the log, decoded: a record (ok), a quiet log (not ok), or the error
// that ends the reading.
type logRecord[In any] struct {
	seq     uint64
	data    []byte
	ok      bool
	err     error
	pending uint64
	vs      []In  // the inputs the record carries (DecodeAll)
	one     In    // the input it carries (Decode)
	bad     error // why the record could not be decoded
}

// readAhead reads and decodes the log on its own goroutine, a few records (readAheadRecords
// queued) ahead of the pipeline: decoding (JSON, say) is a large part of a task's work, and so
// runs beside the operators rather than before them. stop ends the reading and waits for it,
// so the reader can be closed after.
func readAhead[In any](r Reader, run LogRun[In]) (<-chan logRecord[In], func()) {
	out, quit, done := make(chan logRecord[In], readAheadRecords), make(chan struct{}), make(chan struct{})
	go func() { // ends with stop
		defer close(done)
		for {
			seq, data, ok, err := r.Next(idleWait)
			rec := logRecord[In]{seq: seq, data: data, ok: ok, err: err, pending: r.Pending()}
			if ok && run.DecodeAll != nil {
				rec.vs, rec.bad = run.DecodeAll(data)
			} else if ok {
				rec.one, rec.bad = run.Decode(data)
			}
			select {
			case out <- rec:
			case <-quit:
				return
			}
			if err != nil {
				<-quit
				return
			}
		}
	}()
	return out, func() { close(quit); <-done }
}

// handle processes one decoded log record.
func (p *Pipeline[In]) handle(rec logRecord[In], run LogRun[In]) {
	p.position = rec.seq
	if !p.moved {
		p.moved = run.TimeOnly == nil || rec.bad != nil || (run.DecodeAll == nil && !run.TimeOnly(rec.one)) ||
			slices.ContainsFunc(rec.vs, func(v In) bool { return !run.TimeOnly(v) })
	}
	if rec.bad != nil {
		p.refuse(rec.seq, rec.data, rec.bad, run)
		return
	}
	if run.DecodeAll == nil {
		p.process(rec.one)
		return
	}
	for _, v := range rec.vs {
		p.process(v)
		if p.g.err != nil {
			return
		}
	}
}

func (p *Pipeline[In]) refuse(seq uint64, data []byte, err error, run LogRun[In]) {
	p.invalid++
	if run.Invalid != nil {
		run.Invalid(seq, data, err)
	}
}

// checkpointHeader comes first in a checkpoint: where the input stands and what wrote it.
type checkpointHeader struct {
	Format    int // checkpointFormat when written
	Pipeline  string
	Operators []string
	Position  uint64
	MaxTS     int64
	WM        int64
}

// stateful is an operator whose state goes into checkpoints.
type stateful interface {
	snapshot(*gob.Encoder) error
	restore(*gob.Decoder) error
}

// Checkpoint flushes the sinks, then encodes the position, the watermark and every operator's
// state as one object, and stores it while the pipeline goes on: the records read meanwhile
// change the pipeline's state, not the encoded copy. A sink that splits its flush
// (AsyncFlusher) only sends here; the checkpoint is stored once what it sent is durable. One
// checkpoint is stored at a time; a failure to store one or to flush a sink, or a store that
// does not answer within Config.CheckpointTimeout, stops the pipeline when it is seen
// (savedYet, waitSave).
func (p *Pipeline[In]) checkpoint(ctx context.Context, store Checkpoints) error {
	if err := p.waitSave(); err != nil {
		return err
	}
	start := time.Now()
	waits, err := p.flushAsync(ctx)
	if err != nil {
		return err
	}
	// The buffer the last save handed back (waitSave): a new one grown by doubling from
	// nothing, or made at once and cleared, for a state of tens of megabytes took most of the
	// encoding, on the pipeline's goroutine, while the counting waited.
	buf := bytes.NewBuffer(p.spare[:0])
	enc := gob.NewEncoder(buf)
	if err := enc.Encode(p.header()); err != nil {
		return fmt.Errorf("stream %s: checkpoint: %w", p.g.name, err)
	}
	for i, s := range p.g.states {
		if err := s.snapshot(enc); err != nil {
			return fmt.Errorf("stream %s: checkpoint operator %d: %w", p.g.name, i, err)
		}
	}
	p.spare = nil // the save's until it hands a buffer back
	name, data, m, done := p.g.name, buf.Bytes(), p.g.cfg.Metrics, make(chan saveDone, 1)
	timeout := p.g.cfg.CheckpointTimeout
	go func() { // waited for by waitSave, which RunLog defers
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		for _, wait := range waits { // what the sinks sent before the checkpoint is durable first
			if err := wait(ctx); err != nil {
				done <- saveDone{fmt.Errorf("stream %s: flush sink: %w", name, err), nextBuffer(data)}
				return
			}
		}
		err := store.Save(ctx, name, data)
		if err != nil {
			err = fmt.Errorf("stream %s: save checkpoint: %w", name, err)
		} else if m != nil {
			m.checkpoint(name, time.Since(start), len(data))
		}
		done <- saveDone{err, nextBuffer(data)}
	}()
	p.saving, p.saved, p.moved = done, p.position, false
	return nil
}

// saveDone is a checkpoint's save done: its result, and the buffer for the next checkpoint.
type saveDone struct {
	err   error
	spare []byte
}

// nextBuffer is the buffer for the checkpoint after one of len(data) bytes, once data is saved:
// data's own, or one half as big again when a state that grew would soon outgrow it. A buffer
// outgrown while encoding is copied, and a new one of tens of megabytes cleared, on the
// pipeline's goroutine; here, on the save's, the counting does not wait for it.
func nextBuffer(data []byte) []byte {
	if cap(data) < len(data)+len(data)/4 {
		return make([]byte, 0, len(data)+len(data)/2)
	}
	return data[:0]
}

// waitSave waits for the checkpoint being stored, if any, and returns its result.
func (p *Pipeline[In]) waitSave() error {
	if p.saving == nil {
		return nil
	}
	r := <-p.saving
	p.saving, p.spare = nil, r.spare
	return r.err
}

// savedYet returns the result of the checkpoint being stored if it is in, without waiting.
func (p *Pipeline[In]) savedYet() error {
	select {
	case r := <-p.saving: // a nil channel is never ready
		p.saving, p.spare = nil, r.spare
		return r.err
	default:
		return nil
	}
}

func (p *Pipeline[In]) header() checkpointHeader {
	h := checkpointHeader{Format: checkpointFormat, Pipeline: p.g.name, Position: p.position, MaxTS: p.maxTS, WM: p.g.wm}
	for _, s := range p.g.stats {
		h.Operators = append(h.Operators, s.name)
	}
	return h
}

// ErrCheckpointMismatch is returned when the saved checkpoint was written by a pipeline of a
// different shape, or in another format: its state cannot be read back into this one.
var ErrCheckpointMismatch = errors.New("stream: checkpoint belongs to a different pipeline")

// ErrCheckpointUnreadable is returned when the saved checkpoint cannot be decoded.
var ErrCheckpointUnreadable = errors.New("stream: checkpoint cannot be read")

// checkpointFormat numbers the way checkpoints are encoded; a checkpoint of another format is
// refused (ErrCheckpointMismatch). 0 is every checkpoint written before it was numbered; 1 writes
// a keyed state in chunks of keys after its timers (see processHead) and a sink's state in
// pieces.
const checkpointFormat = 1

func (p *Pipeline[In]) restore(ctx context.Context, store Checkpoints) error {
	data, ok, err := store.Load(ctx, p.g.name)
	if err != nil {
		return fmt.Errorf("stream %s: load checkpoint: %w", p.g.name, err)
	}
	if !ok {
		return nil
	}
	dec := gob.NewDecoder(bytes.NewReader(data))
	var h checkpointHeader
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("%w: stream %s: read checkpoint: %w", ErrCheckpointUnreadable, p.g.name, err)
	}
	want := p.header()
	if h.Format != want.Format || h.Pipeline != want.Pipeline || fmt.Sprint(h.Operators) != fmt.Sprint(want.Operators) {
		return fmt.Errorf("%w: saved %s %v (format %d), running %s %v (format %d)", ErrCheckpointMismatch,
			h.Pipeline, h.Operators, h.Format, want.Pipeline, want.Operators, want.Format)
	}
	for i, s := range p.g.states {
		if err := s.restore(dec); err != nil {
			return fmt.Errorf("%w: stream %s: restore operator %d: %w", ErrCheckpointUnreadable, p.g.name, i, err)
		}
	}
	p.position, p.maxTS, p.g.wm = h.Position, h.MaxTS, h.WM
	p.saved = h.Position
	return nil
}

// RestartPause is how long Keep waits before it runs a failed pipeline again.
const RestartPause = time.Second

// Keep runs a pipeline on a log until ctx ends: run runs it once (from its last checkpoint, or
// from the oldest record the log holds when fresh), and Keep runs it again after a failure,
// RestartPause later. A checkpoint that cannot be read back would stop every restart: the next
// run is fresh instead, at once. Each failure is logged, what naming the pipeline.
func Keep(ctx context.Context, what string, log *slog.Logger, run func(ctx context.Context, fresh bool) error) {
	fresh := false
	for ctx.Err() == nil {
		err := run(ctx, fresh)
		if ctx.Err() != nil {
			return
		}
		if fresh = errors.Is(err, ErrCheckpointMismatch) || errors.Is(err, ErrCheckpointUnreadable); fresh {
			log.Error(what+" checkpoint cannot be read back; recomputing from the oldest events the log holds", "err", err)
			continue
		}
		log.Error(what+" stopped; restarting from its last checkpoint", "err", err)
		t := time.NewTimer(RestartPause)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}
