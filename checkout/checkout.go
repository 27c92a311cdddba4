// Package checkout provides ordinary checkouts: an order of up to surge.MaxCheckoutLines lines
// of one shop's SKUs at their catalog prices, with up to surge.MaxCouponsPerOrder coupons, whose
// units come from the SKUs' stock not allotted to sale sessions. It is paid, expires and is
// cancelled as a sale's order is (package order), which gives its units back.
package checkout

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/promo"
)

// Coupons locks a checkout's coupons to its order (package coupon).
type Coupons interface {
	// Lock prices the lines with the shopper's coupons and locks them to ref.Order, all or
	// none; a retry of the request (same key) gets the order they were first locked to.
	Lock(ctx context.Context, ref coupon.OrderRef, key, currency string, lines []coupon.Line, ids []int64) (int64, *surge.PriceBreakdown, error)
	// Unlock gives back coupons attempts locked to orders they did not make.
	Unlock(ctx context.Context, refs []coupon.OrderRef, by []int64) error
}

// Prices prices checkouts with promotion activities (promo.Service).
type Prices interface {
	// Price prices lines for a shopper with exactly the coupons named: the best activities.
	Price(ctx context.Context, user int64, currency string, lines []coupon.Line, ids []int64) (*promo.Priced, error)
	// Quote is the cart's price now, for a refusal that says the price changed.
	Quote(ctx context.Context, a surge.Actor, in promo.QuoteRequest) (*promo.Quote, error)
	// Refresh takes activities from the store again (an order was refused one).
	Refresh(ctx context.Context, ids []int64)
	// Forget drops the prices of SKUs a quote keeps (the order read others).
	Forget(skus []int64)
	// Locked follows the activities of an order just made (events, metrics).
	Locked(ctx context.Context, o *surge.Order)
}

// Service makes ordinary checkouts.
type Service struct {
	orders     surge.OrderStore
	catalog    surge.CatalogStore
	coupons    Coupons // nil: checkouts take no coupons
	prices     Prices  // nil: checkouts take no activities
	bus        surge.EventEmitter
	log        *slog.Logger
	ids        func() (int64, error)
	now        func() time.Time
	payTimeout time.Duration
}

// New returns the checkout service. Orders wait payTimeout (surge.DefaultPayTimeout when 0);
// now may be nil for the wall clock.
func New(orders surge.OrderStore, catalog surge.CatalogStore, coupons Coupons, prices Prices, bus surge.EventEmitter, log *slog.Logger,
	ids func() (int64, error), now func() time.Time, payTimeout time.Duration) *Service {
	if now == nil {
		now = time.Now
	}
	if payTimeout <= 0 {
		payTimeout = surge.DefaultPayTimeout
	}
	return &Service{orders: orders, catalog: catalog, coupons: coupons, prices: prices, bus: bus, log: log, ids: ids, now: now, payTimeout: payTimeout}
}

// Request is a shopper's checkout; the request id makes it idempotent.
type Request struct {
	RequestID string            `json:"request_id"`
	Lines     []coupon.CartLine `json:"lines"`
	Coupons   surge.IDList      `json:"coupon_ids,omitempty"`
	// QuotedPayable is what the shopper was quoted (POST /v1/prices/quote): when given, an
	// order that would charge anything else is refused with EPRICECHANGED and the new quote.
	QuotedPayable *int64 `json:"quoted_payable,omitempty"`
}

func (r Request) validate() error {
	if err := surge.ValidateRequestID(r.RequestID); err != nil {
		return err
	}
	if len(r.Lines) == 0 || len(r.Lines) > surge.MaxCheckoutLines {
		return surge.Errorf(surge.EINVALID, "a checkout has 1 to %d lines", surge.MaxCheckoutLines)
	}
	for i, l := range r.Lines {
		switch {
		case l.SKU <= 0:
			return surge.Errorf(surge.EINVALID, "line %d: sku_id must be an SKU", i+1)
		case l.Quantity < 1 || l.Quantity > surge.MaxPerUserLimit:
			return surge.Errorf(surge.EINVALID, "line %d: quantity must be from 1 to %d", i+1, surge.MaxPerUserLimit)
		case slices.ContainsFunc(r.Lines[:i], func(o coupon.CartLine) bool { return o.SKU == l.SKU }):
			return surge.Errorf(surge.EINVALID, "line %d: SKU %d is on another line already", i+1, l.SKU)
		}
	}
	if len(r.Coupons) > surge.MaxCouponsPerOrder {
		return surge.Errorf(surge.EINVALID, "an order takes at most %d coupons, not %d", surge.MaxCouponsPerOrder, len(r.Coupons))
	}
	return nil
}

// Checkout makes a shopper's order of one shop's SKUs at their catalog prices, less the
// coupons named, waiting for payment. A retry with the same request id returns the first
// order. Refusals: EINVALID (a bad request, SKUs of two shops or currencies, a coupon that does
// not apply), ENOTFOUND (an unknown SKU, or a coupon not the shopper's), ECONFLICT (a coupon
// used or on another order), ESOLDOUT (an SKU without the units; the attempt's coupons are given
// back, and a retry's stay locked until the lock sweep returns them).
func (s *Service) Checkout(ctx context.Context, a surge.Actor, in Request) (*surge.Order, error) {
	if a.Role != surge.RoleShopper {
		return nil, surge.Errorf(surge.EFORBIDDEN, "checkouts are for shoppers")
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	if o, err := s.orders.OrderByRequest(ctx, 0, a.UserID, in.RequestID); err == nil {
		return o, nil
	} else if surge.ErrorCode(err) != surge.ENOTFOUND {
		return nil, err
	}
	o, lines, err := s.draft(ctx, a, in)
	if err != nil {
		return nil, err
	}
	attempt := o.ID
	ref := coupon.OrderRef{Order: o.ID, User: a.UserID, Merchant: o.MerchantID}
	var priced *promo.Priced
	if s.prices != nil {
		if priced, err = s.prices.Price(ctx, a.UserID, o.Amount.Currency, lines, in.Coupons); err != nil {
			return nil, err
		}
		for i, l := range priced.Price.Lines {
			for _, sh := range l.Activities {
				lines[i].Off += sh.Amount
			}
		}
		if in.QuotedPayable != nil && *in.QuotedPayable != priced.Price.Payable {
			return nil, s.changed(ctx, a, in, surge.Errorf(surge.EPRICECHANGED, "the cart now costs %s, not the %s quoted",
				promo.Decimal(priced.Price.Payable), promo.Decimal(*in.QuotedPayable)))
		}
		o.Price, o.Amount.Amount = &priced.Price, priced.Price.Payable
	}
	if len(in.Coupons) > 0 {
		if s.coupons == nil {
			return nil, surge.Errorf(surge.EINVALID, "this deployment takes no coupons")
		}
		locked, price, err := s.coupons.Lock(ctx, ref, "checkout/"+in.RequestID, o.Amount.Currency, lines, in.Coupons)
		if err != nil {
			return nil, err
		}
		if priced != nil { // the same price, with the activities that made each line's Off
			price.Activities = priced.Price.Activities
			for i := range price.Lines {
				price.Lines[i].Activities, price.Lines[i].Text = priced.Price.Lines[i].Activities, priced.Price.Lines[i].Text
			}
		}
		ref.Order, o.ID, o.TxnID, o.Price, o.Amount.Amount = locked, locked, payment.TxnID(locked), price, price.Payable
	}
	if in.QuotedPayable != nil && *in.QuotedPayable != o.Amount.Amount {
		s.giveBack(ctx, in, ref, attempt)
		return nil, s.changed(ctx, a, in, surge.Errorf(surge.EPRICECHANGED, "the cart now costs %s, not the %s quoted",
			promo.Decimal(o.Amount.Amount), promo.Decimal(*in.QuotedPayable)))
	}
	created, err := s.orders.CreateCheckout(ctx, o, s.now())
	if err != nil {
		// The same request, made at once elsewhere, may have made the order meanwhile: then
		// it is the answer, and its coupons stay on it.
		first, ferr := s.orders.OrderByRequest(ctx, 0, a.UserID, in.RequestID)
		if ferr == nil {
			return first, nil
		}
		// Only the attempt that drew the order the coupons are on gives them back, and only
		// once the store says that order is not there; another attempt's order may yet be
		// made, and the lock sweep returns what stays unmade (after 5 minutes).
		if surge.ErrorCode(ferr) == surge.ENOTFOUND {
			s.giveBack(ctx, in, ref, attempt)
		}
		if surge.ErrorCode(err) == surge.EPRICECHANGED && priced != nil { // an activity ran out, ended or changed
			ids := make([]int64, len(priced.Price.Activities))
			for i, t := range priced.Price.Activities {
				ids[i] = t.Activity
			}
			s.prices.Refresh(ctx, ids)
			var why *surge.Error
			errors.As(err, &why)
			return nil, s.changed(ctx, a, in, why)
		}
		return nil, err
	}
	if created {
		surge.TellBus(ctx, s.bus, s.log, surge.EventOrdersCreated, strconv.FormatInt(o.ID, 10), s.now(), []*surge.Order{o})
	}
	if created && s.prices != nil {
		s.prices.Locked(ctx, o)
	}
	return o, nil
}

// giveBack returns the coupons an attempt locked to an order it did not make.
func (s *Service) giveBack(ctx context.Context, in Request, ref coupon.OrderRef, attempt int64) {
	if len(in.Coupons) == 0 || ref.Order != attempt {
		return
	}
	if err := s.coupons.Unlock(ctx, []coupon.OrderRef{ref}, []int64{attempt}); err != nil {
		s.log.WarnContext(ctx, "coupons of a refused checkout not given back; the sweep will", "order", ref.Order, "err", err)
	}
}

// changed is the refusal of a checkout whose price is not the one quoted, with the cart's price
// now (without it, when even that cannot be made: the refusal says why).
func (s *Service) changed(ctx context.Context, a surge.Actor, in Request, why *surge.Error) error {
	if s.prices == nil {
		return &surge.PriceChanged{Err: why}
	}
	skus := make([]int64, len(in.Lines))
	for i, l := range in.Lines {
		skus[i] = l.SKU
	}
	s.prices.Forget(skus) // the quote reads the prices the order read
	q, err := s.prices.Quote(ctx, a, promo.QuoteRequest{Lines: in.Lines, CouponIDs: in.Coupons, WithoutCoupons: len(in.Coupons) == 0})
	if err != nil {
		s.log.InfoContext(ctx, "a changed price could not be quoted again", "err", err)
		return &surge.PriceChanged{Err: why}
	}
	return &surge.PriceChanged{Err: why, Quote: &q.Price}
}

// draft reads the SKUs and makes the order, at list price, with its lines for pricing.
func (s *Service) draft(ctx context.Context, a surge.Actor, in Request) (*surge.Order, []coupon.Line, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	o := &surge.Order{RequestID: in.RequestID, UserID: a.UserID, State: surge.OrderPendingPayment, CreatedAt: now,
		ExpiresAt: now.Add(s.payTimeout), Lines: make([]surge.OrderLine, len(in.Lines))}
	lines := make([]coupon.Line, len(in.Lines))
	for i, l := range in.Lines {
		k, err := s.catalog.SKUByID(ctx, l.SKU)
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			return nil, nil, surge.Errorf(surge.ENOTFOUND, "line %d: SKU %d not found", i+1, l.SKU)
		}
		if err != nil {
			return nil, nil, err
		}
		switch {
		case i == 0:
			o.MerchantID, o.Amount.Currency = k.MerchantID, k.Price.Currency
		case k.MerchantID != o.MerchantID:
			return nil, nil, surge.Errorf(surge.EINVALID, "line %d is another shop's: a checkout is of one shop's SKUs", i+1)
		case k.Price.Currency != o.Amount.Currency:
			return nil, nil, surge.Errorf(surge.EINVALID, "line %d is in %s; the checkout is in %s", i+1, k.Price.Currency, o.Amount.Currency)
		}
		o.Lines[i] = surge.OrderLine{SKUID: l.SKU, Quantity: l.Quantity, Unit: k.Price.Amount}
		lines[i] = coupon.Line{SKU: l.SKU, Shop: k.MerchantID, Unit: k.Price.Amount, Quantity: l.Quantity}
		o.Quantity += l.Quantity
	}
	list, err := coupon.Price(o.Amount.Currency, lines, nil) // the bounds of the amounts
	if err != nil {
		return nil, nil, err
	}
	o.Amount.Amount = list.Payable
	if o.ID, err = s.ids(); err != nil {
		return nil, nil, err
	}
	o.TxnID = payment.TxnID(o.ID)
	return o, lines, nil
}
