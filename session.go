package surge

import (
	"context"
	"time"
)

// Session is a flash-sale session (场次): a time window in which its items are on sale.
type Session struct {
	ID      int64     `json:"id,string"`
	Name    string    `json:"name"`
	StartAt time.Time `json:"start_at"`
	EndAt   time.Time `json:"end_at"`
	Status  string    `json:"status,omitempty"` // filled on reads: upcoming, live or ended
	// PayTimeoutSec is how long an order of this session may wait for payment before it is
	// cancelled and its stock returns (default DefaultPayTimeout).
	PayTimeoutSec int64 `json:"pay_timeout_sec"`
	// PublishedAt is set once the session is published: its stock is loaded into the stock
	// engine and it can no longer be edited.
	PublishedAt *time.Time     `json:"published_at,omitempty"`
	Items       []*SessionItem `json:"items"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
}

// Status of a session at a given moment.
const (
	SessionUpcoming = "upcoming"
	SessionLive     = "live"
	SessionEnded    = "ended"
)

// StatusAt tells whether the session is upcoming, live or ended at now.
func (s *Session) StatusAt(now time.Time) string {
	switch {
	case now.Before(s.StartAt):
		return SessionUpcoming
	case now.Before(s.EndAt):
		return SessionLive
	}
	return SessionEnded
}

// Editable reports whether the session and its items may still change: only before it is
// published and before it starts.
func (s *Session) Editable(now time.Time) bool { return s.PublishedAt == nil && now.Before(s.StartAt) }

// PayTimeout is the session's payment deadline as a duration.
func (s *Session) PayTimeout() time.Duration { return time.Duration(s.PayTimeoutSec) * time.Second }

// Payment deadline bounds.
const (
	DefaultPayTimeout = 15 * time.Minute
	MinPayTimeout     = time.Second
	MaxPayTimeout     = 24 * time.Hour
)

// Validate checks the session's own fields (not its items).
func (s *Session) Validate() error {
	if err := ValidateText("name", s.Name, 1, MaxNameRunes); err != nil {
		return err
	}
	if s.StartAt.IsZero() || s.EndAt.IsZero() {
		return Errorf(EINVALID, "start_at and end_at are required")
	}
	if !s.EndAt.After(s.StartAt) {
		return Errorf(EINVALID, "end_at must be after start_at")
	}
	if s.EndAt.Sub(s.StartAt) > MaxSessionDuration {
		return Errorf(EINVALID, "a session may last at most %s", MaxSessionDuration)
	}
	if d := s.PayTimeout(); d < MinPayTimeout || d > MaxPayTimeout {
		return Errorf(EINVALID, "pay_timeout_sec must be between %d and %d", int64(MinPayTimeout/time.Second), int64(MaxPayTimeout/time.Second))
	}
	return nil
}

// SessionItem is one SKU on sale in a session: how many units are allotted to the sale out of the
// SKU's stock, at what price, and how many one shopper may buy.
type SessionItem struct {
	ID           int64  `json:"id,string"`
	SessionID    int64  `json:"session_id,string"`
	SKUID        int64  `json:"sku_id,string"`
	MerchantID   int64  `json:"merchant_id,string"`
	Title        string `json:"title"` // the SKU's title, for listings
	Allotted     int64  `json:"allotted"`
	SalePrice    Money  `json:"sale_price"`
	PerUserLimit int64  `json:"per_user_limit"`
	// ListPrice is the SKU's catalog price as the item was last read (not stored with the
	// item): a flash-sale order's line lists at it, less the sale (package promo).
	ListPrice Money `json:"list_price"`
}

// Validate checks the item's own fields; stock and session state are checked by the store.
func (it *SessionItem) Validate() error {
	if it.SKUID <= 0 {
		return Errorf(EINVALID, "sku_id is required")
	}
	if it.Allotted <= 0 || it.Allotted > MaxStock {
		return Errorf(EINVALID, "allotted must be between 1 and %d", int64(MaxStock))
	}
	if err := it.SalePrice.Validate("sale_price"); err != nil {
		return err
	}
	if it.PerUserLimit <= 0 || it.PerUserLimit > MaxPerUserLimit {
		return Errorf(EINVALID, "per_user_limit must be between 1 and %d", MaxPerUserLimit)
	}
	return nil
}

// SessionFilter selects sessions whose window ends after EndAfter, by start time.
type SessionFilter struct {
	EndAfter  time.Time
	Published bool
	Limit     int
}

// SessionStore keeps sale sessions and their items. Changes are refused once a session has
// started, judged against the now the caller passes.
type SessionStore interface {
	// CreateSession stores s (without items) with s.ID set; it fails only with EUNAVAILABLE.
	CreateSession(ctx context.Context, s *Session) error
	// SessionByID returns the session with its items, or ENOTFOUND.
	SessionByID(ctx context.Context, id int64) (*Session, error)
	// UpdateSession changes a session's name and window in one transaction: it reads the
	// session with a write lock, lets change edit it (its error is returned as is), and writes
	// it back. Returns ENOTFOUND, or ECONFLICT if the session started before now.
	UpdateSession(ctx context.Context, id int64, now time.Time, change func(*Session) error) (*Session, error)
	// ListSessions returns sessions with their items, earliest start first; with Published,
	// only published ones.
	ListSessions(ctx context.Context, f SessionFilter) ([]*Session, error)

	// AddItem stores it with it.ID set and fills MerchantID and Title from the SKU. Returns
	// ENOTFOUND (session or SKU), ECONFLICT if the session started before now, the SKU is
	// already in the session, the session has MaxSessionItems items, or the allotment plus what
	// other sessions that have not ended allotted exceeds the SKU's stock; EINVALID if the sale
	// price is not in the SKU's currency.
	AddItem(ctx context.Context, it *SessionItem, now time.Time) error
	// UpdateItem changes an item's allotment, sale price and limit in one transaction, like
	// UpdateSession, with the same checks as AddItem. Returns ENOTFOUND if the session has no
	// such item.
	UpdateItem(ctx context.Context, sessionID, itemID int64, now time.Time, change func(*SessionItem) error) (*SessionItem, error)
	// DeleteItem removes an item. Returns ENOTFOUND, or ECONFLICT if the session started.
	DeleteItem(ctx context.Context, sessionID, itemID int64, now time.Time) error

	// PublishSession marks a session published at now (freezing it) and returns it with its
	// items. Publishing again returns it unchanged. Returns ENOTFOUND, or ECONFLICT if it ended.
	PublishSession(ctx context.Context, id int64, now time.Time) (*Session, error)
	// ItemByID returns a session item with its session (items not included); ENOTFOUND.
	ItemByID(ctx context.Context, itemID int64) (*SessionItem, *Session, error)
}
