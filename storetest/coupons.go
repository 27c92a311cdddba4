package storetest

import (
	"encoding/json"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

func (f *fixture) batch(merchant int64, state string) *surge.CouponBatch {
	f.t.Helper()
	b := &surge.CouponBatch{ID: f.id(), MerchantID: merchant, Name: "618 tea coupons",
		Rule:  json.RawMessage(`{"kind":"fixed","value":500,"currency":"CNY","scope":{"kind":"platform"}}`),
		Total: 1000, PerUser: 2, ClaimFrom: f.now, ClaimUntil: f.now.Add(24 * time.Hour), ValidDays: 7, State: state,
		CreatedBy: 1, CreatedAt: f.now, UpdatedAt: f.now}
	must(f.t, "CreateCouponBatch", f.s.CreateCouponBatch(f.ctx, b))
	return b
}

// RunCoupons checks coupon batches and claimed coupons.
func RunCoupons(t *testing.T, open Open) {
	f := newFixture(t, open)
	platform := f.batch(0, surge.BatchLive)
	merchant := f.id() // a snowflake id, as shops' are: far beyond 32 bits
	shop := f.batch(merchant, surge.BatchDraft)
	got, err := f.s.CouponBatch(f.ctx, platform.ID)
	must(t, "CouponBatch", err)
	if got.Name != platform.Name || string(got.Rule) != string(platform.Rule) || got.Total != 1000 || got.PerUser != 2 ||
		!got.ClaimUntil.Equal(platform.ClaimUntil) || got.ValidDays != 7 || got.State != surge.BatchLive || got.CreatedBy != 1 {
		t.Fatalf("CouponBatch = %+v; want %+v", got, platform)
	}
	_, err = f.s.CouponBatch(f.ctx, f.id())
	wantCode(t, "an unknown batch", err, surge.ENOTFOUND)

	up, err := f.s.UpdateCouponBatch(f.ctx, shop.ID, func(b *surge.CouponBatch) error { b.Total, b.State = 50, surge.BatchLive; return nil })
	must(t, "UpdateCouponBatch", err)
	if again, _ := f.s.CouponBatch(f.ctx, shop.ID); up.Total != 50 || again.Total != 50 || again.State != surge.BatchLive {
		t.Fatalf("updated %+v, stored %+v", up, again)
	}
	_, err = f.s.UpdateCouponBatch(f.ctx, shop.ID, func(*surge.CouponBatch) error { return surge.Errorf(surge.ECONFLICT, "no") })
	wantCode(t, "a refused change", err, surge.ECONFLICT)
	_, err = f.s.UpdateCouponBatch(f.ctx, f.id(), func(*surge.CouponBatch) error { return nil })
	wantCode(t, "changing an unknown batch", err, surge.ENOTFOUND)

	// Concurrent edits each see the other's: none is lost.
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := f.s.UpdateCouponBatch(f.ctx, platform.ID, func(b *surge.CouponBatch) error { b.Total++; return nil })
				if surge.ErrorCode(err) != surge.EUNAVAILABLE { // contention: retried, as callers do
					must(t, "concurrent UpdateCouponBatch", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b, _ := f.s.CouponBatch(f.ctx, platform.ID); b.Total != 1010 {
		t.Fatalf("after 10 concurrent increments the total is %d; want 1010", b.Total)
	}

	list, err := f.s.CouponBatches(f.ctx, merchant, nil, 0, 10)
	must(t, "CouponBatches(merchant)", err)
	if len(list) != 1 || list[0].ID != shop.ID {
		t.Fatalf("the shop's batches = %v", list)
	}
	list, err = f.s.CouponBatches(f.ctx, -1, []string{surge.BatchLive}, 0, 10)
	must(t, "CouponBatches(live)", err)
	if len(list) != 2 || list[0].ID != shop.ID || list[1].ID != platform.ID {
		t.Fatalf("live batches = %d; want both, newest first", len(list))
	}
	if list, _ = f.s.CouponBatches(f.ctx, 0, []string{surge.BatchDraft}, 0, 10); len(list) != 0 {
		t.Fatalf("the platform's drafts = %d; want none", len(list))
	}
	if list, _ = f.s.CouponBatches(f.ctx, -1, nil, shop.ID, 10); len(list) != 1 || list[0].ID != platform.ID {
		t.Fatalf("the page after the newest = %d batches; want the older one", len(list))
	}

	// A coupon is stored once per claim key: a retry returns the first.
	c := &surge.Coupon{ID: f.id(), BatchID: platform.ID, UserID: 7, State: surge.CouponIssued, ClaimedAt: f.now,
		ValidFrom: f.now, ValidUntil: f.now.Add(7 * 24 * time.Hour)}
	first, err := f.s.SaveCoupon(f.ctx, c, "key-1")
	must(t, "SaveCoupon", err)
	retry := *c // a retry carries the coupon id the ledger gave the first claim
	again, err := f.s.SaveCoupon(f.ctx, &retry, "key-1")
	must(t, "SaveCoupon again", err)
	if first.ID != c.ID || again.ID != c.ID || !again.ValidUntil.Equal(c.ValidUntil) || again.State != surge.CouponIssued {
		t.Fatalf("SaveCoupon = %+v, then %+v; want the first both times", first, again)
	}
	other := *c
	other.ID, other.Value = f.id(), 388 // a red envelope keeps its amount
	must2 := func(_ *surge.Coupon, err error) { must(t, "SaveCoupon(key-2)", err) }
	must2(f.s.SaveCoupon(f.ctx, &other, "key-2"))
	states, err := f.s.CouponStates(f.ctx, platform.ID)
	if err != nil || states[surge.CouponIssued] != (surge.CouponTally{Count: 2, Value: 388}) {
		t.Fatalf("CouponStates = %v, %v; want 2 issued, worth 388", states, err)
	}
	if n, err := f.s.CouponCount(f.ctx, platform.ID); err != nil || n != 2 {
		t.Fatalf("CouponCount = %d, %v; want 2", n, err)
	}
	if n, err := f.s.CouponCount(f.ctx, shop.ID); err != nil || n != 0 {
		t.Fatalf("CouponCount(no coupons) = %d, %v", n, err)
	}
	mine, err := f.s.CouponsOf(f.ctx, 7, 10)
	must(t, "CouponsOf", err)
	if len(mine) != 2 || mine[0].ID != other.ID || mine[1].ID != c.ID || mine[0].Value != 388 || mine[1].Value != 0 {
		t.Fatalf("CouponsOf(7) = %d coupons; want 2, newest first", len(mine))
	}
	if none, _ := f.s.CouponsOf(f.ctx, 8, 10); len(none) != 0 {
		t.Fatalf("another user's coupons = %d", len(none))
	}
}

// coupon stores an issued coupon of batch for user.
func (f *fixture) coupon(batch, user int64) int64 {
	f.t.Helper()
	c := &surge.Coupon{ID: f.id(), BatchID: batch, UserID: user, State: surge.CouponIssued, ClaimedAt: f.now,
		ValidFrom: f.now, ValidUntil: f.now.Add(24 * time.Hour)}
	_, err := f.s.SaveCoupon(f.ctx, c, "claim-"+strconv.FormatInt(c.ID, 10))
	must(f.t, "SaveCoupon", err)
	return c.ID
}

// lock, use, ret and release make one lock, use, return and release.
func (f *fixture) lock(user, order int64, key string, ids []int64, now time.Time) (int64, error) {
	orders, refusals, err := f.s.LockCoupons(f.ctx, []surge.CouponLock{{User: user, Order: order, Key: key, IDs: ids}}, now)
	if err != nil {
		return 0, err
	}
	return orders[0], refusals[0]
}

func (f *fixture) use(order int64, amounts map[int64]int64) error {
	refusals, err := f.s.UseCoupons(f.ctx, []surge.CouponUse{{Order: order, Amounts: amounts}})
	if err != nil {
		return err
	}
	return refusals[0]
}

func (f *fixture) ret(order int64) (int64, error) { return f.s.ReturnCoupons(f.ctx, []int64{order}) }

func (f *fixture) release(order, by int64, before time.Time) (int64, error) {
	n, err := f.s.ReleaseLocks(f.ctx, []surge.CouponRelease{{Order: order, By: by}}, before)
	if err != nil {
		return 0, err
	}
	return n[0], nil
}

// couponState reads one coupon.
func (f *fixture) couponState(id int64) *surge.Coupon {
	f.t.Helper()
	got, err := f.s.CouponsByID(f.ctx, []int64{id})
	must(f.t, "CouponsByID", err)
	if len(got) != 1 {
		f.t.Fatalf("CouponsByID(%d) = %d coupons", id, len(got))
	}
	return got[0]
}

// RunCouponLocks checks coupons going on orders: locked all or none, never on two orders,
// used once, returned.
func RunCouponLocks(t *testing.T, open Open) {
	f := newFixture(t, open)
	b := f.batch(0, surge.BatchLive)
	const user, stranger = 7, 8
	a, c, free, theirs := f.coupon(b.ID, user), f.coupon(b.ID, user), f.coupon(b.ID, user), f.coupon(b.ID, stranger)
	o1, o2 := f.id(), f.id()

	got, err := f.lock(user, o1, "item/req-1", []int64{a, c}, f.now)
	if err != nil || got != o1 {
		t.Fatalf("LockCoupons = %d, %v; want order %d", got, err, o1)
	}
	if x := f.couponState(a); x.State != surge.CouponLocked || x.OrderID != o1 {
		t.Fatalf("locked coupon = %+v", x)
	}
	// The same request again (a retry, with the new order id it drew) gets the first order.
	if got, err = f.lock(user, o2, "item/req-1", []int64{c, a}, f.now); err != nil || got != o1 {
		t.Fatalf("LockCoupons(retry) = %d, %v; want the first order %d", got, err, o1)
	}
	_, err = f.lock(user, o2, "item/req-1", []int64{a}, f.now)
	wantCode(t, "a retry with fewer coupons", err, surge.ECONFLICT)
	_, err = f.lock(user, o2, "item/req-2", []int64{c}, f.now)
	wantCode(t, "a coupon on another order", err, surge.ECONFLICT)
	_, err = f.lock(user, o2, "item/req-2", []int64{free, a}, f.now)
	wantCode(t, "a set with one coupon on another order", err, surge.ECONFLICT)
	if x := f.couponState(free); x.State != surge.CouponIssued || x.OrderID != 0 {
		t.Fatalf("a coupon of a refused set = %+v; want it untouched (all or none)", x)
	}
	_, err = f.lock(user, o2, "item/req-2", []int64{theirs}, f.now)
	wantCode(t, "another shopper's coupon", err, surge.ENOTFOUND)
	_, err = f.lock(user, o2, "item/req-2", []int64{f.id()}, f.now)
	wantCode(t, "a made-up coupon", err, surge.ENOTFOUND)
	_, err = f.lock(user, o2, "item/req-2", []int64{free, free}, f.now)
	wantCode(t, "a coupon given twice", err, surge.EINVALID)
	eleven := make([]int64, surge.MaxCouponsPerOrder+1)
	for i := range eleven {
		eleven[i] = int64(i + 1)
	}
	_, err = f.lock(user, o2, "item/req-2", eleven, f.now)
	wantCode(t, "11 coupons", err, surge.EINVALID)

	on, err := f.s.CouponsOnOrders(f.ctx, []int64{o1, o2})
	if err != nil || len(on) != 2 {
		t.Fatalf("CouponsOnOrders = %d, %v; want the 2 locked", len(on), err)
	}
	wantCode(t, "using a coupon not on the order", f.use(o2, map[int64]int64{a: 100}), surge.ECONFLICT)
	for range 2 { // idempotent
		must(t, "UseCoupons", f.use(o1, map[int64]int64{a: 100, c: 250}))
	}
	if x := f.couponState(c); x.State != surge.CouponUsed || x.OrderID != o1 || x.Discount != 250 {
		t.Fatalf("used coupon = %+v", x)
	}
	_, err = f.lock(user, o2, "item/req-3", []int64{a}, f.now)
	wantCode(t, "a used coupon", err, surge.ECONFLICT)
	for want := int64(2); want >= 0; want -= 2 { // idempotent: the second time there is nothing to return
		if n, err := f.ret(o1); err != nil || n != want {
			t.Fatalf("ReturnCoupons = %d, %v; want %d", n, err, want)
		}
	}
	if x := f.couponState(a); x.State != surge.CouponIssued || x.OrderID != 0 || x.Discount != 0 {
		t.Fatalf("returned coupon = %+v; want issued again", x)
	}

	// An order keeps its price breakdown.
	price := &surge.PriceBreakdown{Currency: "CNY", List: 1000, Discount: 350, Payable: 650,
		Lines:   []surge.LinePrice{{List: 1000, Payable: 650, Shares: []surge.CouponShare{{Coupon: a, Amount: 100}, {Coupon: c, Amount: 250}}}},
		Coupons: []surge.CouponTaken{{Coupon: a, Amount: 100}, {Coupon: c, Amount: 250}}}
	o := surge.Order{ID: o1, TxnID: "t-" + strconv.FormatInt(o1, 10), RequestID: "req-1", UserID: user, SessionID: 1, ItemID: 2, SKUID: 3,
		MerchantID: 4, Quantity: 1, Amount: surge.Money{Amount: 650, Currency: "CNY"}, State: surge.OrderPendingPayment,
		CreatedAt: f.now, ExpiresAt: f.now.Add(time.Minute), Price: price}
	if _, err := f.s.CreateOrders(f.ctx, []surge.Order{o}); err != nil {
		t.Fatal(err)
	}
	stored, err := f.s.OrderByID(f.ctx, o1)
	must(t, "OrderByID", err)
	if stored.Price == nil || !reflect.DeepEqual(*stored.Price, *price) {
		t.Fatalf("stored price = %+v; want %+v", stored.Price, price)
	}

	// Stale locks, oldest first: a lock from ten minutes ago and one from now.
	old := f.now.Add(-10 * time.Minute)
	if _, err := f.lock(user, o2, "item/old", []int64{free}, old); err != nil {
		t.Fatal(err)
	}
	if _, err := f.lock(user, f.id(), "item/new", []int64{a}, f.now); err != nil {
		t.Fatal(err)
	}
	// An old lock on an order that was made is not stale: its coupon follows its order.
	onMade := f.coupon(b.ID, user)
	if _, err := f.lock(user, o1, "item/made", []int64{onMade}, old); err != nil {
		t.Fatal(err)
	}
	stale, err := f.s.StaleLocks(f.ctx, f.now.Add(-5*time.Minute), 10)
	if err != nil || len(stale) != 1 || stale[0].ID != free || stale[0].OrderID != o2 {
		t.Fatalf("StaleLocks = %+v, %v; want the old lock of the order never made only", stale, err)
	}
	if n, err := f.release(o1, 0, f.now.Add(-5*time.Minute)); err != nil || n != 0 {
		t.Fatalf("the sweep's release of a made order's coupons = %d, %v; want 0", n, err)
	}
	if n, err := f.ret(o1); err != nil || n != 1 {
		t.Fatalf("ReturnCoupons(the made order) = %d, %v; want its coupon", n, err)
	}

	// A request's key on two orders (a retry with other coupons, made while the first lock
	// stood) does not let a third try mix coupons of both.
	k1, k2, k3, k4 := f.coupon(b.ID, user), f.coupon(b.ID, user), f.coupon(b.ID, user), f.coupon(b.ID, user)
	x1, x2 := f.id(), f.id()
	if _, err := f.lock(user, x1, "item/mix", []int64{k1, k2}, f.now); err != nil {
		t.Fatal(err)
	}
	if got, err := f.lock(user, x2, "item/mix", []int64{k3, k4}, f.now); err != nil || got != x2 {
		t.Fatalf("LockCoupons(same key, other coupons) = %d, %v", got, err)
	}
	_, err = f.lock(user, f.id(), "item/mix", []int64{k1, k3}, f.now)
	wantCode(t, "a retry mixing two orders' coupons", err, surge.ECONFLICT)
	for _, o := range []int64{x1, x2} {
		if _, err := f.ret(o); err != nil {
			t.Fatal(err)
		}
	}

	// A refused attempt's late release leaves coupons a retry of its request locked since.
	spare := f.coupon(b.ID, user)
	first, second := f.id(), f.id()
	if got, err := f.lock(user, first, "item/released", []int64{spare}, f.now); err != nil || got != first {
		t.Fatalf("LockCoupons = %d, %v", got, err)
	}
	if got, err := f.lock(user, second, "item/released", []int64{spare}, f.now.Add(time.Second)); err != nil || got != first {
		t.Fatalf("LockCoupons(retry) = %d, %v; want the first order", got, err)
	}
	if n, err := f.release(first, first, time.Time{}); err != nil || n != 0 {
		t.Fatalf("ReleaseLock(by the first attempt, after a retry relocked) = %d, %v; want 0", n, err)
	}
	if n, err := f.release(first, 0, f.now); err != nil || n != 0 {
		t.Fatalf("ReleaseLock(locked before a time it was not) = %d, %v; want 0", n, err)
	}
	if n, err := f.release(first, second, time.Time{}); err != nil || n != 1 {
		t.Fatalf("ReleaseLock(by the retry) = %d, %v; want 1", n, err)
	}
	if x := f.couponState(spare); x.State != surge.CouponIssued || x.OrderID != 0 {
		t.Fatalf("released coupon = %+v", x)
	}
	if _, err := f.lock(user, first, "item/released-2", []int64{spare}, f.now); err != nil {
		t.Fatal(err)
	}
	if n, err := f.release(first, 0, f.now.Add(time.Millisecond)); err != nil || n != 1 {
		t.Fatalf("ReleaseLock(locked before a later time) = %d, %v; want 1", n, err)
	}

	// Many locks in one write, each judged as if alone and in order: the first of two for one
	// coupon wins, a bad lock spoils no other.
	x, y := f.coupon(b.ID, user), f.coupon(b.ID, user)
	oa, ob, oc := f.id(), f.id(), f.id()
	orders, refusals, err := f.s.LockCoupons(f.ctx, []surge.CouponLock{
		{User: user, Order: oa, Key: "item/batch-a", IDs: []int64{x}},
		{User: user, Order: ob, Key: "item/batch-b", IDs: []int64{x, y}},
		{User: user, Order: oc, Key: "item/batch-c", IDs: nil},
		{User: user, Order: oc, Key: "item/batch-c", IDs: []int64{y}},
	}, f.now)
	must(t, "LockCoupons(batch)", err)
	if orders[0] != oa || refusals[0] != nil || surge.ErrorCode(refusals[1]) != surge.ECONFLICT ||
		surge.ErrorCode(refusals[2]) != surge.EINVALID || orders[3] != oc || refusals[3] != nil {
		t.Fatalf("a batch of locks = %v, %v; want the first and last locked, the second a conflict, the third invalid", orders, refusals)
	}
	// A request and its retry in one batch: the retry gets the first order, and holds the lock.
	z := f.coupon(b.ID, user)
	od, oe := f.id(), f.id()
	orders, refusals, err = f.s.LockCoupons(f.ctx, []surge.CouponLock{
		{User: user, Order: od, Key: "item/batch-d", IDs: []int64{z}},
		{User: user, Order: oe, Key: "item/batch-d", IDs: []int64{z}},
	}, f.now)
	must(t, "LockCoupons(a request and its retry)", err)
	if orders[0] != od || orders[1] != od || refusals[0] != nil || refusals[1] != nil {
		t.Fatalf("a request and its retry in one batch = %v, %v; want both on order %d", orders, refusals, od)
	}
	if n, err := f.release(od, od, time.Time{}); err != nil || n != 0 {
		t.Fatalf("releasing for the first attempt after its retry = %d, %v; want 0 (the retry holds them)", n, err)
	}
	if n, err := f.release(od, oe, time.Time{}); err != nil || n != 1 {
		t.Fatalf("releasing for the retry = %d, %v; want 1", n, err)
	}
	if n, err := f.s.ReturnCoupons(f.ctx, []int64{oa, oc}); err != nil || n != 2 {
		t.Fatalf("ReturnCoupons(two orders) = %d, %v; want 2", n, err)
	}

	// What the audit reads: an item's priced orders, the coupons on its orders, a batch's counts.
	if _, err := f.lock(user, o1, "item/audit", []int64{c}, f.now); err != nil {
		t.Fatal(err)
	}
	priced, err := f.s.PricedOrders(f.ctx, 2)
	if err != nil || len(priced) != 1 || priced[0].ID != o1 {
		t.Fatalf("PricedOrders = %v, %v; want order %d", priced, err, o1)
	}
	onItem, err := f.s.CouponsOnItem(f.ctx, 2)
	if err != nil || len(onItem) != 1 || onItem[0].ID != c || onItem[0].OrderID != o1 {
		t.Fatalf("CouponsOnItem = %+v, %v; want coupon %d on order %d", onItem, err, c, o1)
	}
	states, err := f.s.CouponStates(f.ctx, b.ID)
	if err != nil || states[surge.CouponLocked].Count != 3 || states[surge.CouponIssued].Count != 10 || states[surge.CouponUsed].Count != 0 {
		t.Fatalf("CouponStates = %v, %v; want 3 locked and the other 10 issued", states, err)
	}

	// 200 shoppers each put one coupon on 5 orders at once: each coupon goes on one order.
	var ids []int64
	for u := range 200 {
		ids = append(ids, f.coupon(b.ID, int64(1000+u)))
	}
	var mu sync.Mutex
	winners := map[int64]int{}
	n := concurrently(1000, func(i int) error {
		coupon, u := ids[i/5], int64(1000+i/5)
		order := f.id()
		for {
			got, err := f.lock(u, order, "item/race-"+strconv.Itoa(i), []int64{coupon}, f.now)
			if surge.ErrorCode(err) == surge.EUNAVAILABLE { // contention: retried, as callers do
				continue
			}
			if err == nil {
				mu.Lock()
				winners[coupon]++
				mu.Unlock()
				if got != order {
					return surge.Errorf(surge.EINTERNAL, "won with order %d, locked to %d", order, got)
				}
			}
			return err
		}
	})
	if n != 200 || len(winners) != 200 {
		t.Fatalf("%d of 1000 locks succeeded, on %d coupons; want one per coupon, 200", n, len(winners))
	}
}
