package coupon

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"

	"github.com/surgecommerce/surge"
)

// Bounds of an order being priced.
const (
	MaxPerOrder = surge.MaxCouponsPerOrder // coupons on one order
	MaxLines    = 50                       // lines of one order
)

// Line is one line of an order: Quantity units of an SKU at Unit minor units each.
type Line struct {
	SKU      int64  `json:"sku_id,string"`
	Shop     int64  `json:"shop_id,string"`
	Category string `json:"category"`
	Unit     int64  `json:"unit_price"`
	Quantity int64  `json:"quantity"`
	// Off is what promotion activities took off the line before any coupon (package promo):
	// coupons apply to what is left, and their thresholds are judged on it.
	Off int64 `json:"-"`
}

// Applied is a coupon to apply to an order: its id and its batch's rule.
type Applied struct {
	ID   int64
	Rule Rule
}

// rank orders the kinds: thresholds first (judged before any other coupon lowers what the
// lines cost, so the order coupons are given in does not decide whether one applies), then
// fixed amounts, then percentages, of what is left to pay (as shoppers are told).
func rank(kind string) int {
	switch kind {
	case Threshold:
		return 0
	case Fixed:
		return 1
	}
	return 2
}

// Price prices lines with coupons, all or none. Threshold coupons come off first, then fixed
// amounts, then percentages (each kind in the order given): each coupon takes what its rule says
// off what the lines in its scope still cost, spread over those lines in proportion to it (the
// largest remainders get the odd minor units, so the shares add up exactly). A threshold is
// judged on what the lines in scope cost after the thresholds before it. An order always pays at least one minor
// unit. Lines' Off (activities) come off before any coupon, and count in the discount. A coupon that cannot apply (another currency, no line in scope, threshold not reached,
// nothing left to take off, a second of its stacking group) refuses the whole set with the
// reason.
func Price(currency string, lines []Line, coupons []Applied) (surge.PriceBreakdown, error) {
	if err := surge.ValidateCurrency("currency", currency); err != nil {
		return surge.PriceBreakdown{}, err
	}
	if len(lines) == 0 || len(lines) > MaxLines {
		return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "an order has 1 to %d lines", MaxLines)
	}
	if len(coupons) > MaxPerOrder {
		return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "an order takes at most %d coupons, not %d", MaxPerOrder, len(coupons))
	}
	b := surge.PriceBreakdown{Currency: currency, Lines: make([]surge.LinePrice, len(lines)), Coupons: []surge.CouponTaken{}}
	left := make([]int64, len(lines)) // what each line still costs
	for i, l := range lines {
		switch {
		case l.Quantity < 1 || l.Quantity > surge.MaxPerUserLimit:
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "line %d: quantity must be from 1 to %d", i+1, surge.MaxPerUserLimit)
		case l.Unit < 0 || l.Unit > surge.MaxPriceMinor/l.Quantity:
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "line %d: unit price times quantity must be from 0 to %d minor units", i+1, int64(surge.MaxPriceMinor))
		}
		list := l.Unit * l.Quantity
		if l.Off < 0 || l.Off > list {
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "line %d: activities take %d off a line of %d", i+1, l.Off, list)
		}
		left[i] = list - l.Off
		b.Lines[i] = surge.LinePrice{List: list, Shares: []surge.CouponShare{}}
		b.List += list
		b.Discount += l.Off
	}
	groups := map[string]int64{}
	seen := map[int64]bool{}
	for _, c := range coupons {
		first, taken := groups[c.Rule.Group]
		switch {
		case c.ID <= 0:
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon ids are positive")
		case seen[c.ID]:
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon %d is given twice", c.ID)
		case c.Rule.Currency != currency:
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon %d is in %s; the order is in %s", c.ID, c.Rule.Currency, currency)
		case c.Rule.Group != "" && taken:
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupons %d and %d are both of stacking group %q: an order takes one of a group",
				first, c.ID, c.Rule.Group)
		}
		if err := c.Rule.Validate(); err != nil {
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon %d: %s", c.ID, surge.ErrorMessage(err))
		}
		seen[c.ID] = true
		if c.Rule.Group != "" {
			groups[c.Rule.Group] = c.ID
		}
	}
	ordered := slices.Clone(coupons)
	slices.SortStableFunc(ordered, func(a, b Applied) int { return cmp.Compare(rank(a.Rule.Kind), rank(b.Rule.Kind)) })
	total := b.List - b.Discount
	for _, c := range ordered {
		var inScope []int
		var base int64
		for i, l := range lines {
			if c.Rule.Scope.covers(l) {
				inScope = append(inScope, i)
				base += left[i]
			}
		}
		if len(inScope) == 0 {
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon %d applies to none of the order's lines", c.ID)
		}
		var off int64
		switch c.Rule.Kind {
		case Fixed:
			off = c.Rule.Value
		case Threshold:
			if base < c.Rule.Threshold {
				return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon %d needs %s in its scope; the order has %s there",
					c.ID, decimal(c.Rule.Threshold), decimal(base))
			}
			off = c.Rule.Value
		case Percent:
			off = base * c.Rule.Value / 100
			if c.Rule.Cap > 0 {
				off = min(off, c.Rule.Cap)
			}
		}
		off = min(off, base, total-1) // never below one minor unit to pay
		if off <= 0 {
			return surge.PriceBreakdown{}, surge.Errorf(surge.EINVALID, "coupon %d takes nothing off what is left to pay", c.ID)
		}
		for k, amount := range Spread(off, inScope, left) {
			if amount == 0 {
				continue
			}
			i := inScope[k]
			left[i] -= amount
			b.Lines[i].Shares = append(b.Lines[i].Shares, surge.CouponShare{Coupon: c.ID, Amount: amount})
		}
		total -= off
		b.Discount += off
		b.Coupons = append(b.Coupons, surge.CouponTaken{Coupon: c.ID, Amount: off})
	}
	for i := range b.Lines {
		b.Lines[i].Payable = left[i]
	}
	b.Payable = total
	return b, nil
}

// Spread divides off over the lines in scope in proportion to what each still costs (left):
// the floor of each exact share, then one more minor unit to the largest remainders (earlier
// lines first among equals). off is at most the sum (which is positive), so no line's share
// exceeds what it costs.
func Spread(off int64, inScope []int, left []int64) []int64 {
	var sum int64
	for _, i := range inScope {
		sum += left[i]
	}
	shares := make([]int64, len(inScope))
	rems := make([]uint64, len(inScope))
	var given int64
	for k, i := range inScope {
		hi, lo := bits.Mul64(uint64(off), uint64(left[i])) // off*left ≤ sum², below 2^128; hi < sum
		q, r := bits.Div64(hi, lo, uint64(sum))
		shares[k], rems[k] = int64(q), r
		given += int64(q)
	}
	order := make([]int, len(inScope))
	for k := range order {
		order[k] = k
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rems[b], rems[a]) })
	for _, k := range order[:off-given] {
		shares[k]++
	}
	return shares
}

// decimal writes minor units as an amount with two decimals.
func decimal(minor int64) string { return fmt.Sprintf("%d.%02d", minor/100, minor%100) }
