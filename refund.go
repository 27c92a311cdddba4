package surge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// RefundState is where a refund is: asked of the payment provider, or paid back.
type RefundState string

// The refund states.
const (
	RefundRequested RefundState = "requested" // recorded and sent to the provider; its callback is awaited
	RefundSucceeded RefundState = "succeeded" // the provider reported the money paid back
	// RefundFailed: the provider refused it for good (a 4xx answer); its units are refundable
	// again and its vouchers usable again.
	RefundFailed RefundState = "failed"
)

// Bounds of refunds.
const (
	MaxRefundReasonRunes = 200
	MaxRefundReasonBytes = 200
	// MaxRefundsPerOrder bounds the refunds of one order: per line and per unit, and retries
	// with new request ids, never more.
	MaxRefundsPerOrder = 100
)

// RefundLine is what a refund gives back of one line of an order: Line indexes Order.Lines for
// a checkout (a sale's order has the one line 0), Quantity its units, Amount the money
// (minor units) those units paid.
type RefundLine struct {
	Line     int   `json:"line"`
	Quantity int64 `json:"quantity"`
	Amount   int64 `json:"amount"`
	// Vouchers are the codes a voucher line's refund made void.
	Vouchers []string `json:"vouchers,omitempty"`
}

// Refund is money paid back of a paid order, through the payment provider: the whole
// of what is left, or units of its lines. It is recorded as requested, sent to the provider,
// and succeeds when the provider's signed "refunded" notification arrives.
type Refund struct {
	ID        string       `json:"id"` // Surge's refund id, which the provider pays back once
	OrderID   int64        `json:"order_id,string"`
	TxnID     string       `json:"txn_id"`
	RequestID string       `json:"request_id"` // the caller's idempotency key, per order
	Amount    Money        `json:"amount"`
	Lines     []RefundLine `json:"lines"`
	// Whole: it gives back everything the order had left; once it succeeds the order is
	// refunded. A refund of some lines leaves the order as it is, its Refunded grown.
	Whole bool `json:"whole"`
	// Kind is RefundOrder for money an order paid, or RefundPayment for money a payment took
	// that no order kept (a second charge, a wrong amount, a payment of a cancelled order),
	// which reconciliation gives back: it leaves the order as it is.
	Kind        string      `json:"kind"`
	Reason      string      `json:"reason,omitempty"`
	State       RefundState `json:"state"`
	By          int64       `json:"by,string"` // who asked for it
	NotifyID    string      `json:"notify_id,omitempty"`
	CreatedAt   time.Time   `json:"created_at"`
	SucceededAt *time.Time  `json:"succeeded_at,omitempty"`
}

// Refund kinds.
const (
	RefundOrder   = "order"
	RefundPayment = "payment"
)

// RefundStore keeps refunds with the orders they pay back.
type RefundStore interface {
	// CreateRefund records r (ID, OrderID, RequestID, By, Reason, CreatedAt set; Lines the units
	// wanted of each line, with no amounts, or none for everything left) against the order as
	// it stands, in one transaction: the order must be paid or consumed, every line's units not
	// yet refunded (by a refund requested or succeeded) must cover what is wanted (EINVALID
	// otherwise: a refund larger than what was paid), and a voucher line's units must be
	// vouchers not redeemed, which become void (ECONFLICT otherwise). It fills in the amounts
	// (PlanRefund), TxnID, Amount, Whole and State. A refund of the same order and request id
	// already there is not an error: created is false and r is overwritten with it.
	CreateRefund(ctx context.Context, r *Refund) (created bool, err error)
	// CreatePaymentRefund records a refund of a payment no order kept (r.Kind RefundPayment,
	// with ID, OrderID, TxnID, RequestID, Amount, By, Reason and CreatedAt set), once per ID: a
	// refund of that ID already there is not an error (created false, r overwritten with it).
	CreatePaymentRefund(ctx context.Context, r *Refund) (created bool, err error)
	// CompleteRefund records the provider's report that a refund was paid back at at (the
	// provider's time), once: a repeat changes nothing (fresh false). The order's Refunded grows by the refund; a whole refund
	// moves it to refunded; a refund of a payment leaves the order as it is. ENOTFOUND for an unknown refund, EINVALID when amount or
	// transaction is not the refund's.
	CompleteRefund(ctx context.Context, id, notifyID, txnID string, amount Money, at time.Time) (r *Refund, o *Order, fresh bool, err error)
	// FailRefund records that the provider refused a requested refund for good: it becomes
	// failed, and the vouchers it made void are issued again. A refund no longer requested is
	// left as it is (false).
	FailRefund(ctx context.Context, id string) (bool, error)
	// RefundByID returns a refund; ENOTFOUND if there is none.
	RefundByID(ctx context.Context, id string) (*Refund, error)
	// RefundsByOrder returns an order's refunds, oldest first.
	RefundsByOrder(ctx context.Context, orderID int64) ([]*Refund, error)
	// RequestedRefunds returns up to limit refunds still awaiting the provider that were
	// created before before, oldest first: to send to the provider again.
	RequestedRefunds(ctx context.Context, before time.Time, limit int) ([]*Refund, error)
}

// LinePayable is what each line of the order paid (minor units): its price breakdown's payable
// when it has one, else units at list price; a sale's order is one line of its amount.
func (o *Order) LinePayable() []int64 {
	if o.Price != nil && len(o.Price.Lines) == max(1, len(o.Lines)) {
		out := make([]int64, len(o.Price.Lines))
		for i, l := range o.Price.Lines {
			out[i] = l.Payable
		}
		return out
	}
	if !o.Checkout() {
		return []int64{o.Amount.Amount}
	}
	out := make([]int64, len(o.Lines))
	for i, l := range o.Lines {
		out[i] = l.Unit * l.Quantity
	}
	return out
}

// LineUnits is how many units each line of the order holds.
func (o *Order) LineUnits() []int64 {
	if !o.Checkout() {
		return []int64{o.Quantity}
	}
	out := make([]int64, len(o.Lines))
	for i, l := range o.Lines {
		out[i] = l.Quantity
	}
	return out
}

// UnitShare is what the k-th unit (from 0) of a line of n units paying payable paid: an even
// share, the remainder spread one minor unit each over the first units, so that the shares
// add up to payable exactly.
func UnitShare(payable, n, k int64) int64 {
	if n <= 0 {
		return 0
	}
	s := payable / n
	if k < payable%n {
		s++
	}
	return s
}

// PlanRefund prices a refund of the order given its earlier refunds (requested or
// succeeded): want names units of lines, or nothing for everything not yet refunded. Units are
// given back from each line's last not yet refunded, at their UnitShare, so that refunding a
// line unit by unit gives back exactly what it paid. It returns the lines with their amounts,
// the total and whether the refund leaves nothing of the order unrefunded. EINVALID for a line
// that is not there, a quantity not positive, or more units than are left.
func PlanRefund(o *Order, earlier []*Refund, want []RefundLine) (lines []RefundLine, total int64, whole bool, err error) {
	payable, units := o.LinePayable(), o.LineUnits()
	if len(payable) != len(units) {
		return nil, 0, false, Errorf(EINTERNAL, "order %d: %d priced lines for %d lines", o.ID, len(payable), len(units))
	}
	done := make([]int64, len(units)) // units already refunded, per line
	for _, r := range earlier {
		if r.State == RefundFailed {
			continue
		}
		for _, l := range r.Lines {
			if l.Line >= 0 && l.Line < len(done) {
				done[l.Line] += l.Quantity
			}
		}
	}
	if len(want) == 0 {
		for i := range units {
			if left := units[i] - done[i]; left > 0 {
				want = append(want, RefundLine{Line: i, Quantity: left})
			}
		}
		if len(want) == 0 {
			return nil, 0, false, Errorf(EINVALID, "order %d has nothing left to refund", o.ID)
		}
	}
	asked := make([]int64, len(units))
	for _, l := range want {
		switch {
		case l.Line < 0 || l.Line >= len(units):
			return nil, 0, false, Errorf(EINVALID, "order %d has no line %d", o.ID, l.Line)
		case l.Quantity <= 0 || l.Quantity > units[l.Line]:
			return nil, 0, false, Errorf(EINVALID, "line %d: quantity must be from 1 to its %d units", l.Line, units[l.Line])
		}
		if asked[l.Line] += l.Quantity; asked[l.Line] > units[l.Line] {
			return nil, 0, false, Errorf(EINVALID, "line %d has %d units, not %d: a refund cannot exceed what was paid", l.Line, units[l.Line], asked[l.Line])
		}
	}
	whole = true
	for i := range units {
		left := units[i] - done[i]
		if asked[i] > left {
			return nil, 0, false, Errorf(EINVALID, "line %d has %d units left to refund, not %d: a refund cannot exceed what was paid", i, left, asked[i])
		}
		if asked[i] == 0 {
			whole = whole && left == 0
			continue
		}
		var amount int64
		for k := units[i] - done[i] - asked[i]; k < units[i]-done[i]; k++ {
			amount += UnitShare(payable[i], units[i], k)
		}
		lines = append(lines, RefundLine{Line: i, Quantity: asked[i], Amount: amount})
		total += amount
		whole = whole && asked[i] == left
	}
	if total <= 0 {
		return nil, 0, false, Errorf(EINVALID, "the units asked paid nothing: there is no money to give back")
	}
	return lines, total, whole, nil
}

// Validate checks the fields of a refund a caller asks for.
func (r *Refund) Validate() error {
	if err := ValidateRequestID(r.RequestID); err != nil {
		return err
	}
	if len(r.Lines) > MaxCheckoutLines {
		return Errorf(EINVALID, "at most %d lines", MaxCheckoutLines)
	}
	if len(r.Reason) > MaxRefundReasonBytes { // what the payment provider takes
		return Errorf(EINVALID, "reason must be at most %d bytes", MaxRefundReasonBytes)
	}
	return ValidateText("reason", r.Reason, 0, MaxRefundReasonRunes)
}

// PaymentRefundID is the id of a refund of a payment asked with a request id (reconciliation
// asks with a finding's id): the same every time, so that the repair asked again is the same
// refund, at Surge and at the provider, and reconciliation finds it.
func PaymentRefundID(orderID int64, requestID string) string {
	h := sha256.Sum256([]byte(requestID))
	return "X" + strconv.FormatInt(orderID, 10) + "-" + hex.EncodeToString(h[:6])
}

// String names the refund for logs.
func (r *Refund) String() string { return fmt.Sprintf("refund %s of order %d", r.ID, r.OrderID) }
