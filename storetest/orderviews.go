package storetest

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// RunOrderViews tests surge.OrderViewStore: the three readers' pages, newest first by cursor,
// their filters, and that a stale copy never overwrites a newer one.
func RunOrderViews(t *testing.T, open Open) {
	t.Run("ShopperPagesNewestFirst", func(t *testing.T) { testShopperPages(t, newFixture(t, open)) })
	t.Run("MerchantFilters", func(t *testing.T) { testMerchantFilters(t, newFixture(t, open)) })
	t.Run("Search", func(t *testing.T) { testSearch(t, newFixture(t, open)) })
	t.Run("StaleCopyIgnored", func(t *testing.T) { testStaleCopy(t, newFixture(t, open)) })
	t.Run("BadCursorAndFilter", func(t *testing.T) { testBadViewQueries(t, newFixture(t, open)) })
	t.Run("Checkpoint", func(t *testing.T) { testViewCheckpoint(t, newFixture(t, open)) })
	t.Run("Drift", func(t *testing.T) { testViewDrift(t, newFixture(t, open)) })
}

// view is a pending order of user at merchant, created at.
func (f *fixture) view(user, merchant int64, at time.Time) surge.OrderView {
	id := f.id()
	o := surge.Order{ID: id, TxnID: "T" + strconv.FormatInt(id, 10), UserID: user, MerchantID: merchant, SessionID: 1, ItemID: 2, SKUID: 3,
		Quantity: 1, Amount: surge.Money{Amount: 990, Currency: "CNY"}, State: surge.OrderPendingPayment, CreatedAt: at}
	return surge.NewOrderView(&o, &surge.User{ID: user, Phone: fmt.Sprintf("+86138%08d", user), Username: fmt.Sprintf("Shopper_%d", user)})
}

func (f *fixture) putViews(vs ...surge.OrderView) {
	f.t.Helper()
	must(f.t, "PutOrderViews", f.s.PutOrderViews(f.ctx, vs, surge.ViewCheckpoint{}))
}

// ids lists a page's order ids.
func ids(p *surge.OrderPage) []int64 {
	out := make([]int64, len(p.Items))
	for i, v := range p.Items {
		out[i] = v.ID
	}
	return out
}

// newest sorts views newest first, as every page is.
func newest(vs []surge.OrderView) []int64 {
	s := slices.Clone(vs)
	slices.SortFunc(s, func(a, b surge.OrderView) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return int(b.ID - a.ID)
	})
	out := make([]int64, len(s))
	for i, v := range s {
		out[i] = v.ID
	}
	return out
}

// pages reads every page of a listing, limit at a time.
func pages(t *testing.T, limit int, read func(c *surge.OrderCursor, n int) (*surge.OrderPage, error)) []int64 {
	t.Helper()
	var all []int64
	var c *surge.OrderCursor
	for range 100 {
		p, err := read(c, limit)
		if err != nil {
			t.Fatalf("page after %v = %v", c, err)
		}
		if len(p.Items) > limit {
			t.Fatalf("page of %d items; want at most %d", len(p.Items), limit)
		}
		all = append(all, ids(p)...)
		if p.Next == "" {
			return all
		}
		if c, err = surge.ParseOrderCursor(p.Next); err != nil {
			t.Fatalf("ParseOrderCursor(%q) = %v", p.Next, err)
		}
	}
	t.Fatal("the pages never ended")
	return nil
}

func testShopperPages(t *testing.T, f *fixture) {
	var mine []surge.OrderView
	for i := range 7 {
		// Two orders in each millisecond: ties on created_at are broken by id.
		v := f.view(42, 500, f.now.Add(time.Duration(i/2)*time.Millisecond))
		mine = append(mine, v)
	}
	f.putViews(mine...)
	f.putViews(f.view(43, 500, f.now), f.view(43, 501, f.now.Add(time.Second)))
	got := pages(t, 3, func(c *surge.OrderCursor, n int) (*surge.OrderPage, error) { return f.s.ShopperOrders(f.ctx, 42, c, n) })
	if want := newest(mine); !slices.Equal(got, want) {
		t.Fatalf("ShopperOrders(42) pages = %v; want %v", got, want)
	}
	p, err := f.s.ShopperOrders(f.ctx, 42, nil, 0)
	must(t, "ShopperOrders(limit 0)", err)
	if len(p.Items) != 7 || p.Next != "" {
		t.Fatalf("ShopperOrders(42, limit 0) = %d items, next %q; want all 7 and no next", len(p.Items), p.Next)
	}
	v := p.Items[0]
	if w := mine[6]; v.ID != w.ID || v.Phone != w.Phone || v.Username != w.Username || v.Amount != w.Amount ||
		v.State != w.State || !v.CreatedAt.Equal(w.CreatedAt) || v.TxnID != w.TxnID || v.MerchantID != 500 || v.PaidAt != nil {
		t.Fatalf("ShopperOrders(42)[0] = %+v; want %+v", v, w)
	}
	if p, err := f.s.ShopperOrders(f.ctx, 44, nil, 10); err != nil || len(p.Items) != 0 || p.Next != "" {
		t.Fatalf("ShopperOrders(no orders) = %+v, %v; want an empty page", p, err)
	}
}

func testMerchantFilters(t *testing.T, f *fixture) {
	var all []surge.OrderView
	for i := range 12 {
		v := f.view(int64(100+i%4), 700, f.now.Add(time.Duration(i)*time.Minute))
		switch i % 3 {
		case 1:
			v.State, v.Version = surge.OrderPaid, surge.OrderPaid.Rank()
			paid := v.CreatedAt.Add(time.Second)
			v.PaidAt = &paid
		case 2:
			v.State, v.Version = surge.OrderCancelled, surge.OrderCancelled.Rank()
		}
		all = append(all, v)
	}
	f.putViews(all...)
	f.putViews(f.view(100, 701, f.now)) // another shop
	pick := func(keep func(i int, v surge.OrderView) bool) []surge.OrderView {
		var out []surge.OrderView
		for i, v := range all {
			if keep(i, v) {
				out = append(out, v)
			}
		}
		return out
	}
	from, to := f.now.Add(3*time.Minute), f.now.Add(9*time.Minute)
	for _, c := range []struct {
		name string
		f    surge.OrderFilter
		want []surge.OrderView
	}{
		{"all", surge.OrderFilter{}, all},
		{"paid", surge.OrderFilter{States: []surge.OrderState{surge.OrderPaid}}, pick(func(i int, _ surge.OrderView) bool { return i%3 == 1 })},
		{"paid or cancelled", surge.OrderFilter{States: []surge.OrderState{surge.OrderCancelled, surge.OrderPaid, surge.OrderPaid}},
			pick(func(i int, _ surge.OrderView) bool { return i%3 != 0 })},
		{"time", surge.OrderFilter{From: from, To: to}, pick(func(i int, _ surge.OrderView) bool { return i >= 3 && i < 9 })},
		{"pending in time", surge.OrderFilter{States: []surge.OrderState{surge.OrderPendingPayment}, From: from, To: to},
			pick(func(i int, _ surge.OrderView) bool { return i%3 == 0 && i >= 3 && i < 9 })},
		{"from only", surge.OrderFilter{From: to}, pick(func(i int, _ surge.OrderView) bool { return i >= 9 })},
	} {
		got := pages(t, 2, func(cur *surge.OrderCursor, n int) (*surge.OrderPage, error) {
			return f.s.MerchantOrders(f.ctx, 700, c.f, cur, n)
		})
		if want := newest(c.want); !slices.Equal(got, want) {
			t.Errorf("MerchantOrders(700, %s) = %v; want %v", c.name, got, want)
		}
	}
}

func testSearch(t *testing.T, f *fixture) {
	a := f.view(12345678, 800, f.now)
	b := f.view(87654321, 800, f.now.Add(time.Minute))
	c := f.view(12345999, 801, f.now.Add(2*time.Minute))
	c.Username = "Mei_Ling%"
	f.putViews(a, b, c)
	idPrefix := strconv.FormatInt(b.ID, 10)[:len(strconv.FormatInt(b.ID, 10))-3]
	for _, tc := range []struct {
		name string
		q    surge.OrderSearch
		want []surge.OrderView
	}{
		{"phone substring", surge.OrderSearch{Text: "1234567"}, []surge.OrderView{a}},
		{"phone substring of two", surge.OrderSearch{Text: "381234"}, []surge.OrderView{a, c}},
		{"username substring, any case", surge.OrderSearch{Text: "pper_8765"}, []surge.OrderView{b}},
		{"username with a LIKE wildcard", surge.OrderSearch{Text: "ling%"}, []surge.OrderView{c}},
		{"wildcard is not a wildcard", surge.OrderSearch{Text: "Shopper%"}, nil},
		{"order id prefix", surge.OrderSearch{Text: idPrefix}, []surge.OrderView{a, b, c}},
		{"whole order id", surge.OrderSearch{Text: strconv.FormatInt(b.ID, 10)}, []surge.OrderView{b}},
		{"time range", surge.OrderSearch{Text: "Shopper_", From: f.now.Add(30 * time.Second), To: f.now.Add(90 * time.Second)}, []surge.OrderView{b}},
		{"nothing", surge.OrderSearch{Text: "zzz"}, nil},
	} {
		got := pages(t, 1, func(cur *surge.OrderCursor, n int) (*surge.OrderPage, error) {
			return f.s.SearchOrders(f.ctx, tc.q, cur, n)
		})
		if want := newest(tc.want); !slices.Equal(got, want) {
			t.Errorf("SearchOrders(%s %q) = %v; want %v", tc.name, tc.q.Text, got, want)
		}
	}
}

func testStaleCopy(t *testing.T, f *fixture) {
	v := f.view(9, 900, f.now)
	paid := v
	paid.State, paid.Version = surge.OrderPaid, surge.OrderPaid.Rank()
	at := f.now.Add(time.Minute)
	paid.PaidAt = &at
	check := func(what string, p *surge.OrderPage, err error) {
		t.Helper()
		if err != nil || len(p.Items) != 1 || p.Items[0].State != surge.OrderPaid || p.Items[0].PaidAt == nil || !p.Items[0].PaidAt.Equal(at) {
			t.Fatalf("%s after a stale copy = %+v, %v; want the paid copy", what, p, err)
		}
	}
	f.putViews(paid)
	for _, stale := range [][]surge.OrderView{{v}, {v, paid, v}} { // the pending copy, read before the payment, arrives late
		f.putViews(stale...)
		p, err := f.s.ShopperOrders(f.ctx, 9, nil, 10)
		check("ShopperOrders", p, err)
		p, err = f.s.MerchantOrders(f.ctx, 900, surge.OrderFilter{}, nil, 10)
		check("MerchantOrders", p, err)
		p, err = f.s.SearchOrders(f.ctx, surge.OrderSearch{Text: strconv.FormatInt(v.ID, 10)}, nil, 10)
		check("SearchOrders", p, err)
	}
	if p, err := f.s.MerchantOrders(f.ctx, 900, surge.OrderFilter{States: []surge.OrderState{surge.OrderPendingPayment}}, nil, 10); err != nil || len(p.Items) != 0 {
		t.Fatalf("MerchantOrders(pending) = %+v, %v; want none", p, err)
	}
	refunded := paid
	refunded.State, refunded.Version = surge.OrderRefunded, surge.OrderRefunded.Rank()
	f.putViews(refunded)
	if p, err := f.s.ShopperOrders(f.ctx, 9, nil, 10); err != nil || len(p.Items) != 1 || p.Items[0].State != surge.OrderRefunded {
		t.Fatalf("ShopperOrders after refund = %+v, %v; want refunded", p, err)
	}
}

func testBadViewQueries(t *testing.T, f *fixture) {
	for _, c := range []string{"x", "!!!", "MTIz", "LTEuNQ", "MS4w", string(make([]byte, 100))} {
		if _, err := surge.ParseOrderCursor(c); surge.ErrorCode(err) != surge.EINVALID {
			t.Errorf("ParseOrderCursor(%q) = %v; want EINVALID", c, err)
		}
	}
	cur := surge.OrderCursor{CreatedAt: f.now, ID: 77}
	if got, err := surge.ParseOrderCursor(cur.Encode()); err != nil || *got != cur {
		t.Fatalf("ParseOrderCursor(Encode(%v)) = %v, %v", cur, got, err)
	}
	_, err := f.s.MerchantOrders(f.ctx, 1, surge.OrderFilter{States: []surge.OrderState{"shipped"}}, nil, 10)
	wantCode(t, "MerchantOrders(unknown state)", err, surge.EINVALID)
	_, err = f.s.MerchantOrders(f.ctx, 1, surge.OrderFilter{From: f.now, To: f.now}, nil, 10)
	wantCode(t, "MerchantOrders(empty range)", err, surge.EINVALID)
	_, err = f.s.SearchOrders(f.ctx, surge.OrderSearch{Text: " ab "}, nil, 10)
	wantCode(t, "SearchOrders(short text)", err, surge.EINVALID)
	_, err = f.s.SearchOrders(f.ctx, surge.OrderSearch{Text: string(make([]rune, 65))}, nil, 10)
	wantCode(t, "SearchOrders(long text)", err, surge.EINVALID)
}

func testViewCheckpoint(t *testing.T, f *fixture) {
	if pos, err := f.s.ViewCheckpoint(f.ctx, "views"); err != nil || pos != 0 {
		t.Fatalf("ViewCheckpoint(none) = %d, %v; want 0", pos, err)
	}
	must(t, "PutOrderViews", f.s.PutOrderViews(f.ctx, []surge.OrderView{f.view(1, 2, f.now)}, surge.ViewCheckpoint{Name: "views", Position: 41}))
	must(t, "PutOrderViews", f.s.PutOrderViews(f.ctx, nil, surge.ViewCheckpoint{Name: "views", Position: 42}))
	if pos, err := f.s.ViewCheckpoint(f.ctx, "views"); err != nil || pos != 42 {
		t.Fatalf("ViewCheckpoint = %d, %v; want 42", pos, err)
	}
}

func testViewDrift(t *testing.T, f *fixture) {
	exp := f.now.Add(time.Hour)
	a, b, c := f.order(1, 5, "a", exp), f.order(2, 5, "b", exp), f.order(3, 5, "c", exp)
	drift := func(after int64, n int) ([]int64, int64) {
		t.Helper()
		d, last, err := f.s.OrderViewDrift(f.ctx, after, n)
		must(t, "OrderViewDrift", err)
		return d, last
	}
	if d, last := drift(0, 10); !slices.Equal(d, []int64{a.ID, b.ID, c.ID}) || last != c.ID {
		t.Fatalf("OrderViewDrift(no views) = %v, %d; want every order, last %d", d, last, c.ID)
	}
	f.putViews(surge.NewOrderView(a, nil), surge.NewOrderView(b, nil), surge.NewOrderView(c, nil))
	if d, last := drift(0, 2); len(d) != 0 || last != b.ID {
		t.Fatalf("OrderViewDrift(in step, 2) = %v, %d; want none, last %d", d, last, b.ID)
	}
	if _, err := f.s.Transition(f.ctx, b.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelUser, f.now); err != nil {
		t.Fatal(err)
	}
	if d, last := drift(a.ID, 10); !slices.Equal(d, []int64{b.ID}) || last != c.ID {
		t.Fatalf("OrderViewDrift(after a cancel) = %v, %d; want [%d], last %d", d, last, b.ID, c.ID)
	}
	if d, last := drift(c.ID, 10); len(d) != 0 || last != 0 {
		t.Fatalf("OrderViewDrift(past the end) = %v, %d; want none, 0", d, last)
	}
}
