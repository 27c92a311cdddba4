package surge

import (
	"context"
	"encoding/json"
	"time"
)

// The states of a coupon batch: a draft is edited freely and claims nothing; a live batch is
// claimed (within its claim window) and its rule no longer changes; an offline batch takes no
// more claims, and the coupons already claimed stay usable until they expire.
const (
	BatchDraft   = "draft"
	BatchLive    = "live"
	BatchOffline = "offline"
)

// CouponBatch is a batch of coupons the platform (MerchantID 0) or a merchant gives out.
type CouponBatch struct {
	ID         int64           `json:"id,string"`
	MerchantID int64           `json:"merchant_id,string"`
	Name       string          `json:"name"`
	Rule       json.RawMessage `json:"rule"` // what a coupon takes off, and where (package coupon's Rule)
	Total      int64           `json:"total"`
	PerUser    int64           `json:"per_user"`
	ClaimFrom  time.Time       `json:"claim_from"`
	ClaimUntil time.Time       `json:"claim_until"`
	// A coupon is valid from ValidFrom until ValidUntil; or, when ValidDays is set, for that
	// many days from its claim.
	ValidFrom  time.Time `json:"valid_from"`
	ValidUntil time.Time `json:"valid_until"`
	ValidDays  int64     `json:"valid_days"`
	State      string    `json:"state"`
	CreatedBy  int64     `json:"created_by,string"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// The states of a coupon.
const (
	CouponIssued = "issued" // claimed, not on an order
	CouponLocked = "locked" // on an order not yet paid
	CouponUsed   = "used"   // on a paid order
)

// Coupon is one claimed coupon.
type Coupon struct {
	ID         int64     `json:"id,string"`
	BatchID    int64     `json:"batch_id,string"`
	UserID     int64     `json:"user_id,string"`
	State      string    `json:"state"`
	ClaimedAt  time.Time `json:"claimed_at"`
	ValidFrom  time.Time `json:"valid_from"`
	ValidUntil time.Time `json:"valid_until"`
	// OrderID is the order the coupon is on, locked or used (0: none); Discount is what it took
	// off that order, once used.
	OrderID  int64 `json:"order_id,string,omitempty"`
	Discount int64 `json:"discount,omitempty"`
}

// CouponStore keeps coupon batches and claimed coupons.
type CouponStore interface {
	// CreateCouponBatch stores b with b.ID set.
	CreateCouponBatch(ctx context.Context, b *CouponBatch) error
	// CouponBatch returns ENOTFOUND if there is no such batch.
	CouponBatch(ctx context.Context, id int64) (*CouponBatch, error)
	// UpdateCouponBatch changes a batch in one transaction: it reads the row locked, lets
	// change edit it (an error from change is returned as is and nothing is written), and
	// writes it back. Returns ENOTFOUND.
	UpdateCouponBatch(ctx context.Context, id int64, change func(*CouponBatch) error) (*CouponBatch, error)
	// CouponBatches lists batches, newest first: a merchant's (merchant > 0), the platform's
	// (0), or all (-1); states filters by state when not empty; before (when not 0) takes only
	// batches of a smaller id, for the next page. At most n (1-500).
	CouponBatches(ctx context.Context, merchant int64, states []string, before int64, n int) ([]*CouponBatch, error)
	// CouponCount is how many coupons of a batch are stored.
	CouponCount(ctx context.Context, batch int64) (int64, error)
	// SaveCoupon stores a claimed coupon once per batch and claim key: storing it again (a
	// retried claim) returns the coupon stored first.
	SaveCoupon(ctx context.Context, c *Coupon, claimKey string) (*Coupon, error)
	// CouponsOf lists a user's coupons, newest first, at most n (1-500).
	CouponsOf(ctx context.Context, user int64, n int) ([]*Coupon, error)
	// CouponsByID returns the coupons of ids that exist, in no particular order.
	CouponsByID(ctx context.Context, ids []int64) ([]*Coupon, error)
	// LockCoupons puts a user's coupons (up to MaxCouponsPerOrder, no repeats) on an order, all
	// or none, in one transaction. key names the request that locks them (an order's item and
	// request id): locking the same coupons again under the same key returns the order they were
	// first locked to, which may differ from order (a retried request), and marks them locked by
	// this attempt (order) at now.
	// ENOTFOUND names a coupon that does not exist or is not the user's; ECONFLICT one that is
	// on another order or used, or a key that locked other coupons. It does not judge validity
	// or scope: the caller prices the order first.
	LockCoupons(ctx context.Context, user, order int64, key string, ids []int64, now time.Time) (locked int64, err error)
	// UseCoupons marks the coupons locked on an order used, each with the discount it gave
	// (amounts, by coupon id). Idempotent. ECONFLICT if one of them is not on the order.
	UseCoupons(ctx context.Context, order int64, amounts map[int64]int64) error
	// ReturnCoupons takes the coupons on an order, locked or used, back to their owners (issued):
	// the order was cancelled, expired or refunded, or never got made. Idempotent; returns how
	// many it took back.
	ReturnCoupons(ctx context.Context, order int64) (int64, error)
	// ReleaseLock gives back the coupons locked (not used) to an order that was not made: only
	// if by (when not 0) is the attempt that last locked them, and only if they were locked
	// before lockedBefore (when not zero). A retry of the request that locked them relocks them
	// under its own attempt, so a late release for an earlier attempt leaves them on the order.
	ReleaseLock(ctx context.Context, order, by int64, lockedBefore time.Time) (int64, error)
	// CouponsOnOrders returns the coupons locked or used on any of these orders.
	CouponsOnOrders(ctx context.Context, orders []int64) ([]*Coupon, error)
	// StaleLocks returns up to n coupons locked before t, oldest first.
	StaleLocks(ctx context.Context, before time.Time, n int) ([]*Coupon, error)
	// CouponsOnItem returns the coupons locked or used on a sale item's orders, for the
	// invariant checks.
	CouponsOnItem(ctx context.Context, itemID int64) ([]*Coupon, error)
	// CouponStates counts a batch's stored coupons by state.
	CouponStates(ctx context.Context, batch int64) (map[string]int64, error)
}

// MaxCouponsPerOrder bounds the coupons on one order.
const MaxCouponsPerOrder = 10

// CouponsOnOrder is the data of the events of coupons going on an order (coupon.locked), being
// used (coupon.used) and coming back (coupon.returned): which coupons, and what they take off.
type CouponsOnOrder struct {
	OrderID    int64         `json:"order_id,string"`
	UserID     int64         `json:"user_id,string"`
	SessionID  int64         `json:"session_id,string,omitempty"`
	MerchantID int64         `json:"merchant_id,string,omitempty"`
	Currency   string        `json:"currency"`
	Discount   int64         `json:"discount"`
	Coupons    []CouponTaken `json:"coupons"`
}
