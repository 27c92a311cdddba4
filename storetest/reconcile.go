package storetest

import (
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// RunReconcile checks the surge.ReconcileStore contract.
func RunReconcile(t *testing.T, open Open) {
	f := newFixture(t, open)
	m := func(kind, txn string, raised time.Duration) surge.Mismatch {
		return surge.Mismatch{ID: kind + ":" + txn, Kind: kind, TxnID: txn, OrderID: 7, Amount: 100, Detail: "d",
			At: f.now, RaisedAt: f.now.Add(raised)}
	}
	fresh, err := f.s.PutMismatches(f.ctx, []surge.Mismatch{m(surge.MismatchPaidTwice, "T1", 0), m(surge.MismatchAmount, "T2", time.Second)})
	if err != nil || len(fresh) != 2 {
		t.Fatalf("PutMismatches = %v, %v; want both fresh", fresh, err)
	}
	again := m(surge.MismatchPaidTwice, "T1", time.Hour)
	again.Detail = "changed"
	fresh, err = f.s.PutMismatches(f.ctx, []surge.Mismatch{again, m(surge.MismatchAmount, "T3", 2*time.Second)})
	if err != nil || len(fresh) != 1 || fresh[0].TxnID != "T3" {
		t.Fatalf("PutMismatches again = %v, %v; want T3 alone fresh", fresh, err)
	}
	all, err := f.s.Mismatches(f.ctx, f.now, "", 10)
	if err != nil || len(all) != 3 || all[0].TxnID != "T3" || all[2].Detail != "d" || !all[2].RaisedAt.Equal(f.now) {
		t.Fatalf("Mismatches = %+v, %v; want 3, newest first, the first copy of T1 kept", all, err)
	}
	some, err := f.s.Mismatches(f.ctx, f.now.Add(time.Second), surge.MismatchAmount, 10)
	if err != nil || len(some) != 2 || some[1].TxnID != "T2" {
		t.Fatalf("Mismatches(since, kind) = %+v, %v", some, err)
	}

	// Money records: the window's paid notifications and refunds, by transaction.
	a, b := f.paidOrder(7, 1, 100), f.paidOrder(8, 2, 200)
	pay := func(o *surge.Order, id string, at time.Time) *surge.Payment {
		return &surge.Payment{NotifyID: id, TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount, Status: surge.PaymentStatusPaid, PaidAt: at, ReceivedAt: at}
	}
	_, err = f.s.ApplyPayments(f.ctx, []*surge.Payment{pay(a, "a-1", f.now), pay(b, "b-1", f.now), pay(b, "b-2", f.now),
		pay(a, "a-old", f.now.Add(-48*time.Hour))})
	must(t, "ApplyPayments", err)
	r, _, err := f.refund(b, "rf", surge.RefundLine{Line: 0, Quantity: 1})
	must(t, "CreateRefund", err)
	var got []*surge.TxnRecords
	must(t, "MoneyRecords", f.s.MoneyRecords(f.ctx, f.now.Add(-time.Hour), f.now.Add(time.Hour), func(rec *surge.TxnRecords) error {
		got = append(got, rec)
		return nil
	}))
	byTxn := map[string]*surge.TxnRecords{}
	for i, rec := range got {
		byTxn[rec.TxnID] = rec
		if i > 0 && got[i-1].TxnID >= rec.TxnID {
			t.Fatalf("MoneyRecords gave %s after %s; want txn id order, each once", rec.TxnID, got[i-1].TxnID)
		}
	}
	if ra, rb := byTxn[a.TxnID], byTxn[b.TxnID]; len(got) != 2 || ra == nil || rb == nil || len(ra.Payments) != 1 || ra.OrderID != a.ID ||
		len(rb.Payments) != 2 || len(rb.Refunds) != 1 || rb.Refunds[0].ID != r.ID || rb.Payments[1].Outcome != surge.PaymentDuplicate {
		t.Fatalf("MoneyRecords = %+v; want a's payment of the window, b's two payments and its refund", got)
	}

	// Runs and repairs.
	_, err = f.s.Run(f.ctx, "2026-12-06")
	wantCode(t, "a day not reconciled", err, surge.ENOTFOUND)
	must(t, "PutRun", f.s.PutRun(f.ctx, "2026-12-06", []byte(`{"a":1}`), f.now))
	must(t, "PutRun again", f.s.PutRun(f.ctx, "2026-12-06", []byte(`{"a":2}`), f.now))
	if rep, err := f.s.Run(f.ctx, "2026-12-06"); err != nil || string(rep) != `{"a":2}` {
		t.Fatalf("Run = %s, %v; want the last report", rep, err)
	}
	first, made, err := f.s.PutRepair(f.ctx, surge.Repair{FindingID: "k:T1", Day: "2026-12-06", Action: "refund", By: 9, Result: "refund X1", At: f.now})
	if err != nil || !made || first.Result != "refund X1" {
		t.Fatalf("PutRepair = %+v, %v, %v", first, made, err)
	}
	first, made, err = f.s.PutRepair(f.ctx, surge.Repair{FindingID: "k:T1", Day: "2026-12-06", Action: "refund", By: 10, Result: "again", At: f.now.Add(time.Minute)})
	if err != nil || made || first.By != 9 || first.Result != "refund X1" {
		t.Fatalf("PutRepair again = %+v, %v, %v; want the first", first, made, err)
	}
	if list, err := f.s.Repairs(f.ctx, "2026-12-06"); err != nil || len(list) != 1 {
		t.Fatalf("Repairs = %+v, %v", list, err)
	}
	if _, made, err := f.s.PutRepair(f.ctx, surge.Repair{FindingID: "k:T1", Day: "2026-12-07", Action: "release", By: 9, Result: "r", At: f.now}); err != nil || !made {
		t.Fatalf("PutRepair of the same finding on another day = %v, %v; want made", made, err)
	}
}
