package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/promo"
)

// promoShopper is one shopper of TestKillDuringPromotionCheckouts: its checkout's order, and
// whether the checkout got a definite answer.
type promoShopper struct {
	quoted  int64 // what its quote said
	order   int64
	done    bool
	refused string // the code of a definite refusal
	last    error
}

// TestKillDuringPromotionCheckouts kills a node with SIGKILL five times while shoppers quote a
// cart, check out at the quoted price (an activity capped at 120 orders, and a threshold
// discount), and pay or cancel. After each restart the shoppers whose checkout was cut off
// retry it with the same request id. Then every activity's counters equal what the orders hold
// of it: used is the orders pending or paid that carry it (never above the cap), spent their
// discounts, and each order's price is what its quote said or its refusal was EPRICECHANGED.
func TestKillDuringPromotionCheckouts(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	cl, cmd := child(t, dir)
	tm := newTeam(t, cl)
	ctx := context.Background()
	spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: "CRASH-PROMO", Title: "Mug", CategoryL1: "Kitchen"}))
	sku := ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: "CRASH-PROMO-1", Title: "Mug",
		Price: surge.Money{Amount: 5000, Currency: "CNY"}, CostPrice: surge.Money{Amount: 2000, Currency: "CNY"}, Stock: 100_000}))
	const capOrders = 120
	capped := liveActivity(t, tm.m1, 0, "first 120 orders", 10, capOrders, promo.Rule{Kind: promo.Direct, Value: 700,
		Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: []int64{sku.ID}}})
	every := liveActivity(t, tm.op, 0, "¥10 off every ¥80", 5, 0, promo.Rule{Kind: promo.Threshold, Value: 1000, Threshold: 8000, Repeat: true,
		Scope: promo.Scope{Kind: promo.ScopePlatform}})
	cart := []coupon.CartLine{{SKU: sku.ID, Quantity: 2}}
	shoppers := map[int64]*promoShopper{}
	next := int64(8_000_000)
	rng := rand.New(rand.NewPCG(rand.Uint64(), 3))

	journey := func(user int64, s *promoShopper, pay bool) {
		sc := shopper(t, cl, user)
		if !s.done {
			if s.quoted == 0 { // a retry sends the request it sent before, as apps do
				q, err := sc.Quote(ctx, promo.QuoteRequest{Lines: cart})
				if err != nil {
					s.last = err
					return
				}
				s.quoted = q.Price.Payable
			}
			o, err := sc.Checkout(ctx, checkout.Request{RequestID: fmt.Sprint("co-", user), Lines: cart, QuotedPayable: &s.quoted})
			switch code := surge.ErrorCode(err); code {
			case "":
				if o.Amount.Amount != s.quoted {
					t.Errorf("shopper %d: quoted %d, charged %d", user, s.quoted, o.Amount.Amount)
				}
				s.order, s.done = o.ID, true
			case surge.EPRICECHANGED:
				s.refused, s.done = code, true
				return
			default:
				s.last = err
				return
			}
		}
		if pay {
			if tk, err := sc.PayTicket(ctx, s.order); err == nil {
				sc.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket})
			}
		} else {
			sc.CancelOrder(ctx, s.order)
		}
	}
	var mu sync.Mutex
	for cycle := range 5 {
		pause := time.Duration(300+rng.IntN(400)) * time.Millisecond
		killAmid(cmd, 16, pause, func() {
			mu.Lock()
			next++
			user, s := next, &promoShopper{}
			shoppers[user] = s
			pay := rng.IntN(3) > 0
			mu.Unlock()
			journey(user, s, pay)
		})
		cl, cmd = child(t, dir)
		for user, s := range shoppers {
			if !s.done {
				journey(user, s, true)
				if !s.done {
					t.Fatalf("cycle %d: shopper %d's retry got no definite answer: %v", cycle, user, s.last)
				}
			}
		}
		checkActivities(t, cl, tm.m1Token, tm.opToken, shoppers, capped, every, capOrders)
		t.Logf("cycle %d: %d shoppers so far", cycle, len(shoppers))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	refused := 0
	for _, s := range shoppers {
		if s.refused != "" {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no checkout was refused: the cap was never reached, and the test proves nothing of it")
	}
}

// checkActivities waits for the orders to settle, and checks each activity's counters against
// the orders that carry it.
func checkActivities(t *testing.T, cl *client.Client, m1Token, opToken string, shoppers map[int64]*promoShopper, capped, every *surge.Activity, capOrders int64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		last := ""
		count, sum := map[int64]int64{}, map[int64]int64{}
		for user, s := range shoppers {
			if s.order == 0 {
				continue
			}
			o, err := shopper(t, cl, user).Order(ctx, s.order)
			if err != nil {
				last = fmt.Sprintf("shopper %d's order %d: %v", user, s.order, err)
				break
			}
			if o.State == surge.OrderCancelled || o.State == surge.OrderRefunded {
				continue
			}
			for _, a := range o.Price.Activities {
				count[a.Activity]++
				sum[a.Activity] += a.Amount
			}
		}
		for _, x := range []struct {
			a     *surge.Activity
			token string
		}{{capped, m1Token}, {every, opToken}} {
			if last != "" {
				break
			}
			v, err := cl.As(x.token).Activity(ctx, x.a.ID)
			if err != nil {
				last = err.Error()
				break
			}
			held := v.Locks[surge.LockLocked].Count + v.Locks[surge.LockConfirmed].Count
			switch {
			case x.a.ID == capped.ID && v.Used > capOrders:
				t.Fatalf("activity %s used %d times, past its cap of %d", v.Name, v.Used, capOrders)
			case v.Used != count[x.a.ID] || v.Spent != sum[x.a.ID] || held != v.Used:
				last = fmt.Sprintf("activity %s: used %d, spent %d, %d locks held; the orders carry it %d times for %d", v.Name, v.Used, v.Spent,
					held, count[x.a.ID], sum[x.a.ID])
			}
		}
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
