package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// activity makes a live activity of the platform with a cap and a budget.
func (f *fixture) activity(capOrders, budget int64, rule string) *surge.Activity {
	f.t.Helper()
	a := &surge.Activity{ID: f.id(), Name: "A", Rule: []byte(rule), Cap: capOrders, Budget: budget, StartsAt: f.now.Add(-time.Hour),
		EndsAt: f.now.Add(time.Hour), State: surge.ActivityLive, CreatedBy: 1, CreatedAt: f.now, UpdatedAt: f.now}
	must(f.t, "CreateActivity", f.s.CreateActivity(f.ctx, a))
	return a
}

// rush runs n checkouts at once (after the goroutines all started), retrying each on
// contention as callers do, and counts those made; a refusal other than EPRICECHANGED fails.
func rush(t *testing.T, n int, checkout func(i int) error) int64 {
	var won atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				switch err := checkout(i); surge.ErrorCode(err) {
				case "":
					won.Add(1)
				case surge.EPRICECHANGED:
				case surge.EUNAVAILABLE:
					continue
				default:
					t.Error(err)
				}
				return
			}
		}()
	}
	close(start)
	wg.Wait()
	return won.Load()
}

// RunActivities checks promotion activities: stored with their versions, changed in one
// transaction, listed; and what checkouts hold of them locked with the order, within the cap and
// budget under concurrency, once per shopper where it says so, confirmed with payment and given
// back once on cancellation or refund.
func RunActivities(t *testing.T, open Open) {
	f := newFixture(t, open)
	rule := `{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"platform"}}`
	a := f.activity(0, 0, rule)
	if a.Version != 1 {
		t.Fatalf("a new activity is version %d; want 1", a.Version)
	}
	_, err := f.s.Activity(f.ctx, f.id())
	wantCode(t, "an unknown activity", err, surge.ENOTFOUND)
	_, err = f.s.UpdateActivity(f.ctx, a.ID, 2, func(x *surge.Activity) error { x.Name = "B"; return surge.Errorf(surge.ECONFLICT, "no") })
	wantCode(t, "a refused change", err, surge.ECONFLICT)
	got, err := f.s.UpdateActivity(f.ctx, a.ID, 2, func(x *surge.Activity) error { x.Name, x.Used = "B", 99; return nil })
	must(t, "UpdateActivity", err)
	stored, err := f.s.Activity(f.ctx, a.ID)
	must(t, "Activity", err)
	if got.Version != 2 || stored.Name != "B" || stored.Version != 2 || stored.Used != 0 || string(stored.Rule) != rule {
		t.Fatalf("after a change: %+v; want B, version 2, used still 0", stored)
	}
	versions, err := f.s.ActivityVersions(f.ctx, a.ID)
	must(t, "ActivityVersions", err)
	if len(versions) != 2 || versions[0].Activity.Name != "A" || versions[1].Activity.Name != "B" || versions[1].By != 2 || versions[0].By != 1 {
		t.Fatalf("versions = %+v; want A by 1 then B by 2", versions)
	}
	draft := &surge.Activity{ID: f.id(), MerchantID: 5, Name: "D", Rule: []byte(rule), StartsAt: f.now, EndsAt: f.now.Add(time.Hour),
		State: surge.ActivityDraft, CreatedBy: 5, CreatedAt: f.now, UpdatedAt: f.now}
	must(t, "CreateActivity", f.s.CreateActivity(f.ctx, draft))
	if list, err := f.s.Activities(f.ctx, 5, nil, 0, 10); err != nil || len(list) != 1 || list[0].ID != draft.ID {
		t.Fatalf("merchant 5's activities = %v, %v", list, err)
	}
	if list, err := f.s.Activities(f.ctx, -1, []string{surge.ActivityLive}, 0, 10); err != nil || len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("live activities listed = %v, %v", list, err)
	}
	if list, err := f.s.LiveActivities(f.ctx); err != nil || len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("LiveActivities = %v, %v", list, err)
	}

	// A cap of 5 orders and a budget of 3,000: 30 shoppers check out at once, each taking 500
	// off; 5 orders hold the activity (2,500 of the budget).
	p := f.spu(1, "ACT")
	k := f.sku(p, "A", 1000)
	capped := f.activity(5, 3000, rule)
	order := func(user int64, req string, x *surge.Activity, amount int64) *surge.Order {
		o := f.checkout(user, req, surge.OrderLine{SKUID: k.ID, Quantity: 1, Unit: 1000})
		o.Price = &surge.PriceBreakdown{Currency: "CNY", List: 1000, Discount: amount, Payable: 1000 - amount,
			Lines:      []surge.LinePrice{{List: 1000, Activities: []surge.ActivityShare{{Activity: x.ID, Amount: amount}}, Payable: 1000 - amount}},
			Activities: []surge.ActivityTaken{{Activity: x.ID, Version: x.Version, Kind: "direct", Amount: amount, Once: false}}}
		return o
	}
	won := rush(t, 30, func(u int) error {
		_, err := f.s.CreateCheckout(f.ctx, order(int64(200+u), "cap", capped, 500), f.now)
		return err
	})
	after, err := f.s.Activity(f.ctx, capped.ID)
	must(t, "Activity", err)
	if won != 5 || after.Used != 5 || after.Spent != 2500 {
		t.Fatalf("%d orders took a capped activity (used %d, spent %d); want 5, 5, 2500", won, after.Used, after.Spent)
	}
	// A budget of 2,000 and no cap: 30 shoppers at once, 500 each; 4 orders hold it.
	budgeted := f.activity(0, 2000, rule)
	won = rush(t, 30, func(u int) error {
		_, err := f.s.CreateCheckout(f.ctx, order(int64(600+u), "budget", budgeted, 500), f.now)
		return err
	})
	if after, err := f.s.Activity(f.ctx, budgeted.ID); err != nil || won != 4 || after.Used != 4 || after.Spent != 2000 {
		t.Fatalf("%d orders took a budget of 2,000 at 500 each (%+v, %v); want 4", won, after, err)
	}
	_, err = f.s.CreateCheckout(f.ctx, order(300, "stale", capped, 500), f.now.Add(2*time.Hour))
	wantCode(t, "an ended activity", err, surge.EPRICECHANGED)
	old := *capped
	old.Version = 0
	_, err = f.s.CreateCheckout(f.ctx, order(301, "old-version", &old, 500), f.now)
	wantCode(t, "a version that is not the activity's", err, surge.EPRICECHANGED)
	budget := f.activity(0, 1000, rule)
	_, err = f.s.CreateCheckout(f.ctx, order(302, "b1", budget, 600), f.now)
	must(t, "CreateCheckout within the budget", err)
	_, err = f.s.CreateCheckout(f.ctx, order(303, "b2", budget, 600), f.now)
	wantCode(t, "past the budget", err, surge.EPRICECHANGED)
	if stock, err := f.s.SKUByID(f.ctx, k.ID); err != nil || stock.Stock != 1000-5-4-1 {
		t.Fatalf("stock %d, %v: refused checkouts took units", stock.Stock, err)
	}

	// An activity with neither cap nor budget is not counted in its row (every checkout would
	// wait for it); its locks say what orders hold.
	free := f.activity(0, 0, rule)
	_, err = f.s.CreateCheckout(f.ctx, order(700, "free", free, 100), f.now)
	must(t, "CreateCheckout", err)
	if x, _ := f.s.Activity(f.ctx, free.ID); x.Used != 0 || x.Spent != 0 {
		t.Fatalf("an uncapped activity counted in its row: used %d spent %d", x.Used, x.Spent)
	}
	if l, err := f.s.ActivityLocks(f.ctx, free.ID); err != nil || l[surge.LockLocked] != (surge.CouponTally{Count: 1, Value: 100}) {
		t.Fatalf("locks of an uncapped activity: %v, %v", l, err)
	}

	// Cancelled, its use comes back once; paid, it is confirmed; refunded, it comes back.
	o := order(400, "settle", budget, 300)
	_, err = f.s.CreateCheckout(f.ctx, o, f.now)
	must(t, "CreateCheckout", err)
	locks := func(x *surge.Activity) map[string]surge.CouponTally {
		m, err := f.s.ActivityLocks(f.ctx, x.ID)
		must(t, "ActivityLocks", err)
		return m
	}
	if l := locks(budget); l[surge.LockLocked] != (surge.CouponTally{Count: 2, Value: 900}) {
		t.Fatalf("locks = %v; want 2 locked holding 900", l)
	}
	_, err = f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelUser, f.now)
	must(t, "Transition", err)
	must(t, "SettleCheckout", f.s.SettleCheckout(f.ctx, o.ID))
	must(t, "SettleCheckout again", f.s.SettleCheckout(f.ctx, o.ID))
	if x, _ := f.s.Activity(f.ctx, budget.ID); x.Used != 1 || x.Spent != 600 || locks(budget)[surge.LockReleased].Count != 1 {
		t.Fatalf("after a cancel settled twice: used %d spent %d, locks %v; want 1, 600, one released", x.Used, x.Spent, locks(budget))
	}
	paid := order(401, "paid", budget, 400)
	_, err = f.s.CreateCheckout(f.ctx, paid, f.now)
	must(t, "CreateCheckout", err)
	_, err = f.s.Transition(f.ctx, paid.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
	must(t, "Transition", err)
	must(t, "SettleCheckout", f.s.SettleCheckout(f.ctx, paid.ID))
	if l := locks(budget); l[surge.LockConfirmed].Count != 1 {
		t.Fatalf("locks after payment: %v; want one confirmed", l)
	}
	_, err = f.s.Transition(f.ctx, paid.ID, surge.OrderPaid, surge.OrderRefunded, "", f.now)
	must(t, "Transition", err)
	must(t, "SettleCheckout", f.s.SettleCheckout(f.ctx, paid.ID))
	must(t, "SettleCheckout again", f.s.SettleCheckout(f.ctx, paid.ID))
	if x, _ := f.s.Activity(f.ctx, budget.ID); x.Used != 1 || x.Spent != 600 {
		t.Fatalf("after a refund settled twice: used %d spent %d; want 1 and 600", x.Used, x.Spent)
	}

	// Once per shopper: a new shopper's activity, for a shopper with no order yet.
	once := f.activity(0, 0, `{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"platform"},"audience":"new_shoppers"}`)
	first := order(500, "first", once, 100)
	first.Price.Activities[0].Once = true
	_, err = f.s.CreateCheckout(f.ctx, first, f.now)
	must(t, "a new shopper's first order", err)
	second := order(500, "second", once, 100)
	second.Price.Activities[0].Once = true
	_, err = f.s.CreateCheckout(f.ctx, second, f.now)
	wantCode(t, "a second new-shopper order", err, surge.EPRICECHANGED)
	veteran := order(401, "veteran", once, 100) // 401 has an order (refunded)
	veteran.Price.Activities[0].Once = true
	_, err = f.s.CreateCheckout(f.ctx, veteran, f.now)
	wantCode(t, "a new-shopper price for a shopper with orders", err, surge.EPRICECHANGED)
	_, err = f.s.Transition(f.ctx, first.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelUser, f.now)
	must(t, "Transition", err)
	must(t, "SettleCheckout", f.s.SettleCheckout(f.ctx, first.ID))
	_, err = f.s.CreateCheckout(f.ctx, second, f.now)
	must(t, "a new shopper's order once the first was cancelled", err)

	// A new shopper's ten checkouts at once, of ten SKUs (whose locks do not make them wait for
	// each other), each with a new-shopper activity of its own: one is the first order, the
	// others see it.
	rushers := make([]*surge.Activity, 10)
	skus := make([]*surge.SKU, 10)
	for i := range rushers {
		rushers[i] = f.activity(0, 0, `{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"platform"},"audience":"new_shoppers"}`)
		skus[i] = f.sku(p, fmt.Sprint("R", i), 10)
	}
	won = rush(t, 10, func(i int) error {
		o := order(800, fmt.Sprint("rush-", i), rushers[i], 100)
		o.Lines[0].SKUID = skus[i].ID
		o.Price.Activities[0].Once = true
		_, err := f.s.CreateCheckout(f.ctx, o, f.now)
		return err
	})
	if won != 1 {
		t.Fatalf("%d of a new shopper's concurrent checkouts got a new-shopper price; want 1", won)
	}
}
