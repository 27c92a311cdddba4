package coupon

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/maypok86/otter/v2"

	"github.com/surgecommerce/surge"
)

// Bounds of a batch.
const (
	MaxTotal = 100_000_000 // coupons in one batch
	// MaxBudget bounds a red-envelope budget and its cap per shopper (minor units: 10 billion).
	MaxBudget    = 1_000_000_000_000
	MaxValidDays = 366
	MaxClaimSpan = 366 * 24 * time.Hour // from the claim window's opening to its close
	maxListed    = 500
)

// Service runs coupon batches (operators for any shop or the platform, merchants for their own
// shop) and shoppers' claims.
type Service struct {
	store    surge.CouponStore
	catalog  surge.CatalogStore // the categories of SKUs, for coupons scoped to one (nil: none)
	ledger   *Ledger
	bus      surge.EventEmitter
	log      *slog.Logger
	ids      func() (int64, error)
	now      func() time.Time
	versions surge.Counter // each shopper's wallet version, shared by the nodes (see Wallet)
	wallets  *otter.Cache[int64, wallet]
	metrics  *metrics // nil until Register

	rules       *otter.Cache[int64, Rule]   // live batches' rules, which never change
	categories  *otter.Cache[int64, string] // SKUs' top-level categories
	locks       chan *lockJob               // to the lockers (Run)
	locking     atomic.Bool                 // the lockers run
	lockersDone chan struct{}               // closed once the lockers stopped
	stopLockers sync.Once
}

// wallet is a cached wallet and the version it was read at.
type wallet struct {
	version int64
	items   []WalletCoupon
}

const (
	// WalletsCached bounds the wallets a node keeps.
	WalletsCached = 100_000
	// walletFresh is how long a node keeps a wallet: far shorter than walletWindow, so a
	// version count that started again from zero never meets a wallet cached at that count.
	walletFresh  = time.Minute
	walletWindow = 24 * time.Hour
)

// NewService returns the coupon service; its events go to bus (none when nil); versions counts
// changes of each shopper's wallet, shared by every node (Redis in the scale-out shape). now
// may be nil for the wall clock.
func NewService(store surge.CouponStore, catalog surge.CatalogStore, ledger *Ledger, versions surge.Counter, bus surge.EventEmitter, log *slog.Logger,
	ids func() (int64, error), now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, catalog: catalog, ledger: ledger, versions: versions, bus: bus, log: log, ids: ids, now: now,
		wallets: otter.Must(&otter.Options[int64, wallet]{MaximumSize: WalletsCached,
			ExpiryCalculator: otter.ExpiryWriting[int64, wallet](walletFresh)}),
		locks: make(chan *lockJob, lockQueueDepth), lockersDone: make(chan struct{}),
		rules: otter.Must(&otter.Options[int64, Rule]{MaximumSize: rulesCached}),
		categories: otter.Must(&otter.Options[int64, string]{MaximumSize: categoriesCached,
			ExpiryCalculator: otter.ExpiryWriting[int64, string](categoryFresh)})}
}

func walletKey(user int64) string { return "wallet:" + strconv.FormatInt(user, 10) }

// emit sends an event; a failure is logged, never fatal to the claim (the coupon is stored).
// A retried claim sends its event again under the same id, which consumers drop.
func (s *Service) emit(ctx context.Context, kind, key string, data any) {
	surge.TellBus(ctx, s.bus, s.log, kind, key, s.now(), data)
}

// BatchInput creates a batch. A merchant's batch is its own shop's; an operator names the shop
// (merchant_id), or none for the platform's.
type BatchInput struct {
	MerchantID int64     `json:"merchant_id,string,omitempty"`
	Name       string    `json:"name"`
	Rule       Rule      `json:"rule"`
	Total      int64     `json:"total"`
	PerUser    int64     `json:"per_user"`
	ClaimFrom  time.Time `json:"claim_from"`
	ClaimUntil time.Time `json:"claim_until"`
	ValidFrom  time.Time `json:"valid_from"`
	ValidUntil time.Time `json:"valid_until"`
	ValidDays  int64     `json:"valid_days"`
}

// BatchPatch changes a batch; absent fields stay. A draft takes any change; a live batch only
// its name, a higher total (or a lower one down to what is issued), and a later claim close.
type BatchPatch struct {
	Name       *string    `json:"name"`
	Rule       *Rule      `json:"rule"`
	Total      *int64     `json:"total"`
	PerUser    *int64     `json:"per_user"`
	ClaimFrom  *time.Time `json:"claim_from"`
	ClaimUntil *time.Time `json:"claim_until"`
	ValidFrom  *time.Time `json:"valid_from"`
	ValidUntil *time.Time `json:"valid_until"`
	ValidDays  *int64     `json:"valid_days"`
}

// Batch is a batch with its issuance (live and offline batches; a draft has issued none).
type Batch struct {
	*surge.CouponBatch
	Issuance Issuance `json:"issuance"`
}

// validate checks a batch's fields against each other.
func validate(b *surge.CouponBatch) (Rule, error) {
	if err := surge.ValidateText("name", b.Name, 1, surge.MaxNameRunes); err != nil {
		return Rule{}, err
	}
	r, err := DecodeRule(b.Rule)
	if err != nil {
		return Rule{}, surge.Errorf(surge.EINVALID, "rule: %s", surge.ErrorMessage(err))
	}
	switch {
	case r.Scope.Kind == ScopeShop && b.MerchantID != 0 && r.Scope.Shop != b.MerchantID,
		b.MerchantID != 0 && r.Scope.Kind != ScopeShop:
		return Rule{}, surge.Errorf(surge.EINVALID, "a shop's batch applies to its own shop: scope {\"kind\":\"shop\",\"shop\":\"%d\"}", b.MerchantID)
	case r.Kind == Envelope && (b.Total < r.Most() || b.Total > MaxBudget):
		return Rule{}, surge.Errorf(surge.EINVALID, "a budget's total must be from its largest envelope (%d) to %d minor units", r.Most(), int64(MaxBudget))
	case r.Kind == Envelope && (b.PerUser < r.Most() || b.PerUser > b.Total):
		return Rule{}, surge.Errorf(surge.EINVALID, "a budget's per_user cap must be from its largest envelope (%d) to its total, in minor units", r.Most())
	case r.Kind != Envelope && (b.Total < 1 || b.Total > MaxTotal):
		return Rule{}, surge.Errorf(surge.EINVALID, "total must be from 1 to %d", MaxTotal)
	case r.Kind != Envelope && (b.PerUser < 1 || b.PerUser > surge.MaxPerUserLimit):
		return Rule{}, surge.Errorf(surge.EINVALID, "per_user must be from 1 to %d", surge.MaxPerUserLimit)
	case !b.ClaimUntil.After(b.ClaimFrom) || b.ClaimUntil.Sub(b.ClaimFrom) > MaxClaimSpan:
		return Rule{}, surge.Errorf(surge.EINVALID, "claim_until must be after claim_from, by at most %d days", int(MaxClaimSpan.Hours()/24))
	case b.ValidDays != 0 && (b.ValidDays < 1 || b.ValidDays > MaxValidDays || !b.ValidFrom.IsZero() || !b.ValidUntil.IsZero()):
		return Rule{}, surge.Errorf(surge.EINVALID, "valid_days (1 to %d) excludes valid_from and valid_until", MaxValidDays)
	case b.ValidDays == 0 && (!b.ValidUntil.After(b.ValidFrom) || b.ValidUntil.Before(b.ClaimUntil)):
		return Rule{}, surge.Errorf(surge.EINVALID, "coupons need valid_days, or valid_until after valid_from and no earlier than claim_until")
	}
	return r, nil
}

// owns says whether the actor may manage the batch: staff any, a merchant its own.
func owns(a surge.Actor, b *surge.CouponBatch) bool {
	return a.Role.Staff() || (a.Role == surge.RoleMerchant && b.MerchantID == a.UserID)
}

// CreateBatch creates a draft batch.
func (s *Service) CreateBatch(ctx context.Context, a surge.Actor, in BatchInput) (*surge.CouponBatch, error) {
	switch {
	case a.Role == surge.RoleMerchant && in.MerchantID != 0 && in.MerchantID != a.UserID:
		return nil, surge.Errorf(surge.EFORBIDDEN, "a merchant creates batches for its own shop")
	case a.Role == surge.RoleMerchant:
		in.MerchantID = a.UserID
	case !a.Role.Staff():
		return nil, surge.Errorf(surge.EFORBIDDEN, "coupon batches are for merchants and operators")
	case in.MerchantID < 0:
		return nil, surge.Errorf(surge.EINVALID, "merchant_id must be a shop, or absent for the platform")
	}
	rule, err := json.Marshal(in.Rule)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	b := &surge.CouponBatch{MerchantID: in.MerchantID, Name: in.Name, Rule: rule, Total: in.Total, PerUser: in.PerUser,
		ClaimFrom: in.ClaimFrom.UTC(), ClaimUntil: in.ClaimUntil.UTC(), ValidFrom: in.ValidFrom.UTC(), ValidUntil: in.ValidUntil.UTC(),
		ValidDays: in.ValidDays, State: surge.BatchDraft, CreatedBy: a.UserID, CreatedAt: now, UpdatedAt: now}
	if _, err := validate(b); err != nil {
		return nil, err
	}
	if b.ID, err = s.ids(); err != nil {
		return nil, err
	}
	return b, s.store.CreateCouponBatch(ctx, b)
}

// Batch returns a batch and its issuance: any live batch to anyone signed in (to claim it), the
// others to who manages them.
func (s *Service) Batch(ctx context.Context, a surge.Actor, id int64) (*Batch, error) {
	b, err := s.store.CouponBatch(ctx, id)
	if err != nil {
		return nil, err
	}
	if b.State != surge.BatchLive && !owns(a, b) {
		return nil, surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
	}
	if !owns(a, b) {
		b.CreatedBy = 0 // who at the shop made it is the shop's business
	}
	out := &Batch{CouponBatch: b, Issuance: Issuance{Total: b.Total, Left: b.Total}}
	if b.State != surge.BatchDraft {
		is, err := s.ledger.Issuance(ctx, id)
		switch {
		case surge.ErrorCode(err) == surge.ENOTFOUND && b.State == surge.BatchOffline: // a draft taken offline: none issued
			out.Issuance = Issuance{}
		case err != nil:
			return nil, err
		default:
			out.Issuance = is
		}
	}
	return out, nil
}

// Batches lists batches, newest first: a merchant its own, staff all (or one shop's with
// merchant > 0, the platform's with 0, every one with -1); state filters when not empty.
func (s *Service) Batches(ctx context.Context, a surge.Actor, merchant int64, state string) ([]*surge.CouponBatch, error) {
	switch {
	case a.Role == surge.RoleMerchant:
		merchant = a.UserID
	case !a.Role.Staff():
		return nil, surge.Errorf(surge.EFORBIDDEN, "coupon batches are listed for merchants and operators")
	}
	var states []string
	switch state {
	case "":
	case surge.BatchDraft, surge.BatchLive, surge.BatchOffline:
		states = []string{state}
	default:
		return nil, surge.Errorf(surge.EINVALID, "state must be draft, live or offline")
	}
	return s.store.CouponBatches(ctx, merchant, states, 0, maxListed)
}

// UpdateBatch changes a batch (see BatchPatch).
func (s *Service) UpdateBatch(ctx context.Context, a surge.Actor, id int64, p BatchPatch) (*surge.CouponBatch, error) {
	raised := false // a live batch's higher total goes to the ledger once stored
	b, err := s.store.UpdateCouponBatch(ctx, id, func(b *surge.CouponBatch) error {
		old := b.Total
		if !owns(a, b) {
			return surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
		}
		switch b.State {
		case surge.BatchOffline:
			return surge.Errorf(surge.ECONFLICT, "batch %d is offline: it changes no more", id)
		case surge.BatchLive:
			if p.Rule != nil || p.PerUser != nil || p.ClaimFrom != nil || p.ValidFrom != nil || p.ValidUntil != nil || p.ValidDays != nil {
				return surge.Errorf(surge.ECONFLICT, "batch %d is live: its rule, limit and validity no longer change (name, total and claim_until do)", id)
			}
			if p.ClaimUntil != nil && p.ClaimUntil.Before(b.ClaimUntil) {
				return surge.Errorf(surge.ECONFLICT, "batch %d is live: its claims may close later, not earlier", id)
			}
		}
		if p.Rule != nil {
			rule, err := json.Marshal(*p.Rule)
			if err != nil {
				return err
			}
			b.Rule = rule
		}
		set := func(dst *time.Time, src *time.Time) {
			if src != nil {
				*dst = src.UTC()
			}
		}
		if p.Name != nil {
			b.Name = *p.Name
		}
		if p.Total != nil {
			b.Total = *p.Total
		}
		if p.PerUser != nil {
			b.PerUser = *p.PerUser
		}
		if p.ValidDays != nil {
			b.ValidDays = *p.ValidDays
		}
		set(&b.ClaimFrom, p.ClaimFrom)
		set(&b.ClaimUntil, p.ClaimUntil)
		set(&b.ValidFrom, p.ValidFrom)
		set(&b.ValidUntil, p.ValidUntil)
		if _, err := validate(b); err != nil {
			return err
		}
		// The ledger's total never stands above the stored one: a lower total goes to the ledger
		// before it is stored (the ledger refuses one below what is issued, ECONFLICT, and then
		// nothing is written), a higher one after.
		switch {
		case b.State == surge.BatchLive && b.Total < old:
			if err := s.ledger.Open(ctx, id, b.Total, b.PerUser); err != nil {
				return err
			}
		case b.State == surge.BatchLive && b.Total > old:
			raised = true
		}
		b.UpdatedAt = s.now().UTC()
		return nil
	})
	if err == nil && raised {
		if err := s.ledger.Open(ctx, id, b.Total, b.PerUser); err != nil {
			return nil, surge.Errorf(surge.EUNAVAILABLE, "the new total is stored, and the ledger did not take it yet (%s); send the change again", surge.ErrorMessage(err))
		}
	}
	return b, err
}

// Publish makes a draft live: its coupons can be claimed within its claim window.
func (s *Service) Publish(ctx context.Context, a surge.Actor, id int64) (*surge.CouponBatch, error) {
	return s.store.UpdateCouponBatch(ctx, id, func(b *surge.CouponBatch) error {
		if !owns(a, b) {
			return surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
		}
		if b.State != surge.BatchDraft {
			return surge.Errorf(surge.ECONFLICT, "batch %d is %s; only a draft is published", id, b.State)
		}
		if !s.now().Before(b.ClaimUntil) {
			return surge.Errorf(surge.ECONFLICT, "batch %d's claims closed at %s: move claim_until first", id, b.ClaimUntil.Format(time.RFC3339))
		}
		if err := s.ledger.Open(ctx, id, b.Total, b.PerUser); err != nil {
			return err
		}
		b.State, b.UpdatedAt = surge.BatchLive, s.now().UTC()
		return nil
	})
}

// Offline takes a batch offline: it takes no more claims; coupons claimed stay usable.
func (s *Service) Offline(ctx context.Context, a surge.Actor, id int64) (*surge.CouponBatch, error) {
	return s.store.UpdateCouponBatch(ctx, id, func(b *surge.CouponBatch) error {
		if !owns(a, b) {
			return surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
		}
		switch b.State {
		case surge.BatchOffline:
			return nil // again: already done
		case surge.BatchLive: // no claim is granted once the batch is offline
			if err := s.ledger.Close(ctx, id, b.PerUser); err != nil {
				return err
			}
		}
		b.State, b.UpdatedAt = surge.BatchOffline, s.now().UTC()
		return nil
	})
}

// ClaimRequest is a shopper's claim; the request id makes it idempotent.
type ClaimRequest struct {
	RequestID string `json:"request_id"`
}

// Claim gives a shopper a coupon of a live batch within its claim window. A retry with the same
// request id returns the same coupon.
func (s *Service) Claim(ctx context.Context, a surge.Actor, id int64, in ClaimRequest) (*surge.Coupon, error) {
	c, replayed, err := s.claim(ctx, a, id, in)
	s.metrics.claim(replayed, err)
	return c, err
}

func (s *Service) claim(ctx context.Context, a surge.Actor, id int64, in ClaimRequest) (*surge.Coupon, bool, error) {
	if strings.ContainsFunc(in.RequestID, unicode.IsControl) { // those are the grants' (grantKey)
		return nil, false, surge.Errorf(surge.EINVALID, "request_id must not hold control characters")
	}
	return s.claimAs(ctx, a, id, in, false)
}

// claimAs claims for a shopper; a grant's claim (granted) is not held to the claim window.
func (s *Service) claimAs(ctx context.Context, a surge.Actor, id int64, in ClaimRequest, granted bool) (_ *surge.Coupon, replayed bool, _ error) {
	if a.Role != surge.RoleShopper {
		return nil, false, surge.Errorf(surge.EFORBIDDEN, "coupons are claimed by shoppers")
	}
	if err := surge.ValidateRequestID(in.RequestID); err != nil {
		return nil, false, err
	}
	b, err := s.store.CouponBatch(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if b.State == surge.BatchDraft {
		return nil, false, surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
	}
	rule, err := s.ruleOf(ctx, id)
	if err != nil {
		return nil, false, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	c := &surge.Coupon{BatchID: id, UserID: a.UserID, State: surge.CouponIssued, ClaimedAt: now, ValidFrom: b.ValidFrom, ValidUntil: b.ValidUntil}
	if b.ValidDays > 0 {
		c.ValidFrom, c.ValidUntil = now, now.Add(time.Duration(b.ValidDays)*24*time.Hour)
	}
	var stored *surge.Coupon
	record := func(coupon int64, key string) error {
		c.ID = coupon
		if rule.Kind == Envelope {
			c.Value = rule.Draw(id, coupon)
		}
		var err error
		if stored, err = s.store.SaveCoupon(ctx, c, key); err != nil {
			return err
		}
		// The wallet's version moves once the coupon is stored and before the claim is
		// answered: no node serves the wallet it cached before. If this fails, the retry
		// moves it.
		_, err = s.versions.Add(ctx, walletKey(a.UserID), 1, walletWindow)
		return err
	}
	var stopped error
	switch {
	case b.State == surge.BatchOffline:
		stopped = surge.Errorf(surge.ECONFLICT, "batch %d is offline", id)
	case granted:
	case now.Before(b.ClaimFrom):
		stopped = surge.Errorf(surge.ECONFLICT, "claims of batch %d open at %s", id, b.ClaimFrom.Format(time.RFC3339))
	case !now.Before(b.ClaimUntil):
		stopped = surge.Errorf(surge.ECONFLICT, "claims of batch %d closed at %s", id, b.ClaimUntil.Format(time.RFC3339))
	}
	if stopped != nil { // a retry of a claim granted before claims stopped still gets its coupon
		replayed = true
		if _, found, err := s.ledger.Retry(ctx, id, a.UserID, in.RequestID, record); err != nil || !found {
			return nil, false, cmp.Or(err, stopped)
		}
	} else {
		couponID, err := s.ids()
		if err != nil {
			return nil, false, err
		}
		units := int64(1)
		if rule.Kind == Envelope {
			units = rule.Draw(id, couponID)
		}
		got, err := s.ledger.Claim(ctx, id, a.UserID, in.RequestID, couponID, units, record)
		replayed = got.Replayed
		switch code := surge.ErrorCode(err); {
		case rule.Kind != Envelope:
		case code == surge.ESOLDOUT:
			return nil, false, surge.Errorf(code, "budget %d has less than %s left for this red envelope", id, decimal(units))
		case code == surge.ELIMIT:
			return nil, false, surge.Errorf(code, "a red envelope of %s would take you past budget %d's cap per shopper (%s)", decimal(units), id, decimal(b.PerUser))
		}
		if surge.ErrorCode(err) == surge.ENOTFOUND { // a live batch the ledger lost (see Load)
			return nil, false, surge.Errorf(surge.EUNAVAILABLE, "claims of batch %d are paused: its issuance is being reconciled", id)
		}
		if err != nil {
			return nil, false, err
		}
	}
	kind := surge.EventCouponClaimed
	if rule.Kind == Envelope {
		kind = surge.EventBudgetClaimed
		if !replayed {
			s.metrics.budget(stored.Value)
		}
	}
	s.emit(ctx, kind, strconv.FormatInt(stored.ID, 10), stored)
	return stored, replayed, nil
}

// WalletCoupon is a coupon in a shopper's wallet, with what it takes off.
type WalletCoupon struct {
	*surge.Coupon
	BatchName string          `json:"batch_name"`
	Rule      json.RawMessage `json:"rule"`
}

// Wallet lists the signed-in shopper's coupons, newest first (at most 500). A node keeps each
// wallet it read with the wallet's version, a count every change moves on every node:
// a read costs one look at the version while the wallet is unchanged, and a changed wallet is
// never served stale. When the versions do not answer, the wallet is read from the store.
func (s *Service) Wallet(ctx context.Context, a surge.Actor) ([]WalletCoupon, error) {
	v, err := s.versions.Count(ctx, walletKey(a.UserID))
	if err != nil {
		return s.readWallet(ctx, a.UserID)
	}
	if w, ok := s.wallets.GetIfPresent(a.UserID); ok && w.version == v {
		s.metrics.wallet("cache")
		return w.items, nil
	}
	items, err := s.readWallet(ctx, a.UserID)
	if err == nil {
		s.wallets.Set(a.UserID, wallet{version: v, items: items})
	}
	return items, err
}

func (s *Service) readWallet(ctx context.Context, user int64) ([]WalletCoupon, error) {
	s.metrics.wallet("store")
	list, err := s.store.CouponsOf(ctx, user, maxListed)
	if err != nil {
		return nil, err
	}
	batches := map[int64]*surge.CouponBatch{}
	out := make([]WalletCoupon, 0, len(list))
	for _, c := range list {
		b, ok := batches[c.BatchID]
		if !ok {
			if b, err = s.store.CouponBatch(ctx, c.BatchID); err != nil {
				return nil, err
			}
			batches[c.BatchID] = b
		}
		out = append(out, WalletCoupon{Coupon: c, BatchName: b.Name, Rule: b.Rule})
	}
	return out, nil
}

// Load opens, as a node starts, the live batches the ledger does not have: one published while
// the ledger was away. A live batch the ledger lost although coupons of it are stored (its
// Redis was emptied) is not opened again, since the ledger would issue its whole total anew:
// it is logged, and its claims are refused until an operator decides.
func (s *Service) Load(ctx context.Context) error {
	var before int64
	for {
		list, err := s.store.CouponBatches(ctx, -1, []string{surge.BatchLive}, before, maxListed)
		if err != nil {
			return err
		}
		for _, b := range list {
			before = b.ID
			_, err := s.ledger.Issuance(ctx, b.ID)
			if surge.ErrorCode(err) != surge.ENOTFOUND {
				if err != nil {
					return err
				}
				continue // the ledger has it
			}
			n, err := s.store.CouponCount(ctx, b.ID)
			if err != nil {
				return err
			}
			if n > 0 {
				s.log.ErrorContext(ctx, "a live coupon batch is missing from the ledger although coupons of it were claimed; its claims are refused",
					"batch", b.ID, "claimed", n)
				continue
			}
			if err := s.ledger.Open(ctx, b.ID, b.Total, b.PerUser); err != nil {
				return err
			}
		}
		if len(list) < maxListed {
			return nil
		}
	}
}
