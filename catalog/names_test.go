package catalog_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/storetest"
)

// countingStore counts the SKU reads and fails the next one when told to.
type countingStore struct {
	surge.CatalogStore
	reads atomic.Int64
	fail  atomic.Bool
}

func (c *countingStore) SKUByID(ctx context.Context, id int64) (*surge.SKU, error) {
	c.reads.Add(1)
	if c.fail.Swap(false) {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "the database did not answer")
	}
	return c.CatalogStore.SKUByID(ctx, id)
}

// A catalog SKU shows by its title, read once while fresh; an id the catalog lacks and a
// merchant's own code have no name (cached too); a failed read is read again after the retry
// interval, not before.
func TestNames(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	ids := storetest.IDs()
	shop := &surge.User{Username: "shop", Role: surge.RoleMerchant, PasswordHash: "x"}
	var err error
	if shop.ID, err = ids(); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateUser(ctx, shop); err != nil {
		t.Fatal(err)
	}
	svc := catalog.New(db, db, ids, nil)
	admin := surge.Actor{UserID: 1, Role: surge.RoleAdmin}
	spu, err := svc.CreateSPU(ctx, admin, catalog.SPUInput{MerchantID: shop.ID, Code: "TEA", Title: "Longjing", CategoryL1: "Tea"})
	if err != nil {
		t.Fatal(err)
	}
	sku, err := svc.CreateSKU(ctx, admin, catalog.SKUInput{SPUID: spu.ID, Code: "TEA-250", Title: "West Lake Longjing 250 g",
		Price: surge.Money{Amount: 100, Currency: "CNY"}, CostPrice: surge.Money{Amount: 50, Currency: "CNY"}, Stock: 1})
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{CatalogStore: db}
	names := catalog.NewNames(store, 300*time.Millisecond)
	id := fmt.Sprint(sku.ID)
	store.fail.Store(true)
	for range 2 {
		if got := names.Name(ctx, id); got != "" {
			t.Fatalf("Name while the store fails = %q; want none", got)
		}
	}
	if n := store.reads.Load(); n != 1 {
		t.Fatalf("%d reads after a failure; want 1 until the retry interval passes", n)
	}
	time.Sleep(400 * time.Millisecond)
	for range 3 {
		if got := names.Name(ctx, id); got != "West Lake Longjing 250 g" {
			t.Fatalf("Name(%s) = %q; want the SKU's title", id, got)
		}
	}
	for range 2 {
		if got := names.Name(ctx, fmt.Sprint(sku.ID+12345)); got != "" {
			t.Fatalf("Name(unknown id) = %q", got)
		}
		if got := names.Name(ctx, "case-blue"); got != "" {
			t.Fatalf("Name(merchant code) = %q", got)
		}
	}
	if n := store.reads.Load(); n != 3 { // the failure, the title once, the unknown id once
		t.Fatalf("%d reads of the store; want 3 (the failed one is asked again, the rest cached)", n)
	}
}
