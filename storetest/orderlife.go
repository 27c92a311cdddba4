package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// paidOrder makes a paid sale order of units for a user, paying amount.
func (f *fixture) paidOrder(user, units, amount int64) *surge.Order {
	f.t.Helper()
	o := f.order(user, f.id(), "req", f.now.Add(time.Minute))
	o.Quantity, o.Amount.Amount = units, amount
	if _, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, "", f.now); err != nil {
		f.t.Fatal(err)
	}
	id := f.id()
	o = &surge.Order{ID: id, TxnID: fmt.Sprint("T", id), RequestID: "paid", UserID: user, SessionID: 1, ItemID: f.id(), SKUID: 2,
		MerchantID: 3, Quantity: units, Amount: surge.Money{Amount: amount, Currency: "CNY"}, State: surge.OrderPendingPayment,
		CreatedAt: f.now, ExpiresAt: f.now.Add(time.Minute)}
	if _, err := f.s.CreateOrder(f.ctx, o); err != nil {
		f.t.Fatal(err)
	}
	paid, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	return paid
}

func (f *fixture) refund(o *surge.Order, req string, lines ...surge.RefundLine) (*surge.Refund, bool, error) {
	r := &surge.Refund{ID: fmt.Sprint("R", f.id()), OrderID: o.ID, RequestID: req, Lines: lines, By: 9, CreatedAt: f.now}
	created, err := f.s.CreateRefund(f.ctx, r)
	return r, created, err
}

// RunOrderLife checks the order's life after payment: refunds (surge.RefundStore), vouchers
// (surge.VoucherStore) and the review.
func RunOrderLife(t *testing.T, open Open) {
	t.Run("Refunds", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.paidOrder(7, 3, 1000) // units pay 334, 333, 333
		pending := f.order(7, f.id(), "p", f.now.Add(time.Minute))
		_, _, err := f.refund(pending, "r0")
		wantCode(t, "a refund of a pending order", err, surge.ECONFLICT)
		_, _, err = f.refund(o, "r0", surge.RefundLine{Line: 0, Quantity: 4})
		wantCode(t, "a refund of more units than were paid", err, surge.EINVALID)
		_, _, err = f.refund(o, "r0", surge.RefundLine{Line: 1, Quantity: 1})
		wantCode(t, "a refund of a line that is not there", err, surge.EINVALID)
		one, created, err := f.refund(o, "r1", surge.RefundLine{Line: 0, Quantity: 1})
		must(t, "CreateRefund(one unit)", err)
		if !created || one.Amount.Amount != 333 || one.Whole || one.State != surge.RefundRequested || one.TxnID != o.TxnID || len(one.Lines) != 1 {
			t.Fatalf("refund of one unit = %+v, created %v; want 333 requested, not whole", one, created)
		}
		again, created, err := f.refund(o, "r1", surge.RefundLine{Line: 0, Quantity: 2})
		if err != nil || created || again.ID != one.ID || again.Amount != one.Amount {
			t.Fatalf("the same request again = %+v, %v, %v; want the first refund", again, created, err)
		}
		_, _, err = f.refund(o, "r2", surge.RefundLine{Line: 0, Quantity: 3})
		wantCode(t, "a refund beyond what the requested one left", err, surge.EINVALID)
		due, err := f.s.RequestedRefunds(f.ctx, f.now.Add(time.Second), 10)
		if err != nil || len(due) != 1 || due[0].ID != one.ID {
			t.Fatalf("RequestedRefunds = %v, %v; want the one refund", due, err)
		}
		_, _, _, err = f.s.CompleteRefund(f.ctx, one.ID, "n1", one.TxnID, surge.Money{Amount: 334, Currency: "CNY"}, f.now)
		wantCode(t, "a refund's notification with another amount", err, surge.EINVALID)
		_, _, _, err = f.s.CompleteRefund(f.ctx, "R-unknown", "n1", one.TxnID, one.Amount, f.now)
		wantCode(t, "an unknown refund's notification", err, surge.ENOTFOUND)
		r, after, fresh, err := f.s.CompleteRefund(f.ctx, one.ID, "n1", one.TxnID, one.Amount, f.now)
		if err != nil || !fresh || r.State != surge.RefundSucceeded || r.SucceededAt == nil || after.Refunded != 333 || after.State != surge.OrderPaid {
			t.Fatalf("CompleteRefund = %+v, %+v, %v, %v; want succeeded, order paid with 333 refunded", r, after, fresh, err)
		}
		_, after, fresh, err = f.s.CompleteRefund(f.ctx, one.ID, "n1", one.TxnID, one.Amount, f.now)
		if err != nil || fresh || after.Refunded != 333 {
			t.Fatalf("CompleteRefund again = %+v, %v, %v; want nothing new", after, fresh, err)
		}
		rest, _, err := f.refund(o, "r3")
		if err != nil || rest.Amount.Amount != 667 || !rest.Whole || rest.Lines[0].Quantity != 2 {
			t.Fatalf("refund of the rest = %+v, %v; want 667 for 2 units, whole", rest, err)
		}
		_, after, _, err = f.s.CompleteRefund(f.ctx, rest.ID, "n2", rest.TxnID, rest.Amount, f.now)
		if err != nil || after.State != surge.OrderRefunded || after.Refunded != 1000 {
			t.Fatalf("after the whole refund: %+v, %v; want refunded, 1000", after, err)
		}
		_, _, err = f.refund(o, "r4")
		wantCode(t, "a refund of a refunded order", err, surge.ECONFLICT)
		list, err := f.s.RefundsByOrder(f.ctx, o.ID)
		if err != nil || len(list) != 2 || list[0].ID != one.ID || list[1].State != surge.RefundSucceeded {
			t.Fatalf("RefundsByOrder = %v, %v", list, err)
		}
	})

	t.Run("PaymentRefundsLeaveTheOrderAlone", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.order(7, f.id(), "p", f.now.Add(time.Minute))
		cancelled, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelUser, f.now)
		must(t, "Transition", err)
		mk := func() *surge.Refund {
			return &surge.Refund{ID: "X1", OrderID: o.ID, TxnID: o.TxnID, RequestID: "finding-1", Amount: surge.Money{Amount: 990, Currency: "CNY"},
				By: 9, Reason: "paid after cancel", CreatedAt: f.now}
		}
		r := mk()
		created, err := f.s.CreatePaymentRefund(f.ctx, r)
		if err != nil || !created || r.Kind != surge.RefundPayment || r.State != surge.RefundRequested {
			t.Fatalf("CreatePaymentRefund = %+v, %v, %v", r, created, err)
		}
		again := mk()
		again.Amount.Amount = 1
		if created, err := f.s.CreatePaymentRefund(f.ctx, again); err != nil || created || again.Amount.Amount != 990 {
			t.Fatalf("CreatePaymentRefund again = %+v, %v, %v; want the first", again, created, err)
		}
		got, err := f.s.RefundByID(f.ctx, "X1")
		if err != nil || got.Kind != surge.RefundPayment || got.TxnID != o.TxnID {
			t.Fatalf("RefundByID = %+v, %v", got, err)
		}
		_, err = f.s.RefundByID(f.ctx, "X2")
		wantCode(t, "an unknown refund", err, surge.ENOTFOUND)
		_, after, fresh, err := f.s.CompleteRefund(f.ctx, "X1", "n", o.TxnID, r.Amount, f.now)
		if err != nil || !fresh || after.State != cancelled.State || after.Refunded != 0 {
			t.Fatalf("CompleteRefund(payment) = %+v, %v, %v; want the cancelled order as it was", after, fresh, err)
		}
	})

	t.Run("AFailedRefundGivesItsUnitsAndVouchersBack", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.paidOrder(7, 2, 1000)
		_, err := f.s.IssueVouchers(f.ctx, o.ID, []surge.Voucher{
			{Code: "F0", Seq: 0, SKUID: 2, MerchantID: 3, UserID: 7, Amount: surge.Money{Amount: 500, Currency: "CNY"}, IssuedAt: f.now},
			{Code: "F1", Seq: 1, SKUID: 2, MerchantID: 3, UserID: 7, Amount: surge.Money{Amount: 500, Currency: "CNY"}, IssuedAt: f.now}})
		must(t, "IssueVouchers", err)
		r, _, err := f.refund(o, "all")
		if err != nil || r.Amount.Amount != 1000 || len(r.Lines[0].Vouchers) != 2 {
			t.Fatalf("refund = %+v, %v; want both vouchers void", r, err)
		}
		failed, err := f.s.FailRefund(f.ctx, r.ID)
		if err != nil || !failed {
			t.Fatalf("FailRefund = %v, %v", failed, err)
		}
		if again, err := f.s.FailRefund(f.ctx, r.ID); err != nil || again {
			t.Fatalf("FailRefund again = %v, %v; want nothing", again, err)
		}
		vs, err := f.s.VouchersByOrder(f.ctx, o.ID)
		if err != nil || vs[0].State != surge.VoucherIssued || vs[1].State != surge.VoucherIssued {
			t.Fatalf("vouchers after a failed refund: %+v, %v; want issued again", vs, err)
		}
		_, _, _, err = f.s.CompleteRefund(f.ctx, r.ID, "n", r.TxnID, r.Amount, f.now)
		if err == nil {
			if got, _ := f.s.OrderByID(f.ctx, o.ID); got.Refunded != 0 {
				t.Fatalf("a failed refund's late callback refunded the order: %+v", got)
			}
		}
		next, _, err := f.refund(o, "again", surge.RefundLine{Line: 0, Quantity: 2})
		if err != nil || next.Amount.Amount != 1000 {
			t.Fatalf("a refund after the failed one = %+v, %v; want its units refundable again", next, err)
		}
	})

	t.Run("SettlementFacts", func(t *testing.T) {
		f := newFixture(t, open)
		meals := f.paidOrder(7, 2, 1000) // merchant 3, vouchers
		_, err := f.s.IssueVouchers(f.ctx, meals.ID, []surge.Voucher{
			{Code: "S0", Seq: 0, SKUID: 2, MerchantID: 3, UserID: 7, Amount: surge.Money{Amount: 500, Currency: "CNY"}, IssuedAt: f.now},
			{Code: "S1", Seq: 1, SKUID: 2, MerchantID: 3, UserID: 7, Amount: surge.Money{Amount: 500, Currency: "CNY"}, IssuedAt: f.now}})
		must(t, "IssueVouchers", err)
		_, _, err = f.s.RedeemVoucher(f.ctx, "S0", 3, 3, "till", f.now)
		must(t, "RedeemVoucher", err)
		goods := f.paidOrder(8, 1, 700)
		r, _, err := f.refund(goods, "g")
		must(t, "CreateRefund", err)
		_, _, _, err = f.s.CompleteRefund(f.ctx, r.ID, "n", r.TxnID, r.Amount, f.now)
		must(t, "CompleteRefund", err)
		facts, err := f.s.SettlementFacts(f.ctx, 3, f.now.Add(-time.Hour), f.now.Add(time.Hour))
		must(t, "SettlementFacts", err)
		if len(facts.Paid) != 2 || facts.Paid[0].Order.ID != meals.ID || len(facts.Paid[0].VoucherLines) != 1 || len(facts.Paid[1].VoucherLines) != 0 ||
			len(facts.Redeemed) != 1 || facts.Redeemed[0].Code != "S0" || len(facts.Refunded) != 1 || facts.Refunded[0].Refund.ID != r.ID {
			t.Fatalf("SettlementFacts = %+v", facts)
		}
		other, err := f.s.SettlementFacts(f.ctx, 4, f.now.Add(-time.Hour), f.now.Add(time.Hour))
		if err != nil || len(other.Paid)+len(other.Redeemed)+len(other.Refunded) != 0 {
			t.Fatalf("another shop's facts = %+v, %v", other, err)
		}
		later, err := f.s.SettlementFacts(f.ctx, 3, f.now.Add(time.Hour), f.now.Add(2*time.Hour))
		if err != nil || len(later.Paid)+len(later.Redeemed)+len(later.Refunded) != 0 {
			t.Fatalf("another day's facts = %+v, %v", later, err)
		}
	})

	t.Run("ConcurrentRefundsNeverExceedWhatWasPaid", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.paidOrder(7, 3, 1000)
		ok := concurrently(12, func(i int) error {
			_, _, err := f.refund(o, fmt.Sprint("c", i), surge.RefundLine{Line: 0, Quantity: 1})
			return err
		})
		list, err := f.s.RefundsByOrder(f.ctx, o.ID)
		var sum int64
		for _, r := range list {
			sum += r.Amount.Amount
		}
		if err != nil || ok != 3 || len(list) != 3 || sum != 1000 {
			t.Fatalf("%d of 12 one-unit refunds of 3 units made; stored %d summing %d (%v); want 3 summing 1000", ok, len(list), sum, err)
		}
	})

	t.Run("Vouchers", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.paidOrder(7, 2, 1001)
		mk := func(prefix string) []surge.Voucher {
			return []surge.Voucher{
				{Code: prefix + "0", Seq: 0, SKUID: 2, MerchantID: 3, UserID: 7, Amount: surge.Money{Amount: 501, Currency: "CNY"}, IssuedAt: f.now},
				{Code: prefix + "1", Seq: 1, SKUID: 2, MerchantID: 3, UserID: 7, Amount: surge.Money{Amount: 500, Currency: "CNY"}, IssuedAt: f.now},
			}
		}
		vs, err := f.s.IssueVouchers(f.ctx, o.ID, mk("A"))
		if err != nil || len(vs) != 2 || vs[0].Code != "A0" || vs[1].State != surge.VoucherIssued || vs[1].Amount.Amount != 500 {
			t.Fatalf("IssueVouchers = %+v, %v", vs, err)
		}
		vs, err = f.s.IssueVouchers(f.ctx, o.ID, mk("B"))
		if err != nil || len(vs) != 2 || vs[0].Code != "A0" {
			t.Fatalf("IssueVouchers again = %+v, %v; want the first ones", vs, err)
		}
		pending := f.order(7, f.id(), "p", f.now.Add(time.Minute))
		_, err = f.s.IssueVouchers(f.ctx, pending.ID, mk("C"))
		wantCode(t, "vouchers for a pending order", err, surge.ECONFLICT)
		_, _, err = f.s.RedeemVoucher(f.ctx, "A0", 4, 40, "till-1", f.now)
		wantCode(t, "another shop redeeming", err, surge.EFORBIDDEN)
		_, _, err = f.s.RedeemVoucher(f.ctx, "ZZZ", 3, 30, "till-1", f.now)
		wantCode(t, "an unknown code", err, surge.ENOTFOUND)
		var winner *surge.Voucher
		won := concurrently(50, func(i int) error {
			v, _, err := f.s.RedeemVoucher(f.ctx, "A0", 3, 30, fmt.Sprint("till-", i), f.now)
			if err == nil {
				winner = v
			} else if surge.ErrorCode(err) != surge.ECONFLICT && surge.ErrorCode(err) != surge.EUNAVAILABLE {
				t.Errorf("till %d: %v; want ECONFLICT", i, err)
			}
			return err
		})
		if won != 1 || winner.State != surge.VoucherRedeemed || winner.RedeemedAt == nil || winner.RedeemedBy != 30 {
			t.Fatalf("%d of 50 tills redeemed one code (%+v); want exactly 1", won, winner)
		}
		_, _, err = f.s.RedeemVoucher(f.ctx, "A0", 3, 30, "till-x", f.now)
		wantCode(t, "a redeemed code again", err, surge.ECONFLICT)
		if got, _ := f.s.OrderByID(f.ctx, o.ID); got.State != surge.OrderPaid {
			t.Fatalf("order with one of two vouchers redeemed is %s; want paid", got.State)
		}
		r, _, err := f.refund(o, "rest")
		if err != nil || r.Whole || r.Amount.Amount != 500 || r.Lines[0].Quantity != 1 {
			t.Fatalf("refund of what is left = %+v, %v; want the unredeemed voucher's 500, not whole", r, err)
		}
		_, _, err = f.refund(o, "more", surge.RefundLine{Line: 0, Quantity: 1})
		wantCode(t, "a refund of a redeemed voucher", err, surge.ECONFLICT)
		got, _ := f.s.OrderByID(f.ctx, o.ID)
		if got.State != surge.OrderConsumed {
			t.Fatalf("order with its vouchers redeemed or refunded is %s; want consumed", got.State)
		}
		_, _, err = f.s.RedeemVoucher(f.ctx, "A1", 3, 30, "till-1", f.now)
		wantCode(t, "a refunded voucher", err, surge.ECONFLICT)
		vs, err = f.s.VouchersByOrder(f.ctx, o.ID)
		if err != nil || len(vs) != 2 || vs[0].State != surge.VoucherRedeemed || vs[1].State != surge.VoucherVoid {
			t.Fatalf("VouchersByOrder = %+v, %v; want redeemed and void", vs, err)
		}
		_, err = f.s.ReviewOrder(f.ctx, o.ID, 8, surge.Review{Rating: 5, At: f.now})
		wantCode(t, "another user's review", err, surge.ENOTFOUND)
		rev, err := f.s.ReviewOrder(f.ctx, o.ID, 7, surge.Review{Rating: 4, Text: "good", At: f.now})
		if err != nil || rev.State != surge.OrderReviewed || rev.Review == nil || rev.Review.Rating != 4 {
			t.Fatalf("ReviewOrder = %+v, %v; want reviewed", rev, err)
		}
		_, err = f.s.ReviewOrder(f.ctx, o.ID, 7, surge.Review{Rating: 4, At: f.now})
		wantCode(t, "a second review", err, surge.ECONFLICT)
		_, err = f.s.ReviewOrder(f.ctx, f.paidOrder(7, 1, 10).ID, 7, surge.Review{Rating: 4, At: f.now})
		wantCode(t, "a review of an order not consumed", err, surge.ECONFLICT)
	})
}
