package promo

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
)

// Bounds of the price search.
const (
	// A group of interacting activities (those that share a line of the cart, or exclude each
	// other) with up to 2^ExactGroup combinations (one or none of each stacking group, any of
	// those of none) has every legal combination weighed; a larger one is searched from the
	// best combination a greedy pass finds, improved by adding, dropping and swapping
	// activities until nothing improves (Priced.Exhaustive false).
	ExactGroup = 14
	// MaxEvaluations bounds the combinations one search prices; past it the search answers the
	// best it found (Priced.Exhaustive false).
	MaxEvaluations = 20_000
	// maxOffers bounds the coupons one search weighs, the most valuable alone first.
	maxOffers = 32
	// MaxCandidates bounds the activities one search weighs: past it, those that take the
	// most off the cart alone (Priced.Exhaustive false).
	MaxCandidates = 64
)

// Priced is a cart priced at the best legal combination found: the breakdown, the activities
// taken, and whether the search weighed every combination.
type Priced struct {
	Price      surge.PriceBreakdown
	Acts       []*Act
	Exhaustive bool
}

// search is one price search over a cart's activities and coupons.
type search struct {
	currency   string
	lines      []Line
	evals      int
	exhaustive bool
	chosen     map[string][]*Act // activities' best combination, by the candidates' ids
}

// Best prices lines with the activities that cover them and coupons, at the legal combination
// that takes the most off.
//
// With fixed, the coupons are the order's own (all taken): the activities are those that stack
// with them (no_coupons, no_envelopes), and of those the best combination; should the coupons
// not all apply after it (a coupon's threshold no longer reached), activities are left out, the
// least valuable first, until they do.
//
// Without fixed, the search weighs the best activities with the best coupons after them, and,
// when those activities keep some coupons off, the best activities that do not with the best
// coupons after them; each priced exactly as an order naming those coupons is (fixed), so that
// an order at a quoted price charges it.
//
// The activities: those sharing no line and not excluding each other are independent, so the
// search splits them into groups that do, and weighs every legal combination of each group of
// up to ExactGroup (pruning combinations that cannot beat the best: what an activity takes with
// others is never more than it takes alone). A combination is legal when its activities stack
// (groups, exclusions, exclusive).
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
	s := &search{currency: currency, lines: lines, exhaustive: true, chosen: map[string][]*Act{}}
	var cands []*Act
	var alone []int64
	for _, x := range acts {
		if x.Rule.Currency != currency || !slices.ContainsFunc(lines, func(l Line) bool { return x.covers(&l) }) {
			continue
		}
		// what an activity takes with others is at most what it takes alone: one whose budget
		// has less left than that is left out, rather than priced at what its lock would refuse
		worth := applyRows(lines, []*Act{x}, nil, false).total
		if x.left >= 0 && worth > x.left {
			continue
		}
		cands, alone = append(cands, x), append(alone, worth)
	}
	if len(cands) > MaxCandidates { // the most valuable alone (rebates last), then by priority
		idx := make([]int, len(cands))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			if c := cmp.Compare(alone[b], alone[a]); c != 0 {
				return c
			}
			return byPriority(cands[a], cands[b])
		})
		kept := make([]*Act, MaxCandidates)
		for i, k := range idx[:MaxCandidates] {
			kept[i] = cands[k]
		}
		cands, s.exhaustive = kept, false
	}
	slices.SortStableFunc(cands, byPriority)
	if fixed {
		return s.with(cands, offers)
	}
	best, err := s.with(cands, nil)
	if err != nil {
		return nil, err
	}
	if len(offers) > 0 {
		// the best activities, and the best coupons they let on
		chosen := s.activities(cands)
		if picked := s.coupons(chosen, offers); len(picked) > 0 {
			if p, err := s.with(cands, picked); err == nil && p.Price.Discount > best.Price.Discount {
				best = p
			}
		}
		// the best activities that keep no coupon off, and the best coupons after them
		open := slices.DeleteFunc(slices.Clone(cands), func(x *Act) bool { return x.Rule.NoCoupons || x.Rule.NoEnvelopes })
		if len(open) < len(cands) {
			if picked := s.coupons(s.activities(open), offers); len(picked) > 0 {
				if p, err := s.with(cands, picked); err == nil && p.Price.Discount > best.Price.Discount {
					best = p
				}
			}
		}
	}
	best.Exhaustive = s.exhaustive
	return best, nil
}

// with prices the cart with exactly these coupons: the best activities that stack with them,
// leaving out activities (the least valuable alone first) while the coupons do not all apply.
func (s *search) with(cands []*Act, offers []Offer) (*Priced, error) {
	envelopes, others := false, false
	for _, o := range offers {
		envelopes, others = envelopes || o.Envelope, others || !o.Envelope
	}
	stacking := slices.DeleteFunc(slices.Clone(cands), func(x *Act) bool { return x.Rule.NoCoupons && others || x.Rule.NoEnvelopes && envelopes })
	chosen := s.activities(stacking)
	for {
		p, b, err := s.price(chosen, offers)
		if err == nil {
			return &Priced{Price: b, Acts: p, Exhaustive: s.exhaustive}, nil
		}
		if len(chosen) == 0 {
			return nil, err
		}
		// leave out the activity worth least alone, and search again without it
		alone := make([]int64, len(chosen))
		for i, x := range chosen {
			alone[i] = apply(s.lines, []*Act{x}).total
		}
		least := chosen[0]
		for i, x := range chosen {
			if alone[i] < alone[slices.Index(chosen, least)] {
				least = x
			}
		}
		stacking = slices.DeleteFunc(stacking, func(x *Act) bool { return x == least })
		chosen = s.activities(stacking)
	}
}

// price prices the cart with activities and coupons: the breakdown, and the activities that
// took something (or gave a rebate).
func (s *search) price(acts []*Act, offers []Offer) ([]*Act, surge.PriceBreakdown, error) {
	acts = slices.SortedStableFunc(slices.Values(acts), byPriority)
	p := apply(s.lines, acts)
	lines := slices.Clone(s.lines)
	for i := range lines {
		lines[i].Off = p.off[i]
	}
	b, err := priceLines(s.currency, lines, offers)
	if err != nil {
		return nil, b, err
	}
	b.Activities = p.taken
	labels := map[int64]string{}
	for _, o := range offers {
		labels[o.ID] = o.Label
	}
	for i := range b.Lines {
		b.Lines[i].Activities = p.shares[i]
		b.Lines[i].Text = explain(b.Lines[i], labels)
	}
	var used []*Act
	for _, x := range acts {
		if slices.ContainsFunc(p.taken, func(t surge.ActivityTaken) bool { return t.Activity == x.ID }) {
			used = append(used, x)
		}
	}
	return used, b, nil
}

// activities returns the best legal combination of cands (in byPriority order), group by group
// of interacting activities.
func (s *search) activities(cands []*Act) []*Act {
	key := make([]byte, 0, 8*len(cands))
	for _, x := range cands {
		key = binary.AppendVarint(key, x.ID)
	}
	if got, ok := s.chosen[string(key)]; ok {
		return got
	}
	evals := s.evals // each search has its own MaxEvaluations: what one used never cuts another short
	s.evals = 0
	chosen := s.combine(cands)
	s.evals = evals + s.evals
	s.chosen[string(key)] = chosen
	return chosen
}

// combine is activities, not remembered.
func (s *search) combine(cands []*Act) []*Act {
	// A rebate takes nothing off: the search weighs the others, and then every rebate that
	// stacks with what it chose (and with the rebates before it) goes on too.
	var rebates []*Act
	cands = slices.DeleteFunc(slices.Clone(cands), func(x *Act) bool {
		if x.Rule.Kind == Rebate {
			rebates = append(rebates, x)
			return true
		}
		return false
	})
	chosen := s.money(cands)
	for _, x := range rebates {
		if !slices.ContainsFunc(chosen, func(c *Act) bool { return !stacks(c, x) }) {
			chosen = append(chosen, x)
		}
	}
	return slices.SortedStableFunc(slices.Values(chosen), byPriority)
}

// money is the best combination of activities that take money off.
func (s *search) money(cands []*Act) []*Act {
	// groups: union of activities that share a line or do not stack
	parent := make([]int, len(cands))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	covered := make([][]int, len(s.lines)) // line → activities
	for k, x := range cands {
		for i := range s.lines {
			if x.covers(&s.lines[i]) {
				covered[i] = append(covered[i], k)
			}
		}
	}
	for _, ks := range covered {
		if len(ks) < 2 {
			continue
		}
		for _, k := range ks[1:] {
			parent[find(k)] = find(ks[0])
		}
	}
	for a := range cands {
		for b := a + 1; b < len(cands); b++ {
			if find(a) != find(b) && !stacks(cands[a], cands[b]) {
				parent[find(a)] = find(b)
			}
		}
	}
	groups := map[int][]*Act{}
	var roots []int
	for k, x := range cands {
		r := find(k)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], x)
	}
	var chosen []*Act
	for _, r := range roots {
		chosen = append(chosen, s.group(groups[r])...)
	}
	return slices.SortedStableFunc(slices.Values(chosen), byPriority)
}

// group returns the best legal combination of a group of interacting activities: every one
// weighed when the group is small, else a greedy pass improved locally.
func (s *search) group(acts []*Act) []*Act {
	if len(acts) == 1 {
		return acts
	}
	var lines []Line // the group's lines: what its activities' worth depends on
	for i := range s.lines {
		if slices.ContainsFunc(acts, func(x *Act) bool { return x.covers(&s.lines[i]) }) {
			lines = append(lines, s.lines[i])
		}
	}
	cover := make([][]bool, len(acts))
	for k, x := range acts {
		cover[k] = make([]bool, len(lines))
		for j := range lines {
			cover[k][j] = x.covers(&lines[j])
		}
	}
	// a set is a list of indices into acts, kept in byPriority order (acts is)
	rows := make([][]bool, 0, len(acts))
	sub := make([]*Act, 0, len(acts))
	worth := func(set []int) int64 {
		s.evals++
		rows, sub = rows[:0], sub[:0]
		for _, k := range set {
			rows, sub = append(rows, cover[k]), append(sub, acts[k])
		}
		return applyRows(lines, sub, rows, false).total
	}
	alone := make([]int64, len(acts))
	for k := range acts {
		alone[k] = worth([]int{k})
	}
	order := make([]int, len(acts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(alone[b], alone[a]) })
	// Two unit-price activities on the same lines, one never dearer on any, are alternatives:
	// a line takes the lowest unit price, so both on the cart price it as the cheaper alone.
	alternatives := make([][]bool, len(acts))
	for a := range acts {
		alternatives[a] = make([]bool, len(acts))
	}
	for a, x := range acts {
		for b := a + 1; b < len(acts); b++ {
			y := acts[b]
			if !unitKind(x.Rule.Kind) || !unitKind(y.Rule.Kind) || !slices.Equal(cover[a], cover[b]) {
				continue
			}
			le, ge := true, true
			for j, l := range lines {
				if cover[a][j] {
					ux, uy := x.unitPrice(l.Unit), y.unitPrice(l.Unit)
					le, ge = le && ux <= uy, ge && ux >= uy
				}
			}
			alternatives[a][b], alternatives[b][a] = le || ge, le || ge
		}
	}
	legal := func(set []int, k int) bool {
		for _, c := range set {
			if !stacks(acts[c], acts[k]) || alternatives[c][k] {
				return false
			}
		}
		return true
	}
	with := func(set []int, k int) []int { // set and k, in byPriority order
		out := append(slices.Clip(set), k)
		slices.Sort(out)
		return out
	}
	pick := func(set []int) []*Act {
		out := make([]*Act, len(set))
		for i, k := range set {
			out[i] = acts[k]
		}
		return out
	}
	if combinations(acts) <= 1<<ExactGroup {
		rest := make([]int64, len(order)+1) // what the activities from order[j] on take alone
		for j := len(order) - 1; j >= 0; j-- {
			rest[j] = rest[j+1] + alone[order[j]]
		}
		// What an activity adds to a set is never more than it takes alone (it takes from what
		// the others left, and leaves them less), so a set's worth and what the activities not
		// yet weighed take alone bound every set made by adding them.
		var best []int
		bestWorth := int64(-1)
		var walk func(j int, set []int, w int64)
		walk = func(j int, set []int, w int64) {
			if w > bestWorth {
				best, bestWorth = slices.Clone(set), w
			}
			if j == len(order) || w+rest[j] <= bestWorth || s.evals > MaxEvaluations {
				return
			}
			if k := order[j]; legal(set, k) {
				next := with(set, k)
				walk(j+1, next, worth(next))
			}
			walk(j+1, set, w)
		}
		walk(0, nil, 0)
		if s.evals > MaxEvaluations {
			s.exhaustive = false
		}
		return pick(best)
	}
	s.exhaustive = false
	var set []int // greedy: the most valuable alone first, each that stacks and adds
	w := int64(0)
	for _, k := range order {
		if legal(set, k) {
			next := with(set, k)
			if nw := worth(next); nw > w {
				set, w = next, nw
			}
		}
	}
	for improved := true; improved && s.evals <= MaxEvaluations; {
		improved = false
		for _, k := range order { // add k, dropping what does not stack with it
			if slices.Contains(set, k) {
				continue
			}
			next := with(slices.DeleteFunc(slices.Clone(set), func(c int) bool { return !stacks(acts[c], acts[k]) }), k)
			if nw := worth(next); nw > w {
				set, w, improved = next, nw, true
			}
		}
		for i := range set { // drop one
			next := slices.Delete(slices.Clone(set), i, i+1)
			if nw := worth(next); nw > w {
				set, w, improved = next, nw, true
				break
			}
		}
	}
	return pick(set)
}

// combinations bounds the legal combinations of activities: one or none of each stacking group,
// any of those of none.
func combinations(acts []*Act) float64 {
	n := 1.0
	groups := map[string]int{}
	for _, x := range acts {
		if x.Rule.Group == "" {
			n *= 2
		} else {
			groups[x.Rule.Group]++
		}
	}
	for _, k := range groups {
		n *= float64(k + 1)
	}
	return n
}

// coupons returns the best set of offers after activities: every legal set weighed (up to
// MaxEvaluations), pruned by what each takes alone.
func (s *search) coupons(acts []*Act, offers []Offer) []Offer {
	evals := s.evals // a budget of its own, as activities have
	s.evals = 0
	defer func() { s.evals += evals }()
	noCoupons, noEnvelopes := false, false
	for _, x := range acts {
		noCoupons, noEnvelopes = noCoupons || x.Rule.NoCoupons, noEnvelopes || x.Rule.NoEnvelopes
	}
	p := apply(s.lines, slices.SortedStableFunc(slices.Values(acts), byPriority))
	lines := slices.Clone(s.lines)
	for i := range lines {
		lines[i].Off = p.off[i]
	}
	var usable []Offer
	var alone []int64
	for _, o := range offers {
		if o.Envelope && noEnvelopes || !o.Envelope && noCoupons {
			continue
		}
		s.evals++
		if b, err := coupon.Price(s.currency, lines, []coupon.Applied{o.Applied}); err == nil {
			usable, alone = append(usable, o), append(alone, b.CouponDiscount())
		}
	}
	idx := make([]int, len(usable))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(alone[b], alone[a]) })
	if len(idx) > maxOffers {
		idx, s.exhaustive = idx[:maxOffers], false
	}
	rest := make([]int64, len(idx)+1)
	for k := len(idx) - 1; k >= 0; k-- {
		rest[k] = rest[k+1] + alone[idx[k]]
	}
	var best []Offer
	bestWorth := int64(0)
	var walk func(k int, set []Offer, bound, worth int64)
	walk = func(k int, set []Offer, bound, worth int64) {
		if worth > bestWorth {
			best, bestWorth = slices.Clone(set), worth
		}
		if k == len(idx) || bound+rest[k] <= bestWorth || s.evals > MaxEvaluations {
			return
		}
		o := usable[idx[k]]
		if len(set) < coupon.MaxPerOrder {
			with := append(slices.Clip(set), o)
			s.evals++
			// a set that does not apply does not with more either
			if b, err := coupon.Price(s.currency, lines, appliedOf(with)); err == nil {
				walk(k+1, with, bound+alone[idx[k]], b.CouponDiscount())
			}
		}
		walk(k+1, set, bound, worth)
	}
	walk(0, nil, 0, 0)
	if s.evals > MaxEvaluations {
		s.exhaustive = false
	}
	// in a fixed order, as an order naming them applies them
	return slices.SortedFunc(slices.Values(best), func(a, b Offer) int { return cmp.Compare(a.ID, b.ID) })
}

func appliedOf(offers []Offer) []coupon.Applied {
	out := make([]coupon.Applied, len(offers))
	for i, o := range offers {
		out[i] = o.Applied
	}
	return out
}
