package surge

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// Event kinds published on the bus for the real-time platform and other consumers.
const (
	EventPurchaseAttempts = "purchase.attempts" // a batch: Data is a list of attempts
	EventOrdersCreated    = "orders.created"    // a batch: Data is the list of orders written together
	EventOrdersPaid       = "orders.paid"       // a batch: Data is the list of orders paid, settled together
	// EventOrderPaid is one paid order, as releases before orders.paid sent them; consumers
	// still read it from logs those releases wrote.
	EventOrderPaid      = "order.paid"
	EventOrderCancelled = "order.cancelled"
	EventOrderRefunded  = "order.refunded"
	EventOrderExpired   = "order.expired"
	// The rest of an order's life; Data is the order as it stands.
	EventOrderConsumed          = "order.consumed"           // its last voucher was redeemed
	EventOrderReviewed          = "order.reviewed"           // its shopper reviewed it
	EventOrderPartiallyRefunded = "order.partially_refunded" // a refund of some units succeeded
	// Refunds; Data is the refund.
	EventRefundRequested = "refund.requested"
	EventRefundSucceeded = "refund.succeeded"
	EventRefundDue       = "payment.refund_due"
	EventStockChanged    = "stock.changed"
	EventCouponClaimed   = "coupon.claimed" // Data is the coupon
	EventBudgetClaimed   = "budget.claimed" // Data is the red envelope claimed (a coupon with its value)
	// Coupons on orders, in batches: Data is a list of CouponsOnOrder.
	EventCouponLocked   = "coupon.locked"
	EventCouponUsed     = "coupon.used"
	EventCouponReturned = "coupon.returned"
	// EventPromoChanged is an activity saved (Data is the activity): every node's index takes
	// it up from the store.
	EventPromoChanged = "promo.changed"
	// Activities on orders, in batches: Data is a list of ActivitiesOnOrder.
	EventPromoLocked   = "promo.locked"
	EventPromoUsed     = "promo.used"
	EventPromoReleased = "promo.released"
)

// EventEmitter sends a message to the bus without waiting for the bus to store it; msgID
// deduplicates it.
type EventEmitter interface {
	Emit(subject, msgID string, data []byte) error
}

// EmitEvent sends one business event of a kind on surge.events.<kind>, its id made of the kind
// and key (the same event sent again has the same id, and consumers drop it), and returns the id.
func EmitEvent(bus EventEmitter, kind, key string, at time.Time, data any) (string, error) {
	e := Event{ID: kind + ":" + key, Kind: kind, At: at.UTC(), Data: data}
	b, err := json.Marshal(e)
	if err != nil {
		return e.ID, err
	}
	return e.ID, bus.Emit("surge.events."+kind, e.ID, b)
}

// TellBus sends one business event as EmitEvent does, for a caller whose own work is done and
// stored whatever the bus says: no bus (nil) sends nothing, and a failure is logged.
func TellBus(ctx context.Context, bus EventEmitter, log *slog.Logger, kind, key string, at time.Time, data any) {
	if bus == nil {
		return
	}
	if id, err := EmitEvent(bus, kind, key, at, data); err != nil {
		log.WarnContext(ctx, "event not published", "kind", kind, "id", id, "err", err)
	}
}

// Event is one business event. ID is unique per event, so consumers drop duplicates.
type Event struct {
	ID   string    `json:"id"`
	Kind string    `json:"kind"`
	At   time.Time `json:"at"`
	Data any       `json:"data"`
}

// MaxOrdersPerMessage bounds the orders one bus message carries (an order command or an
// orders.created event), so that a message stays well under the bus's payload limit (NATS: 1 MiB
// by default; an order is about 450 bytes of JSON).
const MaxOrdersPerMessage = 1000
