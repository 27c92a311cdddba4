package coupon

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/surgecommerce/surge"
)

func rule(kind string, value, threshold, cap int64, scope Scope, group string) Rule {
	return Rule{Kind: kind, Value: value, Threshold: threshold, Cap: cap, Currency: "CNY", Scope: scope, Group: group}
}

var platform = Scope{Kind: ScopePlatform}

// A cart of tea (shop 1) and a phone (shop 2): a threshold coupon on tea, a shop coupon on the
// phone and a platform percentage after them; the shares add up, and the order keeps them.
func TestPriceBreakdown(t *testing.T) {
	lines := []Line{
		{SKU: 10, Shop: 1, Category: "Tea", Unit: 9900, Quantity: 3},      // 297.00
		{SKU: 11, Shop: 1, Category: "Tea", Unit: 5000, Quantity: 1},      // 50.00
		{SKU: 20, Shop: 2, Category: "Phones", Unit: 399900, Quantity: 1}, // 3999.00
	}
	coupons := []Applied{
		{ID: 3, Rule: rule(Percent, 10, 0, 20000, platform, "")},                                        // last: 10% of what is left, at most 200.00
		{ID: 1, Rule: rule(Threshold, 5000, 30000, 0, Scope{Kind: ScopeCategory, Category: "Tea"}, "")}, // 50.00 off 300.00 of tea
		{ID: 2, Rule: rule(Fixed, 30000, 0, 0, Scope{Kind: ScopeShop, Shop: 2}, "shop2")},               // 300.00 off the phone
	}
	b, err := Price("CNY", lines, coupons)
	if err != nil {
		t.Fatal(err)
	}
	// Tea 347.00 less 50.00 = 297.00; the phone 3999.00 less 300.00 = 3699.00; 10% of 3996.00
	// is 399.60, capped at 200.00.
	if b.List != 434600 || b.Discount != 5000+30000+20000 || b.Payable != 434600-55000 {
		t.Fatalf("breakdown %+v", b)
	}
	if want := []surge.CouponTaken{{Coupon: 1, Amount: 5000}, {Coupon: 2, Amount: 30000}, {Coupon: 3, Amount: 20000}}; len(b.Coupons) != 3 || b.Coupons[0] != want[0] || b.Coupons[1] != want[1] || b.Coupons[2] != want[2] {
		t.Fatalf("coupons %+v; want %+v (amounts before the percentage)", b.Coupons, want)
	}
	// The threshold coupon's 50.00 over tea lines of 297.00 and 50.00: 4279.83… and 720.17…
	if s := b.Lines[0].Shares[0]; s.Coupon != 1 || s.Amount != 4280 {
		t.Fatalf("line 1's share of coupon 1 = %+v; want 42.80", s)
	}
	checkBreakdown(t, lines, b)
}

// checkBreakdown holds a breakdown to its promises: every line's shares and payable add up to
// its list, every coupon's shares to what it took, and the order pays at least a minor unit.
func checkBreakdown(t *testing.T, lines []Line, b surge.PriceBreakdown) {
	t.Helper()
	taken := map[int64]int64{}
	var payable int64
	for i, lp := range b.Lines {
		sum := lp.Payable
		for _, s := range lp.Shares {
			if s.Amount <= 0 {
				t.Fatalf("line %d has a share of %d", i, s.Amount)
			}
			sum += s.Amount
			taken[s.Coupon] += s.Amount
		}
		if lp.List != lines[i].Unit*lines[i].Quantity || sum != lp.List || lp.Payable < 0 {
			t.Fatalf("line %d: %+v does not add up to %d", i, lp, lines[i].Unit*lines[i].Quantity)
		}
		payable += lp.Payable
	}
	var discount int64
	for _, c := range b.Coupons {
		if taken[c.Coupon] != c.Amount || c.Amount <= 0 {
			t.Fatalf("coupon %d took %d; its shares add to %d", c.Coupon, c.Amount, taken[c.Coupon])
		}
		discount += c.Amount
	}
	if payable != b.Payable || discount != b.Discount || b.List != b.Payable+b.Discount || b.Payable < 1 {
		t.Fatalf("breakdown %+v does not add up", b)
	}
}

// Each reason a set of coupons is refused, all or none.
func TestPriceRefusals(t *testing.T) {
	tea := []Line{{SKU: 10, Shop: 1, Category: "Tea", Unit: 1000, Quantity: 2}}
	fixed := func(id int64, group string) Applied {
		return Applied{ID: id, Rule: rule(Fixed, 100, 0, 0, platform, group)}
	}
	many := make([]Applied, 11)
	for i := range many {
		many[i] = fixed(int64(i+1), "")
	}
	usd := fixed(1, "")
	usd.Rule.Currency = "USD"
	for _, tc := range []struct {
		name    string
		lines   []Line
		coupons []Applied
		want    string
	}{
		{"eleven coupons", tea, many, "at most 10 coupons"},
		{"id 0 in a group", tea, []Applied{fixed(0, "g"), fixed(5, "g")}, "coupon ids are positive"},
		{"twice", tea, []Applied{fixed(1, ""), fixed(1, "")}, "given twice"},
		{"one group", tea, []Applied{fixed(1, "g"), fixed(2, "g")}, `both of stacking group "g"`},
		{"currency", tea, []Applied{usd}, "is in USD"},
		{"scope", tea, []Applied{{ID: 5, Rule: rule(Fixed, 100, 0, 0, Scope{Kind: ScopeShop, Shop: 9}, "")}}, "none of the order's lines"},
		{"threshold", tea, []Applied{{ID: 6, Rule: rule(Threshold, 500, 5000, 0, platform, "")}}, "needs 50.00 in its scope; the order has 20.00"},
		{"nothing left", []Line{{SKU: 1, Unit: 1, Quantity: 1}}, []Applied{fixed(7, "")}, "takes nothing off"},
		{"bad rule", tea, []Applied{{ID: 8, Rule: rule(Percent, 120, 0, 0, platform, "")}}, "coupon 8: a percent coupon's value"},
		{"no lines", nil, nil, "1 to 50 lines"},
		{"negative price", []Line{{SKU: 1, Unit: -1, Quantity: 1}}, nil, "unit price times quantity"},
		{"overflowing price", []Line{{SKU: 1, Unit: surge.MaxPriceMinor, Quantity: 2}}, nil, "unit price times quantity"},
		{"quantity", []Line{{SKU: 1, Unit: 1, Quantity: 0}}, nil, "quantity must be"},
	} {
		_, err := Price("CNY", tc.lines, tc.coupons)
		if surge.ErrorCode(err) != surge.EINVALID || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Price = %v; want EINVALID saying %q", tc.name, err, tc.want)
		}
	}
	// A coupon worth more than the order leaves one minor unit to pay.
	b, err := Price("CNY", tea, []Applied{{ID: 9, Rule: rule(Fixed, 5000, 0, 0, platform, "")}})
	if err != nil || b.Payable != 1 || b.Discount != 1999 {
		t.Fatalf("a coupon above the order: %+v, %v; want 19.99 off and 0.01 to pay", b, err)
	}
}

// Whether a threshold applies does not depend on the order the coupons are given in.
func TestPriceThresholdIsOrderFree(t *testing.T) {
	lines := []Line{{SKU: 1, Unit: 10000, Quantity: 1}}
	threshold := Applied{ID: 1, Rule: rule(Threshold, 1000, 10000, 0, platform, "")}
	fixed := Applied{ID: 2, Rule: rule(Fixed, 100, 0, 0, platform, "")}
	a, errA := Price("CNY", lines, []Applied{fixed, threshold})
	b, errB := Price("CNY", lines, []Applied{threshold, fixed})
	if errA != nil || errB != nil || a.Payable != 8900 || b.Payable != 8900 {
		t.Fatalf("fixed then threshold: %d, %v; threshold then fixed: %d, %v; want 89.00 both ways", a.Payable, errA, b.Payable, errB)
	}
}

// Prices near the bounds: the proportional split needs all 128 bits of its products.
func TestPriceHugeLines(t *testing.T) {
	lines := []Line{{SKU: 1, Unit: surge.MaxPriceMinor, Quantity: 1}, {SKU: 2, Unit: surge.MaxPriceMinor/3 - 7, Quantity: 3}}
	for range MaxLines - 2 {
		lines = append(lines, Line{SKU: 3, Unit: surge.MaxPriceMinor / 1000, Quantity: 1000})
	}
	b, err := Price("CNY", lines, []Applied{{ID: 1, Rule: rule(Percent, 99, 0, 0, platform, "")}, {ID: 2, Rule: rule(Fixed, MaxValue, 0, 0, platform, "")}})
	if err != nil {
		t.Fatal(err)
	}
	checkBreakdown(t, lines, b)
}

// Random carts and coupons: whatever is taken, the breakdown adds up.
func TestPriceAddsUp(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	scopes := []Scope{platform, {Kind: ScopeShop, Shop: 1}, {Kind: ScopeShop, Shop: 2}, {Kind: ScopeCategory, Category: "A"}, {Kind: ScopeSKUs, SKUs: []int64{1, 3}}}
	priced := 0
	for range 20_000 {
		lines := make([]Line, 1+rng.IntN(MaxLines))
		for i := range lines {
			lines[i] = Line{SKU: int64(1 + rng.IntN(5)), Shop: int64(1 + rng.IntN(2)), Category: []string{"A", "B"}[rng.IntN(2)],
				Unit: rng.Int64N(100_000), Quantity: 1 + rng.Int64N(5)}
		}
		coupons := make([]Applied, rng.IntN(MaxPerOrder+1))
		for i := range coupons {
			sc := scopes[rng.IntN(len(scopes))]
			switch rng.IntN(3) {
			case 0:
				coupons[i] = Applied{ID: int64(i + 1), Rule: rule(Fixed, 1+rng.Int64N(50_000), 0, 0, sc, "")}
			case 1:
				v := 1 + rng.Int64N(20_000)
				coupons[i] = Applied{ID: int64(i + 1), Rule: rule(Threshold, v, v+1+rng.Int64N(100_000), 0, sc, "")}
			default:
				coupons[i] = Applied{ID: int64(i + 1), Rule: rule(Percent, 1+rng.Int64N(99), 0, rng.Int64N(30_000), sc, "")}
			}
		}
		b, err := Price("CNY", lines, coupons)
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatal(err)
			}
			continue
		}
		priced++
		checkBreakdown(t, lines, b)
	}
	if priced < 1000 {
		t.Fatalf("only %d of the random orders took their coupons; the test proves little", priced)
	}
}
