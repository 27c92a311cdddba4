package order_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/storetest"
)

// A sale's worth of abandoned orders expiring together is worked off in one sweep call, each
// released exactly once, however many batches it takes.
func TestSweepAllExpiresEveryDueOrder(t *testing.T) {
	ctx := context.Background()
	const n = 1234 // more than two sweep batches
	db, eng, now := dueOrders(t, n)
	svc := order.New(db, db, eng, nowhere{}, order.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	expired, err := svc.SweepAll(ctx)
	if err != nil || expired != n {
		t.Fatalf("SweepAll = %d, %v; want %d expired", expired, err, n)
	}
	lv, err := eng.Levels(ctx, 4)
	if err != nil || lv.Available != n || lv.Reserved != 0 {
		t.Fatalf("levels after the sweep = %+v, %v; want all %d back", lv, err, n)
	}
	if un, err := db.UnsettledStock(ctx, 10); err != nil || len(un) != 0 {
		t.Fatalf("UnsettledStock = %d orders, %v; want none", len(un), err)
	}
	if again, err := svc.SweepAll(ctx); err != nil || again != 0 {
		t.Fatalf("a second SweepAll = %d, %v; want nothing left", again, err)
	}
	if lv, _ := eng.Levels(ctx, 4); lv.Available != n {
		t.Fatalf("available after a second sweep = %d; want %d (released once)", lv.Available, n)
	}
}

// releaseFails is the stock engine with its releases failing for some requests, as when it is
// briefly unreachable for them.
type releaseFails struct {
	*stock.Engine
	mu   sync.Mutex
	fail map[string]bool
}

func (e *releaseFails) Release(ctx context.Context, item int64, req string) error {
	e.mu.Lock()
	failing := e.fail[req]
	e.mu.Unlock()
	if failing {
		return surge.Errorf(surge.EUNAVAILABLE, "the stock engine is unreachable")
	}
	return e.Engine.Release(ctx, item, req)
}

// Orders whose release fails are expired with the rest but not marked settled; the next sweep
// releases them, and nothing is released twice.
func TestSweepRetriesTheReleasesThatFailed(t *testing.T) {
	ctx := context.Background()
	const n = 40
	db, eng, now := dueOrders(t, n)
	flaky := &releaseFails{Engine: eng, fail: map[string]bool{"r3": true, "r17": true, "r31": true}}
	svc := order.New(db, db, flaky, nowhere{}, order.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	if expired, err := svc.SweepAll(ctx); err != nil || expired != n {
		t.Fatalf("SweepAll = %d, %v; want all %d expired", expired, err, n)
	}
	un, err := db.UnsettledStock(ctx, 100)
	if err != nil || len(un) != 3 {
		t.Fatalf("UnsettledStock = %d orders, %v; want the 3 whose release failed", len(un), err)
	}
	if lv, _ := eng.Levels(ctx, 4); lv.Available != n-3 {
		t.Fatalf("available = %d; want %d", lv.Available, n-3)
	}
	flaky.mu.Lock()
	flaky.fail = nil
	flaky.mu.Unlock()
	if again, err := svc.SweepAll(ctx); err != nil || again != 0 {
		t.Fatalf("the next SweepAll = %d, %v; want nothing more expired", again, err)
	}
	if un, err := db.UnsettledStock(ctx, 100); err != nil || len(un) != 0 {
		t.Fatalf("UnsettledStock after the retry = %d, %v; want none", len(un), err)
	}
	if lv, _ := eng.Levels(ctx, 4); lv.Available != n || lv.Reserved != 0 {
		t.Fatalf("levels after the retry = %+v; want all %d back, once", lv, n)
	}
}

// dueOrders returns a SQLite store and a stock engine holding n reservations of item 4, each
// with its pending order, all past their payment time at the returned now.
func dueOrders(t testing.TB, n int) (*sqlite.DB, *stock.Engine, time.Time) {
	t.Helper()
	ctx := context.Background()
	db := storetest.SQLite(t)
	eng, err := stock.Open(stock.Options{Dir: filepath.Join(t.TempDir(), "stock")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	if err := eng.Load(ctx, surge.StockItem{ID: 4, Allotted: int64(n), PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	orders := make([]surge.Order, n)
	for i := range orders {
		user, req := int64(100+i), fmt.Sprint("r", i)
		if _, err := eng.Reserve(ctx, surge.ReserveRequest{ItemID: 4, UserID: user, Quantity: 1, RequestID: req, OrderID: int64(1000 + i)}); err != nil {
			t.Fatal(err)
		}
		orders[i] = surge.Order{ID: int64(1000 + i), TxnID: fmt.Sprint("T", i), RequestID: req, UserID: user, SessionID: 3, ItemID: 4,
			SKUID: 2, MerchantID: 9, Quantity: 1, Amount: surge.Money{Amount: 100, Currency: "CNY"}, State: surge.OrderPendingPayment,
			CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)}
	}
	if _, err := db.CreateOrders(ctx, orders); err != nil {
		t.Fatal(err)
	}
	return db, eng, now
}

// BenchmarkSweepAll expires a sale's burst of abandoned orders on the embedded shape (SQLite
// and the stock engine with its log, both syncing to disk): the time per order expired and
// its stock released.
func BenchmarkSweepAll(b *testing.B) {
	const n = 2000
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		db, eng, now := dueOrders(b, n)
		svc := order.New(db, db, eng, nowhere{}, order.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
		b.StartTimer()
		if expired, err := svc.SweepAll(ctx); err != nil || expired != n {
			b.Fatalf("SweepAll = %d, %v; want %d", expired, err, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/order")
}
