package surge

import (
	"context"
	"time"
)

// VoucherState is where a voucher is in its life.
type VoucherState string

// The voucher states.
const (
	VoucherIssued   VoucherState = "issued"   // paid for, not yet used
	VoucherRedeemed VoucherState = "redeemed" // used at the merchant's till, once
	VoucherVoid     VoucherState = "void"     // its unit was refunded
)

// MaxTillRunes bounds the name a merchant gives the till that redeems a voucher.
const MaxTillRunes = 64

// Voucher is one unit of a voucher product, paid for: a code the shopper shows at the
// merchant's till, redeemed there once. Amount is what its unit paid (its share of its
// line), which the merchant is settled once it is redeemed.
type Voucher struct {
	Code       string       `json:"code"`
	OrderID    int64        `json:"order_id,string"`
	Seq        int          `json:"seq"`  // its number within the order, from 0
	Line       int          `json:"line"` // the order line it is a unit of
	SKUID      int64        `json:"sku_id,string"`
	MerchantID int64        `json:"merchant_id,string"`
	UserID     int64        `json:"user_id,string"`
	Amount     Money        `json:"amount"`
	State      VoucherState `json:"state"`
	IssuedAt   time.Time    `json:"issued_at"`
	RedeemedAt *time.Time   `json:"redeemed_at,omitempty"`
	Till       string       `json:"till,omitempty"`
	RedeemedBy int64        `json:"redeemed_by,omitempty,string"`
}

// VoucherStore keeps the vouchers of paid orders.
type VoucherStore interface {
	// IssueVouchers stores a paid order's vouchers, once: when the order has vouchers already,
	// those are returned and vs is dropped. ECONFLICT for an order not paid (or later).
	IssueVouchers(ctx context.Context, orderID int64, vs []Voucher) ([]Voucher, error)
	// VouchersByOrder returns an order's vouchers by Seq.
	VouchersByOrder(ctx context.Context, orderID int64) ([]Voucher, error)
	// RedeemVoucher redeems the code for the merchant at a till, atomically: of any number of
	// tills redeeming one code at once, exactly one succeeds. Once no voucher of the order is
	// left issued, a paid order becomes consumed, in the same transaction; the order is
	// returned as it stands. ENOTFOUND for an unknown code, EFORBIDDEN for another merchant's,
	// ECONFLICT for one redeemed already or void (refunded).
	RedeemVoucher(ctx context.Context, code string, merchantID, by int64, till string, now time.Time) (*Voucher, *Order, error)
}
