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
	// MaxEvaluations bounds the combinations one price search evaluates: past it, the search
	// answers the best it found and says it was cut short (Priced.Exhaustive false).
	MaxEvaluations = 20_000
	// maxCandidates bounds the activities and coupons one search weighs, the most valuable
	// alone first.
	maxCandidates = 64
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
}

// Compile makes an activity's rule ready for pricing.
func Compile(a *surge.Activity) (*Act, error) {
	r, err := DecodeRule(a.Rule)
	if err != nil {
		return nil, err
	}
	return compileRule(a.ID, a.Version, a.MerchantID, a.Name, a.Priority, r), nil
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
		skus: set(r.Scope.SKUs), shops: set(r.Scope.Shops), exclude: set(r.Scope.Exclude)}
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
func apply(lines []Line, acts []*Act) applied {
	p := applied{off: make([]int64, len(lines)), shares: make([][]surge.ActivityShare, len(lines))}
	amounts := map[int64]int64{}
	take := func(x *Act, i int, amount int64) {
		if amount <= 0 {
			return
		}
		p.off[i] += amount
		p.shares[i] = append(p.shares[i], surge.ActivityShare{Activity: x.ID, Label: x.Name, Amount: amount})
		amounts[x.ID] += amount
		p.total += amount
	}
	for i := range lines {
		l := &lines[i]
		var best *Act
		unit := l.Unit
		for _, x := range acts {
			if !unitKind(x.Rule.Kind) || !x.covers(l) {
				continue
			}
			if u := x.unitPrice(l.Unit); u < unit {
				best, unit = x, u
			}
		}
		if best != nil {
			take(best, i, (l.Unit-unit)*l.Quantity)
		}
	}
	var rebates []*Act
	for _, x := range acts {
		if unitKind(x.Rule.Kind) {
			continue
		}
		var in []int
		var base, roomSum int64
		room := make([]int64, len(lines))
		for i := range lines {
			if x.covers(&lines[i]) {
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
				take(x, i, amount)
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
		for k, amount := range coupon.Spread(off, in, room) {
			take(x, in[k], amount)
		}
	}
	for _, x := range acts {
		if amounts[x.ID] > 0 {
			p.taken = append(p.taken, x.taken(amounts[x.ID]))
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

// Priced is a cart priced at the best legal combination found: the breakdown, and whether the
// search weighed every combination (false when it was cut at MaxEvaluations).
type Priced struct {
	Price      surge.PriceBreakdown
	Acts       []*Act
	Exhaustive bool
}

// search is one price search over a cart's activities and coupons.
type search struct {
	currency  string
	lines     []Line
	acts      []*Act
	actAlone  []int64
	offers    []Offer
	offAlone  []int64
	fixed     bool // every offer must be taken (an order names its coupons)
	evals     int
	best      *Priced
	bestTotal int64
	err       error // why the fixed coupons did not apply, when nothing did
}

// Best prices lines with the activities that cover them and coupons: the legal combination that
// takes the most off (ties: the first found, the most valuable alone first). With fixed, every
// coupon must be taken (an order names its coupons) and only activities are chosen; else any
// subset of them is. A combination is legal when its activities stack (groups, exclusions,
// exclusive) and its coupons apply after them (scope, threshold, stacking group, MaxPerOrder),
// none kept off by an activity (no_coupons, no_envelopes).
func Best(currency string, lines []Line, acts []*Act, offers []Offer, fixed bool) (*Priced, error) {
	if err := surge.ValidateCurrency("currency", currency); err != nil {
		return nil, err
	}
	if len(lines) == 0 || len(lines) > MaxLines {
		return nil, surge.Errorf(surge.EINVALID, "a cart has 1 to %d lines", MaxLines)
	}
	if len(offers) > coupon.MaxPerOrder && fixed {
		return nil, surge.Errorf(surge.EINVALID, "an order takes at most %d coupons, not %d", coupon.MaxPerOrder, len(offers))
	}
	lines = slices.Clone(lines)
	for i := range lines {
		lines[i].Off = 0
	}
	if _, err := priceLines(currency, lines, nil); err != nil { // the lines' own bounds
		return nil, err
	}
	if len(lines) > coupon.MaxLines && len(offers) > 0 {
		if fixed {
			return nil, surge.Errorf(surge.EINVALID, "coupons apply to orders of up to %d lines", coupon.MaxLines)
		}
		offers = nil
	}
	s := &search{currency: currency, lines: lines, fixed: fixed, bestTotal: -1}
	for _, x := range acts {
		if x.Rule.Currency != currency {
			continue
		}
		p := apply(lines, []*Act{x})
		if len(p.taken) > 0 {
			s.acts = append(s.acts, x)
			s.actAlone = append(s.actAlone, p.total)
		}
	}
	sortByAlone(&s.acts, &s.actAlone, maxCandidates)
	for _, o := range offers {
		b, err := coupon.Price(currency, lines, []coupon.Applied{o.Applied})
		switch {
		case err != nil && fixed:
			s.offers, s.offAlone = append(s.offers, o), append(s.offAlone, 0)
		case err == nil:
			s.offers, s.offAlone = append(s.offers, o), append(s.offAlone, b.Discount)
		}
	}
	if !fixed {
		sortByAlone(&s.offers, &s.offAlone, maxCandidates)
	}
	var bound int64
	for _, v := range s.offAlone {
		bound += v
	}
	s.walk(0, nil, 0, bound)
	if s.best == nil {
		if s.err == nil {
			s.err = surge.Errorf(surge.EINVALID, "the coupons named do not apply to this cart")
		}
		return nil, s.err
	}
	s.best.Exhaustive = s.evals <= MaxEvaluations
	return s.best, nil
}

func sortByAlone[T any](list *[]T, alone *[]int64, most int) {
	idx := make([]int, len(*list))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare((*alone)[b], (*alone)[a]) })
	if len(idx) > most {
		idx = idx[:most]
	}
	l, a := make([]T, len(idx)), make([]int64, len(idx))
	for k, i := range idx {
		l[k], a[k] = (*list)[i], (*alone)[i]
	}
	*list, *alone = l, a
}

// walk decides activity i onward: with it (if it stacks with those chosen), then without. The
// bound (what the chosen and the rest take alone, and every coupon alone) prunes a branch that
// cannot beat the best.
func (s *search) walk(i int, chosen []*Act, alone, couponBound int64) {
	if s.evals > MaxEvaluations {
		return
	}
	var rest int64
	for _, v := range s.actAlone[i:] {
		rest += v
	}
	if s.best != nil && alone+rest+couponBound <= s.bestTotal {
		return
	}
	if i == len(s.acts) {
		s.evaluate(chosen)
		return
	}
	x := s.acts[i]
	ok := true
	for _, c := range chosen {
		if !stacks(c, x) {
			ok = false
			break
		}
	}
	if ok {
		s.walk(i+1, append(slices.Clip(chosen), x), alone+s.actAlone[i], couponBound)
	}
	s.walk(i+1, chosen, alone, couponBound)
}

// evaluate prices a set of activities and the best coupons after it.
func (s *search) evaluate(chosen []*Act) {
	acts := slices.SortedStableFunc(slices.Values(chosen), byPriority)
	p := apply(s.lines, acts)
	lines := slices.Clone(s.lines)
	for i := range lines {
		lines[i].Off = p.off[i]
	}
	noCoupons, noEnvelopes := false, false
	for _, x := range acts {
		noCoupons, noEnvelopes = noCoupons || x.Rule.NoCoupons, noEnvelopes || x.Rule.NoEnvelopes
	}
	allowed := func(o Offer) bool { return !(o.Envelope && noEnvelopes || !o.Envelope && noCoupons) }
	if s.fixed {
		s.evals++
		for _, o := range s.offers {
			if !allowed(o) {
				if s.err == nil {
					s.err = surge.Errorf(surge.EINVALID, "coupon %d does not stack with the activities of this cart", o.ID)
				}
				return
			}
		}
		s.consider(acts, p, lines, s.offers)
		return
	}
	var usable []int
	for k, o := range s.offers {
		if allowed(o) {
			usable = append(usable, k)
		}
	}
	s.coupons(acts, p, lines, usable, 0, nil, 0)
}

// coupons decides offer usable[k] onward on top of activities' price p: with it (when the set
// still applies), then without.
func (s *search) coupons(acts []*Act, p applied, lines []Line, usable []int, k int, picked []Offer, alone int64) {
	if s.evals > MaxEvaluations {
		return
	}
	var rest int64
	for _, j := range usable[k:] {
		rest += s.offAlone[j]
	}
	if s.best != nil && p.total+alone+rest <= s.bestTotal {
		return
	}
	if k == len(usable) {
		s.evals++
		s.consider(acts, p, lines, picked)
		return
	}
	o := s.offers[usable[k]]
	if len(picked) < coupon.MaxPerOrder {
		with := append(slices.Clip(picked), o)
		s.evals++
		if _, err := coupon.Price(s.currency, lines, appliedOf(with)); err == nil { // a set that fails fails with any more
			s.coupons(acts, p, lines, usable, k+1, with, alone+s.offAlone[usable[k]])
		}
	}
	s.coupons(acts, p, lines, usable, k+1, picked, alone)
}

func appliedOf(offers []Offer) []coupon.Applied {
	out := make([]coupon.Applied, len(offers))
	for i, o := range offers {
		out[i] = o.Applied
	}
	return out
}

// consider prices activities' p and coupons, and keeps it if it beats the best.
func (s *search) consider(acts []*Act, p applied, lines []Line, offers []Offer) {
	b, err := priceLines(s.currency, lines, offers)
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	if b.Discount <= s.bestTotal {
		return
	}
	b.Activities = p.taken
	for i := range b.Lines {
		b.Lines[i].Activities = p.shares[i]
	}
	labels := map[int64]string{}
	for _, o := range offers {
		labels[o.ID] = o.Label
	}
	for i := range b.Lines {
		b.Lines[i].Text = explain(b.Lines[i], labels)
	}
	var used []*Act
	for _, x := range acts {
		if slices.ContainsFunc(p.taken, func(t surge.ActivityTaken) bool { return t.Activity == x.ID }) {
			used = append(used, x)
		}
	}
	s.best, s.bestTotal = &Priced{Price: b, Acts: used}, b.Discount
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
