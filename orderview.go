package surge

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// OrderView is an order as the order lists show it: the shopper's, the merchant's and
// support's search. The views are copies of the order store, kept eventually consistent from
// the order events; the store stays the truth.
type OrderView struct {
	ID         int64      `json:"id,string"`
	TxnID      string     `json:"txn_id"`
	UserID     int64      `json:"user_id,string"`
	MerchantID int64      `json:"merchant_id,string"`
	SessionID  int64      `json:"session_id,string"`
	ItemID     int64      `json:"item_id,string"`
	SKUID      int64      `json:"sku_id,string"`
	Quantity   int64      `json:"quantity"`
	Amount     Money      `json:"amount"`
	State      OrderState `json:"state"`
	CreatedAt  time.Time  `json:"created_at"`
	PaidAt     *time.Time `json:"paid_at,omitempty"`
	// Phone and Username are the shopper's, for support's search.
	Phone    string `json:"phone,omitempty"`
	Username string `json:"username,omitempty"`
	// Version orders the copies of one order: a copy older than the stored one is ignored.
	Version int64 `json:"-"`
}

// NewOrderView is the view of an order in the store's copy, with its shopper's phone and
// username (u may be nil).
func NewOrderView(o *Order, u *User) OrderView {
	v := OrderView{ID: o.ID, TxnID: o.TxnID, UserID: o.UserID, MerchantID: o.MerchantID, SessionID: o.SessionID,
		ItemID: o.ItemID, SKUID: o.SKUID, Quantity: o.Quantity, Amount: o.Amount, State: o.State,
		CreatedAt: o.CreatedAt.UTC(), Version: o.State.Rank()}
	if o.PaidAt != nil {
		t := o.PaidAt.UTC()
		v.PaidAt = &t
	}
	if o.Checkout() && v.SKUID == 0 { // an ordinary checkout lists under its first line's SKU
		v.SKUID = o.Lines[0].SKUID
		for _, l := range o.Lines {
			v.Quantity += l.Quantity
		}
	}
	if u != nil {
		v.Phone, v.Username = u.Phone, u.Username
	}
	return v
}

// Rank is how far along its life an order in state s is: a state an order can only reach
// from another ranks higher than it, so a copy of lower rank is an older one. A state this
// release does not know ranks after consumed and before reviewed and refunded, where the order
// states of later releases go (its copy still replaces an earlier state's).
func (s OrderState) Rank() int64 {
	switch s {
	case OrderCreated:
		return 1
	case OrderPendingPayment:
		return 2
	case OrderPaid, OrderCancelled:
		return 3
	case OrderConsumed:
		return 4
	case OrderReviewed:
		return 6
	case OrderRefunded:
		return 7
	}
	return 5
}

// OrderFilter narrows a merchant's orders: any of States (none: every state), created in
// [From, To) (zero: unbounded).
type OrderFilter struct {
	States   []OrderState
	From, To time.Time
}

// OrderSearch is support's search: Text is found in the shopper's phone or username (a
// substring, case-insensitive) or is the start of the order id; the orders were created in
// [From, To) (zero: unbounded).
type OrderSearch struct {
	Text     string
	From, To time.Time
}

// Bounds of the order views' queries.
const (
	MinSearchRunes  = 3  // shorter text matches too much to be an index lookup (trigrams)
	MaxSearchRunes  = 64 // longer than any phone, username or order id
	MaxFilterStates = 8  // states in one merchant filter
	maxCursorBytes  = 64
)

// Validate checks a merchant's filter.
func (f *OrderFilter) Validate() error {
	if len(f.States) > MaxFilterStates {
		return Errorf(EINVALID, "at most %d states", MaxFilterStates)
	}
	for _, s := range f.States {
		if !knownState(s) {
			return Errorf(EINVALID, "unknown order state %q", s)
		}
	}
	return checkRange(f.From, f.To)
}

// knownState reports whether s is a state this release knows: a filter by any other would
// find nothing, and is more likely a typo.
func knownState(s OrderState) bool {
	switch s {
	case OrderCreated, OrderPendingPayment, OrderPaid, OrderConsumed, OrderReviewed, OrderCancelled, OrderRefunded:
		return true
	}
	return false
}

// Validate checks a search and trims its text.
func (q *OrderSearch) Validate() error {
	q.Text = strings.TrimSpace(q.Text)
	if n := utf8.RuneCountInString(q.Text); n < MinSearchRunes || n > MaxSearchRunes {
		return Errorf(EINVALID, "search text must be %d to %d characters", MinSearchRunes, MaxSearchRunes)
	}
	if !utf8.ValidString(q.Text) {
		return Errorf(EINVALID, "search text must be UTF-8")
	}
	return checkRange(q.From, q.To)
}

func checkRange(from, to time.Time) error {
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return Errorf(EINVALID, "from must be before to")
	}
	return nil
}

// OrderPage is one page of a listing, newest first; Next is the cursor of the page after it
// ("" when this one is the last).
type OrderPage struct {
	Items []OrderView `json:"items"`
	Next  string      `json:"next_cursor"`
}

// OrderCursor is where a listing goes on from: after the order (CreatedAt, ID), newest first.
type OrderCursor struct {
	CreatedAt time.Time
	ID        int64
}

// Encode returns the cursor as the opaque string callers hand back.
func (c OrderCursor) Encode() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMilli(), 10) + "." + strconv.FormatInt(c.ID, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseOrderCursor decodes a cursor from Encode; "" is the first page (nil). EINVALID for
// anything else.
func ParseOrderCursor(s string) (*OrderCursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := Errorf(EINVALID, "bad cursor")
	if len(s) > maxCursorBytes {
		return nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	at, id, ok := strings.Cut(string(raw), ".")
	if !ok {
		return nil, bad
	}
	msec, err1 := strconv.ParseInt(at, 10, 64)
	oid, err2 := strconv.ParseInt(id, 10, 64)
	if err1 != nil || err2 != nil || msec < 0 || oid <= 0 {
		return nil, bad
	}
	return &OrderCursor{CreatedAt: time.UnixMilli(msec).UTC(), ID: oid}, nil
}

// PageLimit bounds a page's length: DefaultListLimit when n is not positive, at most
// MaxListLimit.
func PageLimit(n int) int {
	if n <= 0 {
		return DefaultListLimit
	}
	return min(n, MaxListLimit)
}

// ViewCheckpoint is how far a projection has read its log: stored with the views it wrote.
type ViewCheckpoint struct {
	Name     string
	Position uint64
}

// OrderViewStore keeps the order views: the shopper's orders (by user), the merchant's (by
// shop) and support's search, each an index lookup.
type OrderViewStore interface {
	// PutOrderViews stores copies of orders, each replacing the one of the same order id unless
	// that one has a higher Version (an older copy never overwrites a newer one; an equal one
	// replaces it, so a replay is harmless). With cp.Name set, it records cp in the same
	// transaction, so the position a projection goes on from always matches what it wrote.
	PutOrderViews(ctx context.Context, views []OrderView, cp ViewCheckpoint) error
	// ViewCheckpoint returns the position stored under name (0 when there is none).
	ViewCheckpoint(ctx context.Context, name string) (uint64, error)
	// ShopperOrders returns a page of a shopper's orders, newest first (created_at, then id),
	// after the cursor (nil: the first page). limit is bounded by PageLimit.
	ShopperOrders(ctx context.Context, userID int64, after *OrderCursor, limit int) (*OrderPage, error)
	// MerchantOrders returns a page of a shop's orders that pass f, newest first. EINVALID for
	// a filter that does not Validate.
	MerchantOrders(ctx context.Context, merchantID int64, f OrderFilter, after *OrderCursor, limit int) (*OrderPage, error)
	// SearchOrders returns a page of the orders q finds, newest first. EINVALID for a search
	// that does not Validate.
	SearchOrders(ctx context.Context, q OrderSearch, after *OrderCursor, limit int) (*OrderPage, error)
	// OrderViewDrift walks the order store's orders by id after afterID, up to limit of them,
	// and returns the ids of those whose view is missing or in another state, and the last id
	// it walked (0 once there is nothing after afterID): how a projection finds what lost events
	// left out.
	OrderViewDrift(ctx context.Context, afterID int64, limit int) (drift []int64, last int64, err error)
}
