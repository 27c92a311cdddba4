package catalog

import (
	"context"
	"strconv"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/surgecommerce/surge"
)

// Names gives the product names people read on screens and reports for the SKU ids the live
// metrics count by. A big screen asks for its top items' names at every push (ten a second per
// screen), so names are cached: up to NamesCached of them, each for NamesFresh; a renamed
// product shows its new name within that. An id the catalog does not hold (a merchant's own
// SKU code in its events) has no name, and that answer is cached too.
type Names struct {
	store surge.CatalogStore
	cache *otter.Cache[string, string]
}

const (
	// NamesCached bounds the cache of names.
	NamesCached = 100_000
	// NamesFresh is how long a name is kept before it is read again.
	NamesFresh = time.Minute
	// namesWait bounds a read of a name: a screen shows the id rather than wait longer.
	namesWait = 200 * time.Millisecond
)

// NewNames returns names read from store.
func NewNames(store surge.CatalogStore) *Names {
	c := otter.Must(&otter.Options[string, string]{MaximumSize: NamesCached,
		ExpiryCalculator: otter.ExpiryWriting[string, string](NamesFresh)})
	return &Names{store: store, cache: c}
}

// Name is the title of the SKU with this id, "" when the catalog has none (or did not answer
// in time: then it is asked again next time).
func (n *Names) Name(ctx context.Context, sku string) string {
	name, err := n.cache.Get(ctx, sku, otter.LoaderFunc[string, string](func(ctx context.Context, sku string) (string, error) {
		id, err := strconv.ParseInt(sku, 10, 64)
		if err != nil || id <= 0 {
			return "", nil // not one of the catalog's ids
		}
		ctx, cancel := context.WithTimeout(ctx, namesWait)
		defer cancel()
		k, err := n.store.SKUByID(ctx, id)
		switch {
		case surge.ErrorCode(err) == surge.ENOTFOUND:
			return "", nil
		case err != nil:
			return "", err // not cached
		}
		return k.Title, nil
	}))
	if err != nil {
		return ""
	}
	return name
}
