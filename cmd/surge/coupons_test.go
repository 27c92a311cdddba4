package main

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
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
			ok[*surge.CouponBatch](t, "OfflineCouponBatch")(tm.m1.OfflineCouponBatch(ctx, b.ID))
			_, err = shoppers[0].ClaimCoupon(ctx, b.ID, "late")
			wantCode(t, "claiming an offline batch", err, surge.ECONFLICT)
			if late := ok[*surge.Coupon](t, "a retry after offline")(tm.shopper.ClaimCoupon(ctx, b.ID, "mine")); late.ID != first.ID {
				t.Fatalf("a retry after the batch went offline = coupon %d; want %d, the first", late.ID, first.ID)
			}
			if got := ok[*coupon.Batch](t, "CouponBatch(offline)")(tm.m1.CouponBatch(ctx, b.ID)); got.Issuance.Left != 0 || got.Issuance.Issued != 11 {
				t.Fatalf("an offline batch's issuance %+v; want 11 issued and none left", got.Issuance)
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
				`surge_coupon_claims_total{outcome="ECONFLICT"}`: 1, `surge_coupon_wallet_reads_total{from="store"}`: 1} {
				if got := metric(t, cl, name); got != want {
					t.Errorf("%s = %v; want %v", name, got, want)
				}
			}
		})
	}
}
