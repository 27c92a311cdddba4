package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/settlement"
	"github.com/surgecommerce/surge/voucher"
)

// An order's life after payment over HTTP on every shape: a checkout of three meal vouchers
// and two mugs, paid, issues three voucher codes; fifty tills redeeming one code at once leave
// exactly one winner; a mug is refunded through the payment provider and its callback; a
// voucher is refunded and can no longer be redeemed; the last voucher redeemed makes the
// order consumed; the other mug is refunded from consumed; the shopper reviews it. Every
// refusal has its code.
func TestOrderLifeAfterPayment(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			_, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			meal, mug := shopSKU(t, tm, "Set meal", 3333, 10, true), shopSKU(t, tm, "Mug", 1500, 10, false)
			if !meal.Voucher || mug.Voucher {
				t.Fatalf("voucher flags %v and %v; want a voucher product and goods", meal.Voucher, mug.Voucher)
			}
			s := shopper(t, cl, 6_100_001)
			o := ok[*surge.Order](t, "Checkout")(s.Checkout(ctx, checkout.Request{RequestID: "life-1",
				Lines: []coupon.CartLine{{SKU: meal.ID, Quantity: 3}, {SKU: mug.ID, Quantity: 2}}}))
			if o.Amount.Amount != 3*3333+2*1500 {
				t.Fatalf("order amount %d", o.Amount.Amount)
			}
			_, err := tm.op.RefundOrder(ctx, o.ID, "too-early", 0)
			wantCode(t, "a refund of a pending order", err, surge.ECONFLICT)
			tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, o.ID))
			ok[*paysim.PayResponse](t, "Pay")(s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}))
			var vs []surge.Voucher
			waitFor(t, "the vouchers", func() bool {
				vs, err = s.Vouchers(ctx, o.ID)
				return err == nil && len(vs) == 3
			})
			for i, v := range vs {
				if v.Line != 0 || v.SKUID != meal.ID || v.Amount.Amount != 3333 || v.State != surge.VoucherIssued || len(v.Code) != voucher.CodeLen {
					t.Fatalf("voucher %d: %+v", i, v)
				}
			}
			_, err = tm.m2.Vouchers(ctx, o.ID)
			wantCode(t, "another shop listing the order's vouchers", err, surge.ENOTFOUND)

			// Redemption: only the shop that sold, exactly once.
			redeem := func(c interface {
				Redeem(context.Context, voucher.RedeemInput) (*voucher.Redeemed, error)
			}, code string) error {
				_, err := c.Redeem(ctx, voucher.RedeemInput{Code: code, Till: "front"})
				return err
			}
			wantCode(t, "a shopper redeeming", redeem(s, vs[0].Code), surge.EFORBIDDEN)
			wantCode(t, "another shop redeeming", redeem(tm.m2, vs[0].Code), surge.EFORBIDDEN)
			typo := []byte(vs[0].Code)
			typo[3] = map[bool]byte{true: 'A', false: 'B'}[typo[3] != 'A']
			wantCode(t, "a mistyped code", redeem(tm.m1, string(typo)), surge.EINVALID)
			unknown, _ := voucher.NewCode(nil)
			wantCode(t, "an unknown code", redeem(tm.m1, unknown), surge.ENOTFOUND)
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[string]int{}
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := tm.m1.Redeem(ctx, voucher.RedeemInput{Code: voucher.Format(vs[0].Code), Till: fmt.Sprint("till-", i)})
					mu.Lock()
					codes[surge.ErrorCode(err)]++
					mu.Unlock()
				}()
			}
			wg.Wait()
			if codes[""] != 1 || codes[surge.ECONFLICT] != 49 {
				t.Fatalf("50 tills redeeming one code: %v; want exactly one success and 49 ECONFLICT", codes)
			}

			// A mug refunded through the provider: requested, then its callback.
			_, err = s.Refund(ctx, o.ID, order.RefundInput{RequestID: "mug-1", Lines: []order.RefundLineInput{{Line: 1, Quantity: 1}}})
			wantCode(t, "a shopper refunding", err, surge.EFORBIDDEN)
			_, err = tm.m2.Refund(ctx, o.ID, order.RefundInput{RequestID: "mug-1", Lines: []order.RefundLineInput{{Line: 1, Quantity: 1}}})
			wantCode(t, "another shop refunding", err, surge.ENOTFOUND)
			_, err = tm.m1.Refund(ctx, o.ID, order.RefundInput{RequestID: "mug-x", Lines: []order.RefundLineInput{{Line: 1, Quantity: 3}}})
			wantCode(t, "a refund of more mugs than were paid", err, surge.EINVALID)
			_, err = tm.m1.Refund(ctx, o.ID, order.RefundInput{RequestID: "mug-x", Lines: []order.RefundLineInput{{Line: 7, Quantity: 1}}})
			wantCode(t, "a refund of a line that is not there", err, surge.EINVALID)
			_, err = tm.m1.Refund(ctx, o.ID, order.RefundInput{RequestID: "", Lines: []order.RefundLineInput{{Line: 1, Quantity: 1}}})
			wantCode(t, "a refund without a request id", err, surge.EINVALID)
			var r *surge.Refund
			waitFor(t, "the mug's refund to be taken", func() bool {
				r, err = tm.m1.Refund(ctx, o.ID, order.RefundInput{RequestID: "mug-1", Lines: []order.RefundLineInput{{Line: 1, Quantity: 1}}, Reason: "chipped"})
				return surge.ErrorCode(err) != surge.EUNAVAILABLE // the payment may still be settling
			})
			if err != nil || r.Amount.Amount != 1500 || r.Whole {
				t.Fatalf("mug refund = %+v, %v; want 1500, not whole", r, err)
			}
			waitRefunded := func(amount int64) *surge.Order {
				var got *surge.Order
				waitFor(t, fmt.Sprintf("%d refunded", amount), func() bool {
					got, err = s.Order(ctx, o.ID)
					return err == nil && got.Refunded == amount
				})
				return got
			}
			if got := waitRefunded(1500); got.State != surge.OrderPaid {
				t.Fatalf("after a mug's refund the order is %s; want paid", got.State)
			}

			// A voucher refunded: the last unused one becomes void.
			ok[*surge.Refund](t, "Refund(a voucher)")(tm.op.Refund(ctx, o.ID, order.RefundInput{RequestID: "meal-1", Lines: []order.RefundLineInput{{Line: 0, Quantity: 1}}}))
			waitRefunded(1500 + 3333)
			_, err = tm.op.Refund(ctx, o.ID, order.RefundInput{RequestID: "meal-2", Lines: []order.RefundLineInput{{Line: 0, Quantity: 2}}})
			wantCode(t, "a refund of a redeemed voucher", err, surge.ECONFLICT)
			wantCode(t, "redeeming a refunded voucher", redeem(tm.m1, vs[2].Code), surge.ECONFLICT)
			res := ok[*voucher.Redeemed](t, "Redeem(the last)")(tm.m1.Redeem(ctx, voucher.RedeemInput{Code: vs[1].Code}))
			if res.Order.State != surge.OrderConsumed || res.Voucher.State != surge.VoucherRedeemed {
				t.Fatalf("after its last voucher: %+v; want the order consumed", res)
			}

			// Refunded from consumed, then reviewed; a reviewed order is not refunded.
			ok[*surge.Refund](t, "Refund(the other mug)")(tm.m1.Refund(ctx, o.ID, order.RefundInput{RequestID: "mug-2"}))
			if got := waitRefunded(2*1500 + 3333); got.State != surge.OrderConsumed {
				t.Fatalf("with its redeemed meals left the order is %s; want consumed", got.State)
			}
			_, err = tm.m1.Refund(ctx, o.ID, order.RefundInput{RequestID: "rest"})
			wantCode(t, "a refund with only redeemed vouchers left", err, surge.ECONFLICT)
			_, err = s.Review(ctx, o.ID, order.ReviewInput{Rating: 9})
			wantCode(t, "a rating of 9", err, surge.EINVALID)
			_, err = shopper(t, cl, 6_100_002).Review(ctx, o.ID, order.ReviewInput{Rating: 5})
			wantCode(t, "another shopper's review", err, surge.ENOTFOUND)
			rev := ok[*surge.Order](t, "Review")(s.Review(ctx, o.ID, order.ReviewInput{Rating: 5, Text: "great noodles"}))
			if rev.State != surge.OrderReviewed || rev.Review == nil || rev.Review.Rating != 5 {
				t.Fatalf("reviewed order %+v", rev)
			}
			_, err = tm.op.Refund(ctx, o.ID, order.RefundInput{RequestID: "late"})
			wantCode(t, "a refund of a reviewed order", err, surge.ECONFLICT)
			list := ok[[]*surge.Refund](t, "Refunds")(s.Refunds(ctx, o.ID))
			var sum int64
			for _, r := range list {
				if r.State != surge.RefundSucceeded {
					t.Fatalf("refund %+v not succeeded", r)
				}
				sum += r.Amount.Amount
			}
			if len(list) != 3 || sum != rev.Refunded {
				t.Fatalf("%d refunds summing %d; the order says %d refunded", len(list), sum, rev.Refunded)
			}

			// The shop's day: the mugs paid and both refunded, two meals redeemed (the refunded
			// one never the shop's), a fee of 0.6% on what it kept.
			day := payment.LedgerDay(time.Now())
			_, err = s.Settlement(ctx, tm.m1ID, day)
			wantCode(t, "a shopper reading a shop's settlement", err, surge.EFORBIDDEN)
			_, err = tm.m2.Settlement(ctx, tm.m1ID, day)
			wantCode(t, "another shop reading it", err, surge.EFORBIDDEN)
			_, err = tm.m1.Settlement(ctx, tm.m1ID, "today")
			wantCode(t, "a day that is not one", err, surge.EINVALID)
			st := ok[*settlement.Settlement](t, "Settlement")(tm.m1.Settlement(ctx, tm.m1ID, day))
			if len(st.Lines) != 1 || len(st.Totals) != 1 {
				t.Fatalf("settlement %+v; want the one order", st)
			}
			gross, refunds := int64(2*1500+2*3333), int64(2*1500)
			fee := (gross*60+5000)/10000 - (refunds*60+5000)/10000
			if tot := st.Totals[0]; tot.Gross != gross || tot.Refunds != refunds || tot.Fee != fee || tot.Net != gross-refunds-fee ||
				st.Lines[0].SettlementLine != (surge.SettlementLine{OrderID: o.ID, Gross: gross, Refunds: refunds, Fee: fee, Net: tot.Net}) {
				t.Fatalf("settlement %+v; want gross %d, refunds %d, fee %d", st, gross, refunds, fee)
			}
		})
	}
}

// shopSKU puts a product of one SKU in merchant1's shop: price in fen, stock units, a voucher
// product or goods.
func shopSKU(t *testing.T, tm *team, title string, price, stock int64, voucher bool) *surge.SKU {
	t.Helper()
	ctx := context.Background()
	code := fmt.Sprint("P-", time.Now().UnixNano())
	spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: code, Title: title, CategoryL1: "Shop"}))
	return ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: code + "-1", Title: title,
		Price: surge.Money{Amount: price, Currency: "CNY"}, CostPrice: surge.Money{Amount: price / 2, Currency: "CNY"}, Stock: stock, Voucher: voucher}))
}
