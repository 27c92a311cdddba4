package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

// Kinds of finding of the daily reconciliation against the provider's ledger.
const (
	FindMissingCallback   = "missing_callback"        // the provider charged; Surge never heard of it
	FindAmountMismatch    = "amount_mismatch"         // a charge of another amount than the order's
	FindDuplicateCharge   = "duplicate_charge"        // a transaction charged more than once
	FindPaidButCancelled  = "paid_but_cancelled"      // a charge of an order cancelled before it came
	FindMissingAtProvider = "missing_at_provider"     // Surge applied a payment the ledger does not have
	FindRefundCallback    = "refund_missing_callback" // the provider refunded; Surge still waits for its callback
	FindRefundUnknown     = "refund_unknown"          // the provider refunded what Surge never asked for
	FindRefundAmount      = "refund_amount_mismatch"  // a refund of another amount than Surge asked
	FindRefundNotAtProv   = "refund_not_at_provider"  // Surge recorded a refund the ledger does not have
	FindStockDrift        = "stock_drift"             // a session's stock and orders disagree
)

// Repair actions.
const (
	ActionRedrive        = "redrive_callback" // apply the ledger's payment as its callback would have
	ActionRefund         = "refund"           // give the money back through the provider
	ActionCompleteRefund = "complete_refund"  // apply the ledger's refund as its callback would have
	ActionRelease        = "release"          // settle the stock of cancelled orders not yet released
	ActionEscalate       = "escalate"         // no automatic repair: a person asks the provider
)

// MaxReportFindings bounds the findings a report lists (each repairable); the counts and
// amounts by kind cover them all.
const MaxReportFindings = 10_000

// Finding is one disagreement of the day, with the repair it calls for.
type Finding struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	TxnID      string `json:"txn_id"`
	OrderID    int64  `json:"order_id,string"`
	Amount     int64  `json:"amount"` // minor units at stake
	Currency   string `json:"currency"`
	Detail     string `json:"detail"`
	Action     string `json:"action"`
	ProviderID string `json:"provider_id,omitempty"` // the ledger line it is about
	RefundID   string `json:"refund_id,omitempty"`
	// PaidAt is the provider's time of the ledger line (what a re-driven callback carries).
	PaidAt   *time.Time    `json:"paid_at,omitempty"`
	Repaired *surge.Repair `json:"repaired,omitempty"`
}

// KindSum counts the findings of a kind.
type KindSum struct {
	Count  int64 `json:"count"`
	Amount int64 `json:"amount"`
}

// Totals are a side's money movements of the day.
type Totals struct {
	Payments      int64 `json:"payments"`
	PaymentsMinor int64 `json:"payments_minor"`
	Refunds       int64 `json:"refunds"`
	RefundsMinor  int64 `json:"refunds_minor"`
}

// Report is a day's reconciliation.
type Report struct {
	Day         string    `json:"day"`
	GeneratedAt time.Time `json:"generated_at"`
	Seconds     float64   `json:"seconds"`
	// Ledger is what the provider's file states (its trailer, checked against its lines);
	// Surge what Surge recorded of the same day.
	Ledger Totals `json:"ledger"`
	Surge  Totals `json:"surge"`
	// CountDiff and AmountDiff are ledger less Surge, payments and refunds apart.
	PaymentCountDiff  int64              `json:"payment_count_diff"`
	PaymentAmountDiff int64              `json:"payment_amount_diff"`
	RefundCountDiff   int64              `json:"refund_count_diff"`
	RefundAmountDiff  int64              `json:"refund_amount_diff"`
	RefundsDue        int64              `json:"refunds_due"` // money to give back: the refund findings' amounts
	Kinds             map[string]KindSum `json:"kinds"`
	Findings          []Finding          `json:"findings"`
	Unlisted          int64              `json:"unlisted"` // findings past MaxReportFindings
}

// Clean reports whether the day has nothing to look at.
func (r *Report) Clean() bool { return len(r.Findings) == 0 && r.Unlisted == 0 }

// Refunds reads refunds by id, for a ledger refund of a refund created before the window.
type Refunds interface {
	RefundByID(ctx context.Context, id string) (*surge.Refund, error)
}

// Daily compares a day's ledger with Surge's records.
type Daily struct {
	Store   surge.ReconcileStore
	Refunds Refunds
	// Drift finds the stock drift of the sale sessions open in [from, to); nil skips it.
	Drift func(ctx context.Context, from, to time.Time) ([]Finding, error)
	// TempDir holds the sorted runs of a long ledger ("" for the system's); RunEntries is how
	// many lines are sorted in memory at once (DefaultRunEntries when 0).
	TempDir    string
	RunEntries int
	Now        func() time.Time
}

// Run reconciles day against the ledger read from r. The ledger is read whole (and refused
// whole when it is malformed, truncated or another day's: EINVALID) before anything is judged;
// Surge's records are read in transaction order alongside it, so memory does not grow with the
// day. progress, when set, is told how far it got.
func (d *Daily) Run(ctx context.Context, day string, r io.Reader, progress func(stage string, n int64)) (*Report, error) {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	start := now()
	dayStart, err := payment.ParseLedgerDay(day)
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = func(string, int64) {}
	}
	progress("reading ledger", 0)
	led, totals, err := sortLedger(r, day, tempDir(d.TempDir), d.RunEntries)
	if err != nil {
		return nil, err
	}
	defer led.Close()
	progress("ledger read", totals.Lines)
	rep := &Report{Day: day, Kinds: map[string]KindSum{}, Findings: []Finding{},
		Ledger: Totals{Payments: totals.Payments, PaymentsMinor: totals.PaymentsMinor, Refunds: totals.Refunds, RefundsMinor: totals.RefundsMinor}}
	j := &judge{ctx: ctx, d: d, rep: rep, from: dayStart, to: dayStart.Add(24 * time.Hour)}
	next, err := led.Next()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	more := err == nil
	var joined int64
	// take returns the ledger's entries of txn, and first hands on those of the transactions
	// before it, which Surge has no records of.
	take := func(txn string) ([]payment.LedgerEntry, error) {
		var group []payment.LedgerEntry
		for more && (txn == "" || next.TxnID <= txn) {
			if len(group) > 0 && group[0].TxnID != next.TxnID {
				if group[0].TxnID == txn {
					break
				}
				if err := j.txn(group[0].TxnID, group, nil); err != nil {
					return nil, err
				}
				group = group[:0]
			}
			group = append(group, next)
			if next, err = led.Next(); errors.Is(err, io.EOF) {
				more = false
			} else if err != nil {
				return nil, err
			}
		}
		if len(group) > 0 && group[0].TxnID != txn {
			err := j.txn(group[0].TxnID, group, nil)
			return nil, err
		}
		return group, nil
	}
	// Surge's records of the day and the day before (a ledger holds the day before's movements
	// when that day was closed early): only movements of the day are reported missing.
	err = d.Store.MoneyRecords(ctx, dayStart.Add(-24*time.Hour), dayStart.Add(24*time.Hour), func(rec *surge.TxnRecords) error {
		group, err := take(rec.TxnID)
		if err != nil {
			return err
		}
		if joined++; joined%1_000_000 == 0 {
			progress("transactions", joined)
		}
		return j.txn(rec.TxnID, group, rec)
	})
	if err != nil {
		return nil, err
	}
	if _, err := take(""); err != nil { // the ledger's transactions after Surge's last
		return nil, err
	}
	if d.Drift != nil {
		drift, err := d.Drift(ctx, dayStart, dayStart.Add(24*time.Hour))
		if err != nil {
			return nil, err
		}
		for _, f := range drift {
			j.add(f)
		}
	}
	rep.PaymentCountDiff = rep.Ledger.Payments - rep.Surge.Payments
	rep.PaymentAmountDiff = rep.Ledger.PaymentsMinor - rep.Surge.PaymentsMinor
	rep.RefundCountDiff = rep.Ledger.Refunds - rep.Surge.Refunds
	rep.RefundAmountDiff = rep.Ledger.RefundsMinor - rep.Surge.RefundsMinor
	rep.GeneratedAt = now().UTC()
	rep.Seconds = now().Sub(start).Seconds()
	progress("done", totals.Lines)
	return rep, nil
}

// judge holds a run's state.
type judge struct {
	ctx      context.Context
	d        *Daily
	rep      *Report
	from, to time.Time // the day
}

func (j *judge) inDay(t time.Time) bool { return !t.Before(j.from) && t.Before(j.to) }

func (j *judge) add(f Finding) {
	k := j.rep.Kinds[f.Kind]
	k.Count++
	k.Amount += f.Amount
	j.rep.Kinds[f.Kind] = k
	if f.Action == ActionRefund {
		j.rep.RefundsDue += f.Amount
	}
	if len(j.rep.Findings) < MaxReportFindings {
		j.rep.Findings = append(j.rep.Findings, f)
	} else {
		j.rep.Unlisted++
	}
}

// txn judges one transaction: its ledger lines and Surge's records (nil when Surge has none in
// the window).
func (j *judge) txn(txn string, lines []payment.LedgerEntry, rec *surge.TxnRecords) error {
	var charges, refunds []payment.LedgerEntry
	for _, e := range lines {
		if e.Type == payment.LedgerTypePayment {
			charges = append(charges, e)
		} else {
			refunds = append(refunds, e)
		}
	}
	if rec == nil {
		rec = &surge.TxnRecords{TxnID: txn}
	}
	// Surge's side of the day: each paid notification once, and the refunds that succeeded.
	var pays []surge.Payment
	for _, p := range rec.Payments {
		if !slices.ContainsFunc(pays, func(q surge.Payment) bool { return q.NotifyID == p.NotifyID }) {
			pays = append(pays, p)
		}
	}
	for _, p := range pays {
		if j.inDay(p.PaidAt) {
			j.rep.Surge.Payments++
			j.rep.Surge.PaymentsMinor += p.Amount.Amount
		}
	}
	for _, r := range rec.Refunds {
		if r.State == surge.RefundSucceeded && r.SucceededAt != nil && j.inDay(*r.SucceededAt) {
			j.rep.Surge.Refunds++
			j.rep.Surge.RefundsMinor += r.Amount.Amount
		}
	}
	order := rec.OrderID
	currency := ""
	for _, e := range lines {
		order, currency = e.OrderID, e.Amount.Currency
	}
	for _, p := range pays {
		currency = p.Amount.Currency
	}
	mk := func(kind, action, detail string, amount int64) Finding {
		return Finding{ID: kind + ":" + txn, Kind: kind, TxnID: txn, OrderID: order, Amount: amount, Currency: currency, Detail: detail, Action: action}
	}
	// a refund finding made good already: its payment refund is asked (a repair's refund id is
	// made from the finding's id)
	refunded := func(f Finding) (bool, error) {
		id := surge.PaymentRefundID(f.OrderID, f.ID)
		if slices.ContainsFunc(rec.Refunds, func(r surge.Refund) bool { return r.ID == id && r.State != surge.RefundFailed }) {
			return true, nil
		}
		if j.d.Refunds == nil {
			return false, nil
		}
		r, err := j.d.Refunds.RefundByID(j.ctx, id)
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			return false, nil
		}
		return err == nil && r.State != surge.RefundFailed, err
	}
	var charged int64
	for _, c := range charges {
		charged += c.Amount.Amount
	}
	outcomes := map[string]int{}
	applied := int64(-1) // the amount of the payment Surge applied, when it is one of this ledger's charges
	for _, p := range pays {
		outcomes[p.Outcome]++
		if p.Outcome == surge.PaymentApplied && (j.inDay(p.PaidAt) || slices.ContainsFunc(charges, func(c payment.LedgerEntry) bool {
			return c.At.Sub(p.PaidAt).Abs() <= 2*time.Second // the day before's, in a file closed early
		})) {
			applied = p.Amount.Amount
		}
	}
	var due *Finding // money the provider took that no order keeps: one finding, one refund
	switch {
	case len(charges) > 0 && len(pays) == 0:
		// Surge never heard of these charges: re-drive the first; what is left over is judged
		// on the next run, once it is applied.
		f := mk(FindMissingCallback, ActionRedrive, fmt.Sprintf("the provider charged %d at %s; no callback reached Surge", charges[0].Amount.Amount,
			charges[0].At.Format(time.RFC3339)), charges[0].Amount.Amount)
		at := charges[0].At
		f.ProviderID, f.PaidAt = charges[0].ProviderID, &at
		j.add(f)
	case len(charges) == 0 && len(pays) > 0:
		var sum int64
		inDay := false
		for _, p := range pays {
			sum += p.Amount.Amount
			inDay = inDay || j.inDay(p.PaidAt)
		}
		if inDay {
			j.add(mk(FindMissingAtProvider, ActionEscalate, fmt.Sprintf("%d payments recorded by Surge are not in the provider's ledger", len(pays)), sum))
		}
	case len(charges) > 0 && applied >= 0: // the order kept the applied payment: the rest goes back
		switch extra := charged - applied; {
		case extra > 0 && len(charges) >= 2:
			f := mk(FindDuplicateCharge, ActionRefund, fmt.Sprintf("the provider charged the transaction %d times, %d in all, for a payment of %d", len(charges), charged, applied), extra)
			due = &f
		case extra > 0:
			f := mk(FindAmountMismatch, ActionRefund, fmt.Sprintf("the provider charged %d for a payment Surge applied as %d", charged, applied), extra)
			due = &f
		case extra < 0:
			j.add(mk(FindAmountMismatch, ActionEscalate, fmt.Sprintf("the provider charged %d for a payment Surge applied as %d", charged, applied), -extra))
		}
	case len(charges) > 0: // no payment applied in the window: every charge goes back
		kind, detail := FindAmountMismatch, fmt.Sprintf("the provider charged %d; it is not the order's amount, and the order was not paid", charged)
		switch {
		case outcomes[surge.PaymentRefundDue] > 0:
			kind, detail = FindPaidButCancelled, "a charge of an order cancelled before its payment came: the money goes back"
		case outcomes[surge.PaymentDuplicate] > 0:
			kind, detail = FindDuplicateCharge, fmt.Sprintf("a charge of %d of an order paid before", charged)
		}
		f := mk(kind, ActionRefund, detail, charged)
		due = &f
	}
	if due != nil {
		done, err := refunded(*due)
		if err != nil {
			return err
		}
		if !done {
			j.add(*due)
		}
	}
	// Refunds: each of the ledger's against Surge's.
	for _, e := range refunds {
		var r *surge.Refund
		for i := range rec.Refunds {
			if rec.Refunds[i].ID == e.RefundID {
				r = &rec.Refunds[i]
			}
		}
		if r == nil && j.d.Refunds != nil { // asked before the window
			got, err := j.d.Refunds.RefundByID(j.ctx, e.RefundID)
			if err != nil && surge.ErrorCode(err) != surge.ENOTFOUND {
				return err
			}
			r = got
		}
		f := mk("", "", "", e.Amount.Amount)
		f.RefundID, f.ProviderID = e.RefundID, e.ProviderID
		at := e.At
		f.PaidAt = &at
		switch {
		case r == nil:
			f.Kind, f.Action, f.Detail = FindRefundUnknown, ActionEscalate, "the provider refunded what Surge never asked for"
		case r.Amount.Amount != e.Amount.Amount:
			f.Kind, f.Action, f.Detail = FindRefundAmount, ActionEscalate, fmt.Sprintf("Surge asked %d; the provider refunded %d", r.Amount.Amount, e.Amount.Amount)
		case r.State == surge.RefundRequested:
			f.Kind, f.Action, f.Detail = FindRefundCallback, ActionCompleteRefund, "the provider refunded; its callback never reached Surge"
		default:
			continue
		}
		f.ID = f.Kind + ":" + txn + ":" + e.RefundID
		j.add(f)
	}
	for _, r := range rec.Refunds {
		if r.State != surge.RefundSucceeded || r.SucceededAt == nil || !j.inDay(*r.SucceededAt) {
			continue
		}
		if !slices.ContainsFunc(refunds, func(e payment.LedgerEntry) bool { return e.RefundID == r.ID }) {
			f := mk(FindRefundNotAtProv, ActionEscalate, "Surge recorded a refund the provider's ledger does not have", r.Amount.Amount)
			f.ID, f.RefundID = f.Kind+":"+txn+":"+r.ID, r.ID
			j.add(f)
		}
	}
	return nil
}

// Find returns a report's finding by id.
func (r *Report) Find(id string) (*Finding, bool) {
	for i := range r.Findings {
		if r.Findings[i].ID == id {
			return &r.Findings[i], true
		}
	}
	return nil, false
}

// Summary is the report in one line per kind, for a terminal.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reconciliation of %s: ledger %d payments (%d), %d refunds (%d); Surge %d payments (%d), %d refunds (%d)\n",
		r.Day, r.Ledger.Payments, r.Ledger.PaymentsMinor, r.Ledger.Refunds, r.Ledger.RefundsMinor,
		r.Surge.Payments, r.Surge.PaymentsMinor, r.Surge.Refunds, r.Surge.RefundsMinor)
	if r.Clean() {
		b.WriteString("clean: nothing to look at\n")
		return b.String()
	}
	kinds := make([]string, 0, len(r.Kinds))
	for k := range r.Kinds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "  %-24s %6d findings, %d at stake\n", k, r.Kinds[k].Count, r.Kinds[k].Amount)
	}
	fmt.Fprintf(&b, "refunds due: %d\n", r.RefundsDue)
	return b.String()
}
