package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/paysim"
)

// An ordinary checkout over HTTP on every shape: two lines of one shop with a threshold coupon
// and a fixed one, priced and locked all or none; a retry returns the same order; paid, the
// coupons are used; refunded, they come back; cancelled, the coupons and the units come back;
// an SKU short of units refuses the checkout and gives its coupon back; bad checkouts are
// refused with their codes.
func TestCheckoutWithCoupons(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			_, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			now := time.Now().UTC()
			code := fmt.Sprint("CHK-", now.UnixNano())
			spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: code, Title: "Tea set", CategoryL1: "Home"}))
			sku := func(m *surge.SPU, suffix string, price, stock int64) *surge.SKU {
				return ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: m.ID, Code: code + suffix, Title: "Tea " + suffix,
					Price: surge.Money{Amount: price, Currency: "CNY"}, CostPrice: surge.Money{Amount: price / 2, Currency: "CNY"}, Stock: stock}))
			}
			cup, pot := sku(spu, "-CUP", 2000, 5), sku(spu, "-POT", 5000, 5)
			batch := func(name string, rule coupon.Rule) *surge.CouponBatch {
				return liveBatch(t, tm.op, name, rule, 100, 5, 1)
			}
			platform := coupon.Scope{Kind: coupon.ScopePlatform}
			off10 := batch("¥10 off ¥60", coupon.Rule{Kind: coupon.Threshold, Value: 1000, Threshold: 6000, Currency: "CNY", Scope: platform})
			off30 := batch("¥0.30 off", coupon.Rule{Kind: coupon.Fixed, Value: 30, Currency: "CNY", Scope: platform})
			s := shopper(t, cl, 6_000_001)
			claim := func(b *surge.CouponBatch, req string) int64 {
				return ok[*surge.Coupon](t, "ClaimCoupon")(s.ClaimCoupon(ctx, b.ID, req)).ID
			}
			t1, f1, f2, f3 := claim(off10, "a"), claim(off30, "b"), claim(off30, "c"), claim(off30, "d")
			both := []coupon.CartLine{{SKU: cup.ID, Quantity: 1}, {SKU: pot.ID, Quantity: 1}}
			stockOf := func(k *surge.SKU) int64 { return ok[*surge.SKU](t, "SKU")(tm.m1.SKU(ctx, k.ID)).Stock }

			// ¥70.00 less ¥10.00 (reached ¥60.00), then ¥0.30: ¥59.70.
			o := ok[*surge.Order](t, "Checkout")(s.Checkout(ctx, checkout.Request{RequestID: "cart-1", Lines: both, Coupons: surge.IDList{f1, t1}}))
			if o.Amount.Amount != 5970 || len(o.Lines) != 2 || o.Price == nil || o.Price.List != 7000 || o.Price.Discount != 1030 ||
				o.State != surge.OrderPendingPayment || o.Quantity != 2 || o.MerchantID != tm.m1ID {
				t.Fatalf("checkout %+v, price %+v; want ¥59.70 of ¥70.00, two lines", o, o.Price)
			}
			again := ok[*surge.Order](t, "Checkout again")(s.Checkout(ctx, checkout.Request{RequestID: "cart-1", Lines: both, Coupons: surge.IDList{f1, t1}}))
			if again.ID != o.ID || stockOf(cup) != 4 || stockOf(pot) != 4 {
				t.Fatalf("a retried checkout made order %d (first %d); stock %d and %d; want the first order, 4 and 4 left", again.ID, o.ID, stockOf(cup), stockOf(pot))
			}
			if st := walletState(t, s, t1); st != surge.CouponLocked {
				t.Fatalf("a coupon on a pending checkout is %s; want locked", st)
			}
			tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, o.ID))
			if _, err := s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}); err != nil {
				t.Fatal(err)
			}
			waitState(t, s, o.ID, surge.OrderPaid)
			waitCoupon(t, s, t1, surge.CouponUsed)
			waitCoupon(t, s, f1, surge.CouponUsed)

			// Refunded by an operator: the coupons come back; again, nothing more happens.
			_, err := s.RefundOrder(ctx, o.ID, "rf-1", 0)
			wantCode(t, "a shopper asking for a refund", err, surge.EFORBIDDEN)
			refunded, err := tm.op.RefundOrder(ctx, o.ID, "rf-1", 10*time.Second)
			if err != nil || refunded.State != surge.OrderRefunded {
				t.Fatalf("RefundOrder = %+v, %v; want refunded", refunded, err)
			}
			// the callback that makes the order refunded gives its coupons back right after
			waitCoupon(t, s, t1, surge.CouponIssued)
			waitCoupon(t, s, f1, surge.CouponIssued)
			ok[*surge.Order](t, "RefundOrder again")(tm.op.RefundOrder(ctx, o.ID, "rf-1", time.Second))
			_, err = tm.op.RefundOrder(ctx, o.ID, "rf-2", time.Second)
			wantCode(t, "another refund of a refunded order", err, surge.ECONFLICT)
			if stockOf(cup) != 4 || stockOf(pot) != 4 {
				t.Fatalf("stock after the refund: %d and %d; want 4 and 4 (a refund leaves the units sold)", stockOf(cup), stockOf(pot))
			}

			// Cancelled: the coupon and the units come back.
			o2 := ok[*surge.Order](t, "Checkout")(s.Checkout(ctx, checkout.Request{RequestID: "cart-2",
				Lines: []coupon.CartLine{{SKU: cup.ID, Quantity: 2}}, Coupons: surge.IDList{f2}}))
			if o2.Amount.Amount != 3970 || stockOf(cup) != 2 {
				t.Fatalf("second checkout %+v, cups left %d; want ¥39.70, 2 left", o2.Amount, stockOf(cup))
			}
			_, err = tm.op.RefundOrder(ctx, o2.ID, "rf-3", 0)
			wantCode(t, "a refund of a pending order", err, surge.ECONFLICT)
			ok[*surge.Order](t, "CancelOrder")(s.CancelOrder(ctx, o2.ID))
			waitCoupon(t, s, f2, surge.CouponIssued)
			for deadline := time.Now().Add(10 * time.Second); stockOf(cup) != 4; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("cups left after the cancel: %d; want 4", stockOf(cup))
				}
			}

			// Refusals; one coupon waits on a pending checkout meanwhile.
			ok[*surge.Order](t, "Checkout")(s.Checkout(ctx, checkout.Request{RequestID: "cart-4",
				Lines: []coupon.CartLine{{SKU: cup.ID, Quantity: 1}}, Coupons: surge.IDList{f2}}))
			_, err = s.Checkout(ctx, checkout.Request{RequestID: "cart-3", Lines: []coupon.CartLine{{SKU: pot.ID, Quantity: 5}}, Coupons: surge.IDList{f3}})
			wantCode(t, "a checkout of more than the stock", err, surge.ESOLDOUT)
			if st := walletState(t, s, f3); st != surge.CouponIssued {
				t.Fatalf("the coupon of a refused checkout is %s; want issued", st)
			}
			other := ok[*surge.SPU](t, "CreateSPU")(tm.m2.CreateSPU(ctx, catalog.SPUInput{Code: code + "-2", Title: "Mugs", CategoryL1: "Home"}))
			mug := ok[*surge.SKU](t, "CreateSKU")(tm.m2.CreateSKU(ctx, catalog.SKUInput{SPUID: other.ID, Code: code + "-MUG", Title: "Mug",
				Price: surge.Money{Amount: 900, Currency: "CNY"}, CostPrice: surge.Money{Amount: 400, Currency: "CNY"}, Stock: 5}))
			many := make([]coupon.CartLine, surge.MaxCheckoutLines+1)
			for i := range many {
				many[i] = coupon.CartLine{SKU: int64(i + 1), Quantity: 1}
			}
			for name, c := range map[string]struct {
				in   checkout.Request
				code string
			}{
				"two shops":                 {checkout.Request{RequestID: "x", Lines: []coupon.CartLine{{SKU: cup.ID, Quantity: 1}, {SKU: mug.ID, Quantity: 1}}}, surge.EINVALID},
				"an unknown SKU":            {checkout.Request{RequestID: "x", Lines: []coupon.CartLine{{SKU: pot.ID + 999_999, Quantity: 1}}}, surge.ENOTFOUND},
				"51 lines":                  {checkout.Request{RequestID: "x", Lines: many}, surge.EINVALID},
				"an SKU twice":              {checkout.Request{RequestID: "x", Lines: []coupon.CartLine{{SKU: cup.ID, Quantity: 1}, {SKU: cup.ID, Quantity: 1}}}, surge.EINVALID},
				"no quantity":               {checkout.Request{RequestID: "x", Lines: []coupon.CartLine{{SKU: cup.ID}}}, surge.EINVALID},
				"a coupon on another order": {checkout.Request{RequestID: "x", Lines: []coupon.CartLine{{SKU: cup.ID, Quantity: 1}}, Coupons: surge.IDList{f2}}, surge.ECONFLICT},
				"no request id":             {checkout.Request{Lines: []coupon.CartLine{{SKU: cup.ID, Quantity: 1}}}, surge.EINVALID},
			} {
				_, err := s.Checkout(ctx, c.in)
				wantCode(t, name, err, c.code)
			}
			_, err = tm.m1.Checkout(ctx, checkout.Request{RequestID: "x", Lines: both})
			wantCode(t, "a merchant checking out", err, surge.EFORBIDDEN)
			if stockOf(cup) != 3 || stockOf(pot) != 4 {
				t.Fatalf("stock after the refusals: %d and %d; want 3 and 4", stockOf(cup), stockOf(pot))
			}
		})
	}
}
