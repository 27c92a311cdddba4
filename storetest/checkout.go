package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// checkout makes an ordinary checkout's order of lines for a user.
func (f *fixture) checkout(user int64, req string, lines ...surge.OrderLine) *surge.Order {
	id := f.id()
	o := &surge.Order{ID: id, TxnID: fmt.Sprint("T", id), RequestID: req, UserID: user, MerchantID: 1, Lines: lines,
		Amount: surge.Money{Amount: 100, Currency: "CNY"}, State: surge.OrderPendingPayment, CreatedAt: f.now, ExpiresAt: f.now.Add(time.Minute)}
	for _, l := range lines {
		o.Quantity += l.Quantity
	}
	return o
}

// RunCheckouts checks ordinary checkouts: units taken from the SKUs' stock not allotted to sale
// sessions, all lines or none, never more than there are under concurrency, once per request,
// and given back once when the order is cancelled.
func RunCheckouts(t *testing.T, open Open) {
	f := newFixture(t, open)
	p := f.spu(1, "CHK")
	a, b := f.sku(p, "A", 10), f.sku(p, "B", 3)
	se := f.session(f.now.Add(time.Hour), f.now.Add(2*time.Hour))
	if _, err := f.item(se, a, 4); err != nil { // 6 of A's 10 are free to sell
		t.Fatal(err)
	}
	stock := func(k *surge.SKU) int64 {
		got, err := f.s.SKUByID(f.ctx, k.ID)
		must(t, "SKUByID", err)
		return got.Stock
	}
	_, err := f.s.CreateCheckout(f.ctx, f.checkout(7, "too-many", surge.OrderLine{SKUID: a.ID, Quantity: 7, Unit: 1}), f.now)
	wantCode(t, "a checkout of more than is free", err, surge.ESOLDOUT)
	_, err = f.s.CreateCheckout(f.ctx, f.checkout(7, "short-b", surge.OrderLine{SKUID: a.ID, Quantity: 2, Unit: 1},
		surge.OrderLine{SKUID: b.ID, Quantity: 4, Unit: 1}), f.now)
	wantCode(t, "a checkout with one line short", err, surge.ESOLDOUT)
	_, err = f.s.CreateCheckout(f.ctx, f.checkout(7, "unknown", surge.OrderLine{SKUID: f.id(), Quantity: 1, Unit: 1}), f.now)
	wantCode(t, "a checkout of an unknown SKU", err, surge.ENOTFOUND)
	if stock(a) != 10 || stock(b) != 3 {
		t.Fatalf("stock after refused checkouts: %d and %d; want 10 and 3", stock(a), stock(b))
	}
	o := f.checkout(7, "mine", surge.OrderLine{SKUID: a.ID, Quantity: 2, Unit: 1}, surge.OrderLine{SKUID: b.ID, Quantity: 3, Unit: 1})
	created, err := f.s.CreateCheckout(f.ctx, o, f.now)
	must(t, "CreateCheckout", err)
	again := f.checkout(7, "mine", surge.OrderLine{SKUID: a.ID, Quantity: 2, Unit: 1})
	createdAgain, err := f.s.CreateCheckout(f.ctx, again, f.now)
	must(t, "CreateCheckout again", err)
	if !created || createdAgain || again.ID != o.ID || len(again.Lines) != 2 || stock(a) != 8 || stock(b) != 0 {
		t.Fatalf("checkout %v then %v (order %d, %d lines); stock %d and %d; want one order taking 2 and 3", created, createdAgain,
			again.ID, len(again.Lines), stock(a), stock(b))
	}

	// 20 shoppers check out one of A at once: 4 are free (6 less the 2 above).
	var got atomic.Int64
	var wg sync.WaitGroup
	for u := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := f.s.CreateCheckout(f.ctx, f.checkout(int64(100+u), "crowd", surge.OrderLine{SKUID: a.ID, Quantity: 1, Unit: 1}), f.now)
				switch surge.ErrorCode(err) {
				case "":
					got.Add(1)
				case surge.ESOLDOUT:
				case surge.EUNAVAILABLE: // contention: retried, as callers do
					continue
				default:
					t.Error(err)
				}
				return
			}
		}()
	}
	wg.Wait()
	if got.Load() != 4 || stock(a) != 4 {
		t.Fatalf("%d of 20 concurrent checkouts got a unit, stock left %d; want 4 and 4 (the allotment)", got.Load(), stock(a))
	}

	// Cancelled, its units come back once; paid, they stay sold.
	_, err = f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelUser, f.now)
	must(t, "Transition", err)
	must(t, "SettleCheckout", f.s.SettleCheckout(f.ctx, o.ID))
	must(t, "SettleCheckout again", f.s.SettleCheckout(f.ctx, o.ID))
	if stock(a) != 6 || stock(b) != 3 {
		t.Fatalf("stock after a cancelled checkout settled twice: %d and %d; want 6 and 3", stock(a), stock(b))
	}
	// Settled stock is marked apart, once the order's coupons and events are done too.
	if list, err := f.s.UnsettledStock(f.ctx, 100); err != nil || len(list) != 1 || list[0].ID != o.ID {
		t.Fatalf("UnsettledStock = %d, %v; want the cancelled checkout until it is marked", len(list), err)
	}
	must(t, "MarkStockSettled", f.s.MarkStockSettled(f.ctx, o.ID))
	must(t, "SettleCheckout after it is marked", f.s.SettleCheckout(f.ctx, o.ID))
	if stock(a) != 6 {
		t.Fatalf("stock after a settled checkout settled again: %d; want 6", stock(a))
	}

	// Pending or paid, a checkout's units stay taken.
	paid := f.checkout(8, "paid", surge.OrderLine{SKUID: b.ID, Quantity: 1, Unit: 1})
	_, err = f.s.CreateCheckout(f.ctx, paid, f.now)
	must(t, "CreateCheckout", err)
	must(t, "SettleCheckout pending", f.s.SettleCheckout(f.ctx, paid.ID))
	if stored, err := f.s.OrderByID(f.ctx, paid.ID); err != nil || stored.StockSettled || stock(b) != 2 {
		t.Fatalf("a pending checkout settled: %+v, %v, stock %d; want unsettled, 2 left", stored, err, stock(b))
	}
	_, err = f.s.Transition(f.ctx, paid.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
	must(t, "Transition", err)
	must(t, "SettleCheckout", f.s.SettleCheckout(f.ctx, paid.ID))
	if stock(b) != 2 {
		t.Fatalf("a paid checkout settled: stock %d; want 2 left", stock(b))
	}
}
