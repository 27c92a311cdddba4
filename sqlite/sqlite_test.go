package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

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
