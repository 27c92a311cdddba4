package voucher

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// Event kinds of vouchers on the bus; Data is a list of vouchers (issued) or one (redeemed).
const (
	EventIssued   = "voucher.issued"
	EventRedeemed = "voucher.redeemed"
)

// Bounds of the service.
const (
	// flagTTL is how long a SKU's voucher flag is taken from memory before the catalog is
	// asked again; maxFlags bounds the SKUs remembered.
	flagTTL  = time.Minute
	maxFlags = 100_000
	// MaxUnitsPerOrder bounds the vouchers of one order.
	MaxUnitsPerOrder = 1000
)

// Catalog says which SKUs are voucher products.
type Catalog interface {
	SKUByID(ctx context.Context, id int64) (*surge.SKU, error)
}

// Orders reads an order for those who may see it (package order).
type Orders interface {
	Get(ctx context.Context, a surge.Actor, id int64) (*surge.Order, error)
}

// Service issues and redeems vouchers.
type Service struct {
	store   surge.VoucherStore
	catalog Catalog
	orders  Orders
	bus     surge.EventEmitter
	log     *slog.Logger
	now     func() time.Time

	mu    sync.Mutex
	flags map[int64]flag // SKU id → whether it is a voucher product, as read at

	redeemed *prometheus.CounterVec // by outcome
	issued   prometheus.Counter
}

type flag struct {
	voucher bool
	at      time.Time
}

// New returns a voucher service; bus may be nil (no events), now nil for the wall clock. reg
// takes surge_voucher_redemptions_total{outcome} and surge_vouchers_issued_total; nil keeps
// them unregistered.
func New(store surge.VoucherStore, catalog Catalog, orders Orders, bus surge.EventEmitter, reg prometheus.Registerer,
	log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	s := &Service{store: store, catalog: catalog, orders: orders, bus: bus, log: log, now: now, flags: map[int64]flag{},
		redeemed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_voucher_redemptions_total",
			Help: "Voucher redemptions at merchants' tills by outcome: redeemed, or the refusal's error code (ECONFLICT: redeemed already or refunded)."}, []string{"outcome"}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_vouchers_issued_total",
			Help: "Voucher codes issued for paid units of voucher products."}),
	}
	if reg != nil {
		reg.MustRegister(s.redeemed, s.issued)
	}
	return s
}

// SetOrders gives the service the order reader once it exists (the two refer to each other).
func (s *Service) SetOrders(o Orders) { s.orders = o }

// isVoucher reports whether a SKU is a voucher product, from memory for flagTTL.
func (s *Service) isVoucher(ctx context.Context, sku int64) (bool, error) {
	now := s.now()
	s.mu.Lock()
	f, ok := s.flags[sku]
	s.mu.Unlock()
	if ok && now.Sub(f.at) < flagTTL {
		return f.voucher, nil
	}
	k, err := s.catalog.SKUByID(ctx, sku)
	if surge.ErrorCode(err) == surge.ENOTFOUND {
		k, err = &surge.SKU{}, nil // a SKU deleted since: its units were goods
	}
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	if len(s.flags) >= maxFlags {
		clear(s.flags)
	}
	s.flags[sku] = flag{voucher: k.Voucher, at: now}
	s.mu.Unlock()
	return k.Voucher, nil
}

// IssueAll issues the vouchers of paid orders of voucher products (each order once, however
// often it is asked) and reports for each order whether that is done: an order with no voucher
// product is done at once. A failure is left for the caller's next sweep.
func (s *Service) IssueAll(ctx context.Context, orders []*surge.Order) []bool {
	done := make([]bool, len(orders))
	for i, o := range orders {
		err := s.issue(ctx, o)
		if err != nil {
			s.log.WarnContext(ctx, "vouchers not yet issued; the sweep will retry", "order", o.ID, "err", err)
		}
		done[i] = err == nil
	}
	return done
}

func (s *Service) issue(ctx context.Context, o *surge.Order) error {
	if o.State != surge.OrderPaid {
		return nil
	}
	skus := []int64{o.SKUID}
	if o.Checkout() {
		skus = skus[:0]
		for _, l := range o.Lines {
			skus = append(skus, l.SKUID)
		}
	}
	payable, units := o.LinePayable(), o.LineUnits()
	now := s.now().UTC()
	var vs []surge.Voucher
	for line, sku := range skus {
		v, err := s.isVoucher(ctx, sku)
		if err != nil {
			return err
		}
		if !v || line >= len(payable) {
			continue
		}
		for k := range min(units[line], MaxUnitsPerOrder-int64(len(vs))) {
			code, err := NewCode(nil)
			if err != nil {
				return err
			}
			vs = append(vs, surge.Voucher{Code: code, OrderID: o.ID, Seq: len(vs), Line: line, SKUID: sku, MerchantID: o.MerchantID,
				UserID: o.UserID, Amount: surge.Money{Amount: surge.UnitShare(payable[line], units[line], k), Currency: o.Amount.Currency},
				State: surge.VoucherIssued, IssuedAt: now})
		}
	}
	if len(vs) == 0 {
		return nil
	}
	got, err := s.store.IssueVouchers(ctx, o.ID, vs)
	if err != nil {
		return err
	}
	if len(got) > 0 && got[0].Code == vs[0].Code { // these were stored now, not by an earlier try
		s.issued.Add(float64(len(got)))
		surge.TellBus(ctx, s.bus, s.log, EventIssued, strconv.FormatInt(o.ID, 10), now, got)
	}
	return nil
}

// RedeemInput is what a till sends: the code as typed or scanned, and which till it is.
type RedeemInput struct {
	Code string `json:"code"`
	Till string `json:"till,omitempty"`
}

// Redeemed is a redemption's answer: the voucher, and its order as it stands (consumed once
// its last voucher is used).
type Redeemed struct {
	Voucher *surge.Voucher `json:"voucher"`
	Order   *surge.Order   `json:"order"`
}

// Redeem uses a voucher at the merchant's till, once. Merchants redeem their own shop's
// vouchers; others are EFORBIDDEN. EINVALID for what is not a code (mistyped), ENOTFOUND for an
// unknown one, EFORBIDDEN for another shop's, ECONFLICT for one redeemed already or refunded.
func (s *Service) Redeem(ctx context.Context, a surge.Actor, in RedeemInput) (*Redeemed, error) {
	res, err := s.redeem(ctx, a, in)
	outcome := "redeemed"
	if err != nil {
		outcome = surge.ErrorCode(err)
	}
	s.redeemed.WithLabelValues(outcome).Inc()
	return res, err
}

func (s *Service) redeem(ctx context.Context, a surge.Actor, in RedeemInput) (*Redeemed, error) {
	if a.Role != surge.RoleMerchant {
		return nil, surge.Errorf(surge.EFORBIDDEN, "vouchers are redeemed by the merchant whose shop sold them")
	}
	code, err := Parse(in.Code)
	if err != nil {
		return nil, err
	}
	if err := surge.ValidateText("till", in.Till, 0, surge.MaxTillRunes); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	v, o, err := s.store.RedeemVoucher(ctx, code, a.UserID, a.UserID, in.Till, now)
	if err != nil {
		return nil, err
	}
	key := v.Code
	surge.TellBus(ctx, s.bus, s.log, EventRedeemed, key, now, v)
	if o.State == surge.OrderConsumed {
		surge.TellBus(ctx, s.bus, s.log, surge.EventOrderConsumed, strconv.FormatInt(o.ID, 10), now, o)
	}
	return &Redeemed{Voucher: v, Order: o}, nil
}

// ForOrder lists an order's vouchers to whoever may see the order: its shopper (who shows
// them at the till), its merchant and staff.
func (s *Service) ForOrder(ctx context.Context, a surge.Actor, orderID int64) ([]surge.Voucher, error) {
	if _, err := s.orders.Get(ctx, a, orderID); err != nil {
		return nil, err
	}
	return s.store.VouchersByOrder(ctx, orderID)
}
