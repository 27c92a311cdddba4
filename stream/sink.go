package stream

import (
	"context"
	"encoding/gob"
	"fmt"
	"strconv"
)

// Sink receives a pipeline's results. Write gets an id numbering the sink's results from 1:
// after a restart from a checkpoint, the replayed results come again with the same ids, so a
// sink that stores by id (or dedups by it) holds each result exactly once.
type Sink[T any] interface {
	Write(id uint64, ts int64, v T) error
	// Flush makes every result written so far durable; a checkpoint waits for it.
	Flush(ctx context.Context) error
}

// StatefulSink is a Sink that keeps state of its own (a running aggregate it publishes, say):
// its state goes into the pipeline's checkpoints and comes back on restore, consistent with the
// position the log is replayed from.
type StatefulSink interface {
	SnapshotState() ([]byte, error)
	RestoreState([]byte) error
}

// AsyncFlusher is a Sink whose flush comes in two parts: FlushAsync sends what the sink holds,
// and the function it returns waits until that is durable. A checkpoint sends on the pipeline's
// goroutine and waits on the one that stores the checkpoint, before storing it: the counting
// goes on while the log acknowledges. wait may be nil (nothing to wait for).
type AsyncFlusher interface {
	FlushAsync(ctx context.Context) (wait func(context.Context) error, err error)
}

// SinkFunc is a Sink that hands each result to a function and has nothing to flush.
type SinkFunc[T any] func(id uint64, ts int64, v T) error

// Write calls f.
func (f SinkFunc[T]) Write(id uint64, ts int64, v T) error { return f(id, ts, v) }

// Flush does nothing.
func (SinkFunc[T]) Flush(context.Context) error { return nil }

type sinkOp[T any] struct {
	g    *graph
	sink Sink[T]
	seq  uint64
	st   *opStats
}

// To sends a stream's records to a sink. A sink error stops the task; it resumes from its last
// checkpoint.
func To[T any](s Stream[T], sink Sink[T]) {
	o := &sinkOp[T]{g: s.g, sink: sink}
	o.st = s.g.stat("sink", nil)
	s.n.outs = append(s.n.outs, o)
	s.g.sinks = append(s.g.sinks, o)
	s.g.states = append(s.g.states, o)
}

func (o *sinkOp[T]) push(ts int64, v T) {
	o.st.in++
	if o.g.err != nil {
		return // the task has failed: what follows is not a result; the replay will redo it
	}
	o.seq++
	if err := o.sink.Write(o.seq, ts, v); err != nil {
		o.g.fail(err)
	}
}

func (o *sinkOp[T]) flush(ctx context.Context) error { return o.sink.Flush(ctx) }

func (o *sinkOp[T]) flushAsync(ctx context.Context) (func(context.Context) error, error) {
	if af, ok := o.sink.(AsyncFlusher); ok {
		return af.FlushAsync(ctx)
	}
	return nil, o.sink.Flush(ctx)
}

func (o *sinkOp[T]) snapshot(enc *gob.Encoder) error {
	if err := enc.Encode(o.seq); err != nil {
		return err
	}
	if ss, ok := o.sink.(StatefulSink); ok {
		data, err := ss.SnapshotState()
		if err != nil {
			return err
		}
		// In pieces, so that gob's buffer stays a piece big instead of growing to the whole
		// state (tens of megabytes for the live metrics) by doubling.
		if err := enc.Encode(len(data)); err != nil {
			return err
		}
		for len(data) > 0 {
			n := min(len(data), sinkStatePiece)
			if err := enc.Encode(data[:n]); err != nil {
				return err
			}
			data = data[n:]
		}
	}
	return nil
}

// sinkStatePiece is the most of a sink's state one gob message of a checkpoint carries.
const sinkStatePiece = 1 << 20

func (o *sinkOp[T]) restore(dec *gob.Decoder) error {
	if err := dec.Decode(&o.seq); err != nil {
		return err
	}
	if ss, ok := o.sink.(StatefulSink); ok {
		var size int
		if err := dec.Decode(&size); err != nil {
			return err
		}
		if size < 0 {
			return fmt.Errorf("a sink state of %d bytes", size)
		}
		data := make([]byte, 0, min(size, maxPresizedState))
		for len(data) < size {
			var piece []byte
			if err := dec.Decode(&piece); err != nil {
				return err
			}
			if len(piece) == 0 || len(data)+len(piece) > size {
				return fmt.Errorf("a sink state of %d bytes has a piece of %d after %d", size, len(piece), len(data))
			}
			data = append(data, piece...)
		}
		return ss.RestoreState(data)
	}
	return nil
}

// maxPresizedState bounds the room a restore makes ahead for the sink state a checkpoint
// announces: the size is the checkpoint's word, and the pieces must follow.
const maxPresizedState = 256 << 20

// Publisher publishes messages to a durable log that drops a message whose id it already holds
// (JetStream's message-id dedup).
type Publisher interface {
	// PublishAsync sends a message without waiting for the log's acknowledgement.
	PublishAsync(subject, msgID string, data []byte) error
	// Flush waits until every message sent so far is acknowledged.
	Flush(ctx context.Context) error
}

// SplitPublisher is a Publisher whose Flush comes in two parts: Sent does what Flush does
// before it waits, and returns what waits for the messages sent so far (not those published
// after). The publisher may go on publishing while that waits.
type SplitPublisher interface {
	Publisher
	Sent() (wait func(context.Context) error)
}

type publishSink[T any] struct {
	pub     Publisher
	prefix  string
	subject func(T) string
	encode  func(T) ([]byte, error)
}

// Publish sends a stream's records to a log, each under the message id "<pipeline>/<sink>/<id>",
// so a replay after a restart publishes nothing twice, as long as the restart comes within the
// log's dedup window (JetStream: nats.DedupWindow, 10 minutes). subject picks each record's subject: a
// partitioned subject makes it the input of a second stage keyed differently.
func Publish[T any](s Stream[T], pub Publisher, subject func(T) string, encode func(T) ([]byte, error)) {
	prefix := s.g.name + "/" + strconv.Itoa(len(s.g.sinks)) + "/"
	To[T](s, &publishSink[T]{pub: pub, prefix: prefix, subject: subject, encode: encode})
}

func (p *publishSink[T]) Write(id uint64, _ int64, v T) error {
	data, err := p.encode(v)
	if err != nil {
		return err
	}
	return p.pub.PublishAsync(p.subject(v), p.prefix+strconv.FormatUint(id, 10), data)
}

func (p *publishSink[T]) Flush(ctx context.Context) error { return p.pub.Flush(ctx) }
