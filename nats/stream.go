package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/surgecommerce/surge"
)

// Stream names and subjects Surge uses.
const (
	// OrdersStream carries order commands: a reservation that must become an order. Work-queue
	// retention: a command leaves the stream once one node has handled it.
	OrdersStream  = "SURGE_ORDERS"
	OrdersSubject = "surge.orders.create"
	// EventsStream carries business events for the real-time platform and other consumers.
	EventsStream  = "SURGE_EVENTS"
	EventsSubject = "surge.events.>"

	// DedupWindow is how long JetStream remembers a message id: a retried publish within it is
	// stored once.
	DedupWindow = 10 * time.Minute

	// DeadLetterStream keeps the events ingestion refused, with the reason.
	DeadLetterStream   = "SURGE_DEADLETTER"
	DeadLetterSubjects = "surge.deadletter.>"

	// DefaultEventBytes bounds the events log unless Config.EventBytes says otherwise.
	DefaultEventBytes  = 1 << 30
	maxDeadLetterBytes = 256 << 20
	maxDeadLetterAge   = 7 * 24 * time.Hour
	// maxEventAge is how long the events log keeps a record: long enough for the live pipeline
	// to be down a while and catch up, short enough that a log sized for the peak rate frees
	// itself.
	maxEventAge     = time.Hour
	maxOrderBacklog = 10_000_000
	nakDelay        = 500 * time.Millisecond
	// ackWait is how long a message handed to a consumer that died waits before another
	// gets it: the delay of an order after a node is killed.
	ackWait    = 5 * time.Second
	fetchBatch = 256
)

// EnsureStreams creates or updates the streams, bounded in size and age.
func (b *Bus) EnsureStreams(ctx context.Context) error {
	for _, cfg := range []jetstream.StreamConfig{
		// A full orders stream refuses new commands (the shopper is told to retry) rather than
		// dropping acknowledged ones.
		{Name: OrdersStream, Subjects: []string{OrdersSubject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Duplicates: DedupWindow, MaxMsgs: maxOrderBacklog, Discard: jetstream.DiscardNew},
		// A full events log refuses new events (ingestion answers 429) rather than dropping old
		// ones the live metrics may not have read yet.
		{Name: EventsStream, Subjects: []string{EventsSubject}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Duplicates: DedupWindow, MaxBytes: b.eventBytes(), MaxAge: maxEventAge,
			Discard: jetstream.DiscardNew},
		// A dead letter's id is its batch's and line's: a batch sent again whole parks its lines once.
		{Name: DeadLetterStream, Subjects: []string{DeadLetterSubjects}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Duplicates: DedupWindow, MaxBytes: maxDeadLetterBytes, MaxAge: maxDeadLetterAge, Discard: jetstream.DiscardOld},
	} {
		if _, err := b.JS.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("jetstream stream %s: %w", cfg.Name, err)
		}
	}
	return b.ensureResults(ctx)
}

func (b *Bus) eventBytes() int64 {
	if b.cfg.EventBytes > 0 {
		return b.cfg.EventBytes
	}
	return DefaultEventBytes
}

// ResultsBucket keeps the answers to purchases that were answered "queued", so that any node
// can give a ticket its answer. It is held in memory: a lane stores an answer for every queued
// attempt before it takes the next batch, and an answer synced to disk each would hold the lane
// up just when the sale is busiest. The answers are a short-lived copy: when the bucket has lost
// one (a restart of the server that holds it), a ticket that became an order is found in the
// order store, and a shopper's retry with the same request id gets the first answer.
//
// Releases before this one kept SURGE_PURCHASE_RESULTS on disk. JetStream cannot move a bucket
// between storages, so this one is new: the old bucket is left to older nodes (a rolling upgrade,
// or a rollback, keeps working) and empties itself within its ten minutes.
const (
	ResultsBucket   = "SURGE_PURCHASE_ANSWERS"
	resultsTTL      = 10 * time.Minute
	maxResultsBytes = 64 << 20 // counts against the server's memory; a queued answer is ~200 bytes
)

// resultsKV holds the results bucket's handle, replaced when the bucket is made again.
type resultsKV struct{ kv jetstream.KeyValue }

// ensureResults creates the results bucket, in memory, or takes the one that is there.
func (b *Bus) ensureResults(ctx context.Context) error {
	kv, err := b.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ResultsBucket, TTL: resultsTTL,
		MaxBytes: maxResultsBytes, MaxValueSize: 16 << 10, History: 1, Storage: jetstream.MemoryStorage})
	if err != nil {
		return fmt.Errorf("jetstream bucket %s: %w", ResultsBucket, err)
	}
	b.results.Store(&resultsKV{kv})
	return nil
}

// onResults runs f on the results bucket. A bucket held in memory does not outlive a restart of
// a server that is not clustered: when it is gone, it is made again and f runs once more.
func (b *Bus) onResults(ctx context.Context, f func(jetstream.KeyValue) error) error {
	r := b.results.Load()
	if r == nil {
		return errors.New("the results bucket is not open: EnsureStreams first")
	}
	err := f(r.kv)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) &&
		!errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return err
	}
	if err := b.ensureResults(ctx); err != nil {
		return err
	}
	return f(b.results.Load().kv)
}

// PutResult stores a purchase's answer under its ticket.
func (b *Bus) PutResult(ctx context.Context, ticket string, data []byte) error {
	return b.PutResults(ctx, []string{ticket}, [][]byte{data})
}

// PutResults stores purchases' answers (data[i] under tickets[i]), sent together without
// waiting for each acknowledgement, and returns once all are stored or one was refused.
func (b *Bus) PutResults(ctx context.Context, tickets []string, data [][]byte) error {
	return b.onResults(ctx, func(jetstream.KeyValue) error {
		futures := make([]jetstream.PubAckFuture, 0, len(data))
		for i, d := range data {
			f, err := b.JS.PublishAsync(KVSubject(ResultsBucket, tickets[i]), d)
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

// GetResult returns the answer stored under a ticket, if any.
func (b *Bus) GetResult(ctx context.Context, ticket string) ([]byte, bool, error) {
	var value []byte
	err := b.onResults(ctx, func(kv jetstream.KeyValue) error {
		e, err := kv.Get(ctx, ticket)
		if err == nil {
			value = e.Value()
		}
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return value, true, nil
}

// Publish stores a message durably (it returns once JetStream acknowledged it). msgID makes a
// retried publish a no-op within DedupWindow.
func (b *Bus) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	_, err := b.JS.Publish(ctx, subject, data, jetstream.WithMsgID(msgID))
	if err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// Emit publishes an event without waiting for JetStream's acknowledgement: for events at
// purchase rate, where an acknowledgement each would cost more than the purchase. The events
// stream still stores it, deduplicated by msgID; a node that dies may lose the last few.
func (b *Bus) Emit(subject, msgID string, data []byte) error {
	m := nats.NewMsg(subject)
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Data = data
	return b.Conn.PublishMsg(m)
}

// Consume runs handle for the messages of a durable consumer until ctx ends; the returned
// channel closes when it has stopped. handle gets everything waiting at once (up to a fetch
// batch), so a consumer that writes to a database can do it in one transaction. A handler
// error redelivers the batch after a pause, so a database that is briefly down delays work
// but loses none.
func (b *Bus) Consume(ctx context.Context, stream, durable string, log *slog.Logger, handle func(context.Context, [][]byte) error) (<-chan struct{}, error) {
	c, err := b.JS.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxAckPending: 4 * fetchBatch,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream consumer %s: %w", durable, err)
	}
	done := make(chan struct{})
	go func() { // stops when ctx ends
		defer close(done)
		for ctx.Err() == nil {
			msgs, err := fetch(c)
			if err != nil {
				log.Warn("consumer fetch failed", "consumer", durable, "err", err)
				sleep(ctx, nakDelay)
				continue
			}
			if len(msgs) == 0 {
				continue
			}
			data := make([][]byte, len(msgs))
			for i, m := range msgs {
				data[i] = m.Data()
			}
			if err := handle(ctx, data); err != nil {
				log.Warn("message handling failed; will retry", "consumer", durable, "messages", len(msgs), "err", err)
				for _, m := range msgs {
					_ = m.NakWithDelay(nakDelay)
				}
				continue
			}
			for _, m := range msgs {
				_ = m.Ack()
			}
		}
	}()
	return done, nil
}

// fetch waits (up to a short while) for one message, then takes whatever else is waiting.
func fetch(c jetstream.Consumer) ([]jetstream.Msg, error) {
	var out []jetstream.Msg
	collect := func(b jetstream.MessageBatch, err error) error {
		if err != nil {
			return err
		}
		for m := range b.Messages() {
			out = append(out, m)
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		return nil
	}
	if err := collect(c.Fetch(1, jetstream.FetchMaxWait(250*time.Millisecond))); err != nil || len(out) == 0 {
		return out, err
	}
	return out, collect(c.FetchNoWait(fetchBatch - 1))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// pendingSubject is where the node with a worker id answers for the orders it acknowledged.
func pendingSubject(worker int64) string { return "surge.pending." + strconv.FormatInt(worker, 10) }

// ServePending answers other nodes' questions for the orders this node (snowflake worker id
// worker) acknowledged and the store may not have yet, from lookup, until the returned stop is
// called. Core NATS request and reply: nothing is stored.
func (b *Bus) ServePending(worker int64, lookup func(id int64) (*surge.Order, bool)) (stop func(), err error) {
	sub, err := b.Conn.Subscribe(pendingSubject(worker), func(m *nats.Msg) {
		id, err := strconv.ParseInt(string(m.Data), 10, 64)
		var reply []byte
		if o, ok := lookup(id); err == nil && ok {
			reply, _ = json.Marshal(o)
		}
		_ = m.Respond(reply) // an empty reply: not here
	})
	if err != nil {
		return nil, fmt.Errorf("serve pending orders: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// PendingOrder asks the node with a worker id for an order it acknowledged. Not found is
// (nil, false, nil); no such node, or none answering in time, is an error.
func (b *Bus) PendingOrder(ctx context.Context, worker, id int64) (*surge.Order, bool, error) {
	m, err := b.Conn.RequestWithContext(ctx, pendingSubject(worker), []byte(strconv.FormatInt(id, 10)))
	if err != nil {
		return nil, false, fmt.Errorf("ask worker %d for order %d: %w", worker, id, err)
	}
	if len(m.Data) == 0 {
		return nil, false, nil
	}
	var o surge.Order
	if err := json.Unmarshal(m.Data, &o); err != nil {
		return nil, false, fmt.Errorf("worker %d's order %d: %w", worker, id, err)
	}
	return &o, true, nil
}

// PublishAll stores messages on one subject, data[i] under the dedup id ids[i], sent together
// without waiting for each acknowledgement, and returns once all are stored or with the first
// refusal. A batch sent again is stored once within DedupWindow.
func (b *Bus) PublishAll(ctx context.Context, subject string, ids []string, data [][]byte) error {
	futures := make([]jetstream.PubAckFuture, 0, len(data))
	for i, d := range data {
		m := nats.NewMsg(subject)
		m.Header.Set(jetstream.MsgIDHeader, ids[i])
		m.Data = d
		f, err := b.JS.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish %s: %w", subject, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", subject, err)
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w", subject, ctx.Err())
		}
	}
	return nil
}
