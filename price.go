package surge

import "fmt"

// PriceBreakdown is an order's price: what its lines list at, what each activity and coupon
// takes off each line, and what is payable. The shares of an activity or coupon add up to what
// it takes, Discount is all they take, and every line's payable is its list less its shares:
// reconciliation can sum either way.
type PriceBreakdown struct {
	Currency string        `json:"currency"`
	List     int64         `json:"list"`
	Discount int64         `json:"discount"`
	Payable  int64         `json:"payable"`
	Lines    []LinePrice   `json:"lines"`
	Coupons  []CouponTaken `json:"coupons"`
	// Activities are the promotions the price takes (package promo), before any coupon.
	Activities []ActivityTaken `json:"activities,omitempty"`
}

// CouponIDs lists the coupons the price takes, in the order they were applied.
func (b *PriceBreakdown) CouponIDs() []int64 {
	if b == nil {
		return nil
	}
	ids := make([]int64, len(b.Coupons))
	for i, c := range b.Coupons {
		ids[i] = c.Coupon
	}
	return ids
}

// Inconsistency says what in the breakdown does not add up ("" when it does): each line's list
// less its shares is its payable and not below 0, the shares of activities and coupons are the
// discount, and list less discount is payable, over the lines as over the whole.
func (b *PriceBreakdown) Inconsistency() string {
	var taken, list, payable int64
	for _, c := range b.Coupons {
		taken += c.Amount
	}
	for _, a := range b.Activities {
		taken += a.Amount
	}
	for _, l := range b.Lines {
		var shares int64
		for _, s := range l.Shares {
			shares += s.Amount
		}
		for _, s := range l.Activities {
			shares += s.Amount
		}
		if l.List-shares != l.Payable || l.Payable < 0 {
			return fmt.Sprintf("a line lists %d, its activities and coupons take %d, and it says %d is payable", l.List, shares, l.Payable)
		}
		list, payable = list+l.List, payable+l.Payable
	}
	switch {
	case taken != b.Discount:
		return fmt.Sprintf("its activities and coupons take %d, its discount says %d", taken, b.Discount)
	case b.List-b.Discount != b.Payable || list != b.List || payable != b.Payable:
		return fmt.Sprintf("list %d less discount %d is not payable %d (lines: %d and %d)", b.List, b.Discount, b.Payable, list, payable)
	}
	return ""
}

// CouponDiscount is what the price's coupons take off (Discount less the activities').
func (b *PriceBreakdown) CouponDiscount() int64 {
	if b == nil {
		return 0
	}
	var sum int64
	for _, c := range b.Coupons {
		sum += c.Amount
	}
	return sum
}

// LinePrice is one line of a PriceBreakdown.
type LinePrice struct {
	List       int64           `json:"list"`
	Activities []ActivityShare `json:"activities,omitempty"`
	Shares     []CouponShare   `json:"shares"`
	Payable    int64           `json:"payable"`
	// Text tells the shopper how the line's price was made: "599.00 − flash price 100.00 −
	// coupon 15.00 = 484.00".
	Text string `json:"text,omitempty"`
}

// CouponShare is what one coupon takes off one line.
type CouponShare struct {
	Coupon int64 `json:"coupon_id,string"`
	Amount int64 `json:"amount"`
}

// CouponTaken is what one coupon takes off the whole order.
type CouponTaken struct {
	Coupon int64 `json:"coupon_id,string"`
	Amount int64 `json:"amount"`
}
