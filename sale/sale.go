// Package sale is sale planning: operators lay out flash-sale sessions, allot stock to them and
// set sale prices and per-user limits; shoppers list what is on and what is coming.
package sale

import (
	"context"
	"fmt"
	"time"

	"github.com/surgecommerce/surge"
)

// Service applies the planning rules over a store, and publishes sessions into the stock
// engine.
type Service struct {
	store surge.SessionStore
	stock surge.StockEngine
	ids   func() (int64, error)
	now   func() time.Time
}

// New returns a planning service. now may be nil for the wall clock.
func New(store surge.SessionStore, stock surge.StockEngine, ids func() (int64, error), now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, stock: stock, ids: ids, now: now}
}

// SessionInput creates a session. PayTimeoutSec 0 means the default (15 minutes).
type SessionInput struct {
	Name          string    `json:"name"`
	StartAt       time.Time `json:"start_at"`
	EndAt         time.Time `json:"end_at"`
	PayTimeoutSec int64     `json:"pay_timeout_sec"`
}

// SessionPatch changes the fields it sets.
type SessionPatch struct {
	Name          *string    `json:"name"`
	StartAt       *time.Time `json:"start_at"`
	EndAt         *time.Time `json:"end_at"`
	PayTimeoutSec *int64     `json:"pay_timeout_sec"`
}

// ItemInput puts a SKU on sale in a session.
type ItemInput struct {
	SKUID        int64       `json:"sku_id,string"`
	Allotted     int64       `json:"allotted"`
	SalePrice    surge.Money `json:"sale_price"`
	PerUserLimit int64       `json:"per_user_limit"`
}

// ItemPatch changes the fields it sets.
type ItemPatch struct {
	Allotted     *int64       `json:"allotted"`
	SalePrice    *surge.Money `json:"sale_price"`
	PerUserLimit *int64       `json:"per_user_limit"`
}

func staff(a surge.Actor) error {
	if !a.Role.Staff() {
		return surge.Errorf(surge.EFORBIDDEN, "only operators and admins plan and watch sale sessions")
	}
	return nil
}

// CreateSession creates a session that starts in the future.
func (s *Service) CreateSession(ctx context.Context, a surge.Actor, in SessionInput) (*surge.Session, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	se := &surge.Session{Name: in.Name, StartAt: in.StartAt.UTC().Truncate(time.Millisecond),
		EndAt: in.EndAt.UTC().Truncate(time.Millisecond), Items: []*surge.SessionItem{}, CreatedAt: now, UpdatedAt: now,
		PayTimeoutSec: in.PayTimeoutSec}
	if se.PayTimeoutSec == 0 {
		se.PayTimeoutSec = int64(surge.DefaultPayTimeout / time.Second)
	}
	if err := validateWindow(se, now); err != nil {
		return nil, err
	}
	var err error
	if se.ID, err = s.ids(); err != nil {
		return nil, err
	}
	if err := s.store.CreateSession(ctx, se); err != nil {
		return nil, err
	}
	se.Status = se.StatusAt(now)
	return se, nil
}

func validateWindow(se *surge.Session, now time.Time) error {
	if err := se.Validate(); err != nil {
		return err
	}
	if !se.StartAt.After(now) {
		return surge.Errorf(surge.EINVALID, "start_at must be in the future")
	}
	return nil
}

// Session returns a session with its items.
func (s *Service) Session(ctx context.Context, id int64) (*surge.Session, error) {
	se, err := s.store.SessionByID(ctx, id)
	if err != nil {
		return nil, err
	}
	se.Status = se.StatusAt(s.now())
	return se, nil
}

// ItemStock is one item's counters as the stock engine holds them.
type ItemStock struct {
	ItemID int64             `json:"item_id,string"`
	Stock  surge.StockLevels `json:"stock"`
}

// SessionStock is what is left, held and sold of a session's items, live.
type SessionStock struct {
	SessionID int64       `json:"session_id,string"`
	Items     []ItemStock `json:"items"`
}

// Stock reads a session (with its items) and each item's counters in the stock engine
// (operators): cheap enough to poll every second during a sale, unlike an audit, which also
// reads every order. Before the session is published its items are all available.
func (s *Service) Stock(ctx context.Context, a surge.Actor, id int64) (*SessionStock, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	se, err := s.store.SessionByID(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &SessionStock{SessionID: se.ID, Items: make([]ItemStock, 0, len(se.Items))}
	for _, it := range se.Items {
		levels, err := ItemLevels(ctx, s.stock, se, it)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, ItemStock{ItemID: it.ID, Stock: levels})
	}
	return out, nil
}

// ItemLevels reads a session item's counters from the stock engine. The items of a session not
// yet published are not in the engine: all their units are available.
func ItemLevels(ctx context.Context, engine surge.StockEngine, se *surge.Session, it *surge.SessionItem) (surge.StockLevels, error) {
	if se.PublishedAt == nil {
		return surge.StockLevels{Allotted: it.Allotted, Available: it.Allotted}, nil
	}
	levels, err := engine.Levels(ctx, it.ID)
	if err != nil {
		return surge.StockLevels{}, fmt.Errorf("stock of item %d: %w", it.ID, err)
	}
	return levels, nil
}

// UpdateSession changes a session that has not started (ECONFLICT once it has), atomically.
func (s *Service) UpdateSession(ctx context.Context, a surge.Actor, id int64, in SessionPatch) (*surge.Session, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	se, err := s.store.UpdateSession(ctx, id, now, func(se *surge.Session) error {
		if in.Name != nil {
			se.Name = *in.Name
		}
		if in.StartAt != nil {
			se.StartAt = in.StartAt.UTC().Truncate(time.Millisecond)
		}
		if in.EndAt != nil {
			se.EndAt = in.EndAt.UTC().Truncate(time.Millisecond)
		}
		if in.PayTimeoutSec != nil {
			se.PayTimeoutSec = *in.PayTimeoutSec
		}
		se.UpdatedAt = now
		return validateWindow(se, now)
	})
	if err != nil {
		return nil, err
	}
	se.Status = se.StatusAt(now)
	return se, nil
}

// Sessions lists the sessions that are live or upcoming, earliest first, with their items; at
// most MaxSessionPage of them.
func (s *Service) Sessions(ctx context.Context, limit int) ([]*surge.Session, error) {
	if limit < 0 || limit > surge.MaxSessionPage {
		return nil, surge.Errorf(surge.EINVALID, "limit must be between 1 and %d", surge.MaxSessionPage)
	}
	if limit == 0 {
		limit = surge.MaxSessionPage
	}
	now := s.now()
	list, err := s.store.ListSessions(ctx, surge.SessionFilter{EndAfter: now, Limit: limit})
	for _, se := range list {
		se.Status = se.StatusAt(now)
	}
	return list, err
}

// AddItem puts a SKU on sale in a session that has not started.
func (s *Service) AddItem(ctx context.Context, a surge.Actor, sessionID int64, in ItemInput) (*surge.SessionItem, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	it := &surge.SessionItem{SessionID: sessionID, SKUID: in.SKUID, Allotted: in.Allotted, SalePrice: in.SalePrice,
		PerUserLimit: in.PerUserLimit}
	if err := it.Validate(); err != nil {
		return nil, err
	}
	var err error
	if it.ID, err = s.ids(); err != nil {
		return nil, err
	}
	return it, s.store.AddItem(ctx, it, s.now())
}

// UpdateItem changes an item of a session that has not started, atomically.
func (s *Service) UpdateItem(ctx context.Context, a surge.Actor, sessionID, itemID int64, in ItemPatch) (*surge.SessionItem, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	return s.store.UpdateItem(ctx, sessionID, itemID, s.now(), func(it *surge.SessionItem) error {
		if in.Allotted != nil {
			it.Allotted = *in.Allotted
		}
		if in.SalePrice != nil {
			it.SalePrice = *in.SalePrice
		}
		if in.PerUserLimit != nil {
			it.PerUserLimit = *in.PerUserLimit
		}
		return it.Validate()
	})
}

// DeleteItem takes an item out of a session that has not started.
func (s *Service) DeleteItem(ctx context.Context, a surge.Actor, sessionID, itemID int64) error {
	if err := staff(a); err != nil {
		return err
	}
	return s.store.DeleteItem(ctx, sessionID, itemID, s.now())
}

// Publish freezes a session and preheats it: every item's allotment and limit go into the stock
// engine, so the sale can open on time. Publishing again repeats the preheat (the engine's load
// is idempotent), which is how an operator retries a publish the engine failed.
func (s *Service) Publish(ctx context.Context, a surge.Actor, id int64) (*surge.Session, error) {
	if err := staff(a); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	se, err := s.store.PublishSession(ctx, id, now)
	if err != nil {
		return nil, err
	}
	if err := s.preheat(ctx, se); err != nil {
		return nil, err
	}
	se.Status = se.StatusAt(now)
	return se, nil
}

func (s *Service) preheat(ctx context.Context, se *surge.Session) error {
	for _, it := range se.Items {
		if err := s.stock.Load(ctx, surge.StockItem{ID: it.ID, Allotted: it.Allotted, PerUserLimit: it.PerUserLimit}); err != nil {
			return fmt.Errorf("preheat item %d: %w", it.ID, err)
		}
	}
	return nil
}

// PreheatAll loads every published session that has not ended into the stock engine: what a
// node does at start, so a fresh stock backend (a new Redis) catches up.
func (s *Service) PreheatAll(ctx context.Context) (int, error) {
	list, err := s.store.ListSessions(ctx, surge.SessionFilter{EndAfter: s.now(), Published: true, Limit: surge.MaxListLimit})
	if err != nil {
		return 0, err
	}
	for _, se := range list {
		if err := s.preheat(ctx, se); err != nil {
			return 0, err
		}
	}
	return len(list), nil
}
