package coupon_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
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
		rc, err := redis.Open(context.Background(), url, fmt.Sprintf("surge_coupon_%d", rand.Uint64()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Purge(context.Background()); rc.Close() })
		out["redis"] = coupon.NewLedger(rc.Stock(redis.StockOptions{}))
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
					c, err := l.Claim(ctx, batch, int64(u+1), "claim", int64(1_000_000+u), nil)
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
						_, err := l.Claim(ctx, batch, int64(u+1), fmt.Sprint("try-", try), int64(u*10+try+1), nil)
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
			first, err := l.Claim(ctx, batch, 999, "again", 5001, nil)
			if err != nil {
				t.Fatal(err)
			}
			again, err := l.Claim(ctx, batch, 999, "again", 5002, nil) // the answer was lost; the shopper retries
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
			if _, err := l.Claim(ctx, 303, 1, "x", 1, nil); surge.ErrorCode(err) != surge.ENOTFOUND {
				t.Fatalf("claim of a batch never opened = %v; want ENOTFOUND", err)
			}
			for _, bad := range []struct {
				user   int64
				req    string
				coupon int64
			}{{0, "x", 1}, {1, "", 1}, {1, "x", 0}} {
				if _, err := l.Claim(ctx, batch, bad.user, bad.req, bad.coupon, nil); surge.ErrorCode(err) != surge.EINVALID {
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
			if _, err := l.Claim(ctx, batch, 1, "r", 77, record); surge.ErrorCode(err) != surge.EUNAVAILABLE {
				t.Fatalf("claim whose record failed = %v; want the record's error", err)
			}
			c, err := l.Claim(ctx, batch, 1, "r", 78, record)
			if err != nil || c.Coupon != 77 || len(recorded) != 1 || recorded[0] != 77 {
				t.Fatalf("retry = %+v, %v, recorded %v; want coupon 77 recorded once", c, err, recorded)
			}
			if is, _ := l.Issuance(ctx, batch); is.Issued != 1 {
				t.Fatalf("issued %d; want 1", is.Issued)
			}
		})
	}
}
