package surge

import (
	"context"
	"time"
)

// OrderState is where an order is in its life.
type OrderState string

// The order states. An order is created straight into pending payment once its reservation
// holds; "created" names the instant before, for completeness of the machine.
const (
	OrderCreated        OrderState = "created"
	OrderPendingPayment OrderState = "pending_payment"
	OrderPaid           OrderState = "paid"
	OrderConsumed       OrderState = "consumed"
	OrderReviewed       OrderState = "reviewed"
	OrderCancelled      OrderState = "cancelled"
	OrderRefunded       OrderState = "refunded"
)

var orderTransitions = map[OrderState][]OrderState{
	OrderCreated:        {OrderPendingPayment, OrderCancelled},
	OrderPendingPayment: {OrderPaid, OrderCancelled},
	OrderPaid:           {OrderConsumed, OrderRefunded},
	OrderConsumed:       {OrderReviewed, OrderRefunded},
}

// CanBecome reports whether the state machine allows moving from s to t.
func (s OrderState) CanBecome(t OrderState) bool {
	for _, next := range orderTransitions[s] {
		if next == t {
			return true
		}
	}
	return false
}

// PaidOrLater reports whether an order in state s has been paid: paid, or a state after it.
func (s OrderState) PaidOrLater() bool {
	switch s {
	case OrderPaid, OrderConsumed, OrderReviewed, OrderRefunded:
		return true
	}
	return false
}

// Why an order was cancelled.
const (
	CancelTimeout = "timeout" // not paid in time
	CancelUser    = "user"    // the shopper cancelled
)

// Order is a purchase that holds reserved stock until it is paid or cancelled.
type Order struct {
	ID           int64      `json:"id,string"`
	TxnID        string     `json:"txn_id"` // the purchase journey's transaction id, up to the payment provider
	RequestID    string     `json:"request_id"`
	UserID       int64      `json:"user_id,string"`
	SessionID    int64      `json:"session_id,string"`
	ItemID       int64      `json:"item_id,string"` // the session item
	SKUID        int64      `json:"sku_id,string"`
	MerchantID   int64      `json:"merchant_id,string"`
	Quantity     int64      `json:"quantity"`
	Amount       Money      `json:"amount"`
	State        OrderState `json:"state"`
	CancelReason string     `json:"cancel_reason,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    time.Time  `json:"expires_at"` // unpaid by then, it is cancelled and its stock returns
	PaidAt       *time.Time `json:"paid_at,omitempty"`
	// Price breaks Amount down when coupons took something off it: the list price, each
	// coupon's share of each line, and what is payable (Amount).
	Price *PriceBreakdown `json:"price,omitempty"`
	// Lines are an ordinary checkout's lines (SessionID, ItemID and SKUID are 0 then): its
	// units come from the SKUs' stock, not from a sale.
	Lines []OrderLine `json:"lines,omitempty"`
	// Refunded is what refunds paid back of it (minor units): all of Amount once it is
	// refunded, a part when units of its lines were.
	Refunded int64 `json:"refunded,omitempty"`
	// Review is the shopper's word on a consumed order; it makes the order reviewed.
	Review       *Review `json:"review,omitempty"`
	StockSettled bool    `json:"-"` // the stock engine confirmed or released its reservation
}

// Review is a shopper's rating of an order they consumed.
type Review struct {
	Rating int       `json:"rating"` // 1 to 5
	Text   string    `json:"text,omitempty"`
	At     time.Time `json:"at"`
}

// MaxReviewRunes bounds a review's text.
const MaxReviewRunes = 1000

// Validate checks a review's fields.
func (r *Review) Validate() error {
	if r.Rating < 1 || r.Rating > 5 {
		return Errorf(EINVALID, "rating must be 1 to 5")
	}
	return ValidateText("text", r.Text, 0, MaxReviewRunes)
}

// OrderLine is a line of an ordinary checkout: units of an SKU at its catalog price.
type OrderLine struct {
	SKUID    int64 `json:"sku_id,string"`
	Quantity int64 `json:"quantity"`
	Unit     int64 `json:"unit_price"` // minor units, in the order's currency
}

// MaxCheckoutLines bounds the lines of one ordinary checkout.
const MaxCheckoutLines = 50

// Checkout reports whether the order is an ordinary checkout rather than a sale's.
func (o *Order) Checkout() bool { return len(o.Lines) > 0 }

// Payment outcomes: what Surge did with a provider's notification, recorded with it.
const (
	PaymentApplied   = "applied"    // it paid a pending order
	PaymentDuplicate = "duplicate"  // the order was paid already, by another notification
	PaymentRefundDue = "refund_due" // it arrived after the order was cancelled: the money goes back
	PaymentIgnored   = "ignored"    // not a final status
	PaymentMismatch  = "mismatch"   // its transaction or amount is not the order's
)

// PaymentStatusPaid is a provider's status of a completed payment; any other status (the
// provider's "processing") is recorded and ignored.
const PaymentStatusPaid = "paid"

// Payment is a payment provider's notification about a transaction, as received.
type Payment struct {
	NotifyID   string    `json:"notify_id"` // the provider's id of this notification
	TxnID      string    `json:"txn_id"`
	OrderID    int64     `json:"order_id,string"`
	Amount     Money     `json:"amount"`
	Status     string    `json:"status"` // the provider's word: "paid"
	PaidAt     time.Time `json:"paid_at"`
	ReceivedAt time.Time `json:"received_at"`
	// Outcome is what Surge did with it: "applied", "duplicate", or "refund_due" for a payment
	// that arrived after its order was cancelled.
	Outcome string `json:"outcome"`
}

// OrderStore keeps orders and the payment notifications about them.
type OrderStore interface {
	// CreateOrder stores o. An order for the same item, user and request id already there is
	// not an error: created is false and o is overwritten with the stored order.
	CreateOrder(ctx context.Context, o *Order) (created bool, err error)
	// CreateCheckout stores an ordinary checkout's order (o.Lines set, ItemID 0) and takes each
	// line's units from its SKU's stock not allotted to sessions that have not ended (as a new
	// session's allotment is checked), all or none, in one transaction: ESOLDOUT names the first SKU that has too few, ENOTFOUND one that does not
	// exist. The activities its price takes (o.Price.Activities) are locked with it, all or
	// none: EPRICECHANGED names one that ended, ran out, changed version or is once per
	// shopper and not for this one. A checkout with the same user and request id already there is not an error:
	// created is false and o is overwritten with the stored order.
	CreateCheckout(ctx context.Context, o *Order, now time.Time) (created bool, err error)
	// SettleCheckout gives a cancelled checkout's units back to its SKUs, once: again, or for
	// an order that is not a cancelled checkout, it does nothing. With them it settles what the
	// checkout holds of promotion activities (see ActivityStore): confirmed once paid, released
	// (each use and discount back, once) once cancelled or refunded. It does not mark the
	// order's stock settled (MarkStockSettled does, once its coupons and events are done too).
	SettleCheckout(ctx context.Context, id int64) error
	// CreateOrders stores many orders in one transaction, skipping those whose item, user and
	// request id are already there, and reports which it created.
	CreateOrders(ctx context.Context, orders []Order) (created []bool, err error)
	// OrderByID returns ENOTFOUND if there is no such order.
	OrderByID(ctx context.Context, id int64) (*Order, error)
	// OrdersByID returns the orders of ids that exist, in no particular order.
	OrdersByID(ctx context.Context, ids []int64) ([]*Order, error)
	// OrderByRequest finds the order of a user's purchase request; ENOTFOUND if there is none.
	OrderByRequest(ctx context.Context, itemID, userID int64, requestID string) (*Order, error)
	// OrdersByUser returns a user's newest orders first.
	OrdersByUser(ctx context.Context, userID int64, limit int) ([]*Order, error)
	// Transition moves an order from one state to another if it is still in from, atomically:
	// of two racing transitions only one wins. Returns ECONFLICT (with the order as it is) if
	// the order is no longer in from, EINVALID if the machine forbids the move, ENOTFOUND.
	Transition(ctx context.Context, id int64, from, to OrderState, reason string, now time.Time) (*Order, error)
	// ExpireDue cancels (CancelTimeout) up to limit pending orders whose time ran out by now,
	// the oldest due first, in one transaction, and returns them as cancelled, in no particular
	// order. An order paid or cancelled meanwhile is left alone, as with Transition: each order
	// is expired at most once, whoever else sweeps.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]*Order, error)
	// UnsettledStock returns paid or cancelled orders whose reservation the stock engine has not
	// yet confirmed or released.
	UnsettledStock(ctx context.Context, limit int) ([]*Order, error)
	// MarkStockSettled records that the stock engine settled these orders' reservations.
	MarkStockSettled(ctx context.Context, ids ...int64) error
	// ApplyPayments records many payment notifications and applies them to their orders, all in
	// one transaction. Each is recorded once per NotifyID (a repeat is applied to the order as
	// it stands, but its record keeps the first outcome). The notifications are applied in the
	// order of their orders' ids, so that two nodes never lock two orders in opposite orders.
	// It sets each notification's Outcome and returns each one's order as it stands afterwards;
	// for an order that does not exist, nil, with no Outcome and nothing recorded. Outcomes:
	// PaymentMismatch when its transaction or amount is not the order's; PaymentIgnored when its
	// status is not PaymentStatusPaid; PaymentApplied when it pays a pending order (paid at its
	// ReceivedAt), or finds the order paid with no notification recorded as applied (one paid by
	// an earlier release that crashed before recording it); PaymentDuplicate when the order is
	// paid (or later) and another notification applied; PaymentRefundDue when the order was
	// cancelled. Payment and expiry race on the order's state, as with Transition.
	ApplyPayments(ctx context.Context, ps []*Payment) ([]*Order, error)
	// RecordPayment stores a payment notification once per NotifyID: a repeat returns
	// fresh false and changes nothing.
	RecordPayment(ctx context.Context, p *Payment) (fresh bool, err error)
	// PaymentsByOrder returns the notifications received for an order.
	PaymentsByOrder(ctx context.Context, orderID int64) ([]*Payment, error)
	// AuditItem sums up one item's orders for the invariant checks; limit is the item's
	// per-user limit.
	AuditItem(ctx context.Context, itemID, limit int64) (*OrderAudit, error)
	// ReviewOrder records the shopper's review of their consumed order and makes it reviewed,
	// atomically. ENOTFOUND for an order that is not the user's, ECONFLICT (with the order as it
	// is) for one that is not consumed.
	ReviewOrder(ctx context.Context, id, userID int64, r Review) (*Order, error)
	// PricedOrders returns an item's orders that carry a price breakdown (coupons took something
	// off), for the invariant checks.
	PricedOrders(ctx context.Context, itemID int64) ([]*Order, error)
}

// OrderAudit is what the order store holds about one item's orders, for the invariant checks.
// Live orders are those in any state but cancelled: their units are reserved or sold.
type OrderAudit struct {
	Orders map[OrderState]int64 `json:"orders"` // orders, by state
	Units  map[OrderState]int64 `json:"units"`  // units ordered, by state
	// UsersOverLimit counts users whose live orders hold more units than the limit.
	UsersOverLimit int64 `json:"users_over_limit"`
	// PaidWithoutOnePayment counts paid (or later) orders without exactly one applied payment.
	PaidWithoutOnePayment int64 `json:"paid_without_one_payment"`
	// UnreleasedCancelled counts cancelled orders whose stock is not yet released.
	UnreleasedCancelled int64 `json:"unreleased_cancelled"`
	// PaidAmount is the amount (minor units) of the paid orders: paid or any state after it.
	PaidAmount int64 `json:"paid_amount"`
}

// LiveUnits is the units of an item's live orders.
func (a *OrderAudit) LiveUnits() int64 {
	var n int64
	for st, u := range a.Units {
		if st != OrderCancelled {
			n += u
		}
	}
	return n
}
