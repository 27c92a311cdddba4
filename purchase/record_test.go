package purchase

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/snowflake"
)

// Two commands that begin with the same order (a retry recorded next to new orders) are both
// stored: their message ids must not be derived from what they carry.
func TestRecordNeverDedupsDifferentCommands(t *testing.T) {
	ctx := context.Background()
	bus, err := nats.Open(ctx, nats.Config{DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if err := bus.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	ids, _ := snowflake.New(1)
	s := &Service{bus: bus, ids: ids.Next}
	a, b, c := surge.Order{ID: 1}, surge.Order{ID: 2}, surge.Order{ID: 3}
	for _, batch := range [][]surge.Order{{a, b}, {a, c}} {
		if err := s.record(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	st, err := bus.JS.Stream(ctx, nats.OrdersStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("the orders stream holds %d commands; want 2", info.State.Msgs)
	}
}

// A sale's worth of orders decided at once is recorded in messages that fit the bus: with
// NATS's default 1 MiB payload limit, 2,500 full orders in one message would be refused and
// every one of their shoppers told to retry.
func TestRecordSplitsLargeBatches(t *testing.T) {
	ctx := context.Background()
	bus, err := nats.Open(ctx, nats.Config{DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	if err := bus.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	ids, _ := snowflake.New(1)
	s := &Service{bus: bus, ids: ids.Next}
	orders := make([]surge.Order, 2500)
	for i := range orders {
		orders[i] = surge.Order{ID: int64(i + 1), TxnID: "T0000000000000000000", RequestID: "request-id-of-a-typical-length",
			UserID: 1 << 40, SessionID: 1 << 50, ItemID: 1 << 50, SKUID: 1 << 50, MerchantID: 1 << 40, Quantity: 1,
			Amount: surge.Money{Amount: 99900, Currency: "CNY"}, State: surge.OrderPendingPayment}
	}
	if err := s.record(ctx, orders); err != nil {
		t.Fatalf("record(2,500 orders) = %v", err)
	}
	st, err := bus.JS.Stream(ctx, nats.OrdersStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("the orders stream holds %d commands; want 3 of at most %d orders", info.State.Msgs, surge.MaxOrdersPerMessage)
	}
}
