package surge

import (
	"context"
	"time"
)

// SettlementLine is what one order brings its shop on one day (minor units): Gross is what was
// paid for goods that day and what redeemed vouchers paid (a voucher product's money is the
// shop's once its voucher is used), Refunds what refunds of its goods paid back that day (a
// voucher refunded was never the shop's), Fee the platform's commission on gross less refunds.
type SettlementLine struct {
	OrderID int64 `json:"order_id,string"`
	Gross   int64 `json:"gross"`
	Refunds int64 `json:"refunds"`
	Fee     int64 `json:"fee"`
	Net     int64 `json:"net"`
}

// SettlementFacts are what the stores hold of a shop's money on a day, order by order.
type SettlementFacts struct {
	// Paid are the shop's orders paid in the day, with the lines (indexes) that are voucher
	// products, which are settled on redemption instead.
	Paid []PaidFacts
	// Redeemed are the vouchers of the shop redeemed in the day.
	Redeemed []Voucher
	// Refunded are the order refunds (not payment refunds) of the shop's orders that succeeded
	// in the day, with the lines of each order that are voucher products.
	Refunded []RefundFacts
}

// PaidFacts is an order paid, and which of its lines are voucher products.
type PaidFacts struct {
	Order        *Order
	VoucherLines []int
}

// RefundFacts is a refund that succeeded, and which of its order's lines are voucher products.
type RefundFacts struct {
	Refund       *Refund
	VoucherLines []int
}

// SettlementStore reads what a shop's settlement is made of.
type SettlementStore interface {
	// SettlementFacts returns a shop's money records of [from, to).
	SettlementFacts(ctx context.Context, merchantID int64, from, to time.Time) (*SettlementFacts, error)
}
