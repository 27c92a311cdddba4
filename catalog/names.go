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
// SKU code in its events) has no name, and that answer is cached too. A read that failed is
// tried again after a retry interval, not at every push.
type Names struct {
	store surge.CatalogStore
	cache *otter.Cache[string, name]
}

// name is a cached answer: a title, or none, or a failure to read.
type name struct {
	title  string
	failed bool
}

const (
	// NamesCached bounds the cache of names.
	NamesCached = 100_000
	// NamesFresh is how long a name is kept before it is read again.
	NamesFresh = time.Minute
	// NamesRetry is how long a failed read is remembered before the name is read again.
	NamesRetry = 5 * time.Second
	// namesWait bounds a read of a name: a screen shows the id rather than wait longer.
	namesWait = 200 * time.Millisecond
)

// NewNames returns names read from store; a failed read is tried again after retry
// (NamesRetry).
func NewNames(store surge.CatalogStore, retry time.Duration) *Names {
	c := otter.Must(&otter.Options[string, name]{MaximumSize: NamesCached,
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, name]) time.Duration {
			if e.Value.failed {
				return retry
			}
			return NamesFresh
		})})
	return &Names{store: store, cache: c}
}

// Name is the title of the SKU with this id, "" when the catalog has none, did not answer, or
// ctx ended first (a name not cached is then not read).
func (n *Names) Name(ctx context.Context, sku string) string {
	v, err := n.cache.Get(ctx, sku, otter.LoaderFunc[string, name](func(ctx context.Context, sku string) (name, error) {
		id, err := strconv.ParseInt(sku, 10, 64)
		if err != nil || id <= 0 {
			return name{}, nil // not one of the catalog's ids
		}
		ctx, cancel := context.WithTimeout(ctx, namesWait)
		defer cancel()
		k, err := n.store.SKUByID(ctx, id)
		switch {
		case surge.ErrorCode(err) == surge.ENOTFOUND:
			return name{}, nil
		case err != nil:
			return name{failed: true}, nil
		}
		return name{title: k.Title}, nil
	}))
	if err != nil {
		return ""
	}
	return v.title
}
