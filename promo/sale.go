package promo

import "github.com/surgecommerce/surge"

// SaleLabel is how a flash-sale order's line names its session item's price.
const SaleLabel = "flash sale"

// Sale is a flash-sale order's one line, priced by its session item: the item is an activity of
// the sale (its id the item's) that sets each unit at the sale price and stacks with no other
// activity, only with coupons. Line is at the SKU's list price, less what the sale price takes
// off (Off); Shares is that, for the breakdown. A list price below the sale price, in another
// currency, or past the bounds of an order's amounts, counts as the sale price: the order
// charges the sale price either way.
type Sale struct {
	Line   Line
	Shares []surge.ActivityShare
	Taken  []surge.ActivityTaken
}

// SalePrice prices quantity units of a session item.
func SalePrice(it *surge.SessionItem, quantity int64) Sale {
	list := it.SalePrice.Amount
	if it.ListPrice.Currency == it.SalePrice.Currency && it.ListPrice.Amount > list && it.ListPrice.Amount <= surge.MaxPriceMinor/max(quantity, 1) {
		list = it.ListPrice.Amount
	}
	x := compileRule(it.ID, 1, 0, SaleLabel, MaxPriority+1, Rule{Kind: FlashPrice, Price: it.SalePrice.Amount, Currency: it.SalePrice.Currency,
		Scope: Scope{Kind: ScopeSKUs, SKUs: []int64{it.SKUID}}, Exclusive: true})
	lines := []Line{{SKU: it.SKUID, Shop: it.MerchantID, Unit: list, Quantity: quantity}}
	p := apply(lines, []*Act{x})
	lines[0].Off = p.off[0]
	return Sale{Line: lines[0], Shares: p.shares[0], Taken: p.taken}
}

// Amount is what the line charges without coupons.
func (s Sale) Amount() int64 { return s.Line.Unit*s.Line.Quantity - s.Line.Off }

// Annotate completes the price coupons gave the sale's line (coupon.Price of Line): the sale's
// share, and the line's text.
func (s Sale) Annotate(b *surge.PriceBreakdown) {
	if b == nil || len(b.Lines) != 1 {
		return
	}
	b.Activities = s.Taken
	b.Lines[0].Activities = s.Shares
	b.Lines[0].Text = explain(b.Lines[0], nil)
}
