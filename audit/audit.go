// Package audit checks a sale session against the platform's invariants (SPEC, "Invariants"):
// what the stock engine holds and what the order store holds must agree, item by item. Load
// tests and fault tests run it afterwards; operators can run it at any time.
package audit

import (
	"context"
	"fmt"
	"strings"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/sale"
)

// Invariant names, numbered as in the specification.
const (
	StockBalance   = "1-stock-balance"             // sold ≤ allotted; sold + available + reserved = allotted
	PerUserLimit   = "2-per-user-limit"            // nobody holds more than the limit
	OneOrderEach   = "3-one-order-per-reservation" // and one payment per paid order
	ReleasedOnce   = "4-released-once"             // expired and cancelled orders gave their stock back once
	CouponsBudgets = "5-coupons-and-budgets"
	GMVMatches     = "6-realtime-gmv"
)

// Result is one invariant's verdict over a session.
type Result struct {
	Invariant  string   `json:"invariant"`
	Status     string   `json:"status"`     // PASS, FAIL, or NA when the deployment has nothing it applies to
	Checked    int64    `json:"checked"`    // what was looked at: items
	Violations int64    `json:"violations"` // how many broke it
	Details    []string `json:"details,omitempty"`
}

// Verdicts.
const (
	Pass = "PASS"
	Fail = "FAIL"
	NA   = "NA"
)

// ItemFacts are what the checks read about one item.
type ItemFacts struct {
	ItemID       int64             `json:"item_id,string"`
	Allotted     int64             `json:"allotted"`
	PerUserLimit int64             `json:"per_user_limit"`
	Stock        surge.StockLevels `json:"stock"`
	Orders       *surge.OrderAudit `json:"orders"`
	// Coupons are the item's orders that coupons took something off, and the coupons on its
	// orders (nil where the deployment keeps no coupons).
	Coupons *ItemCoupons `json:"coupons,omitempty"`
}

// ItemCoupons are an item's facts for invariant 5.
type ItemCoupons struct {
	PricedOrders []*surge.Order  `json:"-"`
	OnOrders     []*surge.Coupon `json:"-"` // coupons locked or used on the item's orders
	// Filled in by Check: the paid orders' discount and the used coupons' value (minor units).
	OrdersDiscount int64 `json:"orders_discount"`
	CouponsValue   int64 `json:"coupons_value"`
}

// BatchFacts are a coupon batch's counts: the ledger's total and issued, and the stored coupons
// (all, and used). A red-envelope budget's counts are amounts (minor units): its total, what
// its ledger issued, and the values of its stored envelopes.
type BatchFacts struct {
	BatchID int64 `json:"batch_id,string"`
	Total   int64 `json:"total"`
	Issued  int64 `json:"issued"`
	Stored  int64 `json:"stored"`
	Used    int64 `json:"used"`
	// Lost says the ledger no longer has the batch (its Redis was emptied): its issuance
	// cannot be checked, and its claims are refused until an operator decides.
	Lost   bool `json:"lost,omitempty"`
	Budget bool `json:"budget,omitempty"`
}

// Report is a session's audit.
type Report struct {
	SessionID int64        `json:"session_id,string"`
	Passed    bool         `json:"passed"` // no invariant failed
	Results   []Result     `json:"results"`
	Items     []ItemFacts  `json:"items"`
	Batches   []BatchFacts `json:"batches"` // the batches of the coupons on the session's orders
}

// Issuer tells a coupon batch's issuance (package coupon's ledger).
type Issuer interface {
	Issuance(ctx context.Context, batch int64) (coupon.Issuance, error)
}

// Auditor reads the facts from the stores.
type Auditor struct {
	Sessions surge.SessionStore
	Stock    surge.StockEngine
	Orders   surge.OrderStore
	// GMV, when set, is the real-time platform's GMV of a session, for invariant 6.
	GMV func(sessionID int64) int64
	// Coupons and Issuer, when set, are the coupons and their ledger, for invariant 5.
	Coupons surge.CouponStore
	Issuer  Issuer
}

// SessionFor is Session for an operator or admin; anyone else gets EFORBIDDEN.
func (a *Auditor) SessionFor(ctx context.Context, who surge.Actor, id int64) (*Report, error) {
	if !who.Role.Staff() {
		return nil, surge.Errorf(surge.EFORBIDDEN, "only operators and admins audit sessions")
	}
	return a.Session(ctx, id)
}

// Session audits every item of a session. The facts of one item are read from two stores at
// slightly different moments, so a session still selling can show passing differences: audit
// a sale once it has settled (orders written, payments and expiries swept).
func (a *Auditor) Session(ctx context.Context, id int64) (*Report, error) {
	se, err := a.Sessions.SessionByID(ctx, id)
	if err != nil {
		return nil, err
	}
	facts := make([]ItemFacts, 0, len(se.Items))
	for _, it := range se.Items {
		f := ItemFacts{ItemID: it.ID, Allotted: it.Allotted, PerUserLimit: it.PerUserLimit}
		if f.Stock, err = sale.ItemLevels(ctx, a.Stock, se, it); err != nil {
			return nil, err
		}
		if f.Orders, err = a.Orders.AuditItem(ctx, it.ID, it.PerUserLimit); err != nil {
			return nil, err
		}
		if a.Coupons != nil {
			f.Coupons = &ItemCoupons{}
			if f.Coupons.PricedOrders, err = a.Orders.PricedOrders(ctx, it.ID); err != nil {
				return nil, err
			}
			if f.Coupons.OnOrders, err = a.Coupons.CouponsOnItem(ctx, it.ID); err != nil {
				return nil, err
			}
		}
		facts = append(facts, f)
	}
	batches, err := a.batches(ctx, facts)
	if err != nil {
		return nil, err
	}
	var gmv *int64
	if a.GMV != nil {
		v := a.GMV(id)
		gmv = &v
	}
	return Check(id, facts, batches, gmv), nil
}

// batches reads the counts of the batches of the coupons on the items' orders.
func (a *Auditor) batches(ctx context.Context, items []ItemFacts) ([]BatchFacts, error) {
	if a.Coupons == nil || a.Issuer == nil {
		return nil, nil
	}
	seen := map[int64]bool{}
	out := []BatchFacts{}
	for _, f := range items {
		for _, c := range f.Coupons.OnOrders {
			if seen[c.BatchID] {
				continue
			}
			seen[c.BatchID] = true
			// The stored coupons first: a claim is issued by the ledger before it is stored, so
			// read in this order the two agree (stored ≤ issued) while claims go on.
			states, err := a.Coupons.CouponStates(ctx, c.BatchID)
			if err != nil {
				return nil, err
			}
			is, err := a.Issuer.Issuance(ctx, c.BatchID)
			lost := surge.ErrorCode(err) == surge.ENOTFOUND
			if err != nil && !lost {
				return nil, err
			}
			stored, err := a.Coupons.CouponBatch(ctx, c.BatchID)
			if err != nil {
				return nil, err
			}
			rule, err := coupon.DecodeRule(stored.Rule)
			if err != nil {
				return nil, fmt.Errorf("batch %d: %w", c.BatchID, err)
			}
			b := BatchFacts{BatchID: c.BatchID, Total: is.Total, Issued: is.Issued, Lost: lost, Budget: rule.Kind == coupon.Envelope}
			for st, n := range states {
				count := n.Count
				if b.Budget {
					count = n.Value
				}
				b.Stored += count
				if st == surge.CouponUsed {
					b.Used = count
				}
			}
			out = append(out, b)
		}
	}
	return out, nil
}

// Check judges the facts: the invariants as pure functions of what the stores hold. gmv is the
// real-time platform's GMV of the session (nil: no real-time platform to compare with).
func Check(session int64, items []ItemFacts, batches []BatchFacts, gmv *int64) *Report {
	r := &Report{SessionID: session, Passed: true, Items: items, Batches: batches}
	add := func(name string, fails func(f ItemFacts) (int64, string)) {
		res := Result{Invariant: name, Status: Pass}
		for _, f := range items {
			res.Checked++
			if n, why := fails(f); n > 0 {
				res.Violations += n
				res.Details = append(res.Details, fmt.Sprintf("item %d: %s", f.ItemID, why))
			}
		}
		if res.Violations > 0 {
			res.Status, r.Passed = Fail, false
		}
		r.Results = append(r.Results, res)
	}
	add(StockBalance, func(f ItemFacts) (int64, string) {
		s, live := f.Stock, f.Orders.LiveUnits()
		switch {
		case s.Sold > f.Allotted || live > f.Allotted:
			return 1, fmt.Sprintf("oversold: %d sold and %d units in live orders of %d allotted", s.Sold, live, f.Allotted)
		case s.Allotted != f.Allotted || s.Sold+s.Available+s.Reserved != f.Allotted:
			return 1, fmt.Sprintf("sold %d + available %d + reserved %d (engine allotment %d) ≠ allotted %d",
				s.Sold, s.Available, s.Reserved, s.Allotted, f.Allotted)
		}
		return 0, ""
	})
	add(PerUserLimit, func(f ItemFacts) (int64, string) {
		if n := f.Orders.UsersOverLimit; n > 0 {
			return n, fmt.Sprintf("%d users hold more than %d", n, f.PerUserLimit)
		}
		return 0, ""
	})
	// Orders against the engine's holdings: each unit reserved or sold has one live order.
	add(OneOrderEach, func(f ItemFacts) (int64, string) {
		held, live := f.Stock.Reserved+f.Stock.Sold, f.Orders.LiveUnits()
		var n int64
		var why []string
		switch {
		case held > live:
			n += held - live
			why = append(why, fmt.Sprintf("%d units reserved or sold without a live order (a lost order, or a cancelled one never released)", held-live))
		case live > held:
			n += live - held
			why = append(why, fmt.Sprintf("%d units in live orders without a reservation (duplicate orders)", live-held))
		}
		if p := f.Orders.PaidWithoutOnePayment; p > 0 {
			n += p
			why = append(why, fmt.Sprintf("%d paid orders without exactly one payment", p))
		}
		return n, strings.Join(why, "; ")
	})
	// Releases, from each side: the order store's cancelled orders all released, and the engine
	// holding no more available than its allotment less what it holds (a unit given back twice).
	add(ReleasedOnce, func(f ItemFacts) (int64, string) {
		var n int64
		var why []string
		if u := f.Orders.UnreleasedCancelled; u > 0 {
			n += u
			why = append(why, fmt.Sprintf("%d cancelled or expired orders not released", u))
		}
		if extra := f.Stock.Available - (f.Allotted - f.Stock.Reserved - f.Stock.Sold); extra > 0 {
			n += extra
			why = append(why, fmt.Sprintf("%d units available beyond the allotment less what is held (released twice)", extra))
		}
		return n, strings.Join(why, "; ")
	})
	r.Results = append(r.Results, couponResult(items, batches), gmvResult(items, gmv))
	for _, res := range r.Results[len(r.Results)-2:] {
		if res.Status == Fail {
			r.Passed = false
		}
	}
	return r
}

// couponResult is invariant 5: every batch issued no more than its total and used no more than
// it issued; every coupon on an order is on exactly the order whose price lists it, locked while
// the order waits, used (with the amount the price gives it) once it is paid, and given back once
// it is cancelled; each order's price adds up; and the paid orders' discount equals the used
// coupons' value. Orders whose stock and coupons are not settled yet are judged once they are.
func couponResult(items []ItemFacts, batches []BatchFacts) Result {
	if len(items) > 0 && items[0].Coupons == nil || len(items) == 0 && batches == nil {
		return Result{Invariant: CouponsBudgets, Status: NA, Details: []string{"this deployment keeps no coupons"}}
	}
	res := Result{Invariant: CouponsBudgets, Status: Pass}
	fail := func(format string, args ...any) {
		res.Violations++
		if len(res.Details) < maxDetails {
			res.Details = append(res.Details, fmt.Sprintf(format, args...))
		}
	}
	for _, b := range batches {
		res.Checked++
		switch {
		case b.Lost:
			fail("batch %d is missing from the issuance ledger: what it issued cannot be checked", b.BatchID)
		case b.Issued > b.Total:
			fail("batch %d: %d issued of a total of %d", b.BatchID, b.Issued, b.Total)
		case b.Stored > b.Issued && b.Budget:
			fail("budget %d: red envelopes worth %d stored, %d issued by its ledger", b.BatchID, b.Stored, b.Issued)
		case b.Stored > b.Issued:
			fail("batch %d: %d coupons stored, %d issued by its ledger", b.BatchID, b.Stored, b.Issued)
		case b.Used > b.Issued:
			fail("batch %d: %d used, %d issued", b.BatchID, b.Used, b.Issued)
		}
	}
	for i := range items {
		f := &items[i]
		f.Coupons.OrdersDiscount, f.Coupons.CouponsValue = 0, 0
		on := make(map[int64]*surge.Coupon, len(f.Coupons.OnOrders))
		for _, c := range f.Coupons.OnOrders {
			on[c.ID] = c
			if c.State == surge.CouponUsed {
				f.Coupons.CouponsValue += c.Discount
			}
		}
		listed := map[[2]int64]bool{} // coupon and order

		for _, o := range f.Coupons.PricedOrders {
			res.Checked++
			if why := priceAddsUp(o); why != "" {
				fail("item %d: order %d: %s", f.ItemID, o.ID, why)
			}
			paid := o.State.PaidOrLater() && o.State != surge.OrderRefunded
			if paid {
				for _, t := range o.Price.Coupons { // what activities (the sale's price) take is not the coupons'
					f.Coupons.OrdersDiscount += t.Amount
				}
			}
			for _, t := range o.Price.Coupons {
				listed[[2]int64{t.Coupon, o.ID}] = true
				c := on[t.Coupon]
				if c != nil && c.OrderID != o.ID {
					c = nil // on another order: given back by this one (cancelled), and used again
				}
				switch {
				case o.State == surge.OrderPendingPayment && (c == nil || c.State != surge.CouponLocked):
					fail("item %d: pending order %d lists coupon %d, which is not locked to it", f.ItemID, o.ID, t.Coupon)
				case paid && o.StockSettled && (c == nil || c.State != surge.CouponUsed || c.Discount != t.Amount):
					fail("item %d: paid order %d took %d off with coupon %d, which is not used for that amount on it", f.ItemID, o.ID, t.Amount, t.Coupon)
				case !paid && o.State != surge.OrderPendingPayment && o.StockSettled && c != nil:
					fail("item %d: coupon %d is still on %s order %d", f.ItemID, t.Coupon, o.State, o.ID)
				}
			}
		}
		for _, c := range f.Coupons.OnOrders {
			if !listed[[2]int64{c.ID, c.OrderID}] {
				fail("item %d: coupon %d is %s on order %d, whose price does not list it", f.ItemID, c.ID, c.State, c.OrderID)
			}
		}
		if f.Coupons.OrdersDiscount != f.Coupons.CouponsValue && settled(f.Coupons.PricedOrders) {
			fail("item %d: paid orders took %d off, their used coupons are worth %d", f.ItemID, f.Coupons.OrdersDiscount, f.Coupons.CouponsValue)
		}
	}
	if res.Violations > 0 {
		res.Status = Fail
	}
	return res
}

// maxDetails bounds the details of one invariant's result.
const maxDetails = 20

// settled reports whether every paid order's coupons are settled (used).
func settled(orders []*surge.Order) bool {
	for _, o := range orders {
		if o.State.PaidOrLater() && !o.StockSettled {
			return false
		}
	}
	return true
}

// priceAddsUp says what is wrong with an order's price breakdown, "" if nothing.
func priceAddsUp(o *surge.Order) string {
	p := o.Price
	switch why := p.Inconsistency(); {
	case why != "":
		return why
	case p.Payable != o.Amount.Amount || p.Currency != o.Amount.Currency:
		return fmt.Sprintf("it charges %d %s; its price says %d %s", o.Amount.Amount, o.Amount.Currency, p.Payable, p.Currency)
	}
	return ""
}

// gmvResult is invariant 6: the real-time GMV equals the paid orders' amount once the stream
// has caught up (an audit taken while payments stream in can differ for a moment).
func gmvResult(items []ItemFacts, gmv *int64) Result {
	if gmv == nil {
		return Result{Invariant: GMVMatches, Status: NA, Details: []string{"this deployment computes no real-time GMV"}}
	}
	var paid int64
	for _, f := range items {
		paid += f.Orders.PaidAmount
	}
	res := Result{Invariant: GMVMatches, Status: Pass, Checked: 1}
	if *gmv != paid {
		res.Status, res.Violations = Fail, 1
		res.Details = []string{fmt.Sprintf("real-time GMV %d ≠ paid orders %d (minor units)", *gmv, paid)}
	}
	return res
}
