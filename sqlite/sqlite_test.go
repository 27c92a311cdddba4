package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/storetest"
)

func open(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "surge.db"), storetest.IDs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t) })
}

func TestMigrateIsVersionedAndIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "surge.db")
	db, err := sqlite.Open(ctx, path, storetest.IDs())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil || len(applied) == 0 || applied[0] != 1 {
		t.Fatalf("Migrate(empty) = %v, %v; want versions from 1", applied, err)
	}
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("Migrate(again) = %v, %v; want nothing applied", again, err)
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil || v != applied[len(applied)-1] {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, applied[len(applied)-1])
	}
}

// Writers queue for SQLite's one write lock without holding pooled connections, so a burst of
// them (payment callbacks, expiries, the order writer) cannot leave a read without one.
func TestReadsAreNotStarvedByWaitingWriters(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	se := &surge.Session{ID: 1, Name: "S", StartAt: now.Add(time.Hour), EndAt: now.Add(2 * time.Hour), PayTimeoutSec: 900, CreatedAt: now, UpdatedAt: now}
	if err := db.CreateSession(ctx, se); err != nil {
		t.Fatal(err)
	}
	hold, held := make(chan struct{}), make(chan struct{})
	go db.UpdateSession(ctx, 1, now, func(*surge.Session) error { // a write transaction left open
		close(held)
		<-hold
		return nil
	})
	<-held
	var writers sync.WaitGroup
	for i := range 32 { // more writers than the pool has connections, all waiting
		writers.Add(1)
		go func() {
			defer writers.Done()
			db.CreateOrder(ctx, &surge.Order{ID: int64(100 + i), TxnID: fmt.Sprint("T", i), RequestID: "r", UserID: int64(i), SessionID: 1,
				ItemID: 1, SKUID: 1, MerchantID: 1, Quantity: 1, Amount: surge.Money{Amount: 1, Currency: "CNY"},
				State: surge.OrderPendingPayment, CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		}()
	}
	time.Sleep(100 * time.Millisecond) // let them queue
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := db.SessionByID(rctx, 1); err != nil {
		t.Fatalf("a read while writers wait = %v; want an answer", err)
	}
	close(hold)
	writers.Wait()
	if list, err := db.OrdersByUser(ctx, 31, 10); err != nil || len(list) != 1 {
		t.Fatalf("the waiting writers' orders = %v, %v", list, err)
	}
}

// BenchmarkOrderByID reads one order by id, as an order page and a payment ticket do, from
// parallel readers.
func BenchmarkOrderByID(b *testing.B) {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "surge.db"), storetest.IDs())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	const n = 10_000
	orders := make([]surge.Order, n)
	now := time.Now().UTC()
	for i := range orders {
		orders[i] = surge.Order{ID: int64(i + 1), TxnID: fmt.Sprint("T", i+1), RequestID: fmt.Sprint("r", i), UserID: int64(i), SessionID: 1,
			ItemID: 2, SKUID: 3, MerchantID: 4, Quantity: 1, Amount: surge.Money{Amount: 100, Currency: "CNY"},
			State: surge.OrderPendingPayment, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	if _, err := db.CreateOrders(ctx, orders); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.OrderByID(ctx, next.Add(1)%n+1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkWrites measures the writes of a sale on SQLite's one writer (storetest.BenchWrites).
func BenchmarkWrites(b *testing.B) {
	db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "surge.db"), storetest.IDs())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	storetest.BenchWrites(b, db)
}
