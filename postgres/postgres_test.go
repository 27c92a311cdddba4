package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"testing"

	"github.com/surgecommerce/surge/postgres"
	"github.com/surgecommerce/surge/storetest"
)

// open returns a store in a fresh schema of the test database, dropped when the test ends.
func open(t testing.TB) *postgres.DB {
	t.Helper()
	base := os.Getenv("SURGE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SURGE_TEST_POSTGRES_URL is not set")
	}
	ctx := context.Background()
	admin, err := postgres.Open(ctx, base, storetest.IDs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	schema := fmt.Sprintf("surge_test_%d", rand.Uint64()>>1)
	if _, err := admin.SQL().ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.SQL().ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE") })

	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := postgres.Open(ctx, u.String(), storetest.IDs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

// BenchmarkWrites measures the writes of a sale on PostgreSQL (storetest.BenchWrites), where
// each statement is a round trip.
func BenchmarkWrites(b *testing.B) {
	storetest.BenchWrites(b, open(b))
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return open(t) })
}

func TestMigrateIsVersionedAndIdempotent(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("Migrate(again) = %v, %v; want nothing applied", again, err)
	}
	if v, err := db.SchemaVersion(ctx); err != nil || v < 1 {
		t.Fatalf("SchemaVersion = %d, %v; want >= 1", v, err)
	}
}
