package coupon_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/faultproxy"
	"github.com/surgecommerce/surge/redis"
	"github.com/surgecommerce/surge/stock"
)

// ledgers are the ledger on every stock engine: embedded always, Redis when configured.
func ledgers(t *testing.T) map[string]*coupon.Ledger {
	t.Helper()
	eng, err := stock.Open(stock.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	out := map[string]*coupon.Ledger{"embedded": coupon.NewLedger(eng)}
	if url := os.Getenv("SURGE_TEST_REDIS_URL"); url != "" {
		// Unsplit, and a hot batch or budget split over 8 buckets (sub-budgets) routed by the
		// shopper's id, each under its own prefix.
		for name, opts := range map[string]redis.StockOptions{"redis": {}, "redis-split": {Buckets: 8, BucketMinAllotment: 1000}} {
			rc, err := redis.Open(context.Background(), url, fmt.Sprintf("surge_coupon_%d", rand.Uint64()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rc.Purge(context.Background()); rc.Close() })
			out[name] = coupon.NewLedger(rc.Stock(opts))
		}
	} else {
		t.Log("SURGE_TEST_REDIS_URL is not set: the ledger runs on the embedded engine only")
	}
	return out
}

// 10,000 shoppers claim at once from a batch of 1,000: exactly 1,000 coupons are issued, each
// to a different shopper with a different coupon id, and the rest are told it is all issued.
func TestLedgerNeverOverIssues(t *testing.T) {
	for name, l := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const batch, total, shoppers = 101, 1000, 10_000
			if err := l.Open(ctx, batch, total, 1); err != nil {
				t.Fatal(err)
			}
			var claimed, soldOut atomic.Int64
			var mu sync.Mutex
			ids := map[int64]bool{}
			var wg sync.WaitGroup
			sem := make(chan struct{}, 512)
			for u := range shoppers {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					c, err := l.Claim(ctx, batch, int64(u+1), "claim", int64(1_000_000+u), 1, nil)
					switch surge.ErrorCode(err) {
					case "":
						claimed.Add(1)
						mu.Lock()
						ids[c.Coupon] = true
						mu.Unlock()
					case surge.ESOLDOUT:
						soldOut.Add(1)
					default:
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			is, err := l.Issuance(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			if claimed.Load() != total || soldOut.Load() != shoppers-total || len(ids) != total || is != (coupon.Issuance{Total: total, Issued: total}) {
				t.Fatalf("claimed %d (%d ids), sold out %d, issuance %+v; want exactly %d issued", claimed.Load(), len(ids), soldOut.Load(), is, total)
			}
		})
	}
}

// 200 shoppers each try five claims at once of a batch with a limit of two: each gets two. A
// retry of a claim gets its first answer and coupon; the total cannot drop below what is
// issued; an unknown batch and a bad request are refused.
func TestLedgerLimitsAndRetries(t *testing.T) {
	for name, l := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const batch = 202
			if err := l.Open(ctx, batch, 100_000, 2); err != nil {
				t.Fatal(err)
			}
			got := make([]atomic.Int64, 200)
			var wg sync.WaitGroup
			for u := range 200 {
				for try := range 5 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := l.Claim(ctx, batch, int64(u+1), fmt.Sprint("try-", try), int64(u*10+try+1), 1, nil)
						switch surge.ErrorCode(err) {
						case "":
							got[u].Add(1)
						case surge.ELIMIT:
						default:
							t.Error(err)
						}
					}()
				}
			}
			wg.Wait()
			for u := range got {
				if n := got[u].Load(); n != 2 {
					t.Fatalf("shopper %d got %d coupons; want the limit, 2", u+1, n)
				}
			}
			first, err := l.Claim(ctx, batch, 999, "again", 5001, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := l.Claim(ctx, batch, 999, "again", 5002, 1, nil) // the answer was lost; the shopper retries
			if err != nil || again.Coupon != 5001 || !again.Replayed || first.Replayed {
				t.Fatalf("retry = %+v, %v after %+v; want the first coupon, replayed", again, err, first)
			}
			if is, _ := l.Issuance(ctx, batch); is.Issued != 401 {
				t.Fatalf("issued %d; want 401 (the retry issued nothing)", is.Issued)
			}
			if err := l.Open(ctx, batch, 400, 2); surge.ErrorCode(err) != surge.ECONFLICT {
				t.Fatalf("lowering the total below the issued = %v; want ECONFLICT", err)
			}
			if err := l.Open(ctx, batch, 500, 2); err != nil {
				t.Fatalf("raising the total = %v", err)
			}
			if _, err := l.Claim(ctx, 303, 1, "x", 1, 1, nil); surge.ErrorCode(err) != surge.ENOTFOUND {
				t.Fatalf("claim of a batch never opened = %v; want ENOTFOUND", err)
			}
			for _, bad := range []struct {
				user   int64
				req    string
				coupon int64
			}{{0, "x", 1}, {1, "", 1}, {1, "x", 0}} {
				if _, err := l.Claim(ctx, batch, bad.user, bad.req, bad.coupon, 1, nil); surge.ErrorCode(err) != surge.EINVALID {
					t.Fatalf("Claim(%+v) = %v; want EINVALID", bad, err)
				}
			}
			if err := l.Open(ctx, batch, -1, 1); surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("Open(total -1) = %v; want EINVALID", err)
			}
		})
	}
}

// A grant whose recording failed is granted again to the retry, with the same coupon, and
// recorded then; it is issued once.
func TestLedgerRecordsBeforeItConfirms(t *testing.T) {
	for name, l := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const batch = 404
			if err := l.Open(ctx, batch, 5, 1); err != nil {
				t.Fatal(err)
			}
			var recorded []int64
			fail := true
			record := func(coupon int64, key string) error {
				if fail {
					fail = false
					return surge.Errorf(surge.EUNAVAILABLE, "the database did not answer")
				}
				recorded = append(recorded, coupon)
				return nil
			}
			if _, err := l.Claim(ctx, batch, 1, "r", 77, 1, record); surge.ErrorCode(err) != surge.EUNAVAILABLE {
				t.Fatalf("claim whose record failed = %v; want the record's error", err)
			}
			c, err := l.Claim(ctx, batch, 1, "r", 78, 1, record)
			if err != nil || c.Coupon != 77 || len(recorded) != 1 || recorded[0] != 77 {
				t.Fatalf("retry = %+v, %v, recorded %v; want coupon 77 recorded once", c, err, recorded)
			}
			if is, _ := l.Issuance(ctx, batch); is.Issued != 1 {
				t.Fatalf("issued %d; want 1", is.Issued)
			}
		})
	}
}

// A retry whose first claim was granted gets its coupon even once the batch is all issued, and
// Retry finds it without granting anything new; Close stops the claims at what is issued.
func TestLedgerRetriesAfterSellOutAndClose(t *testing.T) {
	for name, l := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const batch = 505
			if err := l.Open(ctx, batch, 2, 1); err != nil {
				t.Fatal(err)
			}
			for u := range int64(2) {
				if _, err := l.Claim(ctx, batch, u+1, "r", 100+u, 1, nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := l.Claim(ctx, batch, 3, "r", 200, 1, nil); surge.ErrorCode(err) != surge.ESOLDOUT {
				t.Fatalf("a claim past the total = %v; want ESOLDOUT", err)
			}
			c, err := l.Claim(ctx, batch, 1, "r", 300, 1, nil)
			if err != nil || c.Coupon != 100 || !c.Replayed {
				t.Fatalf("a retry after the sell-out = %+v, %v; want coupon 100 again", c, err)
			}
			if c, found, err := l.Retry(ctx, batch, 2, "r", nil); err != nil || !found || c.Coupon != 101 {
				t.Fatalf("Retry = %+v, %v, %v; want coupon 101", c, found, err)
			}
			if _, found, err := l.Retry(ctx, batch, 3, "r", nil); err != nil || found {
				t.Fatalf("Retry of a claim never granted = %v, %v; want not found", found, err)
			}
			if err := l.Open(ctx, batch, 10, 1); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(ctx, batch, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Claim(ctx, batch, 4, "r", 400, 1, nil); surge.ErrorCode(err) != surge.ESOLDOUT {
				t.Fatalf("a claim after Close = %v; want ESOLDOUT", err)
			}
			if is, _ := l.Issuance(ctx, batch); is != (coupon.Issuance{Total: 2, Issued: 2}) {
				t.Fatalf("issuance after Close = %+v", is)
			}
		})
	}
}

// On Redis a node answers "all issued" from a flag without looking for the request; a retry on
// another node of a claim granted before the sell-out still gets its coupon.
func TestLedgerRetryOnAnotherNode(t *testing.T) {
	url := os.Getenv("SURGE_TEST_REDIS_URL")
	if url == "" {
		t.Skip("SURGE_TEST_REDIS_URL is not set")
	}
	ctx := context.Background()
	prefix := fmt.Sprintf("surge_coupon_%d", rand.Uint64())
	nodes := make([]*coupon.Ledger, 2)
	for i := range nodes {
		rc, err := redis.Open(ctx, url, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Purge(ctx); rc.Close() })
		nodes[i] = coupon.NewLedger(rc.Stock(redis.StockOptions{}))
	}
	const batch = 606
	if err := nodes[0].Open(ctx, batch, 1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Claim(ctx, batch, 1, "r", 11, 1, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the second node learns the batch is all issued, and raises its flag
		nodes[1].Claim(ctx, batch, 2, "r", 22, 1, nil)
	}
	c, err := nodes[1].Claim(ctx, batch, 1, "r", 33, 1, nil)
	if err != nil || c.Coupon != 11 {
		t.Fatalf("the retry on another node = %+v, %v; want coupon 11", c, err)
	}
}

// A red-envelope budget of 100,000 minor units: 3,000 shoppers each make three claims at once
// of random amounts (1.00 at most) under a cap of 1.50 each. What is granted adds up to what the
// ledger issued, never past the total or a shopper's cap; the fragments left in the sub-budgets
// are gathered for a claim of exactly what is left; a retry gets its first envelope; a claim
// of nothing or of an overflowing amount is refused.
func TestBudgetNeverOverspends(t *testing.T) {
	rule := coupon.Rule{Kind: coupon.Envelope, Min: 1, Max: 100}
	for name, l := range ledgers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const budget, total, cap, shoppers = 707, 100_000, 150, 3000
			if err := l.Open(ctx, budget, total, cap); err != nil {
				t.Fatal(err)
			}
			first, err := l.Claim(ctx, budget, shoppers+1, "again", 1, rule.Draw(budget, 1), nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := l.Claim(ctx, budget, shoppers+1, "again", 2, rule.Draw(budget, 2), nil)
			if err != nil || again.Coupon != 1 || !again.Replayed || again.Held != first.Held {
				t.Fatalf("retry = %+v, %v after %+v; want the first envelope", again, err, first)
			}
			granted := make([]atomic.Int64, shoppers+2)
			granted[shoppers+1].Store(rule.Draw(budget, 1))
			var wg sync.WaitGroup
			sem := make(chan struct{}, 512)
			for u := range shoppers {
				for try := range 3 {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer func() { <-sem; wg.Done() }()
						id := int64(10 + u*3 + try)
						c, err := l.Claim(ctx, budget, int64(u+1), fmt.Sprint("try-", try), id, rule.Draw(budget, id), nil)
						switch surge.ErrorCode(err) {
						case "":
							granted[u+1].Add(rule.Draw(budget, c.Coupon))
						case surge.ESOLDOUT, surge.ELIMIT:
						default:
							t.Error(err)
						}
					}()
				}
			}
			wg.Wait()
			var sum int64
			for u := range granted {
				if g := granted[u].Load(); g > cap {
					t.Fatalf("shopper %d was granted %d; the cap is %d", u, g, cap)
				}
				sum += granted[u].Load()
			}
			is, err := l.Issuance(ctx, budget)
			if err != nil || is.Issued != sum || is.Total != total || is.Issued+is.Left != total {
				t.Fatalf("issuance %+v, %v; granted %d in all of a total of %d", is, err, sum, total)
			}
			if is.Left > 0 {
				if _, err := l.Claim(ctx, budget, shoppers+2, "rest", 999_999, is.Left, nil); err != nil {
					t.Fatalf("a claim of the %d left = %v", is.Left, err)
				}
			}
			if _, err := l.Claim(ctx, budget, shoppers+3, "one", 999_998, 1, nil); surge.ErrorCode(err) != surge.ESOLDOUT {
				t.Fatalf("a claim of a spent budget = %v; want ESOLDOUT", err)
			}
			for _, units := range []int64{0, -5, surge.MaxReserveUnits + 1} {
				if _, err := l.Claim(ctx, budget, 1, "bad", 3, units, nil); surge.ErrorCode(err) != surge.EINVALID {
					t.Fatalf("a claim of %d = %v; want EINVALID", units, err)
				}
			}
		})
	}
}

// Draw gives a fixed envelope its value, and a random one an amount from Min to Max that its
// coupon id decides, spread over the range.
func TestEnvelopeDraw(t *testing.T) {
	if got := (coupon.Rule{Kind: coupon.Envelope, Value: 88}).Draw(1, 2); got != 88 {
		t.Fatalf("Draw of a fixed envelope = %d; want 88", got)
	}
	r := coupon.Rule{Kind: coupon.Envelope, Min: 10, Max: 19}
	seen := map[int64]int{}
	for id := range int64(10_000) {
		a := r.Draw(5, id)
		if a < 10 || a > 19 || a != r.Draw(5, id) {
			t.Fatalf("Draw(5, %d) = %d; want 10 to 19, the same each time", id, a)
		}
		seen[a]++
	}
	for a := int64(10); a <= 19; a++ {
		if seen[a] < 800 {
			t.Fatalf("amounts drawn: %v; want each of 10..19 about 1,000 times", seen)
		}
	}
}

// Redis stalls, then goes down, in the middle of budget claims: each claim fails fast with
// EUNAVAILABLE, and its retry (same request id, another coupon id drawn) settles it: the
// shopper gets one envelope, and the budget is charged its amount once.
func TestBudgetClaimWithRedisDown(t *testing.T) {
	raw := os.Getenv("SURGE_TEST_REDIS_URL")
	if raw == "" {
		t.Skip("SURGE_TEST_REDIS_URL is not set")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	u.Host = p.Addr()
	rc, err := redis.Open(ctx, u.String(), fmt.Sprintf("surge_coupon_%d", rand.Uint64()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { rc.Purge(ctx); rc.Close() }()
	l := coupon.NewLedger(rc.Stock(redis.StockOptions{}))
	rule := coupon.Rule{Kind: coupon.Envelope, Min: 1, Max: 500}
	const budget = 808
	if err := l.Open(ctx, budget, 10_000, 1000); err != nil {
		t.Fatal(err)
	}
	for i, fault := range []func(bool){p.Stall, p.Down} {
		user, first := int64(i+1), int64(100+i)
		fault(true)
		began := time.Now()
		_, err := l.Claim(ctx, budget, user, "r", first, rule.Draw(budget, first), nil)
		if surge.ErrorCode(err) != surge.EUNAVAILABLE || time.Since(began) > 3*time.Second {
			t.Fatalf("fault %d: claim = %v after %s; want EUNAVAILABLE, fast", i, err, time.Since(began))
		}
		fault(false)
		var c coupon.Claim
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			retry := first + 1000
			if c, err = l.Claim(ctx, budget, user, "r", retry, rule.Draw(budget, retry), nil); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || (c.Coupon != first && c.Coupon != first+1000) {
			t.Fatalf("fault %d: retry = %+v, %v", i, c, err)
		}
		if again, err := l.Claim(ctx, budget, user, "r", first+2000, 1, nil); err != nil || again.Coupon != c.Coupon || again.Held != c.Held {
			t.Fatalf("fault %d: another retry = %+v, %v; want %+v again", i, again, err, c)
		}
	}
	is, err := l.Issuance(ctx, budget)
	if err != nil {
		t.Fatal(err)
	}
	held1, _ := l.Claim(ctx, budget, 1, "r", 1, 1, nil)
	held2, _ := l.Claim(ctx, budget, 2, "r", 1, 1, nil)
	if is.Issued != held1.Held+held2.Held {
		t.Fatalf("issued %d; want the two envelopes, %d and %d, once each", is.Issued, held1.Held, held2.Held)
	}
}
