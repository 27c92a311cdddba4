package settlement

import (
	"testing"

	"github.com/surgecommerce/surge"
)

func TestASettlementIsTheSumOfItsOrders(t *testing.T) {
	cny := func(v int64) surge.Money { return surge.Money{Amount: v, Currency: "CNY"} }
	goods := &surge.Order{ID: 1, Quantity: 1, Amount: cny(10_000)}
	mixed := &surge.Order{ID: 2, Quantity: 5, Amount: cny(3*3333 + 2*1500),
		Lines: []surge.OrderLine{{SKUID: 7, Quantity: 3, Unit: 3333}, {SKUID: 8, Quantity: 2, Unit: 1500}}}
	usd := &surge.Order{ID: 3, Quantity: 1, Amount: surge.Money{Amount: 999, Currency: "USD"}}
	f := &surge.SettlementFacts{
		Paid: []surge.PaidFacts{{Order: goods}, {Order: mixed, VoucherLines: []int{0}}, {Order: usd}},
		Redeemed: []surge.Voucher{{OrderID: 2, Amount: cny(3333)}, {OrderID: 2, Amount: cny(3333)},
			{OrderID: 9, Amount: cny(500)}}, // a voucher of an order paid another day
		Refunded: []surge.RefundFacts{
			{Refund: &surge.Refund{OrderID: 2, Amount: cny(1500 + 3333), Lines: []surge.RefundLine{{Line: 1, Quantity: 1, Amount: 1500}, {Line: 0, Quantity: 1, Amount: 3333}}}, VoucherLines: []int{0}},
			{Refund: &surge.Refund{OrderID: 4, Amount: cny(2000), Lines: []surge.RefundLine{{Line: 0, Quantity: 1, Amount: 2000}}}}, // paid another day
		},
	}
	st := Compute(f, 60)
	want := map[int64]surge.SettlementLine{
		1: {OrderID: 1, Gross: 10_000, Fee: 60, Net: 9940},
		2: {OrderID: 2, Gross: 3000 + 6666, Refunds: 1500, Fee: 58 - 9, Net: 9666 - 1500 - 49},
		3: {OrderID: 3, Gross: 999, Fee: 6, Net: 993},
		9: {OrderID: 9, Gross: 500, Fee: 3, Net: 497},
		4: {OrderID: 4, Refunds: 2000, Fee: -12, Net: -1988},
	}
	if len(st.Lines) != len(want) {
		t.Fatalf("lines %+v", st.Lines)
	}
	sum := map[string]Total{}
	for _, l := range st.Lines {
		if l.SettlementLine != want[l.OrderID] {
			t.Errorf("order %d: %+v; want %+v", l.OrderID, l.SettlementLine, want[l.OrderID])
		}
		s := sum[l.Currency]
		s.Orders++
		s.Gross, s.Refunds, s.Fee, s.Net = s.Gross+l.Gross, s.Refunds+l.Refunds, s.Fee+l.Fee, s.Net+l.Net
		sum[l.Currency] = s
	}
	if len(st.Totals) != 2 || st.Totals[0].Currency != "CNY" || st.Totals[1].Currency != "USD" {
		t.Fatalf("totals %+v", st.Totals)
	}
	for _, tot := range st.Totals {
		s := sum[tot.Currency]
		s.Currency = tot.Currency
		if tot != s || tot.Net != tot.Gross-tot.Refunds-tot.Fee {
			t.Errorf("total %+v; the lines add up to %+v", tot, s)
		}
	}
	if fee(50, 100) != 1 || fee(49, 100) != 0 || fee(0, 60) != 0 {
		t.Errorf("fee rounds half up")
	}
}
