package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/storetest"
)

// day is a scenario: Surge's records in a real store and the provider's ledger of the day.
type day struct {
	t      *testing.T
	ctx    context.Context
	db     *sqlite.DB
	ledger *payment.LedgerWriter
	buf    bytes.Buffer
	at     time.Time
	n      int64
}

const theDay = "2026-12-01"

func newDay(t *testing.T) *day {
	d := &day{t: t, ctx: context.Background(), db: storetest.SQLite(t), at: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	lw, err := payment.NewLedgerWriter(&d.buf, theDay)
	if err != nil {
		t.Fatal(err)
	}
	d.ledger = lw
	return d
}

// order makes a pending order of amount.
func (d *day) order(amount int64) *surge.Order {
	d.t.Helper()
	d.n++
	id := 1_000_000 + d.n
	o := &surge.Order{ID: id, TxnID: payment.TxnID(id), RequestID: "r", UserID: 7, SessionID: 1, ItemID: id, SKUID: 2, MerchantID: 3,
		Quantity: 1, Amount: surge.Money{Amount: amount, Currency: "CNY"}, State: surge.OrderPendingPayment, CreatedAt: d.at, ExpiresAt: d.at.Add(time.Hour)}
	if _, err := d.db.CreateOrder(d.ctx, o); err != nil {
		d.t.Fatal(err)
	}
	return o
}

// charge writes a ledger line of a charge.
func (d *day) charge(o *surge.Order, amount int64) {
	d.t.Helper()
	d.n++
	if err := d.ledger.Append(payment.LedgerEntry{ProviderID: fmt.Sprint("p", d.n), Type: payment.LedgerTypePayment, TxnID: o.TxnID,
		OrderID: o.ID, Amount: surge.Money{Amount: amount, Currency: "CNY"}, At: d.at}); err != nil {
		d.t.Fatal(err)
	}
}

// notify records a paid notification at Surge.
func (d *day) notify(o *surge.Order, id string, amount int64) string {
	d.t.Helper()
	p := &surge.Payment{NotifyID: id, TxnID: o.TxnID, OrderID: o.ID, Amount: surge.Money{Amount: amount, Currency: "CNY"},
		Status: surge.PaymentStatusPaid, PaidAt: d.at, ReceivedAt: d.at}
	if _, err := d.db.ApplyPayments(d.ctx, []*surge.Payment{p}); err != nil {
		d.t.Fatal(err)
	}
	return p.Outcome
}

func (d *day) paid(amount int64) *surge.Order {
	o := d.order(amount)
	d.charge(o, amount)
	if got := d.notify(o, o.TxnID+"-2", amount); got != surge.PaymentApplied {
		d.t.Fatalf("payment outcome %s", got)
	}
	return o
}

func (d *day) refund(o *surge.Order, req string) *surge.Refund {
	d.t.Helper()
	r := &surge.Refund{ID: "R-" + req, OrderID: o.ID, RequestID: req, By: 1, CreatedAt: d.at}
	if _, err := d.db.CreateRefund(d.ctx, r); err != nil {
		d.t.Fatal(err)
	}
	return r
}

func (d *day) refundLine(o *surge.Order, r *surge.Refund) {
	d.t.Helper()
	d.n++
	if err := d.ledger.Append(payment.LedgerEntry{ProviderID: fmt.Sprint("p", d.n), Type: payment.LedgerTypeRefund, TxnID: o.TxnID,
		OrderID: o.ID, RefundID: r.ID, Amount: r.Amount, At: d.at}); err != nil {
		d.t.Fatal(err)
	}
}

func (d *day) run(runEntries int) *Report {
	d.t.Helper()
	if err := d.ledger.Close(); err != nil {
		d.t.Fatal(err)
	}
	daily := &Daily{Store: d.db, Refunds: d.db, TempDir: d.t.TempDir(), RunEntries: runEntries}
	rep, err := daily.Run(d.ctx, theDay, bytes.NewReader(d.buf.Bytes()), nil)
	if err != nil {
		d.t.Fatal(err)
	}
	return rep
}

func TestACleanDayReportsNothing(t *testing.T) {
	for _, runEntries := range []int{0, 3} { // in memory, and sorted in runs on disk
		d := newDay(t)
		for i := range 40 {
			o := d.paid(int64(100 + i))
			if i%5 == 0 { // refunded, its callback in
				r := d.refund(o, fmt.Sprint("rf", i))
				if _, _, _, err := d.db.CompleteRefund(d.ctx, r.ID, "n", r.TxnID, r.Amount, d.at); err != nil {
					t.Fatal(err)
				}
				d.refundLine(o, r)
			}
			if i%7 == 0 { // its notification sent twice, as providers do
				d.notify(o, o.TxnID+"-2", o.Amount.Amount)
			}
		}
		rep := d.run(runEntries)
		if b, _ := json.Marshal(rep); !bytes.Contains(b, []byte(`"findings":[]`)) {
			t.Errorf("a clean day's report lists its findings as %s; want []", b)
		}
		if !rep.Clean() || rep.PaymentCountDiff != 0 || rep.PaymentAmountDiff != 0 || rep.RefundCountDiff != 0 || rep.RefundAmountDiff != 0 ||
			rep.Ledger.Payments != 40 || rep.Ledger.Refunds != 8 {
			t.Fatalf("a clean day: %s%+v", rep.Summary(), rep.Findings)
		}
	}
}

func TestEveryKindOfFindingIsFoundWithExactCountsAndAmounts(t *testing.T) {
	for _, runEntries := range []int{0, 4} {
		d := newDay(t)
		for i := range 30 {
			d.paid(int64(1000 + i))
		}
		// missing callbacks: charged, never heard of (3, 100 each)
		for range 3 {
			d.charge(d.order(100), 100)
		}
		// wrong amounts: charged one more, Surge recorded the mismatch (2: 201 and 301)
		for _, a := range []int64{200, 300} {
			o := d.order(a)
			d.charge(o, a+1)
			if got := d.notify(o, o.TxnID+"-2", a+1); got != surge.PaymentMismatch {
				t.Fatalf("outcome %s", got)
			}
		}
		// charged twice (2: the extra 400 and 500)
		for _, a := range []int64{400, 500} {
			o := d.paid(a)
			d.charge(o, a)
			d.notify(o, o.TxnID+"-3", a)
		}
		// paid after the order was cancelled (2: 600 and 700)
		for _, a := range []int64{600, 700} {
			o := d.order(a)
			if _, err := d.db.Transition(d.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelTimeout, d.at); err != nil {
				t.Fatal(err)
			}
			d.charge(o, a)
			if got := d.notify(o, o.TxnID+"-2", a); got != surge.PaymentRefundDue {
				t.Fatalf("outcome %s", got)
			}
		}
		// Surge applied a payment the ledger does not have (800)
		noCharge := d.order(800)
		d.notify(noCharge, noCharge.TxnID+"-2", 800)
		// refunds: refunded with no callback (900); unknown (50); Surge's with no ledger line (1100)
		waiting := d.paid(900)
		d.refundLine(waiting, d.refund(waiting, "w"))
		stranger := d.paid(1000)
		d.refundLine(stranger, &surge.Refund{ID: "R-never", Amount: surge.Money{Amount: 50, Currency: "CNY"}})
		lost := d.paid(1100)
		r := d.refund(lost, "l")
		if _, _, _, err := d.db.CompleteRefund(d.ctx, r.ID, "n", r.TxnID, r.Amount, d.at); err != nil {
			t.Fatal(err)
		}
		rep := d.run(runEntries)
		want := map[string]KindSum{
			FindMissingCallback: {3, 300}, FindAmountMismatch: {2, 502}, FindDuplicateCharge: {2, 900}, FindPaidButCancelled: {2, 1300},
			FindMissingAtProvider: {1, 800}, FindRefundCallback: {1, 900}, FindRefundUnknown: {1, 50}, FindRefundNotAtProv: {1, 1100},
		}
		if len(rep.Kinds) != len(want) {
			t.Fatalf("kinds %v; want %v", rep.Kinds, want)
		}
		for k, w := range want {
			if rep.Kinds[k] != w {
				t.Errorf("%s: %+v; want %+v", k, rep.Kinds[k], w)
			}
		}
		if rep.RefundsDue != 502+900+1300 || len(rep.Findings) != 13 {
			t.Errorf("refunds due %d, %d findings; want %d, 13", rep.RefundsDue, len(rep.Findings), 502+900+1300)
		}
		// ledger 30+3+2+4+2+3 charges, Surge's paid notifications of the day
		if rep.Ledger.Payments != 44 || rep.Surge.Payments != 30+2+4+2+1+3 || rep.PaymentCountDiff != 44-42 {
			t.Errorf("totals: ledger %+v, Surge %+v, count diff %d", rep.Ledger, rep.Surge, rep.PaymentCountDiff)
		}
		for _, f := range rep.Findings {
			if f.Kind == FindMissingCallback && (f.ProviderID == "" || f.PaidAt == nil || f.Action != ActionRedrive) {
				t.Errorf("missing callback finding without its ledger line: %+v", f)
			}
		}
		if !strings.Contains(rep.Summary(), "refunds due: 2702") {
			t.Errorf("summary: %s", rep.Summary())
		}
	}
}

func TestABadLedgerIsRefusedWhole(t *testing.T) {
	d := newDay(t)
	d.paid(100)
	d.paid(200)
	if err := d.ledger.Close(); err != nil {
		t.Fatal(err)
	}
	full := d.buf.Bytes()
	daily := &Daily{Store: d.db, Refunds: d.db, TempDir: t.TempDir(), RunEntries: 1}
	for name, c := range map[string]struct {
		data []byte
		day  string
	}{
		"truncated":     {full[:len(full)-20], theDay},
		"no trailer":    {full[:bytes.LastIndex(full, []byte("#end"))], theDay},
		"another day":   {full, "2026-12-02"},
		"not a ledger":  {[]byte("order,amount\n1,2\n"), theDay},
		"a bad day":     {full, "yesterday"},
		"a line broken": {bytes.Replace(full, []byte(",payment,"), []byte(",pay ment,"), 1), theDay},
	} {
		if _, err := daily.Run(d.ctx, c.day, bytes.NewReader(c.data), nil); surge.ErrorCode(err) != surge.EINVALID {
			t.Errorf("%s: %v; want EINVALID", name, err)
		}
	}
}

func TestTheReportReadsAsAPage(t *testing.T) {
	rep := &Report{Day: theDay, Kinds: map[string]KindSum{FindDuplicateCharge: {1, 12345}}, RefundsDue: 12345,
		Findings: []Finding{{ID: "duplicate_charge:T<1>", Kind: FindDuplicateCharge, TxnID: "T<1>", Amount: 12345, Currency: "CNY", Action: ActionRefund}}}
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Reconciliation of 2026-12-01", "123.45", "T&lt;1&gt;", "duplicate_charge", "refunds due 123.45"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page lacks %q:\n%s", want, b.String())
		}
	}
	if minor(-5) != "-0.05" || minor(100) != "1.00" {
		t.Errorf("minor(-5) = %s, minor(100) = %s", minor(-5), minor(100))
	}
}

func TestTheScheduleReconcilesYesterdayOnce(t *testing.T) {
	d := newDay(t)
	d.paid(100)
	d.charge(d.order(300), 300) // a callback that never came
	if err := d.ledger.Close(); err != nil {
		t.Fatal(err)
	}
	opened := make(chan string, 10)
	ledgers := func(_ context.Context, day string) (io.ReadCloser, error) {
		opened <- day
		if day != theDay {
			return nil, surge.Errorf(surge.ENOTFOUND, "no ledger of %s", day)
		}
		return io.NopCloser(bytes.NewReader(d.buf.Bytes())), nil
	}
	now := func() time.Time { return time.Date(2026, 12, 2, 0, 31, 0, 0, time.UTC) }
	svc := NewService(d.db, &Daily{Store: d.db, Refunds: d.db, TempDir: t.TempDir(), Now: now}, nil, ledgers,
		slog.New(slog.NewTextHandler(io.Discard, nil)), now)
	ctx, cancel := context.WithCancel(d.ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.RunSchedule(ctx, 30*time.Minute) }()
	if got := <-opened; got != theDay {
		t.Fatalf("the schedule opened the ledger of %s; want %s", got, theDay)
	}
	var rep *Report
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if rep, err = svc.Report(d.ctx, surge.Actor{Role: surge.RoleOperator}, theDay); err == nil || time.Now().After(deadline) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	cancel()
	<-done
	if rep.Kinds[FindMissingCallback].Count != 1 || len(opened) != 0 {
		t.Fatalf("scheduled report %s; ledgers opened again %d times", rep.Summary(), len(opened))
	}
	if _, err := svc.Report(d.ctx, surge.Actor{Role: surge.RoleShopper}, theDay); surge.ErrorCode(err) != surge.EFORBIDDEN {
		t.Fatalf("a shopper reading a report: %v", err)
	}
}

// The money a finding gives back is what no order keeps, once: a cancelled order charged
// twice is one refund of both charges; a stray second charge gives back the stray; a charge
// above the applied payment gives back the difference; a second charge of an order paid the day
// before gives back the charge; and a finding whose refund was asked (even days later) is
// resolved.
func TestFindingsGiveBackWhatNoOrderKeeps(t *testing.T) {
	d := newDay(t)
	cancelled := d.order(600)
	if _, err := d.db.Transition(d.ctx, cancelled.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelTimeout, d.at); err != nil {
		t.Fatal(err)
	}
	d.charge(cancelled, 600)
	d.charge(cancelled, 600)
	d.notify(cancelled, cancelled.TxnID+"-2", 600)
	d.notify(cancelled, cancelled.TxnID+"-3", 600)
	stray := d.paid(600)
	d.charge(stray, 50)
	more := d.order(600)
	d.charge(more, 650)
	d.notify(more, more.TxnID+"-2", 600) // the provider notified 600, charged 650
	yesterday := d.order(700)
	p := &surge.Payment{NotifyID: yesterday.TxnID + "-2", TxnID: yesterday.TxnID, OrderID: yesterday.ID, Amount: yesterday.Amount,
		Status: surge.PaymentStatusPaid, PaidAt: d.at.Add(-30 * time.Hour), ReceivedAt: d.at.Add(-30 * time.Hour)}
	if _, err := d.db.ApplyPayments(d.ctx, []*surge.Payment{p}); err != nil {
		t.Fatal(err)
	}
	d.charge(yesterday, 700)
	d.notify(yesterday, yesterday.TxnID+"-3", 700)
	repaired := d.order(800)
	d.charge(repaired, 801)
	d.notify(repaired, repaired.TxnID+"-2", 801)
	r := &surge.Refund{ID: surge.PaymentRefundID(repaired.ID, FindAmountMismatch+":"+repaired.TxnID), OrderID: repaired.ID, TxnID: repaired.TxnID,
		RequestID: FindAmountMismatch + ":" + repaired.TxnID, Amount: surge.Money{Amount: 801, Currency: "CNY"}, By: 1, CreatedAt: d.at.Add(72 * time.Hour)}
	if _, err := d.db.CreatePaymentRefund(d.ctx, r); err != nil {
		t.Fatal(err)
	}
	rep := d.run(0)
	want := map[string]Finding{
		cancelled.TxnID: {Kind: FindPaidButCancelled, Amount: 1200}, stray.TxnID: {Kind: FindDuplicateCharge, Amount: 50},
		more.TxnID: {Kind: FindAmountMismatch, Amount: 50}, yesterday.TxnID: {Kind: FindDuplicateCharge, Amount: 700},
	}
	if len(rep.Findings) != len(want) {
		t.Fatalf("findings %+v; want %v", rep.Findings, want)
	}
	for _, f := range rep.Findings {
		if w := want[f.TxnID]; f.Kind != w.Kind || f.Amount != w.Amount || f.Action != ActionRefund {
			t.Errorf("%s: %s of %d; want %s of %d", f.TxnID, f.Kind, f.Amount, w.Kind, w.Amount)
		}
	}
	if rep.RefundsDue != 1200+50+50+700 {
		t.Errorf("refunds due %d", rep.RefundsDue)
	}
}
