package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/paysim"
)

// TestOrderViews buys and pays a few orders, cancels one, and reads the shopper's, the
// merchant's and support's lists until they agree with the orders.
func TestOrderViews(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			_, cl := start(t, c)
			tm := newTeam(t, cl)
			ctx := context.Background()
			item := openSale(t, tm, 100, 1, 900)
			phone := "+8613700137000"
			must(t, "SendOTP", cl.SendOTP(ctx, phone))
			code := ok[string](t, "DevOTP")(cl.DevOTP(ctx, phone))
			shoppers := []*client.Client{cl.As(ok[*auth.Tokens](t, "LoginOTP")(cl.LoginOTP(ctx, phone, code)).AccessToken)}
			for i := range 3 {
				tok := ok[*auth.Tokens](t, "Register")(cl.Register(ctx, auth.NewUser{Username: fmt.Sprint("viewer_", i), Password: "viewer-password"}))
				shoppers = append(shoppers, cl.As(tok.AccessToken))
			}
			want := map[int64]surge.OrderState{}
			ids := make([]int64, len(shoppers))
			for i, s := range shoppers {
				res, err := buy(ctx, s, item, fmt.Sprint("v-", i))
				must(t, "buy", err)
				ids[i] = res.OrderID
				if i == 3 {
					ok[*surge.Order](t, "CancelOrder")(s.CancelOrder(ctx, res.OrderID))
					want[res.OrderID] = surge.OrderCancelled
					continue
				}
				tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, res.OrderID))
				ok[*paysim.PayResponse](t, "Pay")(s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}))
				want[res.OrderID] = surge.OrderPaid
			}
			paid := []surge.OrderState{surge.OrderPaid}
			eventually(t, "the merchant's paid and cancelled orders", func() error {
				got := map[int64]surge.OrderState{}
				for _, f := range []surge.OrderFilter{{States: paid}, {States: []surge.OrderState{surge.OrderCancelled}}} {
					for _, v := range allPages(t, func(cur string) (*surge.OrderPage, error) { return tm.m1.MerchantOrders(ctx, 0, f, cur, 2) }) {
						got[v.ID] = v.State
					}
				}
				return same(got, want)
			})
			eventually(t, "each shopper's orders", func() error {
				for i, s := range shoppers {
					p, err := s.MyOrders(ctx, "", 0)
					if err != nil || len(p.Items) != 1 || p.Items[0].ID != ids[i] || p.Items[0].State != want[ids[i]] || p.Next != "" {
						return fmt.Errorf("shopper %d's orders = %+v, %v; want order %d %s", i, p, err, ids[i], want[ids[i]])
					}
				}
				return nil
			})
			// The store agrees, and the shopper's list keeps its old shape for old clients.
			for id, st := range want {
				if o := ok[*surge.Order](t, "Order")(tm.op.Order(ctx, id)); o.State != st {
					t.Fatalf("order %d in the store is %s; its views say %s", id, o.State, st)
				}
			}
			if mine := ok[[]*surge.Order](t, "Orders")(shoppers[1].Orders(ctx)); len(mine) != 1 || mine[0].ID != ids[1] {
				t.Fatalf("Orders = %+v; want order %d", mine, ids[1])
			}
			search := func(q surge.OrderSearch) []int64 {
				var out []int64
				for _, v := range allPages(t, func(cur string) (*surge.OrderPage, error) { return tm.op.SearchOrders(ctx, q, cur, 1) }) {
					out = append(out, v.ID)
				}
				return out
			}
			newestFirst := slices.Clone(ids[1:])
			slices.Reverse(newestFirst)
			for _, c := range []struct {
				q    surge.OrderSearch
				want []int64
			}{
				{surge.OrderSearch{Text: "13700137"}, ids[:1]},
				{surge.OrderSearch{Text: "VIEWER_"}, newestFirst},
				{surge.OrderSearch{Text: strconv.FormatInt(ids[2], 10)}, ids[2:3]},
				{surge.OrderSearch{Text: "viewer_", To: time.Now().Add(-time.Hour)}, nil},
			} {
				if got := search(c.q); !slices.Equal(got, c.want) {
					t.Errorf("SearchOrders(%+v) = %v; want %v", c.q, got, c.want)
				}
			}
			// Staff read any shop; the other merchant sees none of these.
			if p := ok[*surge.OrderPage](t, "MerchantOrders(staff)")(tm.op.MerchantOrders(ctx, tm.m1ID, surge.OrderFilter{}, "", 0)); len(p.Items) != len(want) {
				t.Fatalf("staff's MerchantOrders(m1) = %d orders; want %d", len(p.Items), len(want))
			}
			if p := ok[*surge.OrderPage](t, "MerchantOrders(m2)")(tm.m2.MerchantOrders(ctx, 0, surge.OrderFilter{}, "", 0)); len(p.Items) != 0 {
				t.Fatalf("merchant2's orders = %+v; want none", p.Items)
			}
			if n := metric(t, cl, "surge_orderview_applied_total"); n < float64(len(want)) {
				t.Errorf("surge_orderview_applied_total = %v; want at least %d", n, len(want))
			}
			if n := metric(t, cl, "surge_orderview_lag_seconds_count"); n < 1 {
				t.Errorf("surge_orderview_lag_seconds_count = %v; want the events' lags observed", n)
			}
		})
	}
}

// TestOrderViewsAfterKill kills the node that projects the views, with SIGKILL, while orders
// are bought, paid and cancelled, twice; after each restart the views agree with the order store.
func TestOrderViewsAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	cl, cmd := child(t, dir)
	tm := newTeam(t, cl)
	item := openSale(t, tm, 5000, 1, 900)
	ctx := context.Background()
	acked := map[int64]int64{} // user → order id
	var mu sync.Mutex
	next := int64(3_000_000)
	for cycle := range 2 {
		var unknown []int64
		killAmid(cmd, 16, 400*time.Millisecond, func() {
			mu.Lock()
			next++
			user := next
			mu.Unlock()
			s := shopper(t, cl, user)
			res, err := buy(ctx, s, item, fmt.Sprint("kv-", user))
			mu.Lock()
			if err != nil {
				unknown = append(unknown, user)
			} else {
				acked[user] = res.OrderID
			}
			mu.Unlock()
			if err != nil {
				return
			}
			switch user % 3 { // some are paid, some cancelled, as the node dies
			case 1:
				if tk, err := s.PayTicket(ctx, res.OrderID); err == nil {
					s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket})
				}
			case 2:
				s.CancelOrder(ctx, res.OrderID)
			}
		})
		cl, cmd = child(t, dir)
		for _, user := range unknown { // the attempts cut off: the shopper taps again
			res, err := buy(ctx, shopper(t, cl, user), item, fmt.Sprint("kv-", user))
			must(t, fmt.Sprint("cycle ", cycle, ": retry"), err)
			acked[user] = res.OrderID
		}
		tm.op, tm.m1 = cl.As(tm.opToken), cl.As(tm.m1Token) // tokens outlive the node
		checkViews(t, cl, tm, acked)
		t.Logf("cycle %d: %d orders, %d attempts retried after the kill", cycle, len(acked), len(unknown))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// checkViews waits until the merchant's views hold exactly the acknowledged orders in their
// states in the store, and each shopper's view agrees.
func checkViews(t *testing.T, cl *client.Client, tm *team, acked map[int64]int64) {
	t.Helper()
	ctx := context.Background()
	eventually(t, "the views agree with the store", func() error {
		store := map[int64]surge.OrderState{}
		for _, id := range acked {
			o, err := tm.op.Order(ctx, id)
			if err != nil {
				return err
			}
			store[id] = o.State
		}
		views := map[int64]surge.OrderState{}
		for _, v := range allPages(t, func(cur string) (*surge.OrderPage, error) {
			return tm.m1.MerchantOrders(ctx, 0, surge.OrderFilter{}, cur, surge.MaxListLimit)
		}) {
			views[v.ID] = v.State
		}
		if err := same(views, store); err != nil {
			return fmt.Errorf("merchant's views: %w", err)
		}
		for user, id := range acked {
			p, err := shopper(t, cl, user).MyOrders(ctx, "", 0)
			if err != nil || len(p.Items) != 1 || p.Items[0].ID != id || p.Items[0].State != store[id] {
				return fmt.Errorf("shopper %d's orders = %+v, %v; want order %d %s", user, p, err, id, store[id])
			}
		}
		return nil
	})
}

// allPages reads every page of a listing.
func allPages(t *testing.T, read func(cursor string) (*surge.OrderPage, error)) []surge.OrderView {
	t.Helper()
	var all []surge.OrderView
	cur := ""
	for range 1000 {
		p, err := read(cur)
		if err != nil {
			t.Fatalf("page after %q = %v", cur, err)
		}
		all = append(all, p.Items...)
		if cur = p.Next; cur == "" {
			return all
		}
	}
	t.Fatal("the pages never ended")
	return nil
}

// same says how got and want differ, if they do.
func same(got, want map[int64]surge.OrderState) error {
	if maps.Equal(got, want) {
		return nil
	}
	for id, st := range want {
		if got[id] != st {
			return fmt.Errorf("order %d is %q in the views, %s in the store (%d views, %d orders)", id, got[id], st, len(got), len(want))
		}
	}
	return fmt.Errorf("%d views of %d orders: views of orders that are not there", len(got), len(want))
}

// eventually runs check until it passes, for up to 15 s.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v", what, err)
	}
}
