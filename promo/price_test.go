package promo

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
)

func act(id int64, name string, priority int64, r Rule) *Act {
	if r.Currency == "" {
		r.Currency = "CNY"
	}
	if r.Scope.Kind == "" {
		r.Scope.Kind = ScopePlatform
	}
	if err := r.Validate(); err != nil {
		panic(err)
	}
	return compileRule(id, 1, 0, name, priority, r)
}

func offer(id int64, r coupon.Rule) Offer {
	if r.Currency == "" {
		r.Currency = "CNY"
	}
	if r.Scope.Kind == "" {
		r.Scope.Kind = coupon.ScopePlatform
	}
	return Offer{Applied: coupon.Applied{ID: id, Rule: r}, Label: "coupon"}
}

// checkAddsUp holds a price to its own sums, as the audit does.
func checkAddsUp(t *testing.T, b surge.PriceBreakdown) {
	t.Helper()
	if why := b.Inconsistency(); why != "" {
		t.Fatalf("price does not add up (%s): %+v", why, b)
	}
}

func mustBest(t *testing.T, lines []Line, acts []*Act, offers []Offer, fixed bool) *Priced {
	t.Helper()
	p, err := Best("CNY", lines, acts, offers, fixed)
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, p.Price)
	if !p.Exhaustive {
		t.Fatal("a small cart's search was cut short")
	}
	return p
}

func takenIDs(b surge.PriceBreakdown) []int64 {
	var ids []int64
	for _, a := range b.Activities {
		ids = append(ids, a.Activity)
	}
	slices.Sort(ids)
	return ids
}

func TestEachKindPricesAsItSays(t *testing.T) {
	two := []Line{{SKU: 1, Shop: 7, Category: "shoes", Unit: 59900, Quantity: 1}, {SKU: 2, Shop: 7, Category: "socks", Unit: 1000, Quantity: 3}}
	for _, c := range []struct {
		name string
		rule Rule
		off  int64
	}{
		{"direct value per unit", Rule{Kind: Direct, Value: 500}, 500 + 3*500},
		{"direct percent per unit", Rule{Kind: Direct, Percent: 10}, 5990 + 3*100},
		{"flash price", Rule{Kind: FlashPrice, Price: 49900, Scope: Scope{Kind: ScopeSKUs, SKUs: []int64{1}}}, 10000},
		{"member price above list takes nothing off that line", Rule{Kind: MemberPrice, Price: 2000}, 59900 - 2000},
		{"floor holds a unit price", Rule{Kind: Direct, Value: 900, Floor: 500}, 900 + 3*500},
		{"threshold once", Rule{Kind: Threshold, Value: 2000, Threshold: 20000}, 2000},
		{"threshold every 200", Rule{Kind: Threshold, Value: 2000, Threshold: 20000, Repeat: true}, 3 * 2000},
		{"threshold every 200, at most 50", Rule{Kind: Threshold, Value: 2000, Threshold: 20000, Repeat: true, MaxOff: 5000}, 5000},
		{"threshold not reached in scope", Rule{Kind: Threshold, Value: 100, Threshold: 5000, Scope: Scope{Kind: ScopeCategories, Categories: []string{"socks"}}}, 0},
		{"tiered: the highest tier reached", Rule{Kind: Tiered, Tiers: []Tier{{Min: 10000, Percent: 5}, {Min: 50000, Percent: 10}, {Min: 100000, Percent: 20}}}, 62900 / 10},
		{"buy 2 get 1: the cheapest unit free", Rule{Kind: BuyXGetY, Buy: 2, Get: 1}, 1000},
		{"bundle of 2 socks for 15.00", Rule{Kind: Bundle, Units: 2, Price: 1500, Scope: Scope{Kind: ScopeCategories, Categories: []string{"socks"}}}, 500},
		{"excluded SKU", Rule{Kind: Direct, Value: 100, Scope: Scope{Kind: ScopePlatform, Exclude: []int64{1}}}, 300},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustBest(t, two, []*Act{act(1, c.name, 0, c.rule)}, nil, false)
			if p.Price.Discount != c.off {
				t.Fatalf("discount = %d, want %d: %+v", p.Price.Discount, c.off, p.Price)
			}
		})
	}
}

func TestRebateIsTakenWithoutTakingMoney(t *testing.T) {
	lines := []Line{{SKU: 1, Unit: 30000, Quantity: 1}}
	p := mustBest(t, lines, []*Act{act(1, "rebate", 0, Rule{Kind: Rebate, Threshold: 20000, RebateBatch: 42})}, nil, false)
	if p.Price.Discount != 0 || len(p.Price.Activities) != 1 || p.Price.Activities[0].RebateBatch != 42 {
		t.Fatalf("price = %+v; want the rebate taken, nothing off", p.Price)
	}
	p = mustBest(t, []Line{{SKU: 1, Unit: 10000, Quantity: 1}}, []*Act{act(1, "rebate", 0, Rule{Kind: Rebate, Threshold: 20000, RebateBatch: 42})}, nil, false)
	if len(p.Price.Activities) != 0 {
		t.Fatalf("a rebate below its threshold was taken: %+v", p.Price)
	}
}

// The optimum, not the greedy first match: the activity worth most alone (A) excludes the two
// others, which together are worth more.
func TestBestBeatsGreedy(t *testing.T) {
	lines := []Line{{SKU: 1, Shop: 1, Unit: 50000, Quantity: 1}, {SKU: 2, Shop: 2, Unit: 40000, Quantity: 1}}
	a := act(1, "platform mega sale", 10, Rule{Kind: Threshold, Value: 6000, Threshold: 80000, Group: "platform", Excludes: []string{"shop1", "shop2"}})
	b := act(2, "shop 1 direct", 5, Rule{Kind: Direct, Value: 4000, Group: "shop1", Scope: Scope{Kind: ScopeShops, Shops: []int64{1}}})
	c := act(3, "shop 2 direct", 5, Rule{Kind: Direct, Value: 3500, Group: "shop2", Scope: Scope{Kind: ScopeShops, Shops: []int64{2}}})
	acts := []*Act{a, b, c}
	// greedy: by priority (or by worth alone), take each activity that stacks with those taken
	var greedy []*Act
	for _, x := range acts {
		if !slices.ContainsFunc(greedy, func(g *Act) bool { return !stacks(g, x) }) {
			greedy = append(greedy, x)
		}
	}
	g := apply(lines, greedy)
	p := mustBest(t, lines, acts, nil, false)
	if g.total != 6000 || p.Price.Discount != 7500 || !slices.Equal(takenIDs(p.Price), []int64{2, 3}) {
		t.Fatalf("greedy takes %d, best %d with %v; want 6000 and 7500 with [2 3]", g.total, p.Price.Discount, takenIDs(p.Price))
	}
}

func TestStackingRules(t *testing.T) {
	lines := []Line{{SKU: 1, Shop: 1, Unit: 10000, Quantity: 2}}
	d := act(1, "direct", 0, Rule{Kind: Direct, Value: 1000, Group: "g"})
	d2 := act(2, "direct 2", 0, Rule{Kind: Direct, Percent: 20, Group: "g"})
	th := act(3, "threshold", 0, Rule{Kind: Threshold, Value: 3000, Threshold: 15000})
	ex := act(4, "exclusive", 0, Rule{Kind: Threshold, Value: 5000, Threshold: 20000, Exclusive: true})
	// one of a group: the 20% (4000) not both; and the threshold on top, on what is left (16000)
	p := mustBest(t, lines, []*Act{d, d2, th}, nil, false)
	if !slices.Equal(takenIDs(p.Price), []int64{2, 3}) || p.Price.Discount != 7000 {
		t.Fatalf("taken %v, discount %d; want [2 3] and 7000", takenIDs(p.Price), p.Price.Discount)
	}
	// the exclusive (5000) is worth less than 20% and the threshold together (7000)
	p = mustBest(t, lines, []*Act{d, d2, th, ex}, nil, false)
	if p.Price.Discount != 7000 {
		t.Fatalf("discount %d; want 7000", p.Price.Discount)
	}
	// a line takes one unit price: the lowest
	p = mustBest(t, lines, []*Act{act(5, "a", 0, Rule{Kind: Direct, Value: 1000}), act(6, "b", 0, Rule{Kind: FlashPrice, Price: 7000})}, nil, false)
	if p.Price.Discount != 6000 || !slices.Equal(takenIDs(p.Price), []int64{6}) {
		t.Fatalf("taken %v, discount %d; want the flash price alone", takenIDs(p.Price), p.Price.Discount)
	}
}

func TestCouponsStackAfterActivities(t *testing.T) {
	lines := []Line{{SKU: 1, Shop: 1, Unit: 59900, Quantity: 1}}
	flash := act(1, "flash price", 0, Rule{Kind: FlashPrice, Price: 49900})
	shop := act(2, "shop threshold", 0, Rule{Kind: Threshold, Value: 2000, Threshold: 40000})
	c15 := offer(11, coupon.Rule{Kind: coupon.Fixed, Value: 1500})
	// the coupon's threshold is judged after the activities: 48,000 left, below 50,000
	c50 := offer(12, coupon.Rule{Kind: coupon.Threshold, Value: 5000, Threshold: 50000})
	p := mustBest(t, lines, []*Act{flash, shop}, []Offer{c15, c50}, false)
	if p.Price.Payable != 59900-10000-2000-1500 || len(p.Price.Coupons) != 1 || p.Price.Coupons[0].Coupon != 11 {
		t.Fatalf("price %+v", p.Price)
	}
	want := "599.00 − flash price 100.00 − shop threshold 20.00 − coupon 15.00 = 464.00"
	if p.Price.Lines[0].Text != want {
		t.Fatalf("text %q, want %q", p.Price.Lines[0].Text, want)
	}
	// an activity that keeps coupons off (20.00) is worth less than the coupons it would keep
	// off (65.00): the search weighs activities and coupons together
	noCoupons := act(3, "no coupons", 0, Rule{Kind: Threshold, Value: 2000, Threshold: 40000, NoCoupons: true})
	c45 := offer(12, coupon.Rule{Kind: coupon.Threshold, Value: 5000, Threshold: 45000})
	p = mustBest(t, lines, []*Act{flash, noCoupons}, []Offer{c15, c45}, false)
	if len(p.Price.Coupons) != 2 || p.Price.Discount != 10000+5000+1500 {
		t.Fatalf("price %+v; want the flash price and both coupons", p.Price)
	}
	// coupons named are all taken; an activity that keeps coupons off is left out
	p = mustBest(t, lines, []*Act{flash, noCoupons}, []Offer{c15}, true)
	if len(p.Price.Coupons) != 1 || slices.Contains(takenIDs(p.Price), 3) {
		t.Fatalf("price %+v", p.Price)
	}
	env := offer(13, coupon.Rule{Kind: coupon.Fixed, Value: 300})
	env.Envelope = true
	noEnv := act(4, "no envelopes", 0, Rule{Kind: Direct, Value: 100, NoEnvelopes: true})
	if _, err := Best("CNY", lines, []*Act{noEnv}, []Offer{env}, true); err != nil {
		t.Fatalf("the envelope named leaves the activity out: %v", err)
	}
	p = mustBest(t, lines, []*Act{noEnv}, []Offer{env}, false)
	if p.Price.Discount != 300 {
		t.Fatalf("discount %d; want the envelope's 300 over the activity's 100", p.Price.Discount)
	}
}

func TestPriceNeverBelowZero(t *testing.T) {
	lines := []Line{{SKU: 1, Unit: 1000, Quantity: 2}}
	acts := []*Act{act(1, "huge direct", 0, Rule{Kind: Direct, Value: 5000}), act(2, "threshold", 0, Rule{Kind: Threshold, Value: 999, Threshold: 1000}),
		act(3, "free", 0, Rule{Kind: BuyXGetY, Buy: 1, Get: 1})}
	p := mustBest(t, lines, acts, []Offer{offer(9, coupon.Rule{Kind: coupon.Fixed, Value: 100})}, false)
	if p.Price.Payable != 0 {
		t.Fatalf("payable %d; want 0 (free, never below)", p.Price.Payable)
	}
	for _, l := range p.Price.Lines {
		if l.Payable < 0 {
			t.Fatalf("a line below zero: %+v", l)
		}
	}
}

func TestCartBounds(t *testing.T) {
	lines := make([]Line, MaxLines+1)
	for i := range lines {
		lines[i] = Line{SKU: int64(i + 1), Unit: 100, Quantity: 1}
	}
	if _, err := Best("CNY", lines, nil, nil, false); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("201 lines: %v; want EINVALID", err)
	}
	p := mustBest(t, lines[:MaxLines], []*Act{act(1, "d", 0, Rule{Kind: Direct, Value: 10})}, nil, false)
	if p.Price.Discount != 10*MaxLines || len(p.Price.Lines) != MaxLines {
		t.Fatalf("200 lines: discount %d over %d lines", p.Price.Discount, len(p.Price.Lines))
	}
	if _, err := Best("CNY", []Line{{SKU: 1, Unit: -1, Quantity: 1}}, nil, nil, false); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("a negative price: %v; want EINVALID", err)
	}
}

// Forty activities on one line, each in a group of its own: more combinations than the search
// weighs one by one. It answers the best it found, says it was cut short, and an order naming
// its coupons (none) is priced the same.
func TestSearchIsBounded(t *testing.T) {
	var acts []*Act
	lines := []Line{{SKU: 1, Unit: 1_000_000, Quantity: 10}}
	for i := range 40 {
		acts = append(acts, act(int64(i+1), "d", 0, Rule{Kind: Threshold, Value: int64(100 + i), Threshold: 1000, Group: "g" + string(rune('a'+i%26)) + string(rune('a'+i/26))}))
	}
	p, err := Best("CNY", lines, acts, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, p.Price)
	if p.Exhaustive || p.Price.Discount == 0 {
		t.Fatalf("exhaustive %v, discount %d; want a search cut short that found something", p.Exhaustive, p.Price.Discount)
	}
	o, err := Best("CNY", lines, acts, nil, true)
	if err != nil || o.Price.Payable != p.Price.Payable {
		t.Fatalf("the order: %v, %v; want %d", o, err, p.Price.Payable)
	}
}

// A wallet of 24 coupons and an activity that keeps coupons off: the searches of coupons and of
// activities each have their own bound, and the quote is what the order naming its coupons
// charges.
func TestManyCouponsQuoteWhatTheOrderCharges(t *testing.T) {
	lines := []Line{{SKU: 1, Unit: 100_000, Quantity: 1}}
	acts := []*Act{act(1, "direct", 0, Rule{Kind: Direct, Value: 5000}), act(2, "threshold", 0, Rule{Kind: Threshold, Value: 1000, Threshold: 50000}),
		act(3, "no coupons", 0, Rule{Kind: Threshold, Value: 20000, Threshold: 60000, NoCoupons: true})}
	var offers []Offer
	for i := range 24 {
		offers = append(offers, offer(int64(100+i), coupon.Rule{Kind: coupon.Fixed, Value: 300 + int64(i%3)}))
	}
	q, err := Best("CNY", lines, acts, offers, false)
	if err != nil {
		t.Fatal(err)
	}
	var named []Offer
	for _, c := range q.Price.Coupons {
		named = append(named, offers[slices.IndexFunc(offers, func(o Offer) bool { return o.ID == c.Coupon })])
	}
	o, err := Best("CNY", lines, acts, named, true)
	if err != nil || o.Price.Payable != q.Price.Payable {
		t.Fatalf("quoted %d (%d coupons), the order: %v, %v", q.Price.Payable, len(named), o, err)
	}
	if len(q.Price.Activities) == 0 || q.Exhaustive {
		t.Fatalf("quote %+v (exhaustive %v): want activities, and a coupon search cut short", q.Price, q.Exhaustive)
	}
}

// An activity whose budget has less left than it would take off the cart is left out, rather
// than quoted at a price its lock would refuse.
func TestAnActivityPastItsBudgetIsLeftOut(t *testing.T) {
	a := &surge.Activity{ID: 1, Version: 1, Name: "d", Budget: 1000, Spent: 700,
		Rule: []byte(`{"kind":"direct","value":200,"currency":"CNY","scope":{"kind":"platform"}}`)}
	x, err := Compile(a)
	if err != nil {
		t.Fatal(err)
	}
	one := mustBest(t, []Line{{SKU: 1, Unit: 1000, Quantity: 1}}, []*Act{x}, nil, false)
	two := mustBest(t, []Line{{SKU: 1, Unit: 1000, Quantity: 2}}, []*Act{x}, nil, false)
	if one.Price.Discount != 200 || two.Price.Discount != 0 {
		t.Fatalf("discounts %d and %d; want 200 (fits the 300 left) and 0 (400 would not)", one.Price.Discount, two.Price.Discount)
	}
}

// Coupons an order names are all taken: activities after which one no longer applies are left
// out, the least valuable first.
func TestNamedCouponsLeaveActivitiesOut(t *testing.T) {
	lines := []Line{{SKU: 1, Shop: 1, Unit: 59900, Quantity: 1}}
	flash := act(1, "flash price", 0, Rule{Kind: FlashPrice, Price: 49900})
	shop := act(2, "shop threshold", 0, Rule{Kind: Threshold, Value: 2000, Threshold: 40000})
	c50 := offer(12, coupon.Rule{Kind: coupon.Threshold, Value: 5000, Threshold: 50000})
	p := mustBest(t, lines, []*Act{flash, shop}, []Offer{c50}, true)
	if p.Price.Payable != 59900-5000 || len(p.Price.Activities) != 0 {
		t.Fatalf("price %+v; want the coupon alone (its threshold is not reached after either activity)", p.Price)
	}
	if _, err := Best("CNY", lines, nil, []Offer{offer(13, coupon.Rule{Kind: coupon.Threshold, Value: 5000, Threshold: 90000})}, true); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("a coupon that never applies: %v; want EINVALID", err)
	}
}

// What a quote chooses is what an order naming its coupons charges: random carts, activities
// and coupons, quoted, then priced as an order would be.
func TestQuoteIsWhatTheOrderCharges(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	kinds := []func() Rule{
		func() Rule { return Rule{Kind: Direct, Value: 100 + r.Int64N(900)} },
		func() Rule { return Rule{Kind: Direct, Percent: 5 + r.Int64N(30), NoCoupons: r.IntN(4) == 0} },
		func() Rule { return Rule{Kind: FlashPrice, Price: 1000 + r.Int64N(5000), Exclusive: r.IntN(5) == 0} },
		func() Rule {
			return Rule{Kind: Threshold, Value: 500 + r.Int64N(1500), Threshold: 5000 + r.Int64N(20000), Repeat: r.IntN(2) == 0}
		},
		func() Rule {
			return Rule{Kind: Tiered, Tiers: []Tier{{Min: 3000, Percent: 5}, {Min: 9000, Percent: 12}}, NoEnvelopes: r.IntN(3) == 0}
		},
		func() Rule { return Rule{Kind: BuyXGetY, Buy: 2, Get: 1} },
		func() Rule { return Rule{Kind: Bundle, Units: 2, Price: 3000 + r.Int64N(3000)} },
	}
	for round := range 300 {
		var lines []Line
		for i := range 1 + r.IntN(6) {
			lines = append(lines, Line{SKU: int64(i + 1), Shop: int64(1 + r.IntN(2)), Category: []string{"a", "b"}[r.IntN(2)], Unit: 1000 + r.Int64N(9000), Quantity: 1 + r.Int64N(3)})
		}
		var acts []*Act
		for i := range r.IntN(8) {
			rule := kinds[r.IntN(len(kinds))]()
			switch r.IntN(3) {
			case 0:
				rule.Scope = Scope{Kind: ScopeSKUs, SKUs: []int64{int64(1 + r.IntN(6))}}
			case 1:
				rule.Scope = Scope{Kind: ScopeCategories, Categories: []string{[]string{"a", "b"}[r.IntN(2)]}}
			}
			if r.IntN(3) == 0 {
				rule.Group = []string{"x", "y", "z"}[r.IntN(3)]
			}
			acts = append(acts, act(int64(i+1), "a", r.Int64N(3), rule))
		}
		var offers []Offer
		for i := range r.IntN(5) {
			o := offer(int64(100+i), coupon.Rule{Kind: coupon.Threshold, Value: 300 + r.Int64N(700), Threshold: 2000 + r.Int64N(10000)})
			if r.IntN(2) == 0 {
				o = offer(int64(100+i), coupon.Rule{Kind: coupon.Fixed, Value: 100 + r.Int64N(500)})
				o.Envelope = r.IntN(2) == 0
			}
			offers = append(offers, o)
		}
		q := mustBest(t, lines, acts, offers, false)
		var named []Offer
		for _, c := range q.Price.Coupons {
			named = append(named, offers[slices.IndexFunc(offers, func(o Offer) bool { return o.ID == c.Coupon })])
		}
		o := mustBest(t, lines, acts, named, true)
		if o.Price.Payable != q.Price.Payable {
			t.Fatalf("round %d: quoted %d, the order charges %d\nquote %+v\norder %+v", round, q.Price.Payable, o.Price.Payable, q.Price, o.Price)
		}
		if alone := mustBest(t, lines, acts, nil, false); alone.Price.Discount > q.Price.Discount {
			t.Fatalf("round %d: without coupons %d off, with them %d", round, alone.Price.Discount, q.Price.Discount)
		}
	}
}

// More activities cover a cart than a search weighs: those worth most alone are weighed, the
// quote says so, and the order is priced the same.
func TestCandidatesAreBounded(t *testing.T) {
	var acts []*Act
	lines := []Line{{SKU: 1, Unit: 1_000_000, Quantity: 1}, {SKU: 2, Unit: 500_000, Quantity: 1}}
	for i := range MaxCandidates + 36 {
		acts = append(acts, act(int64(i+1), "t", int64(i%5), Rule{Kind: Threshold, Value: int64(100 + i), Threshold: 100_000, Group: "p"}))
	}
	p, err := Best("CNY", lines, acts, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	checkAddsUp(t, p.Price)
	if p.Exhaustive || p.Price.Discount != int64(100+MaxCandidates+35) {
		t.Fatalf("exhaustive %v, discount %d; want the most valuable of the group, said to be cut short", p.Exhaustive, p.Price.Discount)
	}
	if o, err := Best("CNY", lines, acts, nil, true); err != nil || o.Price.Payable != p.Price.Payable {
		t.Fatalf("the order: %v, %v", o, err)
	}
}
