package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/storetest"
)

// sale is a published session with one item of 10 units, limit 1, and a healthy history:
// three shoppers reserved, one paid (with one payment), one's order expired and was released.
type sale struct {
	ctx context.Context
	db  *sqlite.DB
	eng *stock.Engine
	a   *audit.Auditor
	now time.Time
}

const (
	sessionID = 3
	itemID    = 4
)

func newSale(t *testing.T) *sale {
	ctx := context.Background()
	db := storetest.SQLite(t)
	eng, err := stock.Open(stock.Options{Dir: filepath.Join(t.TempDir(), "stock")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	now := time.Now().UTC().Truncate(time.Millisecond)
	spu := &surge.SPU{ID: 1, MerchantID: 9, Code: "P", Title: "P", CategoryL1: "C", Images: []string{}, CreatedAt: now, UpdatedAt: now}
	sku := &surge.SKU{ID: 2, SPUID: 1, MerchantID: 9, Code: "K", Title: "K", Price: surge.Money{Amount: 500, Currency: "CNY"},
		CostPrice: &surge.Money{Amount: 1, Currency: "CNY"}, Stock: 10, CreatedAt: now, UpdatedAt: now}
	se := &surge.Session{ID: sessionID, Name: "S", StartAt: now.Add(time.Minute), EndAt: now.Add(time.Hour), PayTimeoutSec: 900, CreatedAt: now, UpdatedAt: now}
	it := &surge.SessionItem{ID: itemID, SessionID: sessionID, SKUID: 2, Allotted: 10, SalePrice: surge.Money{Amount: 100, Currency: "CNY"}, PerUserLimit: 1}
	for _, err := range []error{db.CreateSPU(ctx, spu), db.CreateSKU(ctx, sku), db.CreateSession(ctx, se), db.AddItem(ctx, it, now),
		eng.Load(ctx, surge.StockItem{ID: itemID, Allotted: 10, PerUserLimit: 1})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.PublishSession(ctx, sessionID, now); err != nil {
		t.Fatal(err)
	}
	s := &sale{ctx: ctx, db: db, eng: eng, a: &audit.Auditor{Sessions: db, Stock: eng, Orders: db}, now: now}
	paid, expired := s.buy(t, 1, "r1", true), s.buy(t, 2, "r2", true)
	s.buy(t, 3, "r3", true)
	s.must(t, eng.Confirm(ctx, itemID, "r1"))
	noErr(t)(db.Transition(ctx, paid.ID, surge.OrderPendingPayment, surge.OrderPaid, "", now))
	noErr(t)(db.RecordPayment(ctx, &surge.Payment{NotifyID: "n1", TxnID: paid.TxnID, OrderID: paid.ID, Amount: paid.Amount,
		Status: "paid", PaidAt: now, ReceivedAt: now, Outcome: "applied"}))
	s.must(t, db.MarkStockSettled(ctx, paid.ID))
	noErr(t)(db.Transition(ctx, expired.ID, surge.OrderPendingPayment, surge.OrderCancelled, "expired", now))
	s.must(t, eng.Release(ctx, itemID, "r2"))
	s.must(t, db.MarkStockSettled(ctx, expired.ID))
	return s
}

func (s *sale) must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// noErr fails the test on a call's error: noErr(t)(store.Do(…)).
func noErr(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// buy reserves a unit for user and, when withOrder, records its order.
func (s *sale) buy(t *testing.T, user int64, req string, withOrder bool) *surge.Order {
	t.Helper()
	res, err := s.eng.Reserve(s.ctx, surge.ReserveRequest{ItemID: itemID, UserID: user, Quantity: 1, RequestID: req, OrderID: user * 100})
	if err != nil || res.Outcome != surge.Reserved {
		t.Fatalf("Reserve(user %d) = %+v, %v", user, res, err)
	}
	if !withOrder {
		return nil
	}
	return s.order(t, user, req)
}

func (s *sale) order(t *testing.T, user int64, req string) *surge.Order {
	t.Helper()
	o := &surge.Order{ID: user*100 + int64(len(req)), TxnID: fmt.Sprint("T", user, req), RequestID: req, UserID: user, SessionID: sessionID,
		ItemID: itemID, SKUID: 2, MerchantID: 9, Quantity: 1, Amount: surge.Money{Amount: 100, Currency: "CNY"},
		State: surge.OrderPendingPayment, CreatedAt: s.now, ExpiresAt: s.now.Add(time.Hour)}
	noErr(t)(s.db.CreateOrder(s.ctx, o))
	return o
}

func (s *sale) report(t *testing.T) map[string]audit.Result {
	t.Helper()
	r, err := s.a.Session(s.ctx, sessionID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]audit.Result{}
	for _, res := range r.Results {
		out[res.Invariant] = res
	}
	if failed := func() bool {
		for _, res := range r.Results {
			if res.Status == audit.Fail {
				return true
			}
		}
		return false
	}(); failed == r.Passed {
		t.Fatalf("Passed = %v with results %+v", r.Passed, r.Results)
	}
	return out
}

func TestAHealthySalePasses(t *testing.T) {
	s := newSale(t)
	for name, res := range s.report(t) {
		want := audit.Pass
		if name == audit.CouponsBudgets || name == audit.GMVMatches {
			want = audit.NA
		}
		if res.Status != want {
			t.Errorf("%s = %+v; want %s", name, res, want)
		}
	}
}

// Each injected fault is caught by the invariant it breaks.
func TestInjectedViolationsFail(t *testing.T) {
	for _, c := range []struct {
		name   string
		inject func(t *testing.T, s *sale)
		fails  []string
	}{
		{"oversell", func(t *testing.T, s *sale) {
			for u := int64(10); u < 20; u++ { // orders past the allotment, with no stock behind them
				s.order(t, u, "x")
			}
		}, []string{audit.StockBalance, audit.OneOrderEach}},
		{"duplicate order", func(t *testing.T, s *sale) {
			s.order(t, 3, "again") // a second order for shopper 3's one reservation
		}, []string{audit.OneOrderEach, audit.PerUserLimit}},
		{"lost order", func(t *testing.T, s *sale) {
			s.buy(t, 5, "r5", false) // reserved, acknowledged, never recorded
		}, []string{audit.OneOrderEach}},
		{"double release", func(t *testing.T, s *sale) {
			// The expired order's unit comes back a second time: the engine now counts 11.
			s.must(t, s.eng.Load(s.ctx, surge.StockItem{ID: itemID, Allotted: 11, PerUserLimit: 1}))
		}, []string{audit.StockBalance, audit.ReleasedOnce}},
		{"release never done", func(t *testing.T, s *sale) {
			o := s.order(t, 6, "r6")
			noErr(t)(s.eng.Reserve(s.ctx, surge.ReserveRequest{ItemID: itemID, UserID: 6, Quantity: 1, RequestID: "r6", OrderID: o.ID}))
			noErr(t)(s.db.Transition(s.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, "expired", s.now))
		}, []string{audit.ReleasedOnce, audit.OneOrderEach}}, // its unit is still held with no live order
		{"paid twice", func(t *testing.T, s *sale) {
			o, err := s.db.OrderByRequest(s.ctx, itemID, 1, "r1")
			s.must(t, err)
			noErr(t)(s.db.RecordPayment(s.ctx, &surge.Payment{NotifyID: "n2", TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount,
				Status: "paid", PaidAt: s.now, ReceivedAt: s.now, Outcome: "applied"}))
		}, []string{audit.OneOrderEach}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSale(t)
			c.inject(t, s)
			got := s.report(t)
			for _, name := range []string{audit.StockBalance, audit.PerUserLimit, audit.OneOrderEach, audit.ReleasedOnce} {
				res, want := got[name], audit.Pass
				for _, f := range c.fails {
					if f == name {
						want = audit.Fail
					}
				}
				if res.Status != want || want == audit.Fail && (res.Violations == 0 || len(res.Details) == 0) {
					t.Errorf("%s after %s = %+v; want %s (with a count and a reason when failing)", name, c.name, res, want)
				}
			}
		})
	}
}

// Invariant 6 compares the real-time GMV with the paid orders, and is NA without one.
func TestRealtimeGMV(t *testing.T) {
	items := []audit.ItemFacts{
		{ItemID: 1, Allotted: 10, Stock: surge.StockLevels{Allotted: 10, Available: 10}, Orders: &surge.OrderAudit{PaidAmount: 5_000}},
		{ItemID: 2, Allotted: 10, Stock: surge.StockLevels{Allotted: 10, Available: 10}, Orders: &surge.OrderAudit{PaidAmount: 2_500}},
	}
	gmvOf := func(r *audit.Report) audit.Result {
		for _, res := range r.Results {
			if res.Invariant == audit.GMVMatches {
				return res
			}
		}
		t.Fatal("no invariant 6 in the report")
		return audit.Result{}
	}
	right, wrong := int64(7_500), int64(7_400)
	for _, c := range []struct {
		name   string
		gmv    *int64
		status string
		passed bool
	}{
		{"no real-time platform", nil, audit.NA, true},
		{"equal", &right, audit.Pass, true},
		{"a payment missing", &wrong, audit.Fail, false},
	} {
		r := audit.Check(9, items, nil, c.gmv)
		if got := gmvOf(r); got.Status != c.status || r.Passed != c.passed {
			t.Errorf("%s: invariant 6 = %+v, passed %v; want %s, passed %v", c.name, got, r.Passed, c.status, c.passed)
		}
	}
}

// Invariant 5 passes a sale whose coupons are where their orders say, and catches each way of
// breaking it.
func TestCouponsInvariant(t *testing.T) {
	price := func(coupon, off int64) *surge.PriceBreakdown {
		return &surge.PriceBreakdown{Currency: "CNY", List: 100, Discount: off, Payable: 100 - off,
			Lines:   []surge.LinePrice{{List: 100, Shares: []surge.CouponShare{{Coupon: coupon, Amount: off}}, Payable: 100 - off}},
			Coupons: []surge.CouponTaken{{Coupon: coupon, Amount: off}}}
	}
	order := func(id int64, st surge.OrderState, coupon, off int64) *surge.Order {
		return &surge.Order{ID: id, State: st, StockSettled: st != surge.OrderPendingPayment,
			Amount: surge.Money{Amount: 100 - off, Currency: "CNY"}, Price: price(coupon, off)}
	}
	healthy := func() ([]audit.ItemFacts, []audit.BatchFacts) {
		items := []audit.ItemFacts{{ItemID: 1, Allotted: 3, Stock: surge.StockLevels{Allotted: 3, Available: 3},
			Orders: &surge.OrderAudit{}, Coupons: &audit.ItemCoupons{
				PricedOrders: []*surge.Order{order(10, surge.OrderPaid, 100, 30), order(11, surge.OrderPendingPayment, 101, 30),
					order(12, surge.OrderCancelled, 102, 30), order(13, surge.OrderPendingPayment, 102, 30), // 102 given back, used again
					order(14, surge.OrderRefunded, 103, 30)}, // 103 given back
				OnOrders: []*surge.Coupon{{ID: 100, BatchID: 7, OrderID: 10, State: surge.CouponUsed, Discount: 30},
					{ID: 101, BatchID: 7, OrderID: 11, State: surge.CouponLocked}, {ID: 102, BatchID: 7, OrderID: 13, State: surge.CouponLocked}}}}}
		return items, []audit.BatchFacts{{BatchID: 7, Total: 5, Issued: 3, Stored: 3, Used: 1}}
	}
	result := func(items []audit.ItemFacts, batches []audit.BatchFacts) (audit.Result, bool) {
		r := audit.Check(9, items, batches, nil)
		for _, res := range r.Results {
			if res.Invariant == audit.CouponsBudgets {
				return res, r.Passed
			}
		}
		t.Fatal("no invariant 5 in the report")
		return audit.Result{}, false
	}
	if res, passed := result(healthy()); res.Status != audit.Pass || res.Checked != 6 || !passed {
		t.Fatalf("a healthy sale's invariant 5 = %+v", res)
	}
	for _, c := range []struct {
		name   string
		inject func(items []audit.ItemFacts, batches []audit.BatchFacts)
	}{
		{"over-issued", func(_ []audit.ItemFacts, b []audit.BatchFacts) { b[0].Issued = 6 }},
		{"stored beyond the ledger", func(_ []audit.ItemFacts, b []audit.BatchFacts) { b[0].Stored = 4 }},
		{"used beyond issued", func(_ []audit.ItemFacts, b []audit.BatchFacts) { b[0].Used = 4 }},
		{"paid order's coupon still locked", func(it []audit.ItemFacts, _ []audit.BatchFacts) {
			it[0].Coupons.OnOrders[0].State = surge.CouponLocked
		}},
		{"used for another amount", func(it []audit.ItemFacts, _ []audit.BatchFacts) { it[0].Coupons.OnOrders[0].Discount = 20 }},
		{"pending order's coupon not locked", func(it []audit.ItemFacts, _ []audit.BatchFacts) { it[0].Coupons.OnOrders = it[0].Coupons.OnOrders[:1] }},
		{"cancelled order's coupon kept", func(it []audit.ItemFacts, _ []audit.BatchFacts) {
			it[0].Coupons.OnOrders = append(it[0].Coupons.OnOrders, &surge.Coupon{ID: 102, BatchID: 7, OrderID: 12, State: surge.CouponLocked})
		}},
		{"a coupon on an order that does not list it", func(it []audit.ItemFacts, _ []audit.BatchFacts) {
			it[0].Coupons.OnOrders = append(it[0].Coupons.OnOrders, &surge.Coupon{ID: 103, BatchID: 7, OrderID: 10, State: surge.CouponUsed, Discount: 5})
		}},
		{"a coupon on two orders", func(it []audit.ItemFacts, _ []audit.BatchFacts) { it[0].Coupons.PricedOrders[1].Price = price(100, 30) }},
		{"a coupon on an order that does not list it, listed by a cancelled one", func(it []audit.ItemFacts, _ []audit.BatchFacts) {
			it[0].Coupons.OnOrders = append(it[0].Coupons.OnOrders, &surge.Coupon{ID: 102, BatchID: 7, OrderID: 10, State: surge.CouponLocked})
		}},
		{"a batch the ledger lost", func(_ []audit.ItemFacts, b []audit.BatchFacts) { b[0].Lost = true }},
		{"refunded order's coupon kept", func(it []audit.ItemFacts, _ []audit.BatchFacts) {
			it[0].Coupons.OnOrders = append(it[0].Coupons.OnOrders, &surge.Coupon{ID: 103, BatchID: 7, OrderID: 14, State: surge.CouponUsed, Discount: 30})
		}},
		{"a budget's envelopes worth more than it issued", func(_ []audit.ItemFacts, b []audit.BatchFacts) {
			b[0].Budget, b[0].Total, b[0].Issued, b[0].Stored = true, 5000, 4200, 4201
		}},
		{"a budget overspent", func(_ []audit.ItemFacts, b []audit.BatchFacts) {
			b[0].Budget, b[0].Total, b[0].Issued, b[0].Stored = true, 5000, 5001, 4000
		}},
		{"a price that does not add up", func(it []audit.ItemFacts, _ []audit.BatchFacts) { it[0].Coupons.PricedOrders[0].Amount.Amount = 100 }},
	} {
		items, batches := healthy()
		c.inject(items, batches)
		if res, passed := result(items, batches); res.Status != audit.Fail || passed || res.Violations == 0 || len(res.Details) == 0 {
			t.Errorf("%s: invariant 5 = %+v, passed %v; want FAIL with a reason", c.name, res, passed)
		}
	}
}
