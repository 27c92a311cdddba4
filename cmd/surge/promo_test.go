package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/promo"
)

// liveActivity creates and publishes an activity.
func liveActivity(t *testing.T, c *client.Client, merchant int64, name string, priority, capOrders int64, r promo.Rule) *surge.Activity {
	t.Helper()
	ctx := context.Background()
	if r.Currency == "" {
		r.Currency = "CNY"
	}
	now := time.Now()
	a := ok[*surge.Activity](t, "CreateActivity("+name+")")(c.CreateActivity(ctx, promo.ActivityInput{MerchantID: merchant, Name: name, Rule: r,
		Priority: priority, Cap: capOrders, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)}))
	return ok[*surge.Activity](t, "PublishActivity("+name+")")(c.PublishActivity(ctx, a.ID))
}

// Promotions over HTTP on every shape: a merchant's flash price and the platform's "¥20 off
// every ¥200" quoted together with a line a shopper can read; a checkout at the quoted price
// locks both with the order, payment confirms them and gives a rebate's coupon, a refund gives
// the uses back; an activity taken offline makes the old quote's checkout answer EPRICECHANGED
// with the new price; a capped activity is given to one order; bad activities and carts are
// refused with their codes; and in the scale-out shape a second node's quotes take a new
// activity from the change's note, long before its reload.
func TestPromotions(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			_, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			code := fmt.Sprint("PRM-", time.Now().UnixNano())
			spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: code, Title: "Kettle", CategoryL1: "Kitchen"}))
			sku := func(suffix string, price int64) *surge.SKU {
				return ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: code + suffix, Title: "Kettle " + suffix,
					Price: surge.Money{Amount: price, Currency: "CNY"}, CostPrice: surge.Money{Amount: price / 2, Currency: "CNY"}, Stock: 50}))
			}
			kettle, lid := sku("-K", 59900), sku("-L", 1500)
			rebateBatch := liveBatch(t, tm.op, "rebate ¥5", coupon.Rule{Kind: coupon.Fixed, Value: 500, Currency: "CNY", Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, 100, 5, 7)
			flash := liveActivity(t, tm.m1, 0, "flash price", 10, 0, promo.Rule{Kind: promo.FlashPrice, Price: 49900, Group: "item",
				Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: []int64{kettle.ID}}})
			liveActivity(t, tm.op, 0, "¥20 off every ¥200", 5, 0, promo.Rule{Kind: promo.Threshold, Value: 2000, Threshold: 20000, Repeat: true,
				Group: "platform", Scope: promo.Scope{Kind: promo.ScopePlatform}})
			liveActivity(t, tm.op, 0, "rebate", 1, 0, promo.Rule{Kind: promo.Rebate, Threshold: 40000, RebateBatch: rebateBatch.ID,
				Scope: promo.Scope{Kind: promo.ScopePlatform}})

			s := shopper(t, cl, 7_000_001)
			cart := []coupon.CartLine{{SKU: kettle.ID, Quantity: 1}}
			q := ok[*promo.Quote](t, "Quote")(s.Quote(ctx, promo.QuoteRequest{Lines: cart}))
			// 599.00 − 100.00 = 499.00; two full 200.00 in it: − 40.00
			want := "599.00 − flash price 100.00 − ¥20 off every ¥200 40.00 = 459.00"
			if q.Price.Payable != 45900 || q.Price.Lines[0].Text != want || len(q.Price.Activities) != 3 || !q.Exhaustive {
				t.Fatalf("quote %+v; want 459.00 as %q, with the rebate", q.Price, want)
			}

			// Bad carts and activities.
			many := make([]coupon.CartLine, promo.MaxLines+1)
			for i := range many {
				many[i] = coupon.CartLine{SKU: int64(i + 1), Quantity: 1}
			}
			_, err := s.Quote(ctx, promo.QuoteRequest{Lines: many})
			wantCode(t, "a cart of 201 lines", err, surge.EINVALID)
			_, err = s.Quote(ctx, promo.QuoteRequest{Lines: []coupon.CartLine{{SKU: 12345, Quantity: 1}}})
			wantCode(t, "an unknown SKU", err, surge.ENOTFOUND)
			_, err = s.CreateActivity(ctx, promo.ActivityInput{Name: "x", Rule: promo.Rule{Kind: promo.Direct, Value: 1, Currency: "CNY", Scope: promo.Scope{Kind: promo.ScopePlatform}},
				StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)})
			wantCode(t, "a shopper's activity", err, surge.EFORBIDDEN)
			_, err = tm.op.CreateActivity(ctx, promo.ActivityInput{Name: "x", Rule: promo.Rule{Kind: promo.Threshold, Value: 300, Threshold: 200, Currency: "CNY",
				Scope: promo.Scope{Kind: promo.ScopePlatform}}, StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)})
			wantCode(t, "an impossible threshold", err, surge.EINVALID)
			_, err = tm.m1.CreateActivity(ctx, promo.ActivityInput{Name: "x", Rule: promo.Rule{Kind: promo.Direct, Value: 1, Currency: "CNY",
				Scope: promo.Scope{Kind: promo.ScopeShops, Shops: []int64{tm.m2ID}}}, StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)})
			wantCode(t, "a merchant's activity on another shop", err, surge.EINVALID)
			liveActivity(t, tm.op, 0, "a over b", 0, 0, promo.Rule{Kind: promo.Direct, Value: 1, Group: "a", Excludes: []string{"b"}, Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: []int64{lid.ID}}})
			liveActivity(t, tm.op, 0, "b over c", 0, 0, promo.Rule{Kind: promo.Direct, Value: 1, Group: "b", Excludes: []string{"c"}, Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: []int64{lid.ID}}})
			cyc := ok[*surge.Activity](t, "CreateActivity")(tm.op.CreateActivity(ctx, promo.ActivityInput{Name: "c over a", Rule: promo.Rule{Kind: promo.Direct, Value: 1,
				Currency: "CNY", Group: "c", Excludes: []string{"a"}, Scope: promo.Scope{Kind: promo.ScopePlatform}}, StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour)}))
			_, err = tm.op.PublishActivity(ctx, cyc.ID)
			wantCode(t, "exclusions in a cycle", err, surge.EINVALID)
			if !strings.Contains(err.Error(), "a excludes b excludes c excludes a") {
				t.Fatalf("the refusal does not name the cycle: %v", err)
			}
			_, err = tm.m1.UpdateActivity(ctx, flash.ID, promo.ActivityPatch{Name: ptr("cheaper")})
			wantCode(t, "an edit of a live activity", err, surge.ECONFLICT)

			// A checkout at the quoted price locks the activities with the order; paid, they
			// are confirmed and the rebate's coupon is the shopper's.
			quoted := q.Price.Payable
			o := ok[*surge.Order](t, "Checkout")(s.Checkout(ctx, checkout.Request{RequestID: "p-1", Lines: cart, QuotedPayable: &quoted}))
			if o.Amount.Amount != 45900 || o.Price == nil || len(o.Price.Activities) != 3 || o.Price.Lines[0].Text != want {
				t.Fatalf("checkout %+v, price %+v; want 459.00 with the three activities", o, o.Price)
			}
			if v := ok[*promo.ActivityView](t, "Activity")(tm.m1.Activity(ctx, flash.ID)); v.Used != 1 || v.Spent != 10000 || v.Locks[surge.LockLocked].Count != 1 {
				t.Fatalf("flash price after one checkout: %+v", v)
			}
			tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, o.ID))
			if _, err := s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}); err != nil {
				t.Fatal(err)
			}
			waitState(t, s, o.ID, surge.OrderPaid)
			waitFor(t, "the flash price confirmed", func() bool {
				v, err := tm.m1.Activity(ctx, flash.ID)
				return err == nil && v.Locks[surge.LockConfirmed].Count == 1
			})
			waitFor(t, "the rebate's coupon", func() bool {
				w, err := s.MyCoupons(ctx)
				return err == nil && len(w) == 1 && w[0].BatchID == rebateBatch.ID
			})
			if refunded, err := tm.op.RefundOrder(ctx, o.ID, "rf-1", 10*time.Second); err != nil || refunded.State != surge.OrderRefunded {
				t.Fatalf("RefundOrder = %+v, %v; want refunded", refunded, err)
			}
			waitFor(t, "the flash price's use back after the refund", func() bool { // right after the callback
				v, err := tm.m1.Activity(ctx, flash.ID)
				return err == nil && v.Used == 0 && v.Spent == 0 && v.Locks[surge.LockReleased].Count == 1
			})

			// The flash price goes offline while an order holds it: the order keeps its price,
			// and paid, its hold is confirmed; the old quote's checkout is refused with the new
			// price.
			sh := shopper(t, cl, 7_000_005)
			held := ok[*surge.Order](t, "Checkout")(sh.Checkout(ctx, checkout.Request{RequestID: "held", Lines: cart, QuotedPayable: &quoted}))
			ok[*surge.Activity](t, "OfflineActivity")(tm.m1.OfflineActivity(ctx, flash.ID))
			tk = ok[*order.PayTicket](t, "PayTicket")(sh.PayTicket(ctx, held.ID))
			if _, err := sh.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}); err != nil {
				t.Fatal(err)
			}
			waitState(t, sh, held.ID, surge.OrderPaid)
			waitFor(t, "the offline flash price's hold confirmed", func() bool {
				v, err := tm.m1.Activity(ctx, flash.ID)
				return err == nil && v.Locks[surge.LockConfirmed].Count == 1 && v.Used == 1 && v.Spent == 10000
			})
			_, err = s.Checkout(ctx, checkout.Request{RequestID: "p-2", Lines: cart, QuotedPayable: &quoted})
			wantCode(t, "a checkout at a price that changed", err, surge.EPRICECHANGED)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Quote == nil || ce.Quote.Payable != 59900-2*2000 {
				t.Fatalf("the refusal's quote: %+v %+v; want 559.00 (599.00 − 40.00)", ce, ce.Quote)
			}
			if versions := ok[[]surge.ActivityVersion](t, "ActivityVersions")(tm.m1.ActivityVersions(ctx, flash.ID)); len(versions) != 3 ||
				versions[2].Activity.State != surge.ActivityOffline {
				t.Fatalf("versions %+v; want draft, live, offline", versions)
			}

			// A capped activity: one order gets it; the next, quoted before, is refused.
			capped := liveActivity(t, tm.m1, 0, "first buyer", 20, 1, promo.Rule{Kind: promo.Direct, Value: 100, Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: []int64{lid.ID}}})
			lidCart := []coupon.CartLine{{SKU: lid.ID, Quantity: 1}}
			s1, s2 := shopper(t, cl, 7_000_002), shopper(t, cl, 7_000_004)
			q1 := ok[*promo.Quote](t, "Quote")(s1.Quote(ctx, promo.QuoteRequest{Lines: lidCart}))
			q2 := ok[*promo.Quote](t, "Quote")(s2.Quote(ctx, promo.QuoteRequest{Lines: lidCart}))
			// a line takes one unit price: 1.00 off beats the 0.01 of "a over b" or "b over c"
			if q1.Price.Payable != 1500-100 || q2.Price.Payable != q1.Price.Payable {
				t.Fatalf("quotes %d and %d; want 14.00", q1.Price.Payable, q2.Price.Payable)
			}
			ok[*surge.Order](t, "Checkout")(s1.Checkout(ctx, checkout.Request{RequestID: "cap-1", Lines: lidCart, QuotedPayable: &q1.Price.Payable}))
			_, err = s2.Checkout(ctx, checkout.Request{RequestID: "cap-2", Lines: lidCart, QuotedPayable: &q2.Price.Payable})
			if !errors.As(err, &ce) || ce.Code != surge.EPRICECHANGED || ce.Quote == nil || ce.Quote.Payable != 1500-1 {
				t.Fatalf("the second order of a capped activity: %v; want EPRICECHANGED quoting 14.99", err)
			}
			if v := ok[*promo.ActivityView](t, "Activity")(tm.m1.Activity(ctx, capped.ID)); v.Used != 1 {
				t.Fatalf("a cap of 1 used %d times", v.Used)
			}

			if c.NATSURL != "" { // a second node takes a new activity from the note, not its reload
				c2 := c
				c2.WorkerID, c2.AdminPassword, c2.DataDir = 1, "", t.TempDir()
				_, cl2 := start(t, c2)
				s3 := shopper(t, cl2, 7_000_003)
				published := time.Now()
				liveActivity(t, tm.op, 0, "late", 0, 0, promo.Rule{Kind: promo.Direct, Value: 7, Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: []int64{kettle.ID}}})
				waitFor(t, "the second node's quote", func() bool {
					q, err := s3.Quote(ctx, promo.QuoteRequest{Lines: cart})
					return err == nil && q.Price.Payable == 59900-7-2*2000
				})
				if took := time.Since(published); took > promo.ReloadEvery/2 {
					t.Fatalf("the second node took %v to quote a new activity: its reload, not the note", took)
				}
			}
		})
	}
}

// waitFor polls cond until it holds, for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s", what)
		}
	}
}
