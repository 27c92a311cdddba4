package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// Bounds of the stream engine's use of JetStream.
const (
	// MaxLogBytes bounds a log stream created by EnsureLog; the oldest records go first.
	MaxLogBytes = 8 << 30
	// logPullBytes bounds the records a log reader holds and asks the server for (about half
	// of it at a time). Bounded by bytes, not by count: the server queues what a pull asks for
	// on the connection at once, and closes a connection whose queue passes 64 MiB (a slow
	// consumer). 4,096 records of 100 KB, as the live pipeline's batches come, did that to the
	// node's own connection under a sustained 300,000 events a second.
	logPullBytes = 16 << 20
	// MaxPublishPending bounds the asynchronous publishes awaiting acknowledgement; a sink
	// that gets ahead waits for them (backpressure).
	MaxPublishPending = 2048 // below nats.go's own bound of 4,000 on one connection
	checkpointBucket  = "SURGE_STREAM_CHECKPOINTS"
	// maxAckWait bounds how long a publisher that is ahead waits for acknowledgements.
	maxAckWait = 30 * time.Second
	// snapshotAckEvery: a SnapshotPublisher asks for one acknowledgement per this many messages.
	snapshotAckEvery = 256
	// maxSnapshotPending bounds a SnapshotPublisher's messages awaiting acknowledgement, and
	// as many again while the ones before a Sent are waited for: at most a third of the 100,000
	// a stream's inbound queue holds. The live sink publishes rounds of thousands of series;
	// bounded at MaxPublishPending, its rounds waited for acknowledgements on the pipeline's
	// goroutine (with the shared connection, 40% of its time at 300,000 events a second).
	maxSnapshotPending = 16384
)

// EnsureLog creates or updates a stream that keeps records on subjects for the stream engine:
// on disk, deduplicated by message id, bounded in size.
func (b *Bus) EnsureLog(ctx context.Context, name string, subjects ...string) error {
	_, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: subjects,
		Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Duplicates: DedupWindow,
		MaxBytes: MaxLogBytes, Discard: jetstream.DiscardOld})
	if err != nil {
		return fmt.Errorf("jetstream stream %s: %w", name, err)
	}
	return nil
}

// Log is one subject (or subject filter) of a stream, read in order from a position.
type Log struct {
	js      jetstream.JetStream
	stream  string
	subject string
}

// Log returns the records of subject in stream, for a pipeline to read.
func (b *Bus) Log(stream, subject string) *Log {
	return &Log{js: b.JS, stream: stream, subject: subject}
}

// LogReader reads a Log with an ordered consumer: the server pushes records ahead of the reader,
// in order, and the consumer is recreated from the last sequence if a record goes missing.
type LogReader struct {
	it      jetstream.MessagesContext
	pending uint64
}

// Open starts reading the records with a stream sequence greater than after.
func (l *Log) Open(ctx context.Context, after uint64) (*LogReader, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	if after > 0 { // the records after the position must still be there: a gap is data lost
		s, err := l.js.Stream(ctx, l.stream)
		if err != nil {
			return nil, fmt.Errorf("log %s: %w", l.stream, err)
		}
		if first := s.CachedInfo().State.FirstSeq; first > after+1 {
			return nil, fmt.Errorf("%w: %s starts at %d, the reader is at %d", stream.ErrLogGap, l.stream, first, after)
		}
	}
	c, err := l.js.OrderedConsumer(ctx, l.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("log %s %s: %w", l.stream, l.subject, err)
	}
	it, err := c.Messages(jetstream.PullMaxBytes(logPullBytes))
	if err != nil {
		return nil, fmt.Errorf("log %s %s: %w", l.stream, l.subject, err)
	}
	return &LogReader{it: it}, nil
}

// Since hands each to the records stored at or after since, in order, up to the last one the
// stream held when the read began; an error from each stops the read and is returned.
func (l *Log) Since(ctx context.Context, since time.Time, each func(data []byte) error) error {
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		return fmt.Errorf("log %s: %w", l.stream, err)
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return nil
	}
	c, err := l.js.OrderedConsumer(ctx, l.stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.subject},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		return fmt.Errorf("log %s %s: %w", l.stream, l.subject, err)
	}
	it, err := c.Messages(jetstream.PullMaxBytes(logPullBytes))
	if err != nil {
		return fmt.Errorf("log %s %s: %w", l.stream, l.subject, err)
	}
	defer it.Stop()
	for ctx.Err() == nil {
		m, err := it.Next(jetstream.NextMaxWait(sinceQuiet))
		if errors.Is(err, nats.ErrTimeout) {
			return nil // nothing more of the subject up to the end
		}
		if err != nil {
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if md.Sequence.Stream > last {
			return nil
		}
		if err := each(m.Data()); err != nil {
			return err
		}
		if md.Sequence.Stream == last || md.NumPending == 0 {
			return nil
		}
	}
	return ctx.Err()
}

// sinceQuiet is how long Since waits for a record before it takes the log as read to its end.
const sinceQuiet = time.Second

// Next returns the next record, waiting up to wait; ok is false when none came.
func (r *LogReader) Next(wait time.Duration) (seq uint64, data []byte, ok bool, err error) {
	m, err := r.it.Next(jetstream.NextMaxWait(wait))
	if errors.Is(err, nats.ErrTimeout) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	md, err := m.Metadata()
	if err != nil {
		return 0, nil, false, err
	}
	r.pending = md.NumPending
	return md.Sequence.Stream, m.Data(), true, nil
}

// Pending is how many records the stream held past the last one returned, when it was sent.
func (r *LogReader) Pending() uint64 { return r.pending }

// Close stops the reader.
func (r *LogReader) Close() { r.it.Stop() }

// Checkpoints keeps the stream engine's checkpoints in a JetStream object store: an object is
// replaced whole, so a reader sees the previous checkpoint or the new one, never a mix.
type Checkpoints struct{ os jetstream.ObjectStore }

// Checkpoints opens (creating if needed) the checkpoint store.
func (b *Bus) Checkpoints(ctx context.Context) (*Checkpoints, error) {
	os, err := b.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: checkpointBucket, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("jetstream object store %s: %w", checkpointBucket, err)
	}
	return &Checkpoints{os: os}, nil
}

// Load returns the checkpoint saved under name.
func (c *Checkpoints) Load(ctx context.Context, name string) ([]byte, bool, error) {
	data, err := c.os.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return data, true, nil
}

// saveGrace is how long a save goes on after its caller's context ended: to remove the chunks
// it wrote, or to finish replacing the previous checkpoint once the new one is in.
const saveGrace = 30 * time.Second

// Save replaces the checkpoint saved under name. When ctx ends part way, the save stops at its
// next chunk and removes the chunks it wrote. The store cleans up with the context it was given,
// so it is given one of its own that outlives ctx by saveGrace; ctx stops the save through the
// data's reader. (Given ctx itself, a save past its deadline would leave its chunks behind, in a
// store that is never trimmed.)
func (c *Checkpoints) Save(ctx context.Context, name string, data []byte) error {
	own, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(saveGrace, cancel) })
	defer stop()
	_, err := c.os.Put(own, jetstream.ObjectMeta{Name: name}, stopReader{ctx, bytes.NewReader(data)})
	return err
}

// stopReader reads r until ctx ends.
type stopReader struct {
	ctx context.Context
	r   io.Reader
}

func (s stopReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	return s.r.Read(p)
}

// Delete removes the checkpoint saved under name, if any.
func (c *Checkpoints) Delete(ctx context.Context, name string) error {
	err := c.os.Delete(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	return err
}

// EnsureKV creates or updates a key-value bucket that keeps the latest value of each key,
// bounded in size: on disk, or in memory for values that can be computed again (a memory bucket
// takes writes at memory speed, where a disk bucket of the embedded server syncs every write).
func (b *Bus) EnsureKV(ctx context.Context, bucket string, maxBytes int64, inMemory bool) error {
	storage := jetstream.FileStorage
	if inMemory {
		storage = jetstream.MemoryStorage
	}
	_, err := b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1, MaxBytes: maxBytes, Storage: storage})
	if err != nil {
		return fmt.Errorf("jetstream bucket %s: %w", bucket, err)
	}
	return nil
}

// KVSubject is the subject that a put of key in bucket is published on: publishing there (for
// example with an AsyncPublisher) is a put.
func KVSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// WatchKV calls fn with the current value of every key in bucket, then with every change (nil
// for a deleted key), until ctx ends. The returned channel is closed once the current values
// were delivered.
func (b *Bus) WatchKV(ctx context.Context, bucket string, fn func(key string, value []byte)) (<-chan struct{}, error) {
	kv, err := b.JS.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("jetstream bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bucket, err)
	}
	ready := make(chan struct{})
	go func() { // ends with ctx: the watcher's channel closes
		defer w.Stop()
		caughtUp := false
		for e := range w.Updates() {
			if e == nil {
				if !caughtUp {
					caughtUp = true
					close(ready)
				}
				continue
			}
			if e.Operation() == jetstream.KeyValuePut {
				fn(e.Key(), e.Value())
			} else {
				fn(e.Key(), nil)
			}
		}
		if !caughtUp {
			close(ready)
		}
	}()
	return ready, nil
}

// LoadKV calls fn with the current value of every key in bucket, and returns once it has. A
// node that follows the changes some other way reads the bucket once rather than watching it:
// the node that computes the values takes them from its own pipeline.
func (b *Bus) LoadKV(ctx context.Context, bucket string, fn func(key string, value []byte)) error {
	kv, err := b.JS.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("jetstream bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("load %s: %w", bucket, err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("load %s: the watch ended before the current values were read", bucket)
			}
			if e == nil { // the current values are in
				return nil
			}
			fn(e.Key(), e.Value())
		case <-ctx.Done():
			return fmt.Errorf("load %s: %w", bucket, ctx.Err())
		}
	}
}

// AsyncPublisher publishes without waiting for each acknowledgement, and waits for all of them
// on Flush: a pipeline's sink and a bulk loader publish at the rate of the connection.
type AsyncPublisher struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	mu      sync.Mutex
	futures []jetstream.PubAckFuture
	// Of a SnapshotPublisher: how often to ask for an acknowledgement, how many messages went
	// without since the last that asked, and the last of them.
	ackEvery    int
	unacked     int
	lastSubject string
	lastData    []byte
	reconnects  uint64 // the connection's count when the first quiet message since Flush went
	quietSent   bool
}

// A sink that splits its flush (the live metrics' sink) waits for an AsyncPublisher's
// acknowledgements off the pipeline's goroutine.
var _ stream.SplitPublisher = (*AsyncPublisher)(nil)

// AsyncPublisher returns a publisher of its own (Flush waits only for its messages).
func (b *Bus) AsyncPublisher() *AsyncPublisher { return &AsyncPublisher{js: b.JS} }

// SnapshotPublisher returns a publisher for snapshots, such as the values of a KV bucket, where
// a message that is lost is made good by the next one on its subject (or by its publisher
// sending everything again from time to time, as the live sink does). Only one message in
// snapshotAckEvery without a dedup id asks for an acknowledgement, and Flush asks it of the
// last one sent without: the server stores one connection's messages to a stream in the order
// they came, so that acknowledgement comes after the earlier messages were handled. For a live
// sink that publishes thousands of series a second, the acknowledgements, each a reply to
// route and a JSON to read, were most of its work on the bus.
//
// What it gives up: a quiet message the stream refuses on its own (say, one larger than the
// bucket allows) or drops (its queue full, its leader changing) is not reported; a full
// bucket refuses the acknowledged ones too, and is. Flush fails when the connection was
// re-established since the quiet messages began, as they may be lost. At most
// maxSnapshotPending messages (twice that while a Sent's wait is pending), and the quiet ones
// after the last that asked, go unconfirmed: the server's queue stays far from full.
func (b *Bus) SnapshotPublisher() *AsyncPublisher {
	return &AsyncPublisher{js: b.snapJS, nc: b.snap, ackEvery: snapshotAckEvery}
}

// PublishAsync sends a message with a dedup id; when MaxPublishPending messages
// (maxSnapshotPending for a SnapshotPublisher) await acknowledgement it first waits for them.
// Those handed to a Sent's wait are not counted.
func (p *AsyncPublisher) PublishAsync(subject, msgID string, data []byte) error {
	p.mu.Lock()
	full := len(p.futures) >= MaxPublishPending // each covers one message
	if p.ackEvery > 0 {
		full = len(p.futures) >= maxSnapshotPending/p.ackEvery // each covers ackEvery messages
	}
	quiet := p.ackEvery > 0 && msgID == "" && p.unacked+1 < p.ackEvery
	if quiet {
		p.unacked++
		p.lastSubject, p.lastData = subject, data
		if !p.quietSent {
			p.quietSent, p.reconnects = true, p.nc.Stats().Reconnects
		}
	} else { // its acknowledgement covers the quiet ones before it
		p.unacked, p.lastData = 0, nil
	}
	p.mu.Unlock()
	if quiet {
		if err := p.nc.Publish(subject, data); err != nil {
			return fmt.Errorf("publish %s: %w", subject, err)
		}
		return nil
	}
	if full {
		ctx, cancel := context.WithTimeout(context.Background(), maxAckWait)
		defer cancel()
		if err := p.Flush(ctx); err != nil {
			return err
		}
	}
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	f, err := p.js.PublishMsgAsync(m)
	if err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	p.mu.Lock()
	p.futures = append(p.futures, f)
	p.mu.Unlock()
	return nil
}

// Flush waits until every message published so far is acknowledged, and returns the first
// refusal.
func (p *AsyncPublisher) Flush(ctx context.Context) error { return p.Sent()(ctx) }

// Sent does what Flush does before it waits (a snapshot publisher asks for the acknowledgement
// of its last quiet message), and returns what waits for the messages published so far and
// returns the first refusal. Messages published after Sent are not waited for: a pipeline goes
// on publishing while a checkpoint waits (stream.SplitPublisher).
func (p *AsyncPublisher) Sent() func(context.Context) error {
	p.mu.Lock()
	subject, last := p.lastSubject, p.lastData
	quiet, since := p.quietSent, p.reconnects
	p.unacked, p.lastData, p.quietSent = 0, nil, false
	p.mu.Unlock()
	var sendErr error
	if last != nil { // sent again, asking for the acknowledgement: a snapshot put twice is put once
		f, err := p.js.PublishAsync(subject, last)
		if err != nil {
			sendErr = fmt.Errorf("publish %s: %w", subject, err)
		} else {
			p.mu.Lock()
			p.futures = append(p.futures, f)
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	fs := p.futures
	p.futures = nil
	p.mu.Unlock()
	return func(ctx context.Context) error {
		if sendErr != nil {
			return sendErr
		}
		var first error
		for _, f := range fs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if first == nil {
					first = publishError(f.Msg().Subject, err)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// Looked at once the acknowledgements are in: quiet messages lost to a reconnection
		// while the wait went on are not covered by the last one's acknowledgement.
		if first == nil && quiet && p.nc.Stats().Reconnects != since {
			first = errors.New("the connection to the bus was re-established while snapshots went unacknowledged: some may be lost")
		}
		return first
	}
}

// publishError names a full stream as such: the caller is told to come back later
// (ERATELIMIT) rather than that the bus failed.
func publishError(subject string, err error) error {
	msg := err.Error()
	for _, full := range []string{"maximum bytes exceeded", "maximum messages exceeded", "insufficient resources", "resource limits exceeded"} {
		if strings.Contains(msg, full) {
			return surge.Errorf(surge.ERATELIMIT, "the log behind %s is full; retry later", subject)
		}
	}
	return fmt.Errorf("publish %s: %w", subject, err)
}

// Notify publishes a note on a subject to every node listening now. Notes are not stored: a
// node that was away learns what changed some other way (a reload from the store).
func (b *Bus) Notify(subject string, data []byte) error {
	if err := b.Conn.Publish(subject, data); err != nil {
		return publishError(subject, err)
	}
	return nil
}

// Listen calls fn with every note published on subject from now until ctx ends. The returned
// channel is closed once the server has the subscription.
func (b *Bus) Listen(ctx context.Context, subject string, fn func(data []byte)) (<-chan struct{}, error) {
	sub, err := b.Conn.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", subject, err)
	}
	if err := b.Conn.FlushTimeout(connectTimeout); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("listen on %s: %w", subject, err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
	}()
	ready := make(chan struct{})
	close(ready)
	return ready, nil
}
