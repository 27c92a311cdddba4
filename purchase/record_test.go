package purchase

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/snowflake"
)

// Two commands that begin with the same order (a retry recorded next to new orders) are both
// stored: their message ids must not be derived from what they carry.
func TestRecordNeverDedupsDifferentCommands(t *testing.T) {
	ctx := context.Background()
	s, bus := recorder(t)
	a, b, c := surge.Order{ID: 1}, surge.Order{ID: 2}, surge.Order{ID: 3}
	for _, batch := range [][]surge.Order{{a, b}, {a, c}} {
		if err := s.record(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	msgs := commands(t, bus)
	if msgs != 2 {
		t.Fatalf("the orders stream holds %d commands; want 2", msgs)
	}
}

// A sale's worth of orders decided at once is recorded in messages that fit the bus: with
// NATS's default 1 MiB payload limit, 2,500 full orders in one message would be refused and
// every one of their shoppers told to retry.
func TestRecordSplitsLargeBatches(t *testing.T) {
	ctx := context.Background()
	s, bus := recorder(t)
	orders := make([]surge.Order, 2500)
	for i := range orders {
		orders[i] = surge.Order{ID: int64(i + 1), TxnID: "T0000000000000000000", RequestID: "request-id-of-a-typical-length",
			UserID: 1 << 40, SessionID: 1 << 50, ItemID: 1 << 50, SKUID: 1 << 50, MerchantID: 1 << 40, Quantity: 1,
			Amount: surge.Money{Amount: 99900, Currency: "CNY"}, State: surge.OrderPendingPayment}
	}
	if err := s.record(ctx, orders); err != nil {
		t.Fatalf("record(2,500 orders) = %v", err)
	}
	msgs := commands(t, bus)
	if msgs != 3 {
		t.Fatalf("the orders stream holds %d commands; want 3 of at most %d orders", msgs, surge.MaxOrdersPerMessage)
	}
}

// recorder is a purchase service with just what record needs: an embedded bus and ids.
func recorder(t *testing.T) (*Service, *nats.Bus) {
	t.Helper()
	ctx := context.Background()
	bus, err := nats.Open(ctx, nats.Config{DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	if err := bus.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	ids, _ := snowflake.New(1)
	return &Service{bus: bus, ids: ids.Next}, bus
}

// commands counts the order commands on the bus.
func commands(t *testing.T, bus *nats.Bus) uint64 {
	t.Helper()
	st, err := bus.JS.Stream(context.Background(), nats.OrdersStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A test shopper's attempt says so in its event, so that analytics can leave test traffic out.
func TestAttemptEventsMarkTestTraffic(t *testing.T) {
	s := &Service{attempts: attemptQueue{full: make(chan struct{}, 1)}, metrics: NewMetrics(prometheus.NewRegistry()), now: time.Now}
	for _, test := range []bool{true, false} {
		s.Purchase(context.Background(), surge.Actor{UserID: 5, Role: surge.RoleShopper, Test: test}, Origin{IP: "10.0.0.1"}, Request{})
		got := s.attempts.take(nil)
		if len(got) != 1 || got[0].Test != test || got[0].UserID != 5 || got[0].Outcome != surge.EINVALID {
			t.Fatalf("attempts of a shopper with test=%v = %+v", test, got)
		}
	}
}

// The attempts queue is bounded, and tells the batcher once a batch is full rather than on
// every attempt.
func TestAttemptQueueBoundAndFullBatch(t *testing.T) {
	q := attemptQueue{full: make(chan struct{}, 1)}
	for i := range attemptQueueDepth {
		if !q.add(Attempt{UserID: int64(i)}) {
			t.Fatalf("attempt %d refused below the bound", i)
		}
		if told := len(q.full) == 1; told != (i+1 >= maxAttemptBatch) {
			t.Fatalf("after %d attempts the batcher told: %v", i+1, told)
		}
	}
	if q.add(Attempt{}) {
		t.Fatal("an attempt past the bound was queued")
	}
	if got := q.take(nil); len(got) != attemptQueueDepth || got[7].UserID != 7 {
		t.Fatalf("take = %d attempts", len(got))
	}
	if !q.add(Attempt{}) {
		t.Fatal("an attempt was refused once the queue was taken")
	}
}
