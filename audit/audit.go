// Package audit checks a sale session against the platform's invariants (SPEC, "Invariants"):
// what the stock engine holds and what the order store holds must agree, item by item. Load
// tests and fault tests run it afterwards; operators can run it at any time.
package audit

import (
	"context"
	"fmt"

	"github.com/surgecommerce/surge"
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
}

// Report is a session's audit.
type Report struct {
	SessionID int64       `json:"session_id,string"`
	Passed    bool        `json:"passed"` // no invariant failed
	Results   []Result    `json:"results"`
	Items     []ItemFacts `json:"items"`
}

// Auditor reads the facts from the stores.
type Auditor struct {
	Sessions surge.SessionStore
	Stock    surge.StockEngine
	Orders   surge.OrderStore
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
		if se.PublishedAt != nil { // unpublished items are not in the engine yet
			if f.Stock, err = a.Stock.Levels(ctx, it.ID); err != nil {
				return nil, err
			}
		} else {
			f.Stock = surge.StockLevels{Allotted: it.Allotted, Available: it.Allotted}
		}
		if f.Orders, err = a.Orders.AuditItem(ctx, it.ID, it.PerUserLimit); err != nil {
			return nil, err
		}
		facts = append(facts, f)
	}
	return Check(id, facts), nil
}

// Check judges the facts: the invariants as pure functions of what the stores hold.
func Check(session int64, items []ItemFacts) *Report {
	r := &Report{SessionID: session, Passed: true, Items: items}
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
		case s.Sold+s.Available+s.Reserved != f.Allotted:
			return 1, fmt.Sprintf("sold %d + available %d + reserved %d ≠ allotted %d", s.Sold, s.Available, s.Reserved, f.Allotted)
		}
		return 0, ""
	})
	add(PerUserLimit, func(f ItemFacts) (int64, string) {
		if n := f.Orders.UsersOverLimit; n > 0 {
			return n, fmt.Sprintf("%d users hold more than %d", n, f.PerUserLimit)
		}
		return 0, ""
	})
	add(OneOrderEach, func(f ItemFacts) (int64, string) {
		held, live := f.Stock.Reserved+f.Stock.Sold, f.Orders.LiveUnits()
		switch {
		case held > live:
			return held - live, fmt.Sprintf("%d units reserved or sold without an order (lost orders)", held-live)
		case live > held:
			return live - held, fmt.Sprintf("%d units in orders without a reservation (duplicate orders)", live-held)
		case f.Orders.PaidWithoutOnePayment > 0:
			return f.Orders.PaidWithoutOnePayment, fmt.Sprintf("%d paid orders without exactly one payment", f.Orders.PaidWithoutOnePayment)
		}
		return 0, ""
	})
	add(ReleasedOnce, func(f ItemFacts) (int64, string) {
		back := f.Allotted - f.Orders.LiveUnits() // what must be available once every release is done
		switch {
		case f.Orders.UnreleasedCancelled > 0:
			return f.Orders.UnreleasedCancelled, fmt.Sprintf("%d cancelled or expired orders not released", f.Orders.UnreleasedCancelled)
		case f.Stock.Available > back:
			return f.Stock.Available - back, fmt.Sprintf("%d units available beyond the allotment less live orders (released twice)", f.Stock.Available-back)
		case f.Stock.Available < back:
			return back - f.Stock.Available, fmt.Sprintf("%d units of ended orders never came back", back-f.Stock.Available)
		}
		return 0, ""
	})
	r.Results = append(r.Results,
		Result{Invariant: CouponsBudgets, Status: NA, Details: []string{"this deployment issues no coupons or budgets yet"}},
		Result{Invariant: GMVMatches, Status: NA, Details: []string{"this deployment has no real-time GMV yet"}})
	return r
}
