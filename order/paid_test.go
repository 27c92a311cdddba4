package order_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
)

// bus records what is published, and refuses PublishAll while down.
type bus struct {
	mu   sync.Mutex
	down bool
	sent map[string][]byte // message id → data, as the bus dedups them
}

func (b *bus) Emit(string, string, []byte) error { return nil }

func (b *bus) PublishAll(_ context.Context, _ string, ids []string, data [][]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return errors.New("the bus is down")
	}
	for i, id := range ids {
		b.sent[id] = data[i]
	}
	return nil
}

// paidGMV is what the live metrics count from the published events: each pay event once,
// by its id, as the pipeline's dedup does.
func (b *bus) paidGMV(t *testing.T) (gmv int64, payments int) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[string]bool{}
	for _, msg := range b.sent {
		evs, err := live.DecodeBusEvents(msg)
		if err != nil {
			t.Fatalf("published %q: %v", msg, err)
		}
		for _, e := range evs {
			if e.Type == surge.BizPay && !seen[e.ID] {
				seen[e.ID] = true
				gmv += e.Amount
				payments++
			}
		}
	}
	return gmv, payments
}

// A payment whose transaction committed while everything after it was lost (the node died, or
// the provider gave up on the callback before the answer) still reaches the live GMV: the
// order is not settled until its orders.paid event is stored, and the sweep sends it. An
// order paid twice over (the provider's retry) counts once.
func TestEveryPaidOrderReachesTheLiveGMV(t *testing.T) {
	ctx := context.Background()
	db, eng, now := dueOrders(t, 3)
	b := &bus{sent: map[string][]byte{}, down: true}
	svc := order.New(db, db, eng, b, order.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	// Order 1000 is paid in the store, as by a callback whose commit went through, and nothing
	// else: no notification recorded, nothing settled, no event.
	if _, err := db.Transition(ctx, 1000, surge.OrderPendingPayment, surge.OrderPaid, "", now); err != nil {
		t.Fatal(err)
	}
	// The sweep cannot store the event while the bus is down: the order stays unsettled.
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if un, _ := db.UnsettledStock(ctx, 10); len(un) != 1 || un[0].ID != 1000 { // the other two expired, released
		t.Fatalf("unsettled after a sweep with the bus down = %v; want the paid order alone", un)
	}
	b.mu.Lock()
	b.down = false
	b.mu.Unlock()
	if _, err := svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if un, _ := db.UnsettledStock(ctx, 10); len(un) != 0 {
		t.Fatalf("unsettled after the bus is back = %d orders; want none", len(un))
	}
	if lv, _ := eng.Levels(ctx, 4); lv.Sold != 1 {
		t.Fatalf("sold = %d; want the paid order's unit confirmed", lv.Sold)
	}
	// The provider, never answered, sends the paid notification again: it is recorded as the
	// one that paid, and the order's event, sent again, still counts once.
	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(run) }()
	defer func() { stop(); <-done }()
	outcome, err := svc.HandlePayment(ctx, payment.Notification{NotifyID: "late-1", TxnID: "T0", OrderID: 1000,
		Amount: surge.Money{Amount: 100, Currency: "CNY"}, Status: payment.StatusPaid, PaidAt: now})
	if err != nil || outcome != surge.PaymentApplied {
		t.Fatalf("HandlePayment(the provider's retry) = %q, %v; want applied", outcome, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if gmv, n := b.paidGMV(t); n == 1 && gmv == 100 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("live GMV from the events = %d over %d payments; want 100 over 1", gmv, n)
		}
	}
}
