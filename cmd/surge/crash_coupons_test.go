package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/sqlite"
)

// couponShopper is one shopper of TestKillDuringCouponSale: the coupon it claimed, and the
// order it made with it.
type couponShopper struct {
	coupon, order int64
	claimed, done bool // the claim, and the purchase, got a definite answer
	soldOut       bool
	last          error // the last answer that was not definite
}

// TestKillDuringCouponSale kills a node with SIGKILL ten times while shoppers claim coupons, buy
// with them, pay and cancel. After each restart the shoppers whose claim or purchase was cut off
// retry it with the same request id, as apps do; then invariant 5 passes, and every shopper's
// coupon is where its order says: locked on a pending order, used on a paid one, back in the
// wallet when the order was cancelled or never made. No coupon is lost, doubled or stuck locked.
func TestKillDuringCouponSale(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	cl, cmd := child(t, dir)
	tm := newTeam(t, cl)
	ctx := context.Background()
	b := liveBatch(t, tm.op, "crash ¥0.20 off", coupon.Rule{Kind: coupon.Fixed, Value: 20, Currency: "CNY",
		Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, 100_000, 1, 1)
	const units = 1500
	it := openSaleItem(t, tm, units, 1, 900)
	shoppers := map[int64]*couponShopper{}
	next := int64(5_000_000)
	rng := rand.New(rand.NewPCG(rand.Uint64(), 2))

	// journey claims a coupon, buys with it, and pays or cancels; it stops at the first answer
	// that is not definite (the node died), to be finished after the restart.
	journey := func(cl *client.Client, user int64, s *couponShopper, pay bool) {
		sc := shopper(t, cl, user)
		if !s.claimed {
			c, err := sc.ClaimCoupon(ctx, b.ID, "claim")
			if err != nil {
				return
			}
			s.coupon, s.claimed = c.ID, true
		}
		if !s.done {
			res, err := buyWith(ctx, sc, it.ID, fmt.Sprint("buy-", user), s.coupon)
			switch {
			case surge.ErrorCode(err) == surge.ESOLDOUT:
				s.done, s.soldOut = true, true
				return
			case err != nil:
				s.last = err
				return
			}
			s.order, s.done = res.OrderID, true
		}
		if s.order == 0 {
			return
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
	for cycle := range 10 {
		pause := time.Duration(200+rng.IntN(400)) * time.Millisecond // drawn before the workers share rng
		killAmid(cmd, 24, pause, func() {
			mu.Lock()
			next++
			user, s := next, &couponShopper{}
			shoppers[user] = s
			pay := rng.IntN(3) > 0
			mu.Unlock()
			journey(cl, user, s, pay)
		})

		cl, cmd = child(t, dir)
		retried := 0
		for user, s := range shoppers {
			if !s.claimed || !s.done {
				retried++
				journey(cl, user, s, true)
				if !s.claimed || !s.done {
					t.Fatalf("cycle %d: shopper %d's retries got no definite answer (%+v): %v", cycle, user, s, s.last)
				}
			}
		}
		checkCoupons(t, cl, tm.opToken, it.SessionID, shoppers)
		t.Logf("cycle %d: %d shoppers so far, %d journeys finished after the kill", cycle, len(shoppers), retried)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// checkCoupons waits for the sale to settle and checks invariant 5, and each shopper's coupon
// against its order.
func checkCoupons(t *testing.T, cl *client.Client, opToken string, session int64, shoppers map[int64]*couponShopper) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		last = ""
		rep, err := cl.As(opToken).Audit(ctx, session)
		if err != nil {
			last = err.Error()
		} else {
			for _, res := range rep.Results {
				if res.Status == audit.Fail {
					last = fmt.Sprintf("%s: %v", res.Invariant, res.Details)
				}
			}
		}
		for user, s := range shoppers {
			if last != "" {
				break
			}
			if s.coupon == 0 {
				continue
			}
			want := surge.CouponIssued // sold out, or its order cancelled
			if s.order != 0 {
				o, err := shopper(t, cl, user).Order(ctx, s.order)
				if err != nil {
					last = fmt.Sprintf("shopper %d's order %d: %v", user, s.order, err)
					break
				}
				switch {
				case o.State == surge.OrderPendingPayment:
					want = surge.CouponLocked
				case o.State.PaidOrLater():
					want = surge.CouponUsed
				}
				if o.Price == nil || len(o.Price.Coupons) != 1 || o.Price.Coupons[0].Coupon != s.coupon {
					last = fmt.Sprintf("shopper %d's order %+v does not carry coupon %d", user, o, s.coupon)
					break
				}
			}
			wallet, err := shopper(t, cl, user).MyCoupons(ctx)
			if err == nil && len(wallet) == 1 && s.order == 0 && wallet[0].State == surge.CouponLocked {
				// Cut off between its lock and its reservation, and then sold out on the retry
				// (which locks nothing once the item is sold out): locked to an order that is
				// never made, until the sweep returns it after coupon.LockTTL.
				if _, err := shopper(t, cl, user).Order(ctx, wallet[0].OrderID); surge.ErrorCode(err) == surge.ENOTFOUND {
					continue
				}
			}
			if err != nil || len(wallet) != 1 || wallet[0].ID != s.coupon || wallet[0].State != want {
				last = fmt.Sprintf("shopper %d (order %d): wallet %v, %v; want coupon %d %s", user, s.order, walletStates(wallet), err, s.coupon, want)
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

func walletStates(w []coupon.WalletCoupon) []string {
	var out []string
	for _, c := range w {
		out = append(out, fmt.Sprintf("%d:%s", c.ID, c.State))
	}
	return out
}

// TestKillDuringGrant kills a node with SIGKILL four times while it runs a bulk grant of 4,000
// users (sent as a file, a few listed twice), then lets it finish: every user has exactly one
// coupon of the grant, the ledger issued exactly that many, and the store holds exactly that
// many. No user is skipped or granted twice although the node went through some of them again.
func TestKillDuringGrant(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	cl, cmd := child(t, dir)
	tm := newTeam(t, cl)
	ctx := context.Background()
	b := liveBatch(t, tm.op, "for our members", coupon.Rule{Kind: coupon.Fixed, Value: 300, Currency: "CNY",
		Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, 100_000, 3, 30)
	const users, first = 4000, int64(7_000_000)
	var file strings.Builder
	file.WriteString("user_id\n")
	for u := range int64(users) {
		fmt.Fprintf(&file, "%d\n", first+u)
	}
	file.WriteString("7000000\n7000001\n")
	g := ok[*surge.CouponGrant](t, "GrantCouponsFile")(tm.op.GrantCouponsFile(ctx, b.ID, "members", strings.NewReader(file.String())))
	if g.Users != users {
		t.Fatalf("grant %+v; want %d users", g, users)
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 3))
	midway := 0 // kills that found the grant part done
	for cycle := range 4 {
		killAmid(cmd, 1, time.Duration(700+rng.IntN(900))*time.Millisecond, func() { time.Sleep(10 * time.Millisecond) })
		cl, cmd = child(t, dir)
		tm.op = cl.As(tm.opToken)
		got, err := tm.op.CouponGrant(ctx, b.ID, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("cycle %d: %d of %d users gone through, %s", cycle, got.Position, got.Users, got.State)
		if got.Position > 0 && got.Position < got.Users {
			midway++
		}
	}
	if midway == 0 {
		t.Fatalf("no kill came in the middle of the grant; the test proves nothing")
	}
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if g = ok[*surge.CouponGrant](t, "CouponGrant")(tm.op.CouponGrant(ctx, b.ID, g.ID)); g.State != surge.GrantRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the grant is still running: %+v", g)
		}
	}
	if g.State != surge.GrantDone || g.Position != users || g.Granted != users || g.Refused != 0 {
		t.Fatalf("grant %+v; want done, all %d granted", g, users)
	}
	if got := ok[*coupon.Batch](t, "CouponBatch")(tm.op.CouponBatch(ctx, b.ID)); got.Issuance.Issued != users {
		t.Fatalf("issued %d; want %d", got.Issuance.Issued, users)
	}
	for range 50 {
		u := first + rng.Int64N(users)
		w, err := shopper(t, cl, u).MyCoupons(ctx)
		if err != nil || len(w) != 1 || w[0].BatchID != b.ID {
			t.Fatalf("shopper %d's wallet: %d coupons, %v; want the one granted", u, len(w), err)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "surge.db"), func() (int64, error) { return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.CouponCount(ctx, b.ID); err != nil || n != users {
		t.Fatalf("coupons stored = %d, %v; want %d", n, err, users)
	}
}
