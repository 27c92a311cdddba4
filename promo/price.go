package promo

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
)

// Bounds of a priced cart.
const (
	MaxLines = 200 // lines of a quoted cart
)

// Line is a line to price: coupon.Line (Off is the pricing's own).
type Line = coupon.Line

// Act is an activity compiled for pricing: its rule, and its scope's lists as sets.
type Act struct {
	ID, Version, Merchant int64
	Name                  string
	Priority              int64
	Rule                  Rule
	skus, shops, exclude  map[int64]bool
	categories            map[string]bool
	// left is what the activity's budget has left as last read (-1: no budget): an activity
	// that would take more off a cart is left out of its search.
	left int64
}

// Compile makes an activity's rule ready for pricing.
func Compile(a *surge.Activity) (*Act, error) {
	r, err := DecodeRule(a.Rule)
	if err != nil {
		return nil, err
	}
	x := compileRule(a.ID, a.Version, a.MerchantID, a.Name, a.Priority, r)
	if a.Budget > 0 {
		x.left = max(a.Budget-a.Spent, 0)
	}
	return x, nil
}

// withCounters is x with an activity's counters as read again (its rule unchanged).
func (x *Act) withCounters(a *surge.Activity) *Act {
	if a.Budget == 0 && x.left < 0 {
		return x
	}
	c := *x // the sets are read only, and shared
	c.left = -1
	if a.Budget > 0 {
		c.left = max(a.Budget-a.Spent, 0)
	}
	return &c
}

func compileRule(id, version, merchant int64, name string, priority int64, r Rule) *Act {
	set := func(list []int64) map[int64]bool {
		if len(list) == 0 {
			return nil
		}
		m := make(map[int64]bool, len(list))
		for _, v := range list {
			m[v] = true
		}
		return m
	}
	x := &Act{ID: id, Version: version, Merchant: merchant, Name: name, Priority: priority, Rule: r,
		skus: set(r.Scope.SKUs), shops: set(r.Scope.Shops), exclude: set(r.Scope.Exclude), left: -1}
	if len(r.Scope.Categories) > 0 {
		x.categories = make(map[string]bool, len(r.Scope.Categories))
		for _, c := range r.Scope.Categories {
			x.categories[c] = true
		}
	}
	return x
}

// covers says whether the activity applies to a line: in its scope, of its shop (a merchant's),
// in its currency.
func (x *Act) covers(l *Line) bool {
	if x.Merchant != 0 && l.Shop != x.Merchant || x.exclude[l.SKU] {
		return false
	}
	switch x.Rule.Scope.Kind {
	case ScopePlatform:
		return true
	case ScopeCategories:
		return x.categories[l.Category]
	case ScopeShops:
		return x.shops[l.Shop]
	case ScopeSKUs:
		return x.skus[l.SKU]
	}
	return false
}

// stacks says whether two activities may be on one cart.
func stacks(a, b *Act) bool {
	switch {
	case a.Rule.Exclusive || b.Rule.Exclusive:
		return false
	case a.Rule.Group != "" && a.Rule.Group == b.Rule.Group:
		return false
	case b.Rule.Group != "" && slices.Contains(a.Rule.Excludes, b.Rule.Group):
		return false
	case a.Rule.Group != "" && slices.Contains(b.Rule.Excludes, a.Rule.Group):
		return false
	}
	return true
}

// Offer is a coupon a cart may take (package coupon's Offers).
type Offer = coupon.Offer

// applied is what a set of activities takes off a cart, before coupons.
type applied struct {
	off    []int64                 // per line
	shares [][]surge.ActivityShare // per line
	taken  []surge.ActivityTaken
	total  int64
}

// byPriority orders activities as they apply: the higher priority first, then the older.
func byPriority(a, b *Act) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// apply prices lines with a set of activities (in byPriority order): unit prices first (each
// line at the lowest unit price they give it), then the order kinds one after another, each on
// what the lines in its scope still cost. An activity that takes nothing is not taken.
func apply(lines []Line, acts []*Act) applied { return applyRows(lines, acts, nil, true) }

// applyRows is apply with what each activity covers given (rows[k][i]: acts[k] covers line i;
// nil: asked of the activities), and, without full, only the total and each line's off worked
// out (what a search weighs).
func applyRows(lines []Line, acts []*Act, rows [][]bool, full bool) applied {
	p := applied{off: make([]int64, len(lines))}
	if full {
		p.shares = make([][]surge.ActivityShare, len(lines))
	}
	if rows == nil {
		rows = make([][]bool, len(acts))
		for k, x := range acts {
			rows[k] = make([]bool, len(lines))
			for i := range lines {
				rows[k][i] = x.covers(&lines[i])
			}
		}
	}
	amounts := make([]int64, len(acts))
	take := func(k, i int, amount int64) {
		if amount <= 0 {
			return
		}
		p.off[i] += amount
		if full {
			p.shares[i] = append(p.shares[i], surge.ActivityShare{Activity: acts[k].ID, Label: acts[k].Name, Amount: amount})
		}
		amounts[k] += amount
		p.total += amount
	}
	for i := range lines {
		l := &lines[i]
		best := -1
		unit := l.Unit
		for k, x := range acts {
			if !rows[k][i] || !unitKind(x.Rule.Kind) {
				continue
			}
			if u := x.unitPrice(l.Unit); u < unit {
				best, unit = k, u
			}
		}
		if best >= 0 {
			take(best, i, (l.Unit-unit)*l.Quantity)
		}
	}
	var rebates []*Act
	in := make([]int, 0, len(lines))
	room := make([]int64, len(lines))
	for k, x := range acts {
		if unitKind(x.Rule.Kind) {
			continue
		}
		in = in[:0]
		clear(room)
		var base, roomSum int64
		for i := range lines {
			if rows[k][i] {
				left := lines[i].Unit*lines[i].Quantity - p.off[i]
				in = append(in, i)
				base += left
				room[i] = max(left-x.Rule.Floor*lines[i].Quantity, 0)
				roomSum += room[i]
			}
		}
		if len(in) == 0 {
			continue
		}
		r := x.Rule
		switch r.Kind {
		case Rebate:
			if base >= r.Threshold {
				rebates = append(rebates, x)
			}
			continue
		case BuyXGetY, Bundle:
			for i, amount := range x.unitDeal(lines, in, p.off, room) {
				take(k, i, amount)
			}
			continue
		}
		var off int64
		switch r.Kind {
		case Threshold:
			if base >= r.Threshold {
				off = r.Value
				if r.Repeat {
					off = r.Value * (base / r.Threshold)
					if r.MaxOff > 0 {
						off = min(off, r.MaxOff)
					}
				}
			}
		case Tiered:
			for _, t := range r.Tiers {
				if base >= t.Min {
					off = base * t.Percent / 100
				}
			}
			if r.MaxOff > 0 {
				off = min(off, r.MaxOff)
			}
		}
		if off = min(off, roomSum); off <= 0 {
			continue
		}
		if len(in) == 1 {
			take(k, in[0], off)
			continue
		}
		for j, amount := range coupon.Spread(off, in, room) {
			take(k, in[j], amount)
		}
	}
	if !full {
		return p
	}
	for k, x := range acts {
		if amounts[k] > 0 {
			p.taken = append(p.taken, x.taken(amounts[k]))
		}
	}
	for _, x := range rebates {
		p.taken = append(p.taken, x.taken(0))
	}
	return p
}

func (x *Act) taken(amount int64) surge.ActivityTaken {
	t := surge.ActivityTaken{Activity: x.ID, Version: x.Version, Kind: x.Rule.Kind, Label: x.Name, Amount: amount,
		Once: x.Rule.Audience != Everyone}
	if x.Rule.Kind == Rebate {
		t.RebateBatch = x.Rule.RebateBatch
	}
	return t
}

// unitPrice is what a unit listed at unit costs under a unit-price activity (never below its
// floor, nor below 0, nor above unit).
func (x *Act) unitPrice(unit int64) int64 {
	r := x.Rule
	u := unit
	switch {
	case r.Kind == Direct && r.Value > 0:
		u = unit - r.Value
	case r.Kind == Direct:
		u = unit - unit*r.Percent/100
	default:
		u = r.Price
	}
	return min(max(u, r.Floor, 0), unit)
}

// unitDeal prices buy-X-get-Y (the cheapest units free) and bundles (the dearest units, in
// groups of Units, at Price a group): what it takes off each line, by index.
func (x *Act) unitDeal(lines []Line, in []int, off, room []int64) map[int]int64 {
	r := x.Rule
	var units int64
	for _, i := range in {
		units += lines[i].Quantity
	}
	// each line's units cost left/quantity (as a fraction): compare left_a*q_b with left_b*q_a
	order := slices.Clone(in)
	slices.SortStableFunc(order, func(a, b int) int {
		la, lb := lines[a].Unit*lines[a].Quantity-off[a], lines[b].Unit*lines[b].Quantity-off[b]
		return cmp.Compare(la*lines[b].Quantity, lb*lines[a].Quantity) // fits: both below 2^50 * 1000
	})
	var want int64
	if r.Kind == BuyXGetY {
		want = units / (r.Buy + r.Get) * r.Get
	} else {
		want = units / r.Units * r.Units
		slices.Reverse(order) // the dearest first
	}
	out := map[int]int64{}
	if want == 0 {
		return out
	}
	picked := map[int]int64{} // the amount of the picked units of each line
	var pickedSum int64
	for _, i := range order {
		if want == 0 {
			break
		}
		k := min(want, lines[i].Quantity)
		want -= k
		left := lines[i].Unit*lines[i].Quantity - off[i]
		picked[i] = left * k / lines[i].Quantity
		pickedSum += picked[i]
	}
	if r.Kind == BuyXGetY {
		for i, amount := range picked {
			out[i] = min(amount, room[i])
		}
		return out
	}
	bundles := (units / r.Units)
	save := pickedSum - bundles*r.Price
	var idx []int
	weight := make([]int64, len(lines))
	var wsum int64
	for _, i := range order {
		if picked[i] > 0 {
			idx = append(idx, i)
			weight[i] = min(picked[i], room[i])
			wsum += weight[i]
		}
	}
	if save = min(save, wsum); save <= 0 {
		return out
	}
	for k, amount := range coupon.Spread(save, idx, weight) {
		out[idx[k]] = amount
	}
	return out
}

// priceLines prices lines (Off set by activities) with coupons: coupon.Price, over as many
// lines as a cart has.
func priceLines(currency string, lines []Line, offers []Offer) (surge.PriceBreakdown, error) {
	if len(lines) <= coupon.MaxLines {
		return coupon.Price(currency, lines, appliedOf(offers))
	}
	if len(offers) > 0 {
		return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupons apply to orders of up to %d lines", coupon.MaxLines)
	}
	b := surge.PriceBreakdown{Currency: currency, Lines: make([]surge.LinePrice, 0, len(lines)), Coupons: []surge.CouponTaken{}}
	for start := 0; start < len(lines); start += coupon.MaxLines {
		part, err := coupon.Price(currency, lines[start:min(start+coupon.MaxLines, len(lines))], nil)
		if err != nil {
			return surge.PriceBreakdown{}, err
		}
		b.List, b.Discount, b.Payable = b.List+part.List, b.Discount+part.Discount, b.Payable+part.Payable
		b.Lines = append(b.Lines, part.Lines...)
	}
	return b, nil
}

// explain writes how a line's price was made, for the shopper: "599.00 − Flash price 100.00 −
// coupon 15.00 = 484.00".
func explain(l surge.LinePrice, labels map[int64]string) string {
	var sb strings.Builder
	sb.WriteString(Decimal(l.List))
	for _, a := range l.Activities {
		fmt.Fprintf(&sb, " − %s %s", a.Label, Decimal(a.Amount))
	}
	for _, c := range l.Shares {
		label := labels[c.Coupon]
		if label == "" {
			label = "coupon"
		}
		fmt.Fprintf(&sb, " − %s %s", label, Decimal(c.Amount))
	}
	fmt.Fprintf(&sb, " = %s", Decimal(l.Payable))
	return sb.String()
}

// Decimal writes minor units as an amount with two decimals.
func Decimal(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d", sign, minor/100, minor%100)
}
