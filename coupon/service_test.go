package coupon_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/storetest"
)

// countingCoupons counts the wallet reads that reach the store.
type countingCoupons struct {
	surge.CouponStore
	reads atomic.Int64
}

func (c *countingCoupons) CouponsOf(ctx context.Context, user int64, n int) ([]*surge.Coupon, error) {
	c.reads.Add(1)
	return c.CouponStore.CouponsOf(ctx, user, n)
}

// Two nodes share the store, the ledger and the wallet versions: a wallet read again unchanged
// comes from the node's cache; a claim on either node is in the next read on both.
func TestWalletIsCachedAndNeverStale(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	e, err := stock.Open(stock.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	store, versions, ledger := &countingCoupons{CouponStore: db}, ratelimit.NewCounter(nil), coupon.NewLedger(e)
	log := slog.New(slog.DiscardHandler)
	a := coupon.NewService(store, nil, ledger, versions, nil, log, storetest.IDs(), nil)
	b := coupon.NewService(store, nil, ledger, versions, nil, log, storetest.IDs(), nil)
	op := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	now := time.Now().UTC()
	batch, err := a.CreateBatch(ctx, op, coupon.BatchInput{Name: "wallet", Rule: coupon.Rule{Kind: coupon.Fixed, Value: 100, Currency: "CNY",
		Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, Total: 10, PerUser: 5, ClaimFrom: now.Add(-time.Minute), ClaimUntil: now.Add(time.Hour), ValidDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, op, batch.ID); err != nil {
		t.Fatal(err)
	}
	shopper := surge.Actor{UserID: 9, Role: surge.RoleShopper}
	count := func(svc *coupon.Service) int {
		t.Helper()
		w, err := svc.Wallet(ctx, shopper)
		if err != nil {
			t.Fatal(err)
		}
		return len(w)
	}
	for i := range 3 {
		if n := count(a); n != i || count(b) != i {
			t.Fatalf("wallet after %d claims: %d on a, %d on b", i, n, count(b))
		}
		reads := store.reads.Load()
		for range 5 {
			count(a)
			count(b)
		}
		if got := store.reads.Load(); got != reads {
			t.Fatalf("10 reads of an unchanged wallet reached the store %d times; want none", got-reads)
		}
		if _, err := []*coupon.Service{a, b}[i%2].Claim(ctx, shopper, batch.ID, coupon.ClaimRequest{RequestID: fmt.Sprint("r", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// A node starting on a ledger that lost its state (an emptied Redis) opens the live batches
// nobody claimed from, and refuses to open one whose coupons were claimed: it would issue the
// whole total again.
func TestLoadNeverReissues(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	engine := func() surge.StockEngine {
		e, err := stock.Open(stock.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	log := slog.New(slog.DiscardHandler)
	svc := coupon.NewService(db, db, coupon.NewLedger(engine()), ratelimit.NewCounter(nil), nil, log, storetest.IDs(), nil)
	op := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	now := time.Now().UTC()
	in := coupon.BatchInput{Name: "new shoppers", Rule: coupon.Rule{Kind: coupon.Fixed, Value: 500, Currency: "CNY",
		Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, Total: 3, PerUser: 1, ClaimFrom: now.Add(-time.Minute),
		ClaimUntil: now.Add(time.Hour), ValidDays: 3}
	claimed, err := svc.CreateBatch(ctx, op, in)
	if err != nil {
		t.Fatal(err)
	}
	untouched, err := svc.CreateBatch(ctx, op, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*surge.CouponBatch{claimed, untouched} {
		if _, err := svc.Publish(ctx, op, b.ID); err != nil {
			t.Fatal(err)
		}
	}
	shopper := surge.Actor{UserID: 9, Role: surge.RoleShopper}
	if _, err := svc.Claim(ctx, shopper, claimed.ID, coupon.ClaimRequest{RequestID: "r"}); err != nil {
		t.Fatal(err)
	}

	fresh := coupon.NewService(db, db, coupon.NewLedger(engine()), ratelimit.NewCounter(nil), nil, log, storetest.IDs(), nil)
	if err := fresh.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Claim(ctx, surge.Actor{UserID: 10, Role: surge.RoleShopper}, untouched.ID, coupon.ClaimRequest{RequestID: "r"}); err != nil {
		t.Fatalf("a claim of the batch nobody claimed from = %v", err)
	}
	if _, err := fresh.Claim(ctx, surge.Actor{UserID: 10, Role: surge.RoleShopper}, claimed.ID, coupon.ClaimRequest{RequestID: "r"}); surge.ErrorCode(err) != surge.EUNAVAILABLE {
		t.Fatalf("a claim of the batch the ledger lost = %v; want it refused", err)
	}
}
