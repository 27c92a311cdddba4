package coupon

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"
	"golang.org/x/sync/errgroup"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/batch"
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
		if err == nil {
			r, err = r.on(c)
		}
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
	locked, err := s.lock(ctx, &lockJob{lock: surge.CouponLock{User: ref.User, Order: ref.Order, Key: key, IDs: ids}, ref: ref, price: &b})
	if err != nil {
		s.metrics.order("lock_refused")
		return 0, nil, err
	}
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

// UseAll marks the coupons of paid orders used, each with the discount its order's price gives
// it, in one write. Idempotent. refusals[i] is ECONFLICT for an order whose coupons are not all
// on it.
func (s *Service) UseAll(ctx context.Context, orders []*surge.Order) (refusals []error, err error) {
	uses := make([]surge.CouponUse, len(orders))
	for i, o := range orders {
		uses[i].Order = o.ID
		if o.Price != nil && len(o.Price.Coupons) > 0 {
			uses[i].Amounts = make(map[int64]int64, len(o.Price.Coupons))
			for _, c := range o.Price.Coupons {
				uses[i].Amounts[c.Coupon] = c.Amount
			}
		}
	}
	if refusals, err = s.store.UseCoupons(ctx, uses); err != nil {
		return nil, err
	}
	var used []surge.CouponsOnOrder
	for i, o := range orders {
		if refusals[i] == nil && uses[i].Amounts != nil {
			used = append(used, onOrder(refOf(o), o.Price))
		}
	}
	s.tell(ctx, surge.EventCouponUsed, used)
	return refusals, nil
}

// ReturnAll gives the coupons of cancelled, expired or refunded orders back to their shoppers,
// in one write. Idempotent.
func (s *Service) ReturnAll(ctx context.Context, orders []*surge.Order) error {
	ids := make([]int64, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	if _, err := s.store.ReturnCoupons(ctx, ids); err != nil {
		return err
	}
	var back []surge.CouponsOnOrder
	for _, o := range orders {
		if o.Price != nil && len(o.Price.Coupons) > 0 {
			back = append(back, onOrder(refOf(o), o.Price))
		}
	}
	s.tell(ctx, surge.EventCouponReturned, back)
	return nil
}

// Unlock gives back the coupons that attempts locked to orders they did not make: they were
// refused. A retry of an attempt's request that locked them again since keeps them (see
// surge.CouponRelease). by[i] is the order id attempt i drew. Idempotent; one write for all.
func (s *Service) Unlock(ctx context.Context, refs []OrderRef, by []int64) error {
	rels := make([]surge.CouponRelease, len(refs))
	for i, r := range refs {
		rels[i] = surge.CouponRelease{Order: r.Order, By: by[i]}
	}
	n, err := s.store.ReleaseLocks(ctx, rels, time.Time{})
	if err != nil {
		return err
	}
	var back []surge.CouponsOnOrder
	for i, r := range refs {
		if n[i] > 0 {
			back = append(back, onOrder(r, nil))
		}
	}
	s.tell(ctx, surge.EventCouponReturned, back)
	return nil
}

// maxEventBatch bounds the orders one coupon event carries; walletMovers bounds the wallet
// versions moved at once.
const (
	maxEventBatch = 1000
	walletMovers  = 32
)

// tell moves the wallets of the shoppers whose coupons took a step (locked, used, returned) and
// sends the step's event, one per batch: an event per order cost the embedded bus a write per
// purchase with a coupon.
func (s *Service) tell(ctx context.Context, kind string, list []surge.CouponsOnOrder) {
	step := strings.TrimPrefix(kind, "coupon.") // locked, used, returned
	var g errgroup.Group
	g.SetLimit(walletMovers) // each a round trip to Redis in the scale-out shape
	for _, e := range list {
		g.Go(func() error { s.changed(ctx, e.UserID); return nil })
		s.metrics.order(step)
	}
	g.Wait()
	for len(list) > 0 {
		n := min(len(list), maxEventBatch)
		// Each message has an id of its own: one made of the orders it carries would let the
		// bus drop a later batch that starts with the same order (a retried settlement).
		id, err := s.ids()
		if err != nil {
			s.log.WarnContext(ctx, "event not published", "kind", kind, "err", err)
			return
		}
		s.emit(ctx, kind, strconv.FormatInt(id, 10), list[:n])
		list = list[n:]
	}
}

// SweepLocks returns the coupons locked for longer than LockTTL to orders that were never made:
// a request that locked them and then failed or died before its order went out, and was never
// retried. It returns how many orders' coupons it returned.
func (s *Service) SweepLocks(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-LockTTL)
	stale, err := s.store.StaleLocks(ctx, cutoff, maxListed)
	if err != nil || len(stale) == 0 {
		return 0, err
	}
	users := map[int64]int64{}
	var rels []surge.CouponRelease
	for _, c := range stale {
		if _, ok := users[c.OrderID]; !ok {
			rels = append(rels, surge.CouponRelease{Order: c.OrderID})
		}
		users[c.OrderID] = c.UserID
	}
	// Only coupons still locked before the cutoff, to an order still not made: a retry of the
	// request may have locked them again, or made the order, meanwhile.
	got, err := s.store.ReleaseLocks(ctx, rels, cutoff)
	if err != nil {
		return 0, err
	}
	var back []surge.CouponsOnOrder
	for i, r := range rels {
		if got[i] > 0 {
			back = append(back, onOrder(OrderRef{Order: r.Order, User: users[r.Order]}, nil))
			s.log.WarnContext(ctx, "coupons locked to an order that was never made were returned", "order", r.Order, "user", users[r.Order])
		}
	}
	s.tell(ctx, surge.EventCouponReturned, back)
	return len(back), nil
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
		e.Currency, e.Discount, e.Coupons = b.Currency, b.CouponDiscount(), b.Coupons
	}
	return e
}

// Issuance returns a batch's count from the ledger (for the audit), or ENOTFOUND.
func (s *Service) Issuance(ctx context.Context, batch int64) (Issuance, error) {
	return s.ledger.Issuance(ctx, batch)
}

// Bounds of the locker.
const (
	maxLockBatch   = 256  // locks decided in one write
	lockers        = 4    // batches under way at once
	lockQueueDepth = 4096 // locks waiting for the locker
	lockWait       = 10 * time.Second
)

// lockJob is one lock waiting for the locker, with the order and price it is for.
type lockJob struct {
	lock  surge.CouponLock
	ref   OrderRef
	price *surge.PriceBreakdown
	order int64
	err   error
	done  chan struct{}
}

// lock decides one lock: by the locker, with the locks waiting beside it, while Run runs; alone
// otherwise.
func (s *Service) lock(ctx context.Context, j *lockJob) (int64, error) {
	j.done = make(chan struct{})
	if !s.locking.Load() {
		s.lockAll(ctx, []*lockJob{j})
		return j.order, j.err
	}
	select {
	case s.locks <- j:
	default:
		return 0, surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "coupons are being locked faster than this node can write; retry"), 100)
	}
	select {
	case <-j.done:
		return j.order, j.err
	case <-s.lockersDone: // stopped before taking it
		return 0, surge.Errorf(surge.EUNAVAILABLE, "the node is stopping; retry with the same request id")
	case <-ctx.Done(): // the lock may still be made: a retry of the request finds it
		return 0, surge.Errorf(surge.EUNAVAILABLE, "the coupons were not locked in time; retry with the same request id")
	}
}

// Run decides the locks of coupons that wait, up to maxLockBatch in one write, until ctx ends:
// one write per coupon lock made the embedded database's synced commits the purchase path's
// limit. lockers batches are under way at once, so that one batch's round trips to the network
// store and to the wallet versions overlap the next one's (their coupons' rows are locked in id
// order, so two batches never wait for each other in a circle).
func (s *Service) Run(ctx context.Context) {
	s.locking.Store(true)
	defer s.stopLockers.Do(func() { s.locking.Store(false); close(s.lockersDone) })
	var g errgroup.Group
	for range lockers {
		g.Go(func() error { s.runLocker(ctx); return nil })
	}
	g.Wait()
}

// runLocker is one of Run's lockers.
func (s *Service) runLocker(ctx context.Context) {
	for {
		var jobs []*lockJob
		select {
		case j := <-s.locks:
			jobs = batch.Fill(append(make([]*lockJob, 0, 16), j), s.locks, maxLockBatch)
		case <-ctx.Done():
			for { // answer what waits
				select {
				case j := <-s.locks:
					j.err = surge.Errorf(surge.EUNAVAILABLE, "the node is stopping; retry with the same request id")
					close(j.done)
				default:
					return
				}
			}
		}
		wctx, cancel := context.WithTimeout(context.Background(), lockWait)
		s.lockAll(wctx, jobs)
		cancel()
	}
}

// lockAll decides locks in one write and answers each.
func (s *Service) lockAll(ctx context.Context, jobs []*lockJob) {
	locks := make([]surge.CouponLock, len(jobs))
	for i, j := range jobs {
		locks[i] = j.lock
	}
	orders, refusals, err := s.store.LockCoupons(ctx, locks, s.now().UTC())
	var locked []surge.CouponsOnOrder
	for i, j := range jobs {
		if err != nil {
			j.err = err
		} else {
			j.order, j.err = orders[i], refusals[i]
		}
		if j.err == nil {
			j.ref.Order = j.order
			locked = append(locked, onOrder(j.ref, j.price))
		}
	}
	s.tell(ctx, surge.EventCouponLocked, locked) // before the answers: no wallet is read stale
	for _, j := range jobs {
		close(j.done)
	}
}

// CartLine is a line of a shopper's cart: an SKU at its catalog price.
type CartLine struct {
	SKU      int64 `json:"sku_id,string"`
	Quantity int64 `json:"quantity"`
}

// Cart asks which of a shopper's coupons a cart can use.
type Cart struct {
	Lines []CartLine `json:"lines"`
}

// UsableCoupon is a coupon of the wallet a cart can use, and what it takes off the cart alone.
type UsableCoupon struct {
	WalletCoupon
	Takes int64 `json:"takes"`
}

// Usable lists the shopper's coupons and red envelopes that a cart (up to MaxLines lines, at
// the SKUs' catalog prices) can use now, each with what it would take off the cart alone,
// the most first. Returns ENOTFOUND for an SKU that does not exist, EINVALID for a bad cart or
// one in two currencies.
func (s *Service) Usable(ctx context.Context, a surge.Actor, cart Cart) ([]UsableCoupon, error) {
	if len(cart.Lines) == 0 || len(cart.Lines) > MaxLines {
		return nil, surge.Errorf(surge.EINVALID, "a cart has 1 to %d lines", MaxLines)
	}
	if s.catalog == nil {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "this node has no catalog to price carts")
	}
	lines := make([]Line, len(cart.Lines))
	currency := ""
	for i, cl := range cart.Lines {
		k, err := s.catalog.SKUByID(ctx, cl.SKU)
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			return nil, surge.Errorf(surge.ENOTFOUND, "line %d: SKU %d not found", i+1, cl.SKU)
		}
		if err != nil {
			return nil, err
		}
		if currency == "" {
			currency = k.Price.Currency
		} else if k.Price.Currency != currency {
			return nil, surge.Errorf(surge.EINVALID, "line %d is in %s; the cart is in %s", i+1, k.Price.Currency, currency)
		}
		category, err := s.categoryOf(ctx, cl.SKU)
		if err != nil {
			return nil, err
		}
		lines[i] = Line{SKU: cl.SKU, Shop: k.MerchantID, Category: category, Unit: k.Price.Amount, Quantity: cl.Quantity}
	}
	if _, err := Price(currency, lines, nil); err != nil { // the cart's own bounds: quantities, amounts
		return nil, err
	}
	wallet, err := s.Wallet(ctx, a)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := []UsableCoupon{}
	for _, w := range wallet {
		if w.State != surge.CouponIssued || now.Before(w.ValidFrom) || !now.Before(w.ValidUntil) {
			continue
		}
		r, err := s.ruleOf(ctx, w.BatchID)
		if err == nil {
			r, err = r.on(w.Coupon)
		}
		if err != nil {
			return nil, err
		}
		if b, err := Price(currency, lines, []Applied{{ID: w.ID, Rule: r}}); err == nil {
			out = append(out, UsableCoupon{WalletCoupon: w, Takes: b.Discount})
		}
	}
	slices.SortStableFunc(out, func(x, y UsableCoupon) int { return cmp.Compare(y.Takes, x.Takes) })
	return out, nil
}

// Offer is a coupon a cart may take, for the promotion engine (package promo): its id and rule
// (a red envelope's as a fixed amount of its value), whether it is a red envelope, and the
// label the shopper reads on a priced line.
type Offer struct {
	Applied
	Envelope bool
	Label    string
}

// Offers returns a shopper's coupons for pricing a cart: those named (each must be the
// shopper's and valid now, refused as Quote refuses them), or when ids is empty every coupon of
// the wallet not on an order and valid now.
func (s *Service) Offers(ctx context.Context, user int64, ids []int64) ([]Offer, error) {
	var list []*surge.Coupon
	now := s.now()
	if len(ids) == 0 {
		wallet, err := s.Wallet(ctx, surge.Actor{UserID: user, Role: surge.RoleShopper})
		if err != nil {
			return nil, err
		}
		for _, w := range wallet {
			if w.State == surge.CouponIssued && !now.Before(w.ValidFrom) && now.Before(w.ValidUntil) {
				list = append(list, w.Coupon)
			}
		}
	} else {
		if len(ids) > MaxPerOrder {
			return nil, surge.Errorf(surge.EINVALID, "an order takes at most %d coupons, not %d", MaxPerOrder, len(ids))
		}
		stored, err := s.store.CouponsByID(ctx, ids)
		if err != nil {
			return nil, err
		}
		byID := make(map[int64]*surge.Coupon, len(stored))
		for _, c := range stored {
			byID[c.ID] = c
		}
		for i, id := range ids {
			c := byID[id]
			switch {
			case id <= 0 || slices.Contains(ids[:i], id):
				return nil, surge.Errorf(surge.EINVALID, "coupon ids are positive and given once each")
			case c == nil || c.UserID != user:
				return nil, surge.Errorf(surge.ENOTFOUND, "coupon %d is not one of yours", id)
			case now.Before(c.ValidFrom):
				return nil, surge.Errorf(surge.ECONFLICT, "coupon %d is valid from %s", id, c.ValidFrom.Format(time.RFC3339))
			case !now.Before(c.ValidUntil):
				return nil, surge.Errorf(surge.ECONFLICT, "coupon %d expired at %s", id, c.ValidUntil.Format(time.RFC3339))
			}
			list = append(list, c)
		}
	}
	out := make([]Offer, 0, len(list))
	for _, c := range list {
		r, err := s.ruleOf(ctx, c.BatchID)
		if err != nil {
			return nil, err
		}
		envelope := r.Kind == Envelope
		if r, err = r.on(c); err != nil {
			return nil, err
		}
		label := "coupon"
		if envelope {
			label = "red envelope"
		}
		out = append(out, Offer{Applied: Applied{ID: c.ID, Rule: r}, Envelope: envelope, Label: label})
	}
	return out, nil
}
