package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"

	"github.com/surgecommerce/surge/ratelimit/countertest"
	"github.com/surgecommerce/surge/redis"
)

func open(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("SURGE_TEST_REDIS_URL")
	if url == "" {
		t.Skip("SURGE_TEST_REDIS_URL is not set")
	}
	c, err := redis.Open(context.Background(), url, fmt.Sprintf("surgetest%d", rand.Uint64()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Purge(context.Background())
		c.Close()
	})
	return c
}

func TestCounterConformance(t *testing.T) {
	countertest.Run(t, open(t).Counter())
}

func TestUnreachableFailsFast(t *testing.T) {
	if _, err := redis.Open(context.Background(), "redis://127.0.0.1:1/0", "t"); err == nil {
		t.Fatal("Open(closed port) = nil error; want a connection error")
	}
	if _, err := redis.Open(context.Background(), "http://nope", "t"); err == nil {
		t.Fatal("Open(bad url) = nil error")
	}
	for _, bad := range []string{"redis://127.0.0.1:7001,127.0.0.1/0", "redis://127.0.0.1:7001,127.0.0.1:7002/3", "redis://127.0.0.1:7001,nope"} {
		if _, err := redis.Open(context.Background(), bad, "t"); err == nil || !strings.Contains(err.Error(), "bad url") {
			t.Errorf("Open(%s) = %v; want a bad url", bad, err)
		}
	}
}

// The client names a cluster when the url lists several nodes, and each operation of the
// store then runs on the cluster (CI runs this package's tests against a Redis Cluster too).
func TestClusterIsTheURLsChoice(t *testing.T) {
	c := open(t)
	if want := strings.Contains(os.Getenv("SURGE_TEST_REDIS_URL"), ","); c.Cluster() != want {
		t.Fatalf("Cluster() = %v for %s", c.Cluster(), os.Getenv("SURGE_TEST_REDIS_URL"))
	}
}

// The common per-request store sells exactly its stock, keeps the per-buyer limit, and gives
// back what is undone.
func TestPlainStock(t *testing.T) {
	url := os.Getenv("SURGE_TEST_REDIS_URL")
	if url == "" {
		t.Skip("SURGE_TEST_REDIS_URL not set")
	}
	ctx := context.Background()
	c, err := redis.Open(ctx, url, fmt.Sprintf("surgetest%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Purge(ctx); c.Close() }()
	p := c.Plain()
	if err := p.Load(ctx, 1, 3); err != nil {
		t.Fatal(err)
	}
	var sold atomic.Int64
	var wg sync.WaitGroup
	for u := range int64(20) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := p.Buy(ctx, 1, u, 1, 1); err == nil && out == surge.Reserved {
				sold.Add(1)
			}
		}()
	}
	wg.Wait()
	if left, err := p.Left(ctx, 1); sold.Load() != 3 || left != 0 || err != nil {
		t.Fatalf("sold %d, left %d, %v; want 3 and 0", sold.Load(), left, err)
	}
	p.Load(ctx, 2, 5)
	if out, _ := p.Buy(ctx, 2, 7, 1, 1); out != surge.Reserved {
		t.Fatalf("first buy = %v", out)
	}
	if out, _ := p.Buy(ctx, 2, 7, 1, 1); out != surge.LimitReached {
		t.Fatalf("second buy by the same user = %v; want LimitReached", out)
	}
	if err := p.Undo(ctx, 2, 7, 1); err != nil {
		t.Fatal(err)
	}

	if out, _ := p.Buy(ctx, 2, 7, 1, 1); out != surge.Reserved {
		t.Fatalf("buy after undo = %v; want Reserved", out)
	}
	if left, _ := p.Left(ctx, 2); left != 4 {
		t.Fatalf("left = %d; want 4", left)
	}
	for _, order := range []int64{10, 11, 10} { // order 10 confirmed twice: counted once
		if err := p.Confirm(ctx, 2, order, 1); err != nil {
			t.Fatal(err)
		}
	}
	if paid, err := p.Paid(ctx, 2); paid != 2 || err != nil {
		t.Fatalf("Paid after confirming two orders, one twice = %d, %v; want 2", paid, err)
	}
	p.Load(ctx, 2, 5)
	if paid, _ := p.Paid(ctx, 2); paid != 0 {
		t.Fatalf("Paid after a reload = %d; want 0", paid)
	}
}
