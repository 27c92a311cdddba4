package main

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/purchase"
)

// Coupon batches over HTTP on every shape: a merchant's batch for its own shop, edited as a
// draft, published, claimed by a crowd to exactly its total, limited per shopper, retried
// without a second coupon, listed in the wallet, and taken offline; each refusal with its code.
func TestCouponBatches(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := testConfig(t)
			c.NATSListen = "127.0.0.1:0" // to read the events
			sh.setup(t, &c)
			m, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			now := time.Now().UTC()
			shopRule := coupon.Rule{Kind: coupon.Threshold, Value: 3000, Threshold: 20000, Currency: "CNY",
				Scope: coupon.Scope{Kind: coupon.ScopeShop, Shop: tm.m1ID}}
			in := coupon.BatchInput{Name: "¥30 off ¥200", Rule: shopRule, Total: 20, PerUser: 1,
				ClaimFrom: now.Add(-time.Minute), ClaimUntil: now.Add(time.Hour), ValidDays: 7}

			_, err := tm.shopper.CreateCouponBatch(ctx, in)
			wantCode(t, "a shopper creating a batch", err, surge.EFORBIDDEN)
			other := in
			other.Rule.Scope.Shop = tm.m2ID
			_, err = tm.m1.CreateCouponBatch(ctx, other)
			wantCode(t, "a merchant's batch for another shop", err, surge.EINVALID)
			bad := in
			bad.Rule.Value = -5
			_, err = tm.m1.CreateCouponBatch(ctx, bad)
			wantCode(t, "a negative value", err, surge.EINVALID)
			bad = in
			bad.Total = 0
			_, err = tm.m1.CreateCouponBatch(ctx, bad)
			wantCode(t, "a total of 0", err, surge.EINVALID)

			b := ok[*surge.CouponBatch](t, "CreateCouponBatch")(tm.m1.CreateCouponBatch(ctx, in))
			if b.MerchantID != tm.m1ID || b.State != surge.BatchDraft {
				t.Fatalf("batch %+v; want merchant 1's draft", b)
			}
			_, err = tm.shopper.ClaimCoupon(ctx, b.ID, "early")
			wantCode(t, "claiming a draft", err, surge.ENOTFOUND)
			_, err = tm.m2.UpdateCouponBatch(ctx, b.ID, coupon.BatchPatch{Total: ptr[int64](5)})
			wantCode(t, "another merchant's edit", err, surge.ENOTFOUND)
			b = ok[*surge.CouponBatch](t, "UpdateCouponBatch")(tm.m1.UpdateCouponBatch(ctx, b.ID, coupon.BatchPatch{Total: ptr[int64](10)}))
			b = ok[*surge.CouponBatch](t, "PublishCouponBatch")(tm.op.PublishCouponBatch(ctx, b.ID))
			if b.State != surge.BatchLive || b.Total != 10 {
				t.Fatalf("published %+v", b)
			}
			_, err = tm.m1.UpdateCouponBatch(ctx, b.ID, coupon.BatchPatch{Rule: &coupon.Rule{Kind: coupon.Fixed, Value: 9000, Currency: "CNY",
				Scope: coupon.Scope{Kind: coupon.ScopeShop, Shop: tm.m1ID}}})
			wantCode(t, "changing a live batch's value", err, surge.ECONFLICT)
			_, err = tm.m1.ClaimCoupon(ctx, b.ID, "merchant")
			wantCode(t, "a merchant claiming", err, surge.EFORBIDDEN)

			// 40 shoppers claim at once, each twice with its own request ids: 10 coupons, one each.
			shoppers := make([]*client.Client, 40)
			for i := range shoppers {
				tok := ok[*auth.Tokens](t, "Register")(cl.Register(ctx, auth.NewUser{Username: fmt.Sprintf("claimer%d", i),
					Password: "claimer-password"}))
				shoppers[i] = cl.As(tok.AccessToken)
			}
			var claimed, soldOut, limited atomic.Int64
			var wg sync.WaitGroup
			for i, sc := range shoppers {
				for try := range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := sc.ClaimCoupon(ctx, b.ID, fmt.Sprintf("c%d-%d", i, try))
						switch surge.ErrorCode(err) {
						case "":
							claimed.Add(1)
						case surge.ESOLDOUT:
							soldOut.Add(1)
						case surge.ELIMIT:
							limited.Add(1)
						default:
							t.Error(err)
						}
					}()
				}
			}
			wg.Wait()
			got := ok[*coupon.Batch](t, "CouponBatch")(tm.shopper.CouponBatch(ctx, b.ID))
			if own := ok[*coupon.Batch](t, "CouponBatch(owner)")(tm.m1.CouponBatch(ctx, b.ID)); got.CreatedBy != 0 || own.CreatedBy != tm.m1ID {
				t.Fatalf("created_by %d to a shopper, %d to the owner; want it hidden from the shopper", got.CreatedBy, own.CreatedBy)
			}
			if claimed.Load() != 10 || got.Issuance != (coupon.Issuance{Total: 10, Issued: 10}) {
				t.Fatalf("claimed %d (sold out %d, limited %d), issuance %+v; want exactly 10", claimed.Load(), soldOut.Load(), limited.Load(), got.Issuance)
			}
			_, err = tm.m1.UpdateCouponBatch(ctx, b.ID, coupon.BatchPatch{Total: ptr[int64](9)})
			wantCode(t, "a total below the issued", err, surge.ECONFLICT)
			ok[*surge.CouponBatch](t, "raise the total")(tm.m1.UpdateCouponBatch(ctx, b.ID, coupon.BatchPatch{Total: ptr[int64](11)}))

			first := ok[*surge.Coupon](t, "ClaimCoupon")(tm.shopper.ClaimCoupon(ctx, b.ID, "mine"))
			again := ok[*surge.Coupon](t, "ClaimCoupon again")(tm.shopper.ClaimCoupon(ctx, b.ID, "mine"))
			if again.ID != first.ID || first.UserID == 0 || first.State != surge.CouponIssued ||
				first.ValidUntil.Sub(first.ValidFrom) != 7*24*time.Hour {
				t.Fatalf("claim %+v, retried %+v; want the same coupon, valid 7 days", first, again)
			}
			wallet := ok[[]coupon.WalletCoupon](t, "MyCoupons")(tm.shopper.MyCoupons(ctx))
			if len(wallet) != 1 || wallet[0].ID != first.ID || wallet[0].BatchName != in.Name {
				t.Fatalf("wallet %+v; want the one coupon with its batch", wallet)
			}
			if r, err := coupon.DecodeRule(wallet[0].Rule); err != nil || r.Threshold != 20000 {
				t.Fatalf("the wallet's rule %s: %v", wallet[0].Rule, err)
			}
			// A bulk grant to three shoppers, by the batch's merchant; bad lists are refused.
			ok[*surge.CouponBatch](t, "raise the total for a grant")(tm.m1.UpdateCouponBatch(ctx, b.ID, coupon.BatchPatch{Total: ptr[int64](14)}))
			_, err = tm.m1.GrantCouponsFile(ctx, b.ID, "bad", strings.NewReader("user_id\n12\nnot-a-user\n"))
			wantCode(t, "a grant file with a bad line", err, surge.EINVALID)
			_, err = tm.m2.GrantCoupons(ctx, b.ID, "theirs", []int64{1})
			wantCode(t, "a grant of another merchant's batch", err, surge.ENOTFOUND)
			g := ok[*surge.CouponGrant](t, "GrantCoupons")(tm.m1.GrantCoupons(ctx, b.ID, "vip", []int64{8_000_001, 8_000_002, 8_000_003, 8_000_001}))
			for deadline := time.Now().Add(10 * time.Second); g.State == surge.GrantRunning; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("grant still running: %+v", g)
				}
				g = ok[*surge.CouponGrant](t, "CouponGrant")(tm.m1.CouponGrant(ctx, b.ID, g.ID))
			}
			if g.State != surge.GrantDone || g.Users != 3 || g.Granted != 3 {
				t.Fatalf("grant %+v; want 3 users granted", g)
			}
			if w := ok[[]coupon.WalletCoupon](t, "a granted wallet")(shopper(t, cl, 8_000_002).MyCoupons(ctx)); len(w) != 1 || w[0].BatchID != b.ID {
				t.Fatalf("a granted shopper's wallet: %+v", w)
			}
			ok[*surge.CouponBatch](t, "OfflineCouponBatch")(tm.m1.OfflineCouponBatch(ctx, b.ID))
			_, err = shoppers[0].ClaimCoupon(ctx, b.ID, "late")
			wantCode(t, "claiming an offline batch", err, surge.ECONFLICT)
			if late := ok[*surge.Coupon](t, "a retry after offline")(tm.shopper.ClaimCoupon(ctx, b.ID, "mine")); late.ID != first.ID {
				t.Fatalf("a retry after the batch went offline = coupon %d; want %d, the first", late.ID, first.ID)
			}
			if got := ok[*coupon.Batch](t, "CouponBatch(offline)")(tm.m1.CouponBatch(ctx, b.ID)); got.Issuance.Left != 0 || got.Issuance.Issued != 14 {
				t.Fatalf("an offline batch's issuance %+v; want 14 issued and none left", got.Issuance)
			}
			_, err = tm.shopper.CouponBatch(ctx, b.ID)
			wantCode(t, "a shopper reading an offline batch", err, surge.ENOTFOUND)
			if list := ok[[]*surge.CouponBatch](t, "CouponBatches")(tm.m1.CouponBatches(ctx, surge.BatchOffline)); len(list) != 1 || list[0].ID != b.ID {
				t.Fatalf("merchant 1's offline batches = %d", len(list))
			}
			if list := ok[[]*surge.CouponBatch](t, "CouponBatches(m2)")(tm.m2.CouponBatches(ctx, "")); len(list) != 0 {
				t.Fatalf("merchant 2 sees %d of merchant 1's batches", len(list))
			}
			_, err = tm.shopper.CouponBatches(ctx, "")
			wantCode(t, "a shopper listing batches", err, surge.EFORBIDDEN)
			checkEvents(t, cmp.Or(c.NATSURL, m.BusURL), map[string]int{surge.EventCouponClaimed: 11})
			for name, want := range map[string]float64{`surge_coupon_claims_total{outcome="claimed"}`: 11, `surge_coupon_claims_total{outcome="replayed"}`: 2,
				`surge_coupon_claims_total{outcome="ECONFLICT"}`: 1, `surge_coupon_wallet_reads_total{from="store"}`: 2} {
				if got := metric(t, cl, name); got != want {
					t.Errorf("%s = %v; want %v", name, got, want)
				}
			}
		})
	}
}

// buyWith buys one unit with coupons, polling a queued answer to its end.
func buyWith(ctx context.Context, c *client.Client, item int64, req string, coupons ...int64) (*purchase.Result, error) {
	d, err := c.Item(ctx, item)
	if err != nil {
		return nil, err
	}
	res, err := c.Purchase(ctx, purchase.Request{ItemID: item, Quantity: 1, RequestID: req, Token: d.Token, Coupons: coupons})
	for deadline := time.Now().Add(20 * time.Second); err == nil && res.Status == purchase.StatusQueued; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("still queued after 20s")
		}
		res, err = c.PollPurchase(ctx, res.Ticket)
	}
	return res, err
}

// walletState is the state of one coupon in its shopper's wallet.
func walletState(t *testing.T, c *client.Client, id int64) string {
	t.Helper()
	for _, w := range ok[[]coupon.WalletCoupon](t, "MyCoupons")(c.MyCoupons(context.Background())) {
		if w.ID == id {
			return w.State
		}
	}
	t.Fatalf("coupon %d is not in the wallet", id)
	return ""
}

// Coupons on flash-sale orders over HTTP on every shape: an order takes a shopper's coupon at
// its price and keeps the breakdown; the coupon is locked while the order waits, used when it is
// paid, returned when it is cancelled; a coupon on one order is refused for another, and each
// bad coupon (someone else's, made up, out of scope, eleven of them) is refused with its code.
func TestCouponsOnOrders(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			c.NATSListen = "127.0.0.1:0" // to read the events
			c.UserRate = 1000            // one shopper tries many coupons in a moment
			sh.setup(t, &c)
			m, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			batch := func(name string, rule coupon.Rule) *surge.CouponBatch {
				return liveBatch(t, tm.op, name, rule, 100, 5, 1)
			}
			off30 := batch("¥0.30 off", coupon.Rule{Kind: coupon.Fixed, Value: 30, Currency: "CNY", Scope: coupon.Scope{Kind: coupon.ScopePlatform}})
			digital := batch("10% off digital", coupon.Rule{Kind: coupon.Percent, Value: 10, Currency: "CNY",
				Scope: coupon.Scope{Kind: coupon.ScopeCategory, Category: "Digital"}})
			books := batch("¥0.10 off books", coupon.Rule{Kind: coupon.Fixed, Value: 10, Currency: "CNY",
				Scope: coupon.Scope{Kind: coupon.ScopeCategory, Category: "Books"}})
			it := openSaleItem(t, tm, 10, 3, 900)
			s1, s2 := shopper(t, cl, 4_000_001), shopper(t, cl, 4_000_002)
			claim := func(s *client.Client, b *surge.CouponBatch, req string) int64 {
				return ok[*surge.Coupon](t, "ClaimCoupon")(s.ClaimCoupon(ctx, b.ID, req)).ID
			}
			c1, c2, cd, cb := claim(s1, off30, "a"), claim(s1, off30, "b"), claim(s1, digital, "c"), claim(s1, books, "d")
			theirs := claim(s2, off30, "a")

			// The wallet for a cart of the item at its catalog price (¥999.00): 10% off digital
			// takes ¥99.90, each ¥0.30 coupon ¥0.30; the books coupon does not apply.
			usable := ok[[]coupon.UsableCoupon](t, "UsableCoupons")(s1.UsableCoupons(ctx, []coupon.CartLine{{SKU: it.SKUID, Quantity: 1}}))
			if len(usable) != 3 || usable[0].ID != cd || usable[0].Takes != 9990 || usable[1].Takes != 30 || usable[2].Takes != 30 {
				t.Fatalf("usable coupons %+v; want the digital coupon first, then the two ¥0.30 ones", usable)
			}
			_, err := s1.UsableCoupons(ctx, []coupon.CartLine{{SKU: it.SKUID + 999_999, Quantity: 1}})
			wantCode(t, "a cart of an unknown SKU", err, surge.ENOTFOUND)
			_, err = s1.UsableCoupons(ctx, nil)
			wantCode(t, "an empty cart", err, surge.EINVALID)
			_, err = s1.UsableCoupons(ctx, []coupon.CartLine{{SKU: it.SKUID, Quantity: -1}})
			wantCode(t, "a cart line of -1", err, surge.EINVALID)

			// The SKU's ¥999.00 at the sale's ¥1.00, less ¥0.30, then 10% of the ¥0.70 left: ¥0.63
			// to pay.
			res := ok[*purchase.Result](t, "buy with coupons")(buyWith(ctx, s1, it.ID, "first", c1, cd))
			o := ok[*surge.Order](t, "Order")(s1.Order(ctx, res.OrderID))
			if o.Amount.Amount != 63 || o.Price == nil || o.Price.List != 99900 || o.Price.Discount != 99800+37 || o.Price.Payable != 63 ||
				len(o.Price.Activities) != 1 || o.Price.Activities[0].Activity != it.ID || o.Price.Activities[0].Amount != 99800 ||
				o.Price.Lines[0].Text != "999.00 − flash sale 998.00 − coupon 0.30 − coupon 0.07 = 0.63" ||
				len(o.Price.Coupons) != 2 || o.Price.Coupons[0] != (surge.CouponTaken{Coupon: c1, Amount: 30}) ||
				o.Price.Coupons[1] != (surge.CouponTaken{Coupon: cd, Amount: 7}) {
				t.Fatalf("order %+v, price %+v; want ¥0.63 after ¥0.30 and ¥0.07 off", o, o.Price)
			}
			if st := walletState(t, s1, c1); st != surge.CouponLocked {
				t.Fatalf("a coupon on a pending order is %s in the wallet; want locked", st)
			}
			again := ok[*purchase.Result](t, "the same request again")(buyWith(ctx, s1, it.ID, "first", c1, cd))
			if again.OrderID != res.OrderID {
				t.Fatalf("a retried request made order %d; want the first, %d", again.OrderID, res.OrderID)
			}
			_, err = buyWith(ctx, s1, it.ID, "second", c1)
			wantCode(t, "a coupon on another order", err, surge.ECONFLICT)
			_, err = buyWith(ctx, s1, it.ID, "second", cb)
			wantCode(t, "a coupon for books on a digital item", err, surge.EINVALID)
			_, err = buyWith(ctx, s1, it.ID, "second", theirs)
			wantCode(t, "another shopper's coupon", err, surge.ENOTFOUND)
			_, err = buyWith(ctx, s1, it.ID, "second", c2+1_000_000)
			wantCode(t, "a made-up coupon", err, surge.ENOTFOUND)
			eleven := make([]int64, 11)
			for i := range eleven {
				eleven[i] = c2 + int64(i)
			}
			_, err = buyWith(ctx, s1, it.ID, "second", eleven...)
			wantCode(t, "eleven coupons", err, surge.EINVALID)
			if st := walletState(t, s1, c2); st != surge.CouponIssued {
				t.Fatalf("a coupon of refused purchases is %s; want issued", st)
			}

			// Paid: used, with what it took off. Cancelled: back in the wallet.
			tk := ok[*order.PayTicket](t, "PayTicket")(s1.PayTicket(ctx, res.OrderID))
			if _, err := s1.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}); err != nil {
				t.Fatal(err)
			}
			waitState(t, s1, res.OrderID, surge.OrderPaid)
			waitCoupon(t, s1, c1, surge.CouponUsed)
			// The real-time platform counts the coupons of paid orders, by session and shop.
			waitMetrics(t, tm.op, map[string]string{"session": fmt.Sprint(it.SessionID)}, map[string]int64{"coupons_used": 2, "coupon_discount": 37})
			waitMetrics(t, tm.op, map[string]string{"shop": fmt.Sprint(it.MerchantID)}, map[string]int64{"coupons_used": 2, "coupon_discount": 37})
			res2 := ok[*purchase.Result](t, "buy with the other coupon")(buyWith(ctx, s1, it.ID, "third", c2))
			if st := walletState(t, s1, c2); st != surge.CouponLocked {
				t.Fatalf("coupon on the second order is %s; want locked", st)
			}
			ok[*surge.Order](t, "CancelOrder")(s1.CancelOrder(ctx, res2.OrderID))
			waitCoupon(t, s1, c2, surge.CouponIssued)
			ok[*purchase.Result](t, "buy again with the returned coupon")(buyWith(ctx, s1, it.ID, "fourth", c2))

			// A budget of ¥0.10 in red envelopes of ¥0.05: two shoppers get one each, a third
			// is told it is spent; an envelope comes off an order for its value.
			rain := liveBatch(t, tm.op, "red envelope rain", coupon.Rule{Kind: coupon.Envelope, Value: 5, Currency: "CNY",
				Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, 10, 5, 1)
			env := ok[*surge.Coupon](t, "claim an envelope")(s1.ClaimCoupon(ctx, rain.ID, "rain"))
			ok[*surge.Coupon](t, "claim the other envelope")(s2.ClaimCoupon(ctx, rain.ID, "rain"))
			_, err = shopper(t, cl, 4_000_003).ClaimCoupon(ctx, rain.ID, "rain")
			wantCode(t, "a claim of a spent budget", err, surge.ESOLDOUT)
			if env.Value != 5 {
				t.Fatalf("envelope %+v; want ¥0.05", env)
			}
			res5 := ok[*purchase.Result](t, "buy with an envelope")(buyWith(ctx, s1, it.ID, "fifth", env.ID))
			if o := ok[*surge.Order](t, "Order")(s1.Order(ctx, res5.OrderID)); o.Amount.Amount != 95 {
				t.Fatalf("order with an envelope: %+v; want ¥0.95 to pay", o.Amount)
			}
			tk5 := ok[*order.PayTicket](t, "PayTicket")(s1.PayTicket(ctx, res5.OrderID))
			if _, err := s1.Pay(ctx, tk5.PayURL, paysim.PayRequest{Ticket: tk5.Ticket}); err != nil {
				t.Fatal(err)
			}
			waitCoupon(t, s1, env.ID, surge.CouponUsed)
			waitMetrics(t, tm.op, map[string]string{"session": fmt.Sprint(it.SessionID)}, map[string]int64{"coupons_used": 3, "coupon_discount": 42})

			var rep *audit.Report
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) { // the last order being written
				if rep = ok[*audit.Report](t, "Audit")(tm.op.Audit(ctx, it.SessionID)); rep.Passed || time.Now().After(deadline) {
					break
				}
			}
			for _, res := range rep.Results {
				if res.Invariant == audit.CouponsBudgets && (res.Status != audit.Pass || res.Checked < 4) || res.Status == audit.Fail {
					t.Errorf("audit: %+v", res)
				}
			}
			if len(rep.Batches) != 3 || len(rep.Items) != 1 || rep.Items[0].Coupons == nil || rep.Items[0].Coupons.OrdersDiscount != 42 ||
				rep.Items[0].Coupons.CouponsValue != 42 {
				t.Errorf("audit batches %+v, items %+v; want the 2 batches and the budget used, ¥0.42 off in paid orders and used coupons", rep.Batches, rep.Items)
			}
			for _, b := range rep.Batches {
				if b.BatchID == rain.ID && (!b.Budget || b.Total != 10 || b.Issued != 10 || b.Stored != 10 || b.Used != 5) {
					t.Errorf("audit of the budget: %+v; want 10 issued and stored, 5 used", b)
				}
			}
			if n := metric(t, cl, `surge_budget_claimed_minor_total`); n != 10 {
				t.Errorf("budget claimed on /metrics = %v; want 10", n)
			}
			if n := metric(t, cl, `surge_coupon_order_steps_total{step="used"}`); n < 1 {
				t.Errorf("coupons used on /metrics = %v; want at least 1", n)
			}
			checkEvents(t, cmp.Or(c.NATSURL, m.BusURL), map[string]int{surge.EventCouponLocked: 4, surge.EventCouponUsed: 2, surge.EventCouponReturned: 1,
				surge.EventBudgetClaimed: 2})
		})
	}
}

// waitCoupon waits until a coupon reaches a state in its shopper's wallet: the settling sweep
// uses or returns it within moments of its order being paid or cancelled.
func waitCoupon(t *testing.T, c *client.Client, id int64, want string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); walletState(t, c, id) != want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("coupon %d is %s; want %s", id, walletState(t, c, id), want)
		}
	}
}

// liveBatch creates and publishes a batch whose claims are open for an hour, its coupons valid
// for validDays from their claim.
func liveBatch(t *testing.T, op *client.Client, name string, rule coupon.Rule, total, perUser, validDays int64) *surge.CouponBatch {
	t.Helper()
	ctx, now := context.Background(), time.Now().UTC()
	b := ok[*surge.CouponBatch](t, "CreateCouponBatch")(op.CreateCouponBatch(ctx, coupon.BatchInput{Name: name, Rule: rule, Total: total,
		PerUser: perUser, ClaimFrom: now.Add(-time.Minute), ClaimUntil: now.Add(time.Hour), ValidDays: validDays}))
	return ok[*surge.CouponBatch](t, "PublishCouponBatch")(op.PublishCouponBatch(ctx, b.ID))
}
