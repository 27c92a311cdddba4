package surge

// PriceBreakdown is an order's price: what its lines list at, what each coupon takes off each
// line, and what is payable. The shares of a coupon add up to its discount, and every line's
// payable is its list less its shares: reconciliation can sum either way.
type PriceBreakdown struct {
	Currency string        `json:"currency"`
	List     int64         `json:"list"`
	Discount int64         `json:"discount"`
	Payable  int64         `json:"payable"`
	Lines    []LinePrice   `json:"lines"`
	Coupons  []CouponTaken `json:"coupons"`
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

// LinePrice is one line of a PriceBreakdown.
type LinePrice struct {
	List    int64         `json:"list"`
	Shares  []CouponShare `json:"shares"`
	Payable int64         `json:"payable"`
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
