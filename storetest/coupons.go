package storetest

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

func (f *fixture) batch(merchant int64, state string) *surge.CouponBatch {
	f.t.Helper()
	b := &surge.CouponBatch{ID: f.id(), MerchantID: merchant, Name: "618 tea coupons",
		Rule:  json.RawMessage(`{"kind":"fixed","value":500,"currency":"CNY","scope":{"kind":"platform"}}`),
		Total: 1000, PerUser: 2, ClaimFrom: f.now, ClaimUntil: f.now.Add(24 * time.Hour), ValidDays: 7, State: state,
		CreatedBy: 1, CreatedAt: f.now, UpdatedAt: f.now}
	must(f.t, "CreateCouponBatch", f.s.CreateCouponBatch(f.ctx, b))
	return b
}

// RunCoupons checks coupon batches and claimed coupons.
func RunCoupons(t *testing.T, open Open) {
	f := newFixture(t, open)
	platform := f.batch(0, surge.BatchLive)
	merchant := f.id() // a snowflake id, as shops' are: far beyond 32 bits
	shop := f.batch(merchant, surge.BatchDraft)
	got, err := f.s.CouponBatch(f.ctx, platform.ID)
	must(t, "CouponBatch", err)
	if got.Name != platform.Name || string(got.Rule) != string(platform.Rule) || got.Total != 1000 || got.PerUser != 2 ||
		!got.ClaimUntil.Equal(platform.ClaimUntil) || got.ValidDays != 7 || got.State != surge.BatchLive || got.CreatedBy != 1 {
		t.Fatalf("CouponBatch = %+v; want %+v", got, platform)
	}
	_, err = f.s.CouponBatch(f.ctx, f.id())
	wantCode(t, "an unknown batch", err, surge.ENOTFOUND)

	up, err := f.s.UpdateCouponBatch(f.ctx, shop.ID, func(b *surge.CouponBatch) error { b.Total, b.State = 50, surge.BatchLive; return nil })
	must(t, "UpdateCouponBatch", err)
	if again, _ := f.s.CouponBatch(f.ctx, shop.ID); up.Total != 50 || again.Total != 50 || again.State != surge.BatchLive {
		t.Fatalf("updated %+v, stored %+v", up, again)
	}
	_, err = f.s.UpdateCouponBatch(f.ctx, shop.ID, func(*surge.CouponBatch) error { return surge.Errorf(surge.ECONFLICT, "no") })
	wantCode(t, "a refused change", err, surge.ECONFLICT)
	_, err = f.s.UpdateCouponBatch(f.ctx, f.id(), func(*surge.CouponBatch) error { return nil })
	wantCode(t, "changing an unknown batch", err, surge.ENOTFOUND)

	// Concurrent edits each see the other's: none is lost.
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := f.s.UpdateCouponBatch(f.ctx, platform.ID, func(b *surge.CouponBatch) error { b.Total++; return nil })
				if surge.ErrorCode(err) != surge.EUNAVAILABLE { // contention: retried, as callers do
					must(t, "concurrent UpdateCouponBatch", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b, _ := f.s.CouponBatch(f.ctx, platform.ID); b.Total != 1010 {
		t.Fatalf("after 10 concurrent increments the total is %d; want 1010", b.Total)
	}

	list, err := f.s.CouponBatches(f.ctx, merchant, nil, 0, 10)
	must(t, "CouponBatches(merchant)", err)
	if len(list) != 1 || list[0].ID != shop.ID {
		t.Fatalf("the shop's batches = %v", list)
	}
	list, err = f.s.CouponBatches(f.ctx, -1, []string{surge.BatchLive}, 0, 10)
	must(t, "CouponBatches(live)", err)
	if len(list) != 2 || list[0].ID != shop.ID || list[1].ID != platform.ID {
		t.Fatalf("live batches = %d; want both, newest first", len(list))
	}
	if list, _ = f.s.CouponBatches(f.ctx, 0, []string{surge.BatchDraft}, 0, 10); len(list) != 0 {
		t.Fatalf("the platform's drafts = %d; want none", len(list))
	}
	if list, _ = f.s.CouponBatches(f.ctx, -1, nil, shop.ID, 10); len(list) != 1 || list[0].ID != platform.ID {
		t.Fatalf("the page after the newest = %d batches; want the older one", len(list))
	}

	// A coupon is stored once per claim key: a retry returns the first.
	c := &surge.Coupon{ID: f.id(), BatchID: platform.ID, UserID: 7, State: surge.CouponIssued, ClaimedAt: f.now,
		ValidFrom: f.now, ValidUntil: f.now.Add(7 * 24 * time.Hour)}
	first, err := f.s.SaveCoupon(f.ctx, c, "key-1")
	must(t, "SaveCoupon", err)
	retry := *c // a retry carries the coupon id the ledger gave the first claim
	again, err := f.s.SaveCoupon(f.ctx, &retry, "key-1")
	must(t, "SaveCoupon again", err)
	if first.ID != c.ID || again.ID != c.ID || !again.ValidUntil.Equal(c.ValidUntil) || again.State != surge.CouponIssued {
		t.Fatalf("SaveCoupon = %+v, then %+v; want the first both times", first, again)
	}
	other := *c
	other.ID = f.id()
	must2 := func(_ *surge.Coupon, err error) { must(t, "SaveCoupon(key-2)", err) }
	must2(f.s.SaveCoupon(f.ctx, &other, "key-2"))
	if n, err := f.s.CouponCount(f.ctx, platform.ID); err != nil || n != 2 {
		t.Fatalf("CouponCount = %d, %v; want 2", n, err)
	}
	if n, err := f.s.CouponCount(f.ctx, shop.ID); err != nil || n != 0 {
		t.Fatalf("CouponCount(no coupons) = %d, %v", n, err)
	}
	mine, err := f.s.CouponsOf(f.ctx, 7, 10)
	must(t, "CouponsOf", err)
	if len(mine) != 2 || mine[0].ID != other.ID || mine[1].ID != c.ID {
		t.Fatalf("CouponsOf(7) = %d coupons; want 2, newest first", len(mine))
	}
	if none, _ := f.s.CouponsOf(f.ctx, 8, 10); len(none) != 0 {
		t.Fatalf("another user's coupons = %d", len(none))
	}
}
