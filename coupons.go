package surge

import (
	"context"
	"encoding/json"
	"slices"
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
	// Value is a red envelope's amount (minor units), drawn from its budget when claimed; 0 for
	// a coupon, whose batch's rule says what it takes off.
	Value int64 `json:"value,omitempty"`
}

// CouponTally counts stored coupons: how many, and the red envelopes' values summed.
type CouponTally struct {
	Count int64 `json:"count"`
	Value int64 `json:"value"`
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
	// LockCoupons decides locks of coupons on orders (see CouponLock), in one transaction, each
	// as if alone and in the order given: a lock's coupons go on its order all or none. For each
	// lock it returns the order its coupons are on (a retried request's first order) or its
	// refusal: ENOTFOUND names a coupon that does not exist or is not the user's; ECONFLICT one
	// that is on another order or used, or a key that locked other coupons; EINVALID a lock
	// that breaks CouponLock's bounds. err is for the whole: nothing was locked. Locking judges
	// neither validity nor scope: the caller prices the order first.
	LockCoupons(ctx context.Context, locks []CouponLock, now time.Time) (orders []int64, refusals []error, err error)
	// UseCoupons marks the coupons locked on orders used, each with the discount it gave, in one
	// transaction. Idempotent. Of a use whose coupons are not all on its order, those on it are
	// used and refusals[i] (ECONFLICT) names one that is not, which nothing will put there.
	UseCoupons(ctx context.Context, uses []CouponUse) (refusals []error, err error)
	// ReturnCoupons takes the coupons on orders, locked or used, back to their owners (issued):
	// the orders were cancelled, expired or refunded. Idempotent; returns how many it took back.
	ReturnCoupons(ctx context.Context, orders []int64) (int64, error)
	// ReleaseLocks gives back the coupons locked (not used) to orders that were not made: for
	// each release, only if its By (when not 0) is the attempt that last locked them, and only
	// if they were locked before lockedBefore (when not zero). A retry of the request that
	// locked them relocks them under its own attempt, so a late release for an earlier attempt
	// leaves them on the order. Returns how many each release gave back.
	ReleaseLocks(ctx context.Context, rels []CouponRelease, lockedBefore time.Time) ([]int64, error)
	// CouponsOnOrders returns the coupons locked or used on any of these orders.
	CouponsOnOrders(ctx context.Context, orders []int64) ([]*Coupon, error)
	// StaleLocks returns up to n coupons locked before t, oldest first.
	StaleLocks(ctx context.Context, before time.Time, n int) ([]*Coupon, error)
	// CouponsOnItem returns the coupons locked or used on a sale item's orders, for the
	// invariant checks.
	CouponsOnItem(ctx context.Context, itemID int64) ([]*Coupon, error)
	// CouponStates counts a batch's stored coupons by state.
	CouponStates(ctx context.Context, batch int64) (map[string]CouponTally, error)

	// CreateGrant stores a bulk grant (g.ID set, running) and its users, in one transaction,
	// once per batch and request id: storing it again returns the grant stored first.
	CreateGrant(ctx context.Context, g *CouponGrant, users []int64) (*CouponGrant, error)
	// CouponGrant returns ENOTFOUND if there is no such grant.
	CouponGrant(ctx context.Context, id int64) (*CouponGrant, error)
	// CouponGrantByRequest returns a batch's grant stored with a request id, or ENOTFOUND.
	CouponGrantByRequest(ctx context.Context, batch int64, requestID string) (*CouponGrant, error)
	// RunningGrants counts the running grants of a merchant's batches (0: the platform's).
	RunningGrants(ctx context.Context, merchant int64) (int64, error)
	// GrantUsers returns up to n (1-GrantChunk) of a grant's users, from the from-th (0 first).
	GrantUsers(ctx context.Context, grant, from int64, n int) ([]int64, error)
	// LeaseGrant takes for node the oldest running grant nobody else holds (its lease ended
	// before now, or node held it: restarted, it takes up its own grants at once) and holds it
	// until until; nil when there is none.
	LeaseGrant(ctx context.Context, node int64, now, until time.Time) (*CouponGrant, error)
	// SaveGrant writes a grant's progress and state for node, which holds it, and holds it
	// until until. Returns ECONFLICT, writing nothing, if another node holds it now.
	SaveGrant(ctx context.Context, g *CouponGrant, node int64, until time.Time) error
}

// The states of a bulk grant.
const (
	GrantRunning = "running"
	GrantDone    = "done"    // every user was gone through
	GrantStopped = "stopped" // the batch ran out, or went offline (Reason says)
)

// Bounds of a bulk grant.
const (
	MaxGrantUsers = 1_000_000 // users of one grant
	// MaxRunningGrants bounds the grants of one shop's (or the platform's) batches that wait or
	// run at once: grants run one after another, and one shop's must not hold up the others'.
	MaxRunningGrants = 20
	GrantChunk       = 1000 // users stored, and gone through, together
)

// CouponGrant is an operator's grant of one coupon of a batch to each of a list of users.
// Position users were gone through: Granted got one (or had it from this grant already),
// Refused were at the batch's per-user limit.
type CouponGrant struct {
	ID        int64     `json:"id,string"`
	BatchID   int64     `json:"batch_id,string"`
	RequestID string    `json:"request_id"`
	Users     int64     `json:"users"`
	Position  int64     `json:"position"`
	Granted   int64     `json:"granted"`
	Refused   int64     `json:"refused"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	CreatedBy int64     `json:"created_by,string"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MaxCouponsPerOrder bounds the coupons on one order.
const MaxCouponsPerOrder = 10

// CouponLock asks for a user's coupons to go on an order. Key names the request that locks them
// (an order's item and request id): locking the same coupons again under the same key returns
// the order they were first locked to, which may differ from Order (a retried request), and
// marks them locked by this attempt (Order) anew.
type CouponLock struct {
	User, Order int64
	Key         string
	IDs         []int64
}

// Validate checks a lock's bounds: 1 to MaxCouponsPerOrder coupons, each positive and given once.
func (l CouponLock) Validate() error {
	switch {
	case len(l.IDs) == 0 || len(l.IDs) > MaxCouponsPerOrder:
		return Errorf(EINVALID, "an order takes 1 to %d coupons", MaxCouponsPerOrder)
	case l.Order <= 0 || l.User <= 0 || l.Key == "":
		return Errorf(EINVALID, "a lock needs its user, order and key")
	}
	for i, id := range l.IDs {
		if id <= 0 || slices.Contains(l.IDs[:i], id) {
			return Errorf(EINVALID, "coupon ids are positive and given once each")
		}
	}
	return nil
}

// CouponUse marks an order's coupons used: Amounts is what each took off, by coupon id.
type CouponUse struct {
	Order   int64
	Amounts map[int64]int64
}

// CouponRelease gives back the coupons an attempt (By: the order id it drew, 0 for any) locked
// to an order it did not make.
type CouponRelease struct {
	Order, By int64
}

// CouponsOnOrder is one order in the events of coupons going on orders (coupon.locked), being
// used (coupon.used) and coming back (coupon.returned), each a list of them: which coupons, and
// what they take off.
type CouponsOnOrder struct {
	OrderID    int64         `json:"order_id,string"`
	UserID     int64         `json:"user_id,string"`
	SessionID  int64         `json:"session_id,string,omitempty"`
	MerchantID int64         `json:"merchant_id,string,omitempty"`
	Currency   string        `json:"currency"`
	Discount   int64         `json:"discount"`
	Coupons    []CouponTaken `json:"coupons"`
}
