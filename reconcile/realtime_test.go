package reconcile

import (
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// run passes signals through the pipeline (to the end of input: every timer runs, grace
// included) and returns the mismatches by id.
func run(t *testing.T, grace time.Duration, signals []Signal) map[string]surge.Mismatch {
	t.Helper()
	p, src := stream.New("test", stream.Config{OutOfOrderness: OutOfOrderness}, func(s Signal) int64 { return s.At })
	got := map[string]surge.Mismatch{}
	stream.To(Build(src, grace), stream.SinkFunc[surge.Mismatch](func(_ uint64, _ int64, m surge.Mismatch) error {
		if _, dup := got[m.ID]; dup {
			t.Errorf("mismatch %s raised twice", m.ID)
		}
		got[m.ID] = m
		return nil
	}))
	if err := p.RunSlice(context.Background(), signals); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestEveryKindOfMismatchIsRaisedOnceAndACleanTransactionNever(t *testing.T) {
	const s = 1000
	pay := func(txn string, order int64, amount int64, outcome, notify string, at int64) Signal {
		return Signal{Kind: sigPayment, Txn: txn, Order: order, Amount: amount, Outcome: outcome, Notify: notify, At: at}
	}
	created := func(txn string, order, amount, at int64) Signal {
		return Signal{Kind: sigCreated, Txn: txn, Order: order, Amount: amount, At: at}
	}
	confirm := func(txn string, order, at int64) Signal {
		return Signal{Kind: sigStock, Txn: txn, Order: order, Amount: 1, Outcome: surge.StockConfirm, At: at}
	}
	signals := []Signal{
		// clean: created, paid (its notification twice, as providers resend), confirmed, refunded
		created("clean", 1, 500, 1*s), pay("clean", 1, 500, surge.PaymentIgnored, "c-1", 2*s), pay("clean", 1, 500, surge.PaymentApplied, "c-2", 2*s),
		pay("clean", 1, 500, surge.PaymentDuplicate, "c-2", 3*s), confirm("clean", 1, 3*s), {Kind: sigRefund, Txn: "clean", Order: 1, Amount: 200, At: 4 * s},
		// a payment whose order Surge does not have
		{Kind: sigUnmatched, Txn: "ghost", Order: 2, Amount: 300, Notify: "g-1", At: 1 * s},
		// paid twice
		created("twice", 3, 700, 1*s), pay("twice", 3, 700, surge.PaymentApplied, "t-2", 2*s), pay("twice", 3, 700, surge.PaymentDuplicate, "t-3", 3*s), confirm("twice", 3, 3*s),
		// a wrong amount
		created("wrong", 4, 900, 1*s), pay("wrong", 4, 901, surge.PaymentMismatch, "w-2", 2*s),
		// paid after it was cancelled
		created("late", 5, 400, 1*s), pay("late", 5, 400, surge.PaymentRefundDue, "l-2", 9*s),
		// money of a payment after the cancel, given back before it was judged: resolved, and
		// its refund is no mismatch of its own
		created("given-back", 8, 400, 1*s), pay("given-back", 8, 400, surge.PaymentRefundDue, "gb-2", 2*s),
		{Kind: sigRefund, Txn: "given-back", Order: 8, Amount: 400, At: 5 * s},
		// stock confirmed with no payment, and a refund with none
		created("stock", 6, 100, 1*s), confirm("stock", 6, 2*s),
		created("refund", 7, 100, 1*s), {Kind: sigRefund, Txn: "refund", Order: 7, Amount: 100, At: 2 * s},
		// an order's refund long after its payment, on a transaction no longer followed: nothing
		{Kind: sigRefund, Ordered: true, Txn: "old", Order: 9, Amount: 100, At: 3 * s},
		{Kind: sigTick, At: 200 * s},
	}
	got := run(t, 10*time.Second, signals)
	want := []string{"payment_without_order:ghost", "paid_twice:twice", "amount_mismatch:wrong", "paid_after_cancel:late",
		"stock_without_payment:stock", "refund_without_payment:refund"}
	var ids []string
	for id := range got {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	sort.Strings(want)
	if len(ids) != len(want) {
		t.Fatalf("raised %v; want %v", ids, want)
	}
	for i := range ids {
		if ids[i] != want[i] {
			t.Fatalf("raised %v; want %v", ids, want)
		}
	}
	if m := got["paid_twice:twice"]; m.Amount != 700 || m.OrderID != 3 {
		t.Fatalf("paid twice: %+v; want 700 at stake", m)
	}
	if m := got["paid_after_cancel:late"]; m.Amount != 400 || !m.RaisedAt.Equal(time.UnixMilli(19*s).UTC()) {
		t.Fatalf("paid after cancel: %+v; want 400, raised at grace after its last record", m)
	}
	if m := got["payment_without_order:ghost"]; m.Amount != 300 {
		t.Fatalf("payment without order: %+v", m)
	}
}

func TestAPaymentThatCatchesUpWithinGraceIsNoMismatch(t *testing.T) {
	const s = 1000
	got := run(t, 10*time.Second, []Signal{
		{Kind: sigStock, Txn: "T", Order: 1, Amount: 1, Outcome: surge.StockConfirm, At: 1 * s},
		{Kind: sigPayment, Txn: "T", Order: 1, Amount: 5, Outcome: surge.PaymentApplied, Notify: "n", At: 8 * s},
		{Kind: sigCreated, Txn: "T", Order: 1, Amount: 5, At: 9 * s},
	})
	if len(got) != 0 {
		t.Fatalf("raised %v for records that came out of order within grace", got)
	}
}

func TestDecodeSignalsReadsSurgesEventsAndSkipsTheRest(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	enc := func(kind, key string, data any) []byte {
		b, err := json.Marshal(surge.Event{ID: kind + ":" + key, Kind: kind, At: at, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		data []byte
		want []Signal
	}{
		{enc(surge.EventOrdersCreated, "1", []surge.Order{{ID: 1, TxnID: "T1", Amount: surge.Money{Amount: 5, Currency: "CNY"}}}),
			[]Signal{{Kind: sigCreated, Txn: "T1", Order: 1, Amount: 5, At: at.UnixMilli()}}},
		{enc(surge.EventPaymentsRecorded, "b", []surge.Payment{{NotifyID: "n", TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: 5, Currency: "CNY"}, Outcome: "applied"}}),
			[]Signal{{Kind: sigPayment, Txn: "T1", Order: 1, Amount: 5, Outcome: "applied", Notify: "n", At: at.UnixMilli()}}},
		{enc(surge.EventStockSettled, "b", []surge.StockMove{{TxnID: "T1", OrderID: 1, Op: "confirm", Units: 2}}),
			[]Signal{{Kind: sigStock, Txn: "T1", Order: 1, Amount: 2, Outcome: "confirm", At: at.UnixMilli()}}},
		{enc(surge.EventRefundSucceeded, "R1", surge.Refund{ID: "R1", TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: 3, Currency: "CNY"}}),
			[]Signal{{Kind: sigRefund, Txn: "T1", Order: 1, Amount: 3, At: at.UnixMilli()}}},
		{[]byte(`{"id":"tick-1","kind":"live.tick","at":"2026-12-07T10:00:00Z","data":null}`), []Signal{{Kind: sigTick, At: at.UnixMilli()}}},
		{enc(surge.EventPurchaseAttempts, "x", []int{1, 2}), nil},
		{enc(surge.EventOrdersPaid, "x", "not even orders"), nil},
	}
	for i, c := range cases {
		got, err := DecodeSignals(c.data)
		if err != nil || len(got) != len(c.want) {
			t.Fatalf("case %d: %+v, %v; want %+v", i, got, err, c.want)
		}
		for j := range got {
			if got[j].Kind != c.want[j].Kind || got[j].Txn != c.want[j].Txn || got[j].Amount != c.want[j].Amount || got[j].At != c.want[j].At ||
				got[j].Outcome != c.want[j].Outcome || got[j].Order != c.want[j].Order {
				t.Fatalf("case %d: %+v; want %+v", i, got[j], c.want[j])
			}
		}
	}
	for _, bad := range []string{`{`, `{"id":"orders.created:1","kind":"orders.created","at":"x","data":[]}`, `{"id":"orders.created:1","kind":"orders.created","at":"2026-12-07T10:00:00Z","data":{}}`} {
		if _, err := DecodeSignals([]byte(bad)); err == nil {
			t.Errorf("DecodeSignals(%s) read", bad)
		}
	}
}

func FuzzDecodeSignals(f *testing.F) {
	f.Add([]byte(`{"id":"orders.created:1","kind":"orders.created","at":"2026-12-07T10:00:00Z","data":[{"id":"1","txn_id":"T"}]}`))
	f.Add([]byte(`{"id":"tick-1","kind":"live.tick","at":"2026-12-07T10:00:00Z","data":null}`))
	f.Add([]byte(`{"kind":"payments.recorded","at":"2026-12-07T10:00:00Z","data":[{"txn_id":"T","amount":{"amount":1}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		DecodeSignals(data) // never panics; what it reads is checked above
	})
}
