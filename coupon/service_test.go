package coupon_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/storetest"
)

// A node starting on a ledger that lost its state (an emptied Redis) opens the live batches
// nobody claimed from, and refuses to open one whose coupons were claimed: it would issue the
// whole total again.
func TestLoadNeverReissues(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "surge.db"), storetest.IDs())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	engine := func() surge.StockEngine {
		e, err := stock.Open(stock.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	log := slog.New(slog.DiscardHandler)
	svc := coupon.NewService(db, coupon.NewLedger(engine()), nil, log, storetest.IDs(), nil)
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

	fresh := coupon.NewService(db, coupon.NewLedger(engine()), nil, log, storetest.IDs(), nil)
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
