package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/surgecommerce/surge"
)

// A node that dies between debiting one bucket and crediting another leaves units in transit:
// they count as available, and Reconcile (run by anyone) lands them exactly once.
func TestHalfDoneTransferIsReconciled(t *testing.T) {
	ctx := context.Background()
	c := testClient(t)
	s := c.Stock(StockOptions{Buckets: 3})
	const item = 7
	if err := s.Load(ctx, surge.StockItem{ID: item, Allotted: 30, PerUserLimit: 5}); err != nil {
		t.Fatal(err)
	}
	// A transfer from the main bucket to bucket 2 that dies after the debit.
	fc, _, _, _, fout := s.bucketKeys(item, 0)
	tc, _, _, _, _ := s.bucketKeys(item, 2)
	k, err := debitScript.Run(ctx, c.rdb, []string{fc, fout}, "dead-node-transfer", 2, 12).Int64()
	if err != nil || k != 12 {
		t.Fatalf("debit = %d, %v", k, err)
	}
	l, err := s.Levels(ctx, item)
	if err != nil || l.Available != 30 || l.Check() != nil {
		t.Fatalf("Levels with a transfer in flight = %+v, %v; want the 12 in transit counted as available", l, err)
	}
	for range 2 { // twice: the second finds nothing left to do
		if err := s.Reconcile(ctx, item); err != nil {
			t.Fatal(err)
		}
	}
	avail, _ := c.rdb.HGet(ctx, tc, "available").Int64()
	if avail != 12 {
		t.Fatalf("bucket 2 holds %d after reconcile; want the 12 credited once", avail)
	}
	// A stale record of the finished transfer, finished again, credits nothing.
	_, _, _, tin, _ := s.bucketKeys(item, 2)
	if err := s.finish(ctx, fout, tc, tin, "dead-node-transfer", 12); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Levels(ctx, item); l.Available != 30 || l.Check() != nil {
		t.Fatalf("Levels after a repeated finish = %+v; want 30 available", l)
	}
	// All 30 units can still be sold, wherever they sit.
	sold := 0
	for u := int64(1); u <= 60 && sold < 30; u++ {
		r, err := s.Reserve(ctx, surge.ReserveRequest{ItemID: item, UserID: u, Quantity: 1, RequestID: fmt.Sprint(u)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome == surge.Reserved {
			sold++
		}
	}
	if l, _ := s.Levels(ctx, item); sold != 30 || l.Available != 0 || l.Reserved != 30 {
		t.Fatalf("sold %d, Levels %+v; want all 30", sold, l)
	}
}

// While a split item has stock, concurrent shoppers never hear "sold out", however its stock is
// spread over the buckets at that moment.
func TestBucketsNeverSellOutEarly(t *testing.T) {
	ctx := context.Background()
	c := testClient(t)
	s := c.Stock(StockOptions{Buckets: 8})
	const item, units, shoppers = 9, 3000, 64
	if err := s.Load(ctx, surge.StockItem{ID: item, Allotted: units, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var early atomic.Int64
	for w := range shoppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range units / shoppers { // together they want fewer units than there are
				u := int64(w*1000 + i + 1)
				r, err := s.Reserve(ctx, surge.ReserveRequest{ItemID: item, UserID: u, Quantity: 1, RequestID: fmt.Sprint(u)})
				if err != nil || r.Outcome != surge.Reserved {
					early.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := early.Load(); n > 0 {
		t.Fatalf("%d shoppers were refused while stock remained", n)
	}
	if l, err := s.Levels(ctx, item); err != nil || l.Check() != nil || l.Reserved != units/shoppers*shoppers {
		t.Fatalf("Levels = %+v, %v", l, err)
	}
}

// testClient connects to the test Redis under a prefix of its own, purged when the test ends.
func testClient(t *testing.T) *Client {
	t.Helper()
	url := os.Getenv("SURGE_TEST_REDIS_URL")
	if url == "" {
		t.Skip("SURGE_TEST_REDIS_URL is not set")
	}
	c, err := Open(context.Background(), url, fmt.Sprintf("surgebuckettest%d", rand.Uint64()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Purge(context.Background()); c.Close() })
	return c
}
