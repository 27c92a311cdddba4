package promo

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
)

// Bounds of an activity.
const (
	MaxName     = 100
	MaxPriority = 1_000_000
	MaxCap      = 1_000_000_000
	MaxBudget   = coupon.MaxBudget
	MaxSpan     = 366 * 24 * time.Hour
	maxListed   = 500
)

// Timing of the index: a change reaches every node's index as soon as the change's note does
// (Changes), and every node reads all live activities again each ReloadEvery, which is when the
// counters of activities locked on other nodes (used, spent) reach its index.
const (
	ReloadEvery = 30 * time.Second
	skusCached  = 1_000_000
	skuFresh    = 5 * time.Second // a list price change reaches quotes within this
)

// Changes carries the note that an activity changed to every node (a key-value bucket of the
// bus in surge serve).
type Changes interface {
	// Changed notes that an activity changed.
	Changed(ctx context.Context, id int64) error
	// Watch calls fn with the id of each activity noted as changed from now on, until ctx
	// ends; ready closes once it watches.
	Watch(ctx context.Context, fn func(id int64)) (ready <-chan struct{}, err error)
}

// Coupons gives the coupons a cart may take and the coupons rebates give (coupon.Service).
type Coupons interface {
	Offers(ctx context.Context, user int64, ids []int64) ([]coupon.Offer, error)
	Give(ctx context.Context, batch, user int64, key string) (*surge.Coupon, error)
}

// Service runs activities (operators for any shop or the platform, merchants for their own),
// quotes carts, and prices checkouts.
type Service struct {
	store   surge.ActivityStore
	orders  surge.OrderStore   // shoppers' orders, for audiences
	catalog surge.CatalogStore // SKUs' prices, shops and categories
	batches surge.CouponStore  // rebates' batches
	coupons Coupons            // nil: carts take no coupons
	changes Changes            // nil: one node, which changes its own index
	bus     surge.EventEmitter
	log     *slog.Logger
	ids     func() (int64, error)
	now     func() time.Time
	index   *Index
	skus    *otter.Cache[int64, skuInfo]
	metrics *metrics
}

// skuInfo is what pricing needs of an SKU.
type skuInfo struct {
	shop     int64
	category string
	price    surge.Money
}

// Config is what the service is built on.
type Config struct {
	Store   surge.ActivityStore
	Orders  surge.OrderStore
	Catalog surge.CatalogStore
	Batches surge.CouponStore
	Coupons Coupons
	Changes Changes
	Bus     surge.EventEmitter
	Log     *slog.Logger
	IDs     func() (int64, error)
	Now     func() time.Time // nil: the wall clock
}

// New returns the promotion service with an empty index: Load fills it.
func New(c Config) *Service {
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Service{store: c.Store, orders: c.Orders, catalog: c.Catalog, batches: c.Batches, coupons: c.Coupons, changes: c.Changes,
		bus: c.Bus, log: c.Log, ids: c.IDs, now: c.Now, index: NewIndex(),
		skus: otter.Must(&otter.Options[int64, skuInfo]{MaximumSize: skusCached, ExpiryCalculator: otter.ExpiryWriting[int64, skuInfo](skuFresh)})}
}

// Index is the node's index of live activities.
func (s *Service) Index() *Index { return s.index }

// Load reads every live activity into the index.
func (s *Service) Load(ctx context.Context) error {
	since := s.index.Generation()
	list, err := s.store.LiveActivities(ctx)
	if err != nil {
		return err
	}
	for _, id := range s.index.Replace(list, since) {
		s.log.ErrorContext(ctx, "a live activity's rule does not compile; it prices nothing", "activity", id)
	}
	s.metrics.indexed(s.index)
	return nil
}

// Run keeps the index current until ctx ends: each change noted is read from the store at once,
// and everything is read again each ReloadEvery.
func (s *Service) Run(ctx context.Context) {
	if s.changes != nil {
		for {
			_, err := s.changes.Watch(ctx, func(id int64) { s.refresh(ctx, id, true) })
			if err == nil || ctx.Err() != nil {
				break
			}
			s.log.WarnContext(ctx, "activity changes not watched; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	t := time.NewTicker(ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Load(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "live activities not reloaded", "err", err)
			}
		}
	}
}

// refresh takes one activity into the index as the store has it now; noted says a change's
// note asked (its lag is measured).
func (s *Service) refresh(ctx context.Context, id int64, noted bool) {
	a, err := s.store.Activity(ctx, id)
	switch {
	case surge.ErrorCode(err) == surge.ENOTFOUND:
		s.index.Drop(id)
	case err != nil:
		s.log.WarnContext(ctx, "changed activity not read; the next reload takes it", "activity", id, "err", err)
		return
	default:
		if err := s.index.Put(a); err != nil {
			s.log.ErrorContext(ctx, "a changed activity's rule does not compile", "activity", id, "err", err)
		}
		if noted {
			s.metrics.lag(s.now().Sub(a.UpdatedAt))
		}
	}
	s.metrics.indexed(s.index)
}

// Refresh takes activities into the index as the store has them now (their counters moved: an
// order was refused one).
func (s *Service) Refresh(ctx context.Context, ids []int64) {
	for _, id := range ids {
		s.refresh(ctx, id, false)
	}
}

// changed tells every node an activity changed, and the bus.
func (s *Service) changed(ctx context.Context, a *surge.Activity) {
	if err := s.index.Put(a); err != nil { // this node at once
		s.log.ErrorContext(ctx, "a changed activity's rule does not compile", "activity", a.ID, "err", err)
	}
	s.metrics.indexed(s.index)
	if s.changes != nil {
		if err := s.changes.Changed(ctx, a.ID); err != nil {
			s.log.WarnContext(ctx, "activity change not noted; other nodes take it at their next reload", "activity", a.ID, "err", err)
		}
	}
	s.emit(ctx, surge.EventPromoChanged, strconv.FormatInt(a.ID, 10)+":"+strconv.FormatInt(a.Version, 10), a)
}

func (s *Service) emit(ctx context.Context, kind, key string, data any) {
	surge.TellBus(ctx, s.bus, s.log, kind, key, s.now(), data)
}

// ActivityInput creates an activity, as a draft.
type ActivityInput struct {
	MerchantID int64     `json:"merchant_id,string,omitempty"`
	Name       string    `json:"name"`
	Rule       Rule      `json:"rule"`
	Priority   int64     `json:"priority"`
	Cap        int64     `json:"cap"`
	Budget     int64     `json:"budget"`
	StartsAt   time.Time `json:"starts_at"`
	EndsAt     time.Time `json:"ends_at"`
}

// ActivityPatch changes a draft activity: the fields given.
type ActivityPatch struct {
	Name     *string    `json:"name,omitempty"`
	Rule     *Rule      `json:"rule,omitempty"`
	Priority *int64     `json:"priority,omitempty"`
	Cap      *int64     `json:"cap,omitempty"`
	Budget   *int64     `json:"budget,omitempty"`
	StartsAt *time.Time `json:"starts_at,omitempty"`
	EndsAt   *time.Time `json:"ends_at,omitempty"`
}

// owns says whether the actor may manage the activity: staff any, a merchant its own.
func owns(a surge.Actor, x *surge.Activity) bool {
	return a.Role.Staff() || (a.Role == surge.RoleMerchant && x.MerchantID == a.UserID)
}

// validate checks an activity as it would be stored; the error names the field.
func validate(a *surge.Activity) (Rule, error) {
	if err := surge.ValidateText("name", a.Name, 1, MaxName); err != nil {
		return Rule{}, err
	}
	switch {
	case a.Priority < 0 || a.Priority > MaxPriority:
		return Rule{}, surge.Errorf(surge.EINVALID, "priority must be from 0 to %d", MaxPriority)
	case a.Cap < 0 || a.Cap > MaxCap:
		return Rule{}, surge.Errorf(surge.EINVALID, "cap must be from 0 (none) to %d orders", MaxCap)
	case a.Budget < 0 || a.Budget > MaxBudget:
		return Rule{}, surge.Errorf(surge.EINVALID, "budget must be from 0 (none) to %d minor units", int64(MaxBudget))
	case a.StartsAt.IsZero() || !a.EndsAt.After(a.StartsAt) || a.EndsAt.Sub(a.StartsAt) > MaxSpan:
		return Rule{}, surge.Errorf(surge.EINVALID, "an activity runs from starts_at until a later ends_at, at most 366 days")
	}
	r, err := DecodeRule(a.Rule)
	if err != nil {
		return Rule{}, err
	}
	if a.MerchantID != 0 && (r.Scope.Kind == ScopeShops && (len(r.Scope.Shops) != 1 || r.Scope.Shops[0] != a.MerchantID)) {
		return Rule{}, surge.Errorf(surge.EINVALID, "a merchant's activity applies to its own shop only")
	}
	if r.Audience == FirstInShop && a.MerchantID == 0 {
		return Rule{}, surge.Errorf(surge.EINVALID, "first_in_shop is for a merchant's activity (the shop is the merchant's)")
	}
	return r, nil
}

// Create creates a draft activity.
func (s *Service) Create(ctx context.Context, a surge.Actor, in ActivityInput) (*surge.Activity, error) {
	switch {
	case a.Role == surge.RoleMerchant && in.MerchantID != 0 && in.MerchantID != a.UserID:
		return nil, surge.Errorf(surge.EFORBIDDEN, "a merchant creates activities for its own shop")
	case a.Role == surge.RoleMerchant:
		in.MerchantID = a.UserID
	case !a.Role.Staff():
		return nil, surge.Errorf(surge.EFORBIDDEN, "activities are for merchants and operators")
	case in.MerchantID < 0:
		return nil, surge.Errorf(surge.EINVALID, "merchant_id must be a shop, or absent for the platform")
	}
	rule, err := json.Marshal(in.Rule)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	x := &surge.Activity{MerchantID: in.MerchantID, Name: in.Name, Rule: rule, Priority: in.Priority, Cap: in.Cap, Budget: in.Budget,
		StartsAt: in.StartsAt.UTC(), EndsAt: in.EndsAt.UTC(), State: surge.ActivityDraft, CreatedBy: a.UserID, CreatedAt: now, UpdatedAt: now}
	if _, err := validate(x); err != nil {
		return nil, err
	}
	if x.ID, err = s.ids(); err != nil {
		return nil, err
	}
	if err := s.store.CreateActivity(ctx, x); err != nil {
		return nil, err
	}
	s.emit(ctx, surge.EventPromoChanged, strconv.FormatInt(x.ID, 10)+":1", x)
	return x, nil
}

// ActivityView is an activity and what orders hold of it, by state (locked, confirmed,
// released).
type ActivityView struct {
	*surge.Activity
	Locks map[string]surge.CouponTally `json:"locks"`
}

// Activity returns an activity: a live one to anyone signed in, the others to who manages them.
func (s *Service) Activity(ctx context.Context, a surge.Actor, id int64) (*ActivityView, error) {
	x, err := s.store.Activity(ctx, id)
	if err != nil {
		return nil, err
	}
	if !owns(a, x) {
		if x.State != surge.ActivityLive {
			return nil, surge.Errorf(surge.ENOTFOUND, "activity not found")
		}
		x.CreatedBy, x.Used, x.Spent, x.Cap, x.Budget = 0, 0, 0, 0, 0 // the shop's business
		return &ActivityView{Activity: x}, nil
	}
	locks, err := s.store.ActivityLocks(ctx, id)
	if err != nil {
		return nil, err
	}
	if x.Cap == 0 && x.Budget == 0 { // not counted in its row: what the orders hold of it
		x.Used = locks[surge.LockLocked].Count + locks[surge.LockConfirmed].Count
		x.Spent = locks[surge.LockLocked].Value + locks[surge.LockConfirmed].Value
	}
	return &ActivityView{Activity: x, Locks: locks}, nil
}

// Activities lists activities, newest first: a merchant its own, staff all (or one shop's with
// merchant > 0, the platform's with 0, every one with -1); state filters when not empty.
func (s *Service) Activities(ctx context.Context, a surge.Actor, merchant int64, state string) ([]*surge.Activity, error) {
	switch {
	case a.Role == surge.RoleMerchant:
		merchant = a.UserID
	case !a.Role.Staff():
		return nil, surge.Errorf(surge.EFORBIDDEN, "activities are listed for merchants and operators")
	}
	var states []string
	switch state {
	case "":
	case surge.ActivityDraft, surge.ActivityLive, surge.ActivityOffline:
		states = []string{state}
	default:
		return nil, surge.Errorf(surge.EINVALID, "state must be draft, live or offline")
	}
	return s.store.Activities(ctx, merchant, states, 0, maxListed)
}

// Versions returns an activity's saved versions, oldest first, to who manages it.
func (s *Service) Versions(ctx context.Context, a surge.Actor, id int64) ([]surge.ActivityVersion, error) {
	x, err := s.store.Activity(ctx, id)
	if err != nil {
		return nil, err
	}
	if !owns(a, x) {
		return nil, surge.Errorf(surge.ENOTFOUND, "activity not found")
	}
	return s.store.ActivityVersions(ctx, id)
}

// Update changes a draft activity (see ActivityPatch). A live activity is frozen: orders were
// priced by it (ECONFLICT); it only goes offline.
func (s *Service) Update(ctx context.Context, a surge.Actor, id int64, p ActivityPatch) (*surge.Activity, error) {
	x, err := s.store.UpdateActivity(ctx, id, a.UserID, func(x *surge.Activity) error {
		if !owns(a, x) {
			return surge.Errorf(surge.ENOTFOUND, "activity not found")
		}
		if x.State != surge.ActivityDraft {
			return surge.Errorf(surge.ECONFLICT, "activity %d is %s: it is frozen (orders may hold it); take it offline and make another", id, x.State)
		}
		if p.Name != nil {
			x.Name = *p.Name
		}
		if p.Rule != nil {
			rule, err := json.Marshal(*p.Rule)
			if err != nil {
				return err
			}
			x.Rule = rule
		}
		if p.Priority != nil {
			x.Priority = *p.Priority
		}
		if p.Cap != nil {
			x.Cap = *p.Cap
		}
		if p.Budget != nil {
			x.Budget = *p.Budget
		}
		if p.StartsAt != nil {
			x.StartsAt = p.StartsAt.UTC()
		}
		if p.EndsAt != nil {
			x.EndsAt = p.EndsAt.UTC()
		}
		x.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
		_, err := validate(x)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.emit(ctx, surge.EventPromoChanged, strconv.FormatInt(x.ID, 10)+":"+strconv.FormatInt(x.Version, 10), x)
	return x, nil
}

// Publish makes a draft activity live: it prices carts within its window from now on, and is
// frozen. Refused (EINVALID) when its window has ended, when its exclusions would make a cycle
// with the live activities' (a group that gives way to itself through others), or when its
// rebate's batch is not a live batch of its shop in its currency.
func (s *Service) Publish(ctx context.Context, a surge.Actor, id int64) (*surge.Activity, error) {
	var batchCheck error
	x, err := s.store.UpdateActivity(ctx, id, a.UserID, func(x *surge.Activity) error {
		if !owns(a, x) {
			return surge.Errorf(surge.ENOTFOUND, "activity not found")
		}
		if x.State != surge.ActivityDraft {
			return surge.Errorf(surge.ECONFLICT, "activity %d is %s; only a draft goes live", id, x.State)
		}
		r, err := validate(x)
		if err != nil {
			return err
		}
		now := s.now()
		if !x.EndsAt.After(now) {
			return surge.Errorf(surge.EINVALID, "activity %d ended at %s", id, x.EndsAt.Format(time.RFC3339))
		}
		if err := s.acyclic(x.ID, r); err != nil {
			return err
		}
		if r.Kind == Rebate {
			if batchCheck = s.rebateBatch(ctx, x, r); batchCheck != nil {
				return batchCheck
			}
		}
		x.State, x.UpdatedAt = surge.ActivityLive, now.UTC().Truncate(time.Millisecond)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, x)
	return x, nil
}

// rebateBatch checks a rebate's batch: live, of the activity's shop (or the platform's), in its
// currency.
func (s *Service) rebateBatch(ctx context.Context, x *surge.Activity, r Rule) error {
	if s.batches == nil {
		return surge.Errorf(surge.EINVALID, "this deployment gives no coupons: a rebate cannot be given")
	}
	b, err := s.batches.CouponBatch(ctx, r.RebateBatch)
	if surge.ErrorCode(err) == surge.ENOTFOUND {
		return surge.Errorf(surge.EINVALID, "rebate_batch_id: coupon batch %d not found", r.RebateBatch)
	}
	if err != nil {
		return err
	}
	cr, err := coupon.DecodeRule(b.Rule)
	switch {
	case err != nil:
		return err
	case b.State != surge.BatchLive:
		return surge.Errorf(surge.EINVALID, "rebate_batch_id: coupon batch %d is %s, not live", b.ID, b.State)
	case b.MerchantID != x.MerchantID:
		return surge.Errorf(surge.EINVALID, "rebate_batch_id: coupon batch %d is not the activity's shop's", b.ID)
	case cr.Currency != r.Currency:
		return surge.Errorf(surge.EINVALID, "rebate_batch_id: coupon batch %d is in %s, the activity in %s", b.ID, cr.Currency, r.Currency)
	}
	return nil
}

// acyclic checks that an activity's exclusions, with the live activities', order the groups:
// "A excludes B" means B's activities give way to A's, and a group that gives way to itself
// through others (A excludes B, B excludes C, C excludes A) leaves no way to decide. The error
// names the cycle.
func (s *Service) acyclic(id int64, r Rule) error {
	edges := map[string][]string{}
	add := func(group string, excludes []string) {
		if group == "" {
			return
		}
		for _, g := range excludes {
			if !slices.Contains(edges[group], g) {
				edges[group] = append(edges[group], g)
			}
		}
	}
	for _, x := range s.index.Excluding() {
		if x.ID != id {
			add(x.Rule.Group, x.Rule.Excludes)
		}
	}
	add(r.Group, r.Excludes)
	if cycle := findCycle(edges); cycle != nil {
		return surge.Errorf(surge.EINVALID, "the exclusions between stacking groups would make a cycle: %s", strings.Join(cycle, " excludes "))
	}
	return nil
}

// findCycle returns a cycle of the graph (its first node repeated at its end), or nil.
func findCycle(edges map[string][]string) []string {
	const (
		unseen = iota
		open
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(n string) []string
	visit = func(n string) []string {
		state[n] = open
		path = append(path, n)
		for _, m := range edges[n] {
			switch state[m] {
			case open:
				i := slices.Index(path, m)
				return append(slices.Clone(path[i:]), m)
			case unseen:
				if c := visit(m); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return nil
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range edges {
			if !yield(n) {
				return
			}
		}
	}) {
		if state[n] == unseen {
			if c := visit(n); c != nil {
				return c
			}
		}
	}
	return nil
}

// Offline takes an activity out: it prices nothing more; orders that hold it keep their price
// and are settled as any other.
func (s *Service) Offline(ctx context.Context, a surge.Actor, id int64) (*surge.Activity, error) {
	x, err := s.store.UpdateActivity(ctx, id, a.UserID, func(x *surge.Activity) error {
		if !owns(a, x) {
			return surge.Errorf(surge.ENOTFOUND, "activity not found")
		}
		if x.State == surge.ActivityOffline {
			return surge.Errorf(surge.ECONFLICT, "activity %d is offline already", id)
		}
		x.State, x.UpdatedAt = surge.ActivityOffline, s.now().UTC().Truncate(time.Millisecond)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, x)
	return x, nil
}

// sku returns what pricing needs of an SKU, kept a few seconds.
func (s *Service) sku(ctx context.Context, id int64) (skuInfo, error) {
	return s.skus.Get(ctx, id, otter.LoaderFunc[int64, skuInfo](func(ctx context.Context, id int64) (skuInfo, error) {
		k, err := s.catalog.SKUByID(ctx, id)
		if err != nil {
			return skuInfo{}, err
		}
		info := skuInfo{shop: k.MerchantID, price: k.Price}
		p, err := s.catalog.SPUByID(ctx, k.SPUID)
		switch {
		case err == nil:
			info.category = p.CategoryL1
		case surge.ErrorCode(err) != surge.ENOTFOUND:
			return skuInfo{}, err
		}
		return info, nil
	}))
}

// QuoteRequest asks for the best price of a cart (or one SKU): with the coupons named, or, when
// none are, with the best of the shopper's coupons (none with WithoutCoupons: what a checkout
// naming no coupon charges).
type QuoteRequest struct {
	Lines          []coupon.CartLine `json:"lines"`
	CouponIDs      surge.IDList      `json:"coupon_ids,omitempty"`
	WithoutCoupons bool              `json:"without_coupons,omitempty"`
}

// Quote is a cart's best price.
type Quote struct {
	Price surge.PriceBreakdown `json:"price"`
	// Exhaustive says every legal combination was weighed (false: the search was cut at
	// MaxEvaluations, and Price is the best it found).
	Exhaustive bool      `json:"exhaustive"`
	QuotedAt   time.Time `json:"quoted_at"`
}

// Quote prices a cart of up to MaxLines lines at catalog prices for the signed-in user: the
// best legal combination of live activities and the shopper's coupons and red envelopes. It
// locks nothing. ENOTFOUND for an unknown SKU or a coupon not the shopper's; EINVALID for a bad
// cart, one in two currencies, or coupons named that do not apply together.
func (s *Service) Quote(ctx context.Context, a surge.Actor, in QuoteRequest) (*Quote, error) {
	start := time.Now()
	q, err := s.quote(ctx, a, in)
	s.metrics.quote(err, time.Since(start))
	return q, err
}

func (s *Service) quote(ctx context.Context, a surge.Actor, in QuoteRequest) (*Quote, error) {
	if len(in.Lines) == 0 || len(in.Lines) > MaxLines {
		return nil, surge.Errorf(surge.EINVALID, "a cart has 1 to %d lines, not %d", MaxLines, len(in.Lines))
	}
	seen := make(map[int64]bool, len(in.Lines))
	lines := make([]Line, len(in.Lines))
	currency := ""
	for i, l := range in.Lines {
		switch {
		case l.SKU <= 0:
			return nil, surge.Errorf(surge.EINVALID, "line %d: sku_id must be an SKU", i+1)
		case l.Quantity < 1 || l.Quantity > surge.MaxPerUserLimit:
			return nil, surge.Errorf(surge.EINVALID, "line %d: quantity must be from 1 to %d", i+1, surge.MaxPerUserLimit)
		case seen[l.SKU]:
			return nil, surge.Errorf(surge.EINVALID, "line %d: SKU %d is on another line already", i+1, l.SKU)
		}
		seen[l.SKU] = true
		k, err := s.sku(ctx, l.SKU)
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			return nil, surge.Errorf(surge.ENOTFOUND, "line %d: SKU %d not found", i+1, l.SKU)
		}
		if err != nil {
			return nil, err
		}
		if currency == "" {
			currency = k.price.Currency
		} else if k.price.Currency != currency {
			return nil, surge.Errorf(surge.EINVALID, "line %d is in %s; the cart is in %s", i+1, k.price.Currency, currency)
		}
		lines[i] = Line{SKU: l.SKU, Shop: k.shop, Category: k.category, Unit: k.price.Amount, Quantity: l.Quantity}
	}
	var offers []Offer
	if in.WithoutCoupons && len(in.CouponIDs) > 0 {
		return nil, surge.Errorf(surge.EINVALID, "a quote without coupons names none")
	}
	if a.Role == surge.RoleShopper && s.coupons != nil && !in.WithoutCoupons {
		var err error
		if offers, err = s.coupons.Offers(ctx, a.UserID, in.CouponIDs); err != nil {
			return nil, err
		}
	} else if len(in.CouponIDs) > 0 {
		return nil, surge.Errorf(surge.EINVALID, "coupons are a shopper's")
	}
	p, err := s.best(ctx, a.UserID, currency, lines, offers, len(in.CouponIDs) > 0)
	if err != nil {
		return nil, err
	}
	return &Quote{Price: p.Price, Exhaustive: p.Exhaustive, QuotedAt: s.now().UTC()}, nil
}

// best prices lines at the best legal combination of the activities in the index the user may
// have and the offers (all of them, when fixed).
func (s *Service) best(ctx context.Context, user int64, currency string, lines []Line, offers []Offer, fixed bool) (*Priced, error) {
	cands := s.index.Candidates(currency, lines, s.now())
	acts := make([]*Act, 0, len(cands))
	var history []*surge.Order
	read := false
	for _, c := range cands {
		if c.Act.Rule.Audience != Everyone {
			if user == 0 {
				continue
			}
			if !read {
				var err error
				if history, err = s.orders.OrdersByUser(ctx, user, historyRead); err != nil {
					return nil, err
				}
				read = true
			}
			if !fits(c.Act, history) {
				continue
			}
		}
		acts = append(acts, c.Act)
	}
	slices.SortFunc(acts, byPriority) // a fixed order: the same cart is priced the same
	if fixed {
		offers = slices.SortedFunc(slices.Values(offers), func(a, b Offer) int { return cmp.Compare(a.ID, b.ID) })
	}
	return Best(currency, lines, acts, offers, fixed)
}

// historyRead bounds the orders read to judge a shopper's audiences: a shopper with that many is
// no new shopper, and the lock (OrderStore.CreateCheckout) judges exactly.
const historyRead = 100

// fits says whether a shopper with these orders is in an activity's audience.
func fits(x *Act, history []*surge.Order) bool {
	for _, o := range history {
		if o.State == surge.OrderCancelled {
			continue
		}
		if x.Rule.Audience == NewShoppers || o.MerchantID == x.Merchant {
			return false
		}
	}
	return true
}

// Price prices a checkout's lines (at the prices the order charges, categories filled here) for
// a shopper with exactly the coupons named: the best activities with them. The order then locks
// what the price takes (OrderStore.CreateCheckout).
func (s *Service) Price(ctx context.Context, user int64, currency string, lines []Line, ids []int64) (*Priced, error) {
	lines = slices.Clone(lines)
	for i := range lines {
		if lines[i].Category == "" {
			k, err := s.sku(ctx, lines[i].SKU)
			if err != nil && surge.ErrorCode(err) != surge.ENOTFOUND {
				return nil, err
			}
			lines[i].Category = k.category
		}
	}
	var offers []Offer
	if len(ids) > 0 {
		if s.coupons == nil {
			return nil, surge.Errorf(surge.EINVALID, "this deployment takes no coupons")
		}
		var err error
		if offers, err = s.coupons.Offers(ctx, user, ids); err != nil {
			return nil, err
		}
	}
	return s.best(ctx, user, currency, lines, offers, len(ids) > 0)
}

// Forget drops SKUs' prices from the node's cache: a checkout found a price other than the
// one quoted.
func (s *Service) Forget(skus []int64) {
	for _, id := range skus {
		s.skus.Invalidate(id)
	}
}

// Locked tells what an order just made holds of activities: its event and metrics.
func (s *Service) Locked(ctx context.Context, o *surge.Order) {
	s.step(ctx, surge.EventPromoLocked, o)
}

// Settled follows an order's activities once the order settled them (OrderStore.SettleCheckout):
// a paid order's (promo.used) gives the coupons of its rebates, once each; a cancelled,
// expired or refunded one's were released (promo.released). An error is for the caller to try
// again (the order's sweep).
func (s *Service) Settled(ctx context.Context, o *surge.Order) error {
	if o.Price == nil || len(o.Price.Activities) == 0 {
		return nil
	}
	switch o.State {
	case surge.OrderPaid:
		for _, t := range o.Price.Activities {
			if t.RebateBatch == 0 || s.coupons == nil {
				continue
			}
			key := strconv.FormatInt(o.ID, 10) + "-" + strconv.FormatInt(t.Activity, 10)
			_, err := s.coupons.Give(ctx, t.RebateBatch, o.UserID, key)
			switch code := surge.ErrorCode(err); code {
			case "":
				s.metrics.rebate("given")
			case surge.EUNAVAILABLE, surge.EINTERNAL: // the store or the ledger did not answer: the sweep tries again
				return err
			default: // a refusal no retry clears: the batch ran out, went offline, the shopper is at its limit
				s.metrics.rebate(code)
				s.log.WarnContext(ctx, "a rebate was not given", "order", o.ID, "activity", t.Activity, "err", err)
			}
		}
		s.step(ctx, surge.EventPromoUsed, o)
	case surge.OrderCancelled, surge.OrderRefunded:
		s.step(ctx, surge.EventPromoReleased, o)
	}
	return nil
}

// step sends an order's activity step on the bus and counts it.
func (s *Service) step(ctx context.Context, kind string, o *surge.Order) {
	if o.Price == nil || len(o.Price.Activities) == 0 {
		return
	}
	e := surge.ActivitiesOnOrder{OrderID: o.ID, UserID: o.UserID, MerchantID: o.MerchantID, Currency: o.Amount.Currency,
		Activities: o.Price.Activities}
	for _, t := range o.Price.Activities {
		e.Discount += t.Amount
	}
	s.emit(ctx, kind, strconv.FormatInt(o.ID, 10), []surge.ActivitiesOnOrder{e})
	s.metrics.step(strings.TrimPrefix(kind, "promo."), o.Price.Activities)
}
