package redis_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/faultproxy"
	"github.com/surgecommerce/surge/redis"
	"github.com/surgecommerce/surge/stock/stocktest"
)

func TestStockConformance(t *testing.T) {
	c := open(t)
	stocktest.Run(t, func(t *testing.T) surge.StockEngine { return c.Stock(redis.StockOptions{}) },
		stocktest.Options{RequestIDsSeenAcrossUsers: true})
}

// With every item split into buckets, the same contract holds.
func TestStockConformanceBucketed(t *testing.T) {
	c := open(t)
	stocktest.Run(t, func(t *testing.T) surge.StockEngine { return c.Stock(redis.StockOptions{Buckets: 4}) }, stocktest.Options{})
}

func TestStockBatchMatchesSingleCalls(t *testing.T) {
	s := open(t).Stock(redis.StockOptions{})
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	item := time.Now().UnixNano()
	if err := s.Load(ctx, surge.StockItem{ID: item, Allotted: 3, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	reqs := []surge.ReserveRequest{
		{ItemID: item, UserID: 1, Quantity: 1, RequestID: "a"},
		{ItemID: item, UserID: 1, Quantity: 1, RequestID: "b"}, // over the limit
		{ItemID: item, UserID: 2, Quantity: 1, RequestID: "c"},
		{ItemID: item, UserID: 3, Quantity: 0, RequestID: "d"}, // invalid
		{ItemID: item, UserID: 4, Quantity: 1, RequestID: "e"},
		{ItemID: item, UserID: 5, Quantity: 1, RequestID: "f"}, // sold out
	}
	out := make([]surge.BatchResult, len(reqs))
	if err := s.ReserveBatch(ctx, reqs, out); err != nil {
		t.Fatal(err)
	}
	want := []surge.Outcome{surge.Reserved, surge.LimitReached, surge.Reserved, 0, surge.Reserved, surge.SoldOut}
	for i, w := range want {
		if w == 0 {
			if surge.ErrorCode(out[i].Err) != surge.EINVALID {
				t.Errorf("batch[%d] = %+v; want EINVALID", i, out[i])
			}
			continue
		}
		if out[i].Err != nil || out[i].Outcome != w {
			t.Errorf("batch[%d] = %+v; want %v", i, out[i], w)
		}
	}
}

// A batch of lookups answers each on its own, on items in one slot and in buckets: a released
// reservation is still found (a retry gets its first answer), another user's request id is not.
func TestReservationsAnswerEachLookup(t *testing.T) {
	c := open(t)
	ctx := context.Background()
	for _, opts := range []redis.StockOptions{{}, {Buckets: 4, BucketMinAllotment: 1}} {
		s := c.Stock(opts)
		if err := s.LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		item := time.Now().UnixNano()
		if err := s.Load(ctx, surge.StockItem{ID: item, Allotted: 100, PerUserLimit: 2}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []surge.ReserveRequest{
			{ItemID: item, UserID: 1, Quantity: 1, RequestID: "a", OrderID: 11},
			{ItemID: item, UserID: 1, Quantity: 1, RequestID: "b", OrderID: 12},
			{ItemID: item, UserID: 2, Quantity: 2, RequestID: "c", OrderID: 13},
		} {
			if _, err := s.Reserve(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Release(ctx, item, "b"); err != nil {
			t.Fatal(err)
		}
		reqs := []surge.ReserveRequest{
			{ItemID: item, UserID: 1, RequestID: "a"},
			{ItemID: item, UserID: 1, RequestID: "b"},     // released: still the user's
			{ItemID: item, UserID: 2, RequestID: "c"},     // two units held
			{ItemID: item, UserID: 3, RequestID: "a"},     // another user's request id
			{ItemID: item, UserID: 1, RequestID: "never"}, // none
			{ItemID: item, UserID: 1, RequestID: ""},      // invalid
			{ItemID: item + 1, UserID: 1, RequestID: "a"}, // unknown item
		}
		out := make([]surge.BatchResult, len(reqs))
		if err := s.Reservations(ctx, reqs, out); err != nil {
			t.Fatal(err)
		}
		found := func(held, order int64) surge.BatchResult {
			return surge.BatchResult{ReserveResult: surge.ReserveResult{Outcome: surge.Reserved, Held: held, OrderID: order, Replayed: true}}
		}
		want := []surge.BatchResult{found(1, 11), found(1, 12), found(2, 13), {}, {}}
		for i, w := range want {
			if out[i] != w {
				t.Errorf("buckets %d: lookup %+v = %+v; want %+v", opts.Buckets, reqs[i], out[i], w)
			}
		}
		if surge.ErrorCode(out[5].Err) != surge.EINVALID || surge.ErrorCode(out[6].Err) != surge.ENOTFOUND {
			t.Errorf("buckets %d: bad id %v, unknown item %v; want EINVALID and ENOTFOUND", opts.Buckets, out[5].Err, out[6].Err)
		}
	}
}

func TestRedisSlowFailsFastAndRecovers(t *testing.T) {
	url := os.Getenv("SURGE_TEST_REDIS_URL")
	if url == "" {
		t.Skip("SURGE_TEST_REDIS_URL is not set")
	}
	if strings.Contains(url, ",") {
		t.Skip("the fault proxy fronts one server; a cluster's redirects would go around it")
	}
	addr := "127.0.0.1:6379"
	if u, err := parseAddr(url); err == nil {
		addr = u
	}
	p, err := faultproxy.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	c, err := redis.Open(ctx, "redis://"+p.Addr()+"/0", "surgeproxytest")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Stock(redis.StockOptions{})
	item := time.Now().UnixNano()
	if err := s.Load(ctx, surge.StockItem{ID: item, Allotted: 10, PerUserLimit: 5}); err != nil {
		t.Fatal(err)
	}
	p.Stall(true)
	start := time.Now()
	_, err = s.Reserve(ctx, surge.ReserveRequest{ItemID: item, UserID: 1, Quantity: 1, RequestID: "slow"})
	if surge.ErrorCode(err) != surge.EUNAVAILABLE {
		t.Fatalf("Reserve with Redis stalled = %v; want EUNAVAILABLE", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Reserve with Redis stalled took %s; want a fast failure", d)
	}
	p.Stall(false)
	// The stalled call may or may not have been applied; a retry with the same id settles it.
	var res surge.ReserveResult
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err = s.Reserve(ctx, surge.ReserveRequest{ItemID: item, UserID: 1, Quantity: 1, RequestID: "slow"})
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || res.Outcome != surge.Reserved || res.Held != 1 {
		t.Fatalf("retry after recovery = %+v, %v; want reserved once (held 1)", res, err)
	}
	l, err := s.Levels(ctx, item)
	if err != nil || l.Reserved != 1 || l.Check() != nil {
		t.Fatalf("Levels after recovery = %+v, %v; want exactly one unit reserved", l, err)
	}
}

func parseAddr(url string) (string, error) {
	const pfx = "redis://"
	if len(url) <= len(pfx) || url[:len(pfx)] != pfx {
		return "", errors.New("not a redis url")
	}
	rest := url[len(pfx):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' {
			return rest[:i], nil
		}
	}
	return rest, nil
}
