package coupon

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/surgecommerce/surge"
)

// Coupons on orders: an order is priced with the coupons a shopper names and takes them, all or
// none, when it is made (Lock); they are used when it is paid (Use) and come back when it is
// cancelled, expires or is refunded (Return). Every step is keyed by the order and idempotent,
// so the order service's settling sweep can repeat it until it holds.

// LockTTL is how long coupons may stay locked to an order that does not exist before the sweep
// returns them: far longer than an order's command takes to be written, and than the order
// service takes to give a reservation without an order its order (order.OrphanAfter).
const LockTTL = 5 * time.Minute

// Bounds of the caches of batch rules and SKU categories.
const (
	rulesCached      = 100_000
	categoriesCached = 100_000
	categoryFresh    = time.Minute
)

// ruleOf returns a batch's rule. A batch's rule never changes once it is live, and coupons exist
// only of batches that went live, so a rule read once is kept.
func (s *Service) ruleOf(ctx context.Context, batch int64) (Rule, error) {
	return s.rules.Get(ctx, batch, otter.LoaderFunc[int64, Rule](func(ctx context.Context, batch int64) (Rule, error) {
		b, err := s.store.CouponBatch(ctx, batch)
		if err != nil {
			return Rule{}, err
		}
		if b.State == surge.BatchDraft {
			return Rule{}, surge.Errorf(surge.EINTERNAL, "batch %d has coupons and is a draft", batch)
		}
		return DecodeRule(b.Rule)
	}))
}

// categoryOf returns the top-level category of an SKU, "" when the catalog has none.
func (s *Service) categoryOf(ctx context.Context, sku int64) (string, error) {
	if s.catalog == nil {
		return "", nil
	}
	return s.categories.Get(ctx, sku, otter.LoaderFunc[int64, string](func(ctx context.Context, sku int64) (string, error) {
		k, err := s.catalog.SKUByID(ctx, sku)
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		p, err := s.catalog.SPUByID(ctx, k.SPUID)
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		return p.CategoryL1, nil
	}))
}

// Quote prices an order's lines with a shopper's coupons, without locking them: each coupon must
// be the shopper's, valid now, and apply (scope, threshold, stacking group). It says nothing of
// whether a coupon is free: locking decides that. The lines' categories are filled in from the
// catalog when a coupon's scope is a category.
func (s *Service) Quote(ctx context.Context, user int64, currency string, lines []Line, ids []int64) (surge.PriceBreakdown, error) {
	return s.quote(ctx, user, currency, lines, ids, true)
}

// quote is Quote; valid says whether each coupon must be valid now (not when pricing an order
// its coupons were locked to before).
func (s *Service) quote(ctx context.Context, user int64, currency string, lines []Line, ids []int64, valid bool) (surge.PriceBreakdown, error) {
	if len(ids) == 0 || len(ids) > MaxPerOrder {
		return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "an order takes 1 to %d coupons, not %d", MaxPerOrder, len(ids))
	}
	seen := make(map[int64]bool, len(ids))
	for _, id := range ids {
		if id <= 0 || seen[id] {
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon ids are positive and given once each")
		}
		seen[id] = true
	}
	list, err := s.store.CouponsByID(ctx, ids)
	if err != nil {
		return surge.PriceBreakdown{}, err
	}
	byID := make(map[int64]*surge.Coupon, len(list))
	for _, c := range list {
		byID[c.ID] = c
	}
	now := s.now()
	applied := make([]Applied, len(ids))
	byCategory := false
	for i, id := range ids {
		c := byID[id]
		switch {
		case c == nil || c.UserID != user:
			return surge.PriceBreakdown{}, surge.Errorf(surge.ENOTFOUND, "coupon %d is not one of yours", id)
		case !valid:
		case now.Before(c.ValidFrom):
			return surge.PriceBreakdown{}, surge.Errorf(surge.ECONFLICT, "coupon %d is valid from %s", id, c.ValidFrom.Format(time.RFC3339))
		case !now.Before(c.ValidUntil):
			return surge.PriceBreakdown{}, surge.Errorf(surge.ECONFLICT, "coupon %d expired at %s", id, c.ValidUntil.Format(time.RFC3339))
		}
		r, err := s.ruleOf(ctx, c.BatchID)
		if err != nil {
			return surge.PriceBreakdown{}, err
		}
		applied[i] = Applied{ID: id, Rule: r}
		byCategory = byCategory || r.Scope.Kind == ScopeCategory
	}
	if byCategory {
		lines = append([]Line(nil), lines...)
		for i := range lines {
			if lines[i].Category == "" {
				if lines[i].Category, err = s.categoryOf(ctx, lines[i].SKU); err != nil {
					return surge.PriceBreakdown{}, err
				}
			}
		}
	}
	return Price(currency, lines, applied)
}

// OrderRef names an order for its coupons: the order, its shopper, and (for events and live
// metrics) its session and shop.
type OrderRef struct {
	Order, User, Session, Merchant int64
}

// Lock prices an order with a shopper's coupons (see Quote) and puts them on it, all or none.
// key names the request making the order: a retry of it gets the order the coupons were first
// locked to, which it must then use. ECONFLICT names a coupon used or on another order.
func (s *Service) Lock(ctx context.Context, ref OrderRef, key, currency string, lines []Line, ids []int64) (int64, *surge.PriceBreakdown, error) {
	ids = slices.Sorted(slices.Values(ids)) // applied in a fixed order, so Locked prices the same
	b, err := s.Quote(ctx, ref.User, currency, lines, ids)
	if err != nil {
		s.metrics.order("lock_refused")
		return 0, nil, err
	}
	locked, err := s.store.LockCoupons(ctx, ref.User, ref.Order, key, ids, s.now().UTC())
	if err != nil {
		s.metrics.order("lock_refused")
		return 0, nil, err
	}
	ref.Order = locked
	s.changed(ctx, ref.User)
	s.metrics.order("locked")
	s.emit(ctx, surge.EventCouponLocked, strconv.FormatInt(locked, 10), onOrder(ref, &b))
	return locked, &b, nil
}

// Locked prices an order with the coupons locked on it (nil when there are none): the price of
// an order whose making was interrupted, or a retried request's first order.
func (s *Service) Locked(ctx context.Context, user, order int64, currency string, lines []Line) (*surge.PriceBreakdown, error) {
	on, err := s.store.CouponsOnOrders(ctx, []int64{order})
	if err != nil || len(on) == 0 {
		return nil, err
	}
	ids := make([]int64, len(on))
	for i, c := range on {
		ids[i] = c.ID
	}
	slices.Sort(ids)
	b, err := s.quote(ctx, user, currency, lines, ids, false)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// Use marks an order's coupons used, each with the discount its price gives it. Idempotent.
func (s *Service) Use(ctx context.Context, o *surge.Order) error {
	if o.Price == nil || len(o.Price.Coupons) == 0 {
		return nil
	}
	amounts := make(map[int64]int64, len(o.Price.Coupons))
	for _, c := range o.Price.Coupons {
		amounts[c.Coupon] = c.Amount
	}
	if err := s.store.UseCoupons(ctx, o.ID, amounts); err != nil {
		return err
	}
	s.changed(ctx, o.UserID)
	s.metrics.order("used")
	s.emit(ctx, surge.EventCouponUsed, strconv.FormatInt(o.ID, 10), onOrder(refOf(o), o.Price))
	return nil
}

// Unlock gives back the coupons an attempt (by: the order id it drew, which Lock was given)
// locked to an order it did not make: it was refused. A retry of its request that locked them
// again since keeps them. Idempotent.
func (s *Service) Unlock(ctx context.Context, ref OrderRef, by int64) error {
	n, err := s.store.ReleaseLock(ctx, ref.Order, by, time.Time{})
	if err != nil || n == 0 {
		return err
	}
	s.returned(ctx, ref, nil)
	return nil
}

// ReturnOf gives a cancelled, expired or refunded order's coupons back to its shopper.
// Idempotent.
func (s *Service) ReturnOf(ctx context.Context, o *surge.Order) error {
	if o.Price == nil || len(o.Price.Coupons) == 0 {
		return nil
	}
	n, err := s.store.ReturnCoupons(ctx, o.ID)
	if err != nil || n == 0 {
		return err
	}
	s.returned(ctx, refOf(o), o.Price)
	return nil
}

// returned tells the shopper's wallet, the metrics and the bus that coupons came back.
func (s *Service) returned(ctx context.Context, ref OrderRef, price *surge.PriceBreakdown) {
	s.changed(ctx, ref.User)
	s.metrics.order("returned")
	s.emit(ctx, surge.EventCouponReturned, strconv.FormatInt(ref.Order, 10), onOrder(ref, price))
}

// OrderFinder finds orders by id, for the sweep of locks.
type OrderFinder interface {
	OrdersByID(ctx context.Context, ids []int64) ([]*surge.Order, error)
}

// SweepLocks returns the coupons locked for longer than LockTTL to orders that were never made:
// a request that locked them and then found the item sold out, failed, or died before its order
// went out. It returns how many orders' coupons it returned.
func (s *Service) SweepLocks(ctx context.Context, orders OrderFinder) (int, error) {
	cutoff := s.now().Add(-LockTTL)
	stale, err := s.store.StaleLocks(ctx, cutoff, maxListed)
	if err != nil || len(stale) == 0 {
		return 0, err
	}
	users := map[int64]int64{}
	var ids []int64
	for _, c := range stale {
		if _, ok := users[c.OrderID]; !ok {
			ids = append(ids, c.OrderID)
		}
		users[c.OrderID] = c.UserID
	}
	found, err := orders.OrdersByID(ctx, ids)
	if err != nil {
		return 0, err
	}
	for _, o := range found {
		delete(users, o.ID) // made: its coupons follow it
	}
	n := 0
	for order, user := range users {
		// Only coupons still locked before the cutoff: a retry of the request may have locked
		// them again, on its way to making the order.
		got, err := s.store.ReleaseLock(ctx, order, 0, cutoff)
		if err != nil {
			return n, err
		}
		if got == 0 {
			continue
		}
		s.returned(ctx, OrderRef{Order: order, User: user}, nil)
		s.log.WarnContext(ctx, "coupons locked to an order that was never made were returned", "order", order, "user", user)
		n++
	}
	return n, nil
}

// changed moves a shopper's wallet version: no node serves the wallet it cached before. A
// failure is logged: the cached wallet then shows a coupon's state a minute late at most.
func (s *Service) changed(ctx context.Context, user int64) {
	if _, err := s.versions.Add(ctx, walletKey(user), 1, walletWindow); err != nil {
		s.log.WarnContext(ctx, "wallet version not moved", "user", user, "err", err)
	}
}

func refOf(o *surge.Order) OrderRef {
	return OrderRef{Order: o.ID, User: o.UserID, Session: o.SessionID, Merchant: o.MerchantID}
}

func onOrder(ref OrderRef, b *surge.PriceBreakdown) surge.CouponsOnOrder {
	e := surge.CouponsOnOrder{OrderID: ref.Order, UserID: ref.User, SessionID: ref.Session, MerchantID: ref.Merchant,
		Coupons: []surge.CouponTaken{}}
	if b != nil {
		e.Currency, e.Discount, e.Coupons = b.Currency, b.Discount, b.Coupons
	}
	return e
}

// Issuance returns a batch's count from the ledger (for the audit), or ENOTFOUND.
func (s *Service) Issuance(ctx context.Context, batch int64) (Issuance, error) {
	return s.ledger.Issuance(ctx, batch)
}
