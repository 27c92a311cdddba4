// Package audit checks a sale session against the platform's invariants (SPEC, "Invariants"):
// what the stock engine holds and what the order store holds must agree, item by item. Load
// tests and fault tests run it afterwards; operators can run it at any time.
package audit

import (
	"context"
	"fmt"
	"strings"

	"github.com/surgecommerce/surge"
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
	// GMV, when set, is the real-time platform's GMV of a session, for invariant 6.
	GMV func(sessionID int64) int64
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
		facts = append(facts, f)
	}
	var gmv *int64
	if a.GMV != nil {
		v := a.GMV(id)
		gmv = &v
	}
	return Check(id, facts, gmv), nil
}

// Check judges the facts: the invariants as pure functions of what the stores hold. gmv is the
// real-time platform's GMV of the session (nil: no real-time platform to compare with).
func Check(session int64, items []ItemFacts, gmv *int64) *Report {
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
	r.Results = append(r.Results, Result{Invariant: CouponsBudgets, Status: NA, Details: []string{"this deployment issues no coupons or budgets yet"}})
	r.Results = append(r.Results, gmvResult(items, gmv))
	if r.Results[len(r.Results)-1].Status == Fail {
		r.Passed = false
	}
	return r
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
