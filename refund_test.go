package surge

import "testing"

func TestPlanRefundGivesBackExactlyWhatEachLinePaid(t *testing.T) {
	o := &Order{ID: 1, Quantity: 5, Amount: Money{Amount: 1003, Currency: "CNY"},
		Lines: []OrderLine{{SKUID: 1, Quantity: 3, Unit: 300}, {SKUID: 2, Quantity: 2, Unit: 150}},
		Price: &PriceBreakdown{Lines: []LinePrice{{List: 900, Payable: 800}, {List: 300, Payable: 203}}}}
	var earlier []*Refund
	var sum int64
	for _, want := range [][]RefundLine{{{Line: 1, Quantity: 1}}, {{Line: 0, Quantity: 2}}, {{Line: 0, Quantity: 1}, {Line: 1, Quantity: 1}}} {
		lines, total, whole, err := PlanRefund(o, earlier, want)
		if err != nil {
			t.Fatal(err)
		}
		earlier = append(earlier, &Refund{Lines: lines, Amount: Money{Amount: total}})
		sum += total
		if whole != (len(earlier) == 3) {
			t.Fatalf("refund %d: whole %v", len(earlier), whole)
		}
	}
	if sum != 1003 {
		t.Fatalf("line by line the refunds gave back %d; want the 1003 paid", sum)
	}
	if _, _, _, err := PlanRefund(o, earlier, nil); ErrorCode(err) != EINVALID {
		t.Fatalf("a refund of a fully refunded order = %v; want EINVALID", err)
	}
	lines, total, whole, err := PlanRefund(o, nil, nil)
	if err != nil || total != 1003 || !whole || len(lines) != 2 || lines[0].Amount != 800 {
		t.Fatalf("everything at once = %v, %d, %v, %v", lines, total, whole, err)
	}
	for _, bad := range [][]RefundLine{{{Line: 2, Quantity: 1}}, {{Line: 0, Quantity: 0}}, {{Line: 0, Quantity: 2}, {Line: 0, Quantity: 2}}, {{Line: -1, Quantity: 1}}} {
		if _, _, _, err := PlanRefund(o, nil, bad); ErrorCode(err) != EINVALID {
			t.Errorf("PlanRefund(%v) = %v; want EINVALID", bad, err)
		}
	}
	sale := &Order{ID: 2, Quantity: 3, Amount: Money{Amount: 100, Currency: "CNY"}}
	if got := sale.LinePayable(); len(got) != 1 || got[0] != 100 {
		t.Fatalf("a sale order's line pays %v", got)
	}
	var shares int64
	for k := range int64(3) {
		shares += UnitShare(100, 3, k)
	}
	if shares != 100 || UnitShare(100, 3, 0) != 34 || UnitShare(100, 3, 2) != 33 {
		t.Fatalf("unit shares of 100 over 3 add to %d", shares)
	}
}
