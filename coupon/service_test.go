package coupon_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/sqlite"
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

// A red-envelope budget: illegal budgets are refused with the reason; shoppers' claims draw
// random amounts that add up to no more than the total, each the amount its coupon id draws;
// a retry gets its first envelope; an envelope prices into an order for its value.
func TestBudgetThroughTheService(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t)
	op := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	now := time.Now().UTC()
	envelope := func(value, lo, hi int64) coupon.Rule {
		return coupon.Rule{Kind: coupon.Envelope, Value: value, Min: lo, Max: hi, Currency: "CNY", Scope: coupon.Scope{Kind: coupon.ScopePlatform}}
	}
	input := func(r coupon.Rule, total, perUser int64) coupon.BatchInput {
		return coupon.BatchInput{Name: "rain", Rule: r, Total: total, PerUser: perUser, ClaimFrom: now.Add(-time.Minute), ClaimUntil: now.Add(time.Hour), ValidDays: 1}
	}
	for _, bad := range []struct {
		name string
		in   coupon.BatchInput
		want string
	}{
		{"cap below the largest envelope", input(envelope(0, 100, 500), 2000, 499), "per_user cap"},
		{"cap above the total", input(envelope(0, 100, 500), 2000, 2001), "per_user cap"},
		{"total below the largest envelope", input(envelope(0, 100, 500), 400, 400), "budget's total"},
		{"total overflowing", input(envelope(0, 100, 500), coupon.MaxBudget+1, 500), "budget's total"},
		{"value and a range", input(envelope(300, 100, 500), 2000, 1000), "fixed amount"},
		{"empty range", input(envelope(0, 300, 300), 2000, 1000), "random amount"},
		{"negative", input(envelope(-5, 0, 0), 2000, 1000), "fixed amount"},
		{"overflowing envelope", input(envelope(0, 1, coupon.MaxValue+1), coupon.MaxBudget, coupon.MaxBudget), "random amount"},
		{"range on a coupon", input(coupon.Rule{Kind: coupon.Fixed, Value: 5, Max: 9, Currency: "CNY", Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, 10, 1), "red envelopes only"},
	} {
		if _, err := svc.CreateBatch(ctx, op, bad.in); surge.ErrorCode(err) != surge.EINVALID || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: CreateBatch = %v; want EINVALID naming %q", bad.name, err, bad.want)
		}
	}
	b, err := svc.CreateBatch(ctx, op, input(envelope(0, 100, 500), 2000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Publish(ctx, op, b.ID); err != nil {
		t.Fatal(err)
	}
	var sum int64
	var first *surge.Coupon
	for u := range int64(20) {
		c, err := svc.Claim(ctx, surge.Actor{UserID: 100 + u, Role: surge.RoleShopper}, b.ID, coupon.ClaimRequest{RequestID: "r"})
		switch {
		case surge.ErrorCode(err) == surge.ESOLDOUT && strings.Contains(err.Error(), "budget"):
			continue
		case err != nil:
			t.Fatal(err)
		case c.Value < 100 || c.Value > 500 || c.Value != envelope(0, 100, 500).Draw(b.ID, c.ID):
			t.Fatalf("envelope %+v; want 1.00 to 5.00, the amount its id draws", c)
		}
		sum += c.Value
		if first == nil {
			first = c
		}
	}
	full, err := svc.Batch(ctx, op, b.ID)
	if err != nil || sum > 2000 || full.Issuance.Issued != sum || full.Issuance.Left != 2000-sum || sum < 1500 {
		t.Fatalf("claimed %d in all; issuance %+v, %v; want what was claimed, at most 2000", sum, full.Issuance, err)
	}
	again, err := svc.Claim(ctx, surge.Actor{UserID: first.UserID, Role: surge.RoleShopper}, b.ID, coupon.ClaimRequest{RequestID: "r"})
	if err != nil || again.ID != first.ID || again.Value != first.Value {
		t.Fatalf("retry = %+v, %v; want envelope %+v again", again, err, first)
	}
	price, err := svc.Quote(ctx, first.UserID, "CNY", []coupon.Line{{SKU: 1, Unit: 10_000, Quantity: 1}}, []int64{first.ID})
	if err != nil || price.Discount != first.Value || price.Payable != 10_000-first.Value {
		t.Fatalf("Quote with envelope %+v = %+v, %v; want its value off", first, price, err)
	}
	w, err := svc.Wallet(ctx, surge.Actor{UserID: first.UserID, Role: surge.RoleShopper})
	if err != nil || len(w) != 1 || w[0].Value != first.Value {
		t.Fatalf("wallet = %+v, %v; want the envelope with its value", w, err)
	}
}

// newService is a coupon service on a fresh SQLite store and embedded stock engine, with the
// store for looking behind it.
func newService(t *testing.T) (*coupon.Service, *sqlite.DB) {
	t.Helper()
	db := storetest.SQLite(t)
	e, err := stock.Open(stock.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return coupon.NewService(db, nil, coupon.NewLedger(e), ratelimit.NewCounter(nil), nil, slog.New(slog.DiscardHandler), storetest.IDs(), nil), db
}
