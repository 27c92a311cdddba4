package surge

import "context"

// MaxRequestIDBytes bounds a client request id (idempotency key).
const MaxRequestIDBytes = 64

// MaxReserveUnits bounds the units of one reservation. A sale item takes at most
// MaxPerUserLimit; the stock engine also keeps a red-envelope budget, whose units are minor
// units of money and whose claims take many at once.
const MaxReserveUnits = 1<<31 - 1

// StockItem is a session item as the stock engine sees it: how many units are on sale and how
// many one user may hold.
type StockItem struct {
	ID           int64 // the session item id
	Allotted     int64
	PerUserLimit int64
}

// Validate checks the item's fields.
func (it StockItem) Validate() error {
	switch {
	case it.ID <= 0:
		return Errorf(EINVALID, "item id must be positive")
	case it.Allotted < 0 || it.Allotted > MaxStock:
		return Errorf(EINVALID, "allotted must be between 0 and %d", int64(MaxStock))
	case it.PerUserLimit <= 0 || it.PerUserLimit > MaxStock:
		return Errorf(EINVALID, "per-user limit must be between 1 and %d", int64(MaxStock))
	}
	return nil
}

// ReserveRequest asks for units of an item for a user. RequestID makes it idempotent: a retry
// with the same item and request id returns the first reservation. OrderID, if set, is kept
// with the reservation and returned to retries, so a retried purchase finds its first order.
type ReserveRequest struct {
	ItemID    int64
	UserID    int64
	Quantity  int64
	RequestID string
	OrderID   int64
}

// Validate checks the request's fields.
func (r ReserveRequest) Validate() error {
	switch {
	case r.ItemID <= 0:
		return Errorf(EINVALID, "item id must be positive")
	case r.UserID <= 0:
		return Errorf(EINVALID, "user id must be positive")
	case r.Quantity <= 0 || r.Quantity > MaxReserveUnits:
		return Errorf(EINVALID, "quantity must be between 1 and %d", MaxReserveUnits)
	case r.OrderID < 0:
		return Errorf(EINVALID, "order id must not be negative")
	}
	return ValidateRequestID(r.RequestID)
}

// ValidateRequestID checks an idempotency key: 1 to MaxRequestIDBytes bytes.
func ValidateRequestID(id string) error {
	if id == "" || len(id) > MaxRequestIDBytes {
		return Errorf(EINVALID, "request id must be 1 to %d bytes", MaxRequestIDBytes)
	}
	return nil
}

// Outcome is the stock engine's decision on a reservation.
type Outcome uint8

// The outcomes.
const (
	Reserved     Outcome = iota + 1 // the units are the user's until confirmed or released
	SoldOut                         // not enough units left
	LimitReached                    // the user would hold more than the per-user limit
)

func (o Outcome) String() string {
	switch o {
	case Reserved:
		return "reserved"
	case SoldOut:
		return "sold_out"
	case LimitReached:
		return "limit_reached"
	}
	return "unknown"
}

// ReserveResult is the answer to a reservation. Held is the units the user holds of the item
// after the decision (reserved plus sold to them). For a reservation, OrderID is the one its
// first request carried, and Replayed says this answer repeats an earlier one.
type ReserveResult struct {
	Outcome  Outcome
	Held     int64
	OrderID  int64
	Replayed bool
}

// BatchResult is one answer of a batch of reservations: a decision, or the error that prevented
// that one request.
type BatchResult struct {
	ReserveResult
	Err error
}

// OpenReservation is a reservation neither confirmed nor released.
type OpenReservation struct {
	RequestID string
	UserID    int64
	OrderID   int64
	Quantity  int64
}

// StockLevels are an item's counters. Allotted = Available + Reserved + Sold, always.
type StockLevels struct {
	Allotted  int64 `json:"allotted"`
	Available int64 `json:"available"`
	Reserved  int64 `json:"reserved"`
	Sold      int64 `json:"sold"`
}

// Check returns an error if the levels break the stock invariants.
func (l StockLevels) Check() error {
	if l.Available < 0 || l.Reserved < 0 || l.Sold < 0 {
		return Errorf(EINTERNAL, "stock below zero: %+v", l)
	}
	if l.Available+l.Reserved+l.Sold != l.Allotted {
		return Errorf(EINTERNAL, "available + reserved + sold != allotted: %+v", l)
	}
	return nil
}

// StockEngine decides, atomically and durably, who gets each unit of a flash-sale item.
type StockEngine interface {
	// Load creates an item, or changes its allotment and per-user limit. The allotment may
	// drop only down to what is reserved or sold (ECONFLICT otherwise).
	Load(ctx context.Context, it StockItem) error
	// Reserve decides a reservation. Returns ENOTFOUND for an unknown item, EINVALID for a bad
	// request; sold out and limit reached are outcomes, not errors. Only a reservation is
	// remembered for retries; a refused request changed nothing and is decided afresh.
	Reserve(ctx context.Context, r ReserveRequest) (ReserveResult, error)
	// Confirm marks a reservation paid (its units sold). Idempotent. Returns ENOTFOUND if there
	// is no such reservation, ECONFLICT if it was released.
	Confirm(ctx context.Context, itemID int64, requestID string) error
	// Release returns a reservation's units to the sale (cancel or timeout), exactly once:
	// releasing again is a no-op. Returns ENOTFOUND if there is no such reservation,
	// ECONFLICT if it was confirmed.
	Release(ctx context.Context, itemID int64, requestID string) error
	// Levels returns an item's counters, or ENOTFOUND.
	Levels(ctx context.Context, itemID int64) (StockLevels, error)
	// Held returns the units a user holds of an item (reserved or sold), or ENOTFOUND for an
	// unknown item.
	Held(ctx context.Context, itemID, userID int64) (int64, error)
	// OpenReservations lists an item's reservations that are neither confirmed nor released
	// (bounded by the item's allotment), for finding reservations whose order never got
	// recorded. Returns ENOTFOUND for an unknown item.
	OpenReservations(ctx context.Context, itemID int64) ([]OpenReservation, error)
	// Reservation looks up, without deciding anything, a user's reservation made with a request
	// id, answered as a retry of it would be (Replayed set); found is false if there is none.
	Reservation(ctx context.Context, itemID, userID int64, requestID string) (res ReserveResult, found bool, err error)
}
