// Package storetest is the conformance suite for the relational storage ports. Every backend
// runs the same suite: SQLite always, PostgreSQL when SURGE_TEST_POSTGRES_URL is set.
package storetest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/snowflake"
	"github.com/surgecommerce/surge/sqlite"
)

// Store is what a relational backend provides.
type Store interface {
	surge.UserStore
	surge.CatalogStore
	surge.SessionStore
	surge.OrderStore
	surge.BlacklistStore
	surge.CouponStore
	surge.ActivityStore
	surge.RiskStore
	surge.RefundStore
	surge.VoucherStore
	surge.ReconcileStore
	surge.SettlementStore
	surge.OrderViewStore
}

// Open returns a fresh, empty, migrated store; the backend cleans it up with t.Cleanup.
type Open func(t *testing.T) Store

// Run runs every conformance test against the backend.
func Run(t *testing.T, open Open) {
	t.Run("Users", func(t *testing.T) { RunUsers(t, open) })
	t.Run("Catalog", func(t *testing.T) { RunCatalog(t, open) })
	t.Run("Sessions", func(t *testing.T) { RunSessions(t, open) })
	t.Run("Orders", func(t *testing.T) { RunOrders(t, open) })
	t.Run("Publish", func(t *testing.T) { RunPublish(t, open) })
	t.Run("Blacklist", func(t *testing.T) { RunBlacklist(t, open) })
	t.Run("Coupons", func(t *testing.T) { RunCoupons(t, open) })
	t.Run("CouponLocks", func(t *testing.T) { RunCouponLocks(t, open) })
	t.Run("CouponGrants", func(t *testing.T) { RunCouponGrants(t, open) })
	t.Run("Checkouts", func(t *testing.T) { RunCheckouts(t, open) })
	t.Run("Activities", func(t *testing.T) { RunActivities(t, open) })
	t.Run("Risk", func(t *testing.T) { RunRisk(t, open) })
	t.Run("OrderLife", func(t *testing.T) { RunOrderLife(t, open) })
	t.Run("Reconcile", func(t *testing.T) { RunReconcile(t, open) })
	t.Run("OrderViews", func(t *testing.T) { RunOrderViews(t, open) })
}

// fixture is shared state for one test: the store, an id generator and a fixed now.
type fixture struct {
	t   *testing.T
	ctx context.Context
	s   Store
	ids *snowflake.Generator
	now time.Time
}

func newFixture(t *testing.T, open Open) *fixture {
	t.Helper()
	ids, err := snowflake.New(1)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: context.Background(), s: open(t), ids: ids,
		now: time.Now().UTC().Truncate(time.Millisecond)}
}

func (f *fixture) id() int64 {
	f.t.Helper()
	id, err := f.ids.Next()
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

// IDs returns an id source for backends under test.
func IDs() func() (int64, error) {
	g, _ := snowflake.New(2)
	return g.Next
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := surge.ErrorCode(err); got != code {
		t.Fatalf("%s = %v; want %s", what, err, code)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v; want nil", what, err)
	}
}

// concurrently runs fn n times at once and returns how many returned nil.
func concurrently(n int, fn func(i int) error) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if fn(i) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok
}

// SQLite returns a fresh, migrated SQLite store in a temporary directory, closed when the test
// ends: the real store for tests of the services above it.
func SQLite(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "surge.db"), IDs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}
