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
	must(t, "PutMismatches", f.s.PutMismatches(f.ctx, []surge.Mismatch{m(surge.MismatchPaidTwice, "T1", 0), m(surge.MismatchAmount, "T2", time.Second)}))
	again := m(surge.MismatchPaidTwice, "T1", time.Hour)
	again.Detail = "changed"
	must(t, "PutMismatches again", f.s.PutMismatches(f.ctx, []surge.Mismatch{again, m(surge.MismatchAmount, "T3", 2*time.Second)}))
	all, err := f.s.Mismatches(f.ctx, f.now, "", 10)
	if err != nil || len(all) != 3 || all[0].TxnID != "T3" || all[2].Detail != "d" || !all[2].RaisedAt.Equal(f.now) {
		t.Fatalf("Mismatches = %+v, %v; want 3, newest first, the first copy of T1 kept", all, err)
	}
	some, err := f.s.Mismatches(f.ctx, f.now.Add(time.Second), surge.MismatchAmount, 10)
	if err != nil || len(some) != 2 || some[1].TxnID != "T2" {
		t.Fatalf("Mismatches(since, kind) = %+v, %v", some, err)
	}
}
