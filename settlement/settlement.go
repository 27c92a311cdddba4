// Package settlement says what each shop is owed for a day: per order, what
// was paid for goods that day and what its redeemed vouchers paid, less what refunds of goods
// paid back that day, less the platform's fee; and the day's totals, which are the sums of
// its orders' lines, always.
package settlement

import (
	"context"
	"slices"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

// DefaultFeeBps is the platform's commission in basis points of what a shop takes: 0.6%.
const DefaultFeeBps = 60

// Line is an order's part of a day's settlement, in its currency.
type Line struct {
	surge.SettlementLine
	Currency string `json:"currency"`
}

// Total is a day's settlement in one currency: the sums of its lines.
type Total struct {
	Currency string `json:"currency"`
	Orders   int    `json:"orders"`
	Gross    int64  `json:"gross"`
	Refunds  int64  `json:"refunds"`
	Fee      int64  `json:"fee"`
	Net      int64  `json:"net"`
}

// Settlement is a shop's day.
type Settlement struct {
	MerchantID int64   `json:"merchant_id,string"`
	Day        string  `json:"day"`
	FeeBps     int64   `json:"fee_bps"`
	Lines      []Line  `json:"lines"`
	Totals     []Total `json:"totals"`
}

// Service computes settlements from the stores.
type Service struct {
	store  surge.SettlementStore
	feeBps int64
	now    func() time.Time
}

// New returns the settlement service at a fee of feeBps basis points; now may be nil.
func New(store surge.SettlementStore, feeBps int64, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, feeBps: feeBps, now: now}
}

// Day is a shop's settlement of a day (YYYY-MM-DD, UTC). Merchants see their own shop's,
// staff any shop's; anyone else is EFORBIDDEN. EINVALID for a day that is not one or is to come.
func (s *Service) Day(ctx context.Context, a surge.Actor, merchantID int64, day string) (*Settlement, error) {
	if !a.Role.Staff() && (a.Role != surge.RoleMerchant || a.UserID != merchantID) {
		return nil, surge.Errorf(surge.EFORBIDDEN, "a shop's settlement is for the shop and operators")
	}
	from, err := payment.ParseLedgerDay(day)
	if err != nil {
		return nil, err
	}
	if s.now().Before(from) {
		return nil, surge.Errorf(surge.EINVALID, "%s has not begun", day)
	}
	facts, err := s.store.SettlementFacts(ctx, merchantID, from, from.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	st := Compute(facts, s.feeBps)
	st.MerchantID, st.Day = merchantID, day
	return st, nil
}

// Compute makes a settlement of a shop's facts of a day at a fee of feeBps: a line per order,
// and totals per currency that are the sums of the lines.
func Compute(f *surge.SettlementFacts, feeBps int64) *Settlement {
	lines := map[int64]*Line{}
	line := func(id int64, currency string) *Line {
		l, ok := lines[id]
		if !ok {
			l = &Line{SettlementLine: surge.SettlementLine{OrderID: id}, Currency: currency}
			lines[id] = l
		}
		return l
	}
	for _, p := range f.Paid {
		var goods int64
		for i, pay := range p.Order.LinePayable() {
			if !slices.Contains(p.VoucherLines, i) {
				goods += pay
			}
		}
		line(p.Order.ID, p.Order.Amount.Currency).Gross += goods
	}
	for _, v := range f.Redeemed {
		line(v.OrderID, v.Amount.Currency).Gross += v.Amount.Amount
	}
	for _, r := range f.Refunded {
		var goods int64
		for _, l := range r.Refund.Lines {
			if !slices.Contains(r.VoucherLines, l.Line) {
				goods += l.Amount
			}
		}
		line(r.Refund.OrderID, r.Refund.Amount.Currency).Refunds += goods
	}
	st := &Settlement{FeeBps: feeBps, Lines: []Line{}}
	totals := map[string]*Total{}
	for _, l := range lines {
		if l.Gross == 0 && l.Refunds == 0 {
			continue // a paid order of vouchers alone: nothing until they are used
		}
		l.Fee = fee(l.Gross, feeBps) - fee(l.Refunds, feeBps) // the fee on money given back is given back
		l.Net = l.Gross - l.Refunds - l.Fee
		st.Lines = append(st.Lines, *l)
		t, ok := totals[l.Currency]
		if !ok {
			t = &Total{Currency: l.Currency}
			totals[l.Currency] = t
		}
		t.Orders++
		t.Gross, t.Refunds, t.Fee, t.Net = t.Gross+l.Gross, t.Refunds+l.Refunds, t.Fee+l.Fee, t.Net+l.Net
	}
	slices.SortFunc(st.Lines, func(a, b Line) int { return int(min(max(a.OrderID-b.OrderID, -1), 1)) })
	for _, t := range totals {
		st.Totals = append(st.Totals, *t)
	}
	slices.SortFunc(st.Totals, func(a, b Total) int {
		switch {
		case a.Currency < b.Currency:
			return -1
		case a.Currency > b.Currency:
			return 1
		}
		return 0
	})
	return st
}

// fee is feeBps of amount, rounded half up.
func fee(amount, feeBps int64) int64 { return (amount*feeBps + 5000) / 10000 }
