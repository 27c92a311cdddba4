package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/loadgen"
)

// CouponBenchResult is one backend's figures in surge bench coupons --json.
type CouponBenchResult struct {
	Backend      string  `json:"backend"`
	Ledger       string  `json:"ledger"`  // batch (a coupon a claim) or budget (red envelopes of 0.01 to 1.00)
	Buckets      int     `json:"buckets"` // the sub-budgets a Redis budget is split into (0: not split)
	Workers      int     `json:"workers"`
	DurationSec  float64 `json:"duration_sec"`
	Claims       int64   `json:"claims"`
	ClaimsPerSec float64 `json:"claims_per_sec"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	Errors       int64   `json:"errors"`
	Issued       int64   `json:"issued"`        // the ledger's count after the run (a budget's: minor units)
	InvariantsOK bool    `json:"invariants_ok"` // issued equals what the claims were granted, and no more than the total
}

// couponBenchRun is one measurement of surge bench coupons.
type couponBenchRun struct {
	backend, ledger string
	buckets         int
}

// benchCoupons measures the coupon ledger: claims of one hot batch, and of one hot red-envelope
// budget, per second, each by another shopper, every claim durable before its answer; on the
// embedded engine and, with --redis-url, on Redis in the same run, the budget unsplit and split
// into sub-budgets.
func benchCoupons(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	var c stockBenchConfig
	fs := command{name: "bench coupons", envInDefault: true, env: envFlags(map[string]string{"redis-url": "SURGE_REDIS_URL"}),
		about: `Measures the coupon ledger: claims per second of one hot coupon batch, and of one hot budget of
red envelopes (random amounts from 0.01 to 1.00), each by another shopper and each durable before
its answer (the embedded engine's write-ahead log, or one Lua script per decision on Redis), with
the count checked after the run: as much issued as was granted. The embedded engine always runs;
with --redis-url, Redis runs after it in the same run, the budget unsplit and then split into
--buckets sub-budgets.`,
		examples: []string{"surge bench coupons --duration 5s", "surge bench coupons --redis-url redis://127.0.0.1:6379/0 --json"}}.flagSet(stderr)
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "how long each backend runs")
	fs.IntVar(&c.workers, "workers", 256, "concurrent claimers")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per backend")
	fs.StringVar(&c.redisURL, "redis-url", env("SURGE_REDIS_URL"), "also measure on this Redis")
	fs.IntVar(&c.buckets, "buckets", 8, "the sub-budgets the split Redis budget is split into")
	fs.StringVar(&c.profile, "cpuprofile", "", "write a CPU profile of the first run (the embedded batch) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.workers < 1 || c.duration <= 0 || c.buckets < 2 {
		return errors.New("--workers and --duration must be positive, and --buckets at least 2")
	}
	runs := []couponBenchRun{{"embedded", "batch", 0}, {"embedded", "budget", 0}}
	if c.redisURL != "" {
		runs = append(runs, couponBenchRun{"redis", "batch", 0}, couponBenchRun{"redis", "budget", 0}, couponBenchRun{"redis", "budget", c.buckets})
	}
	failed, profile := false, c.profile
	for _, run := range runs {
		c := c
		c.backend, c.buckets = run.backend, run.buckets
		eng, _, _, closeEngine, err := openBenchEngine(c)
		if err != nil {
			return err
		}
		stopProfile, err := startProfile(profile)
		if err != nil {
			closeEngine()
			return err
		}
		profile = "" // one profile: the first run's
		res, err := runCouponBench(ctx, c, eng, run.ledger == "budget", stderr)
		stopProfile()
		closeEngine()
		if err != nil {
			return err
		}
		failed = failed || !res.InvariantsOK
		if c.json {
			if err := json.NewEncoder(stdout).Encode(res); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(stdout, "%-8s %-6s buckets %-2d %10.0f claims/s  (%d in %.1fs, %d workers)  p50 %.3f ms  p99 %.3f ms  errors %d  issued %d  invariants %v\n",
			res.Backend, res.Ledger, res.Buckets, res.ClaimsPerSec, res.Claims, res.DurationSec, res.Workers, res.P50Ms, res.P99Ms, res.Errors, res.Issued, res.InvariantsOK)
	}
	if failed {
		return errors.New("invariants broken")
	}
	return nil
}

func runCouponBench(ctx context.Context, c stockBenchConfig, eng surge.StockEngine, budget bool, stderr io.Writer) (CouponBenchResult, error) {
	const batch = 1
	ledger := coupon.NewLedger(eng)
	total, perUser := int64(surge.MaxStock), int64(1)
	envelope := coupon.Rule{Kind: coupon.Envelope, Min: 1, Max: 100}
	if budget {
		total, perUser = coupon.MaxBudget, envelope.Most()
	}
	if err := ledger.Open(ctx, batch, total, perUser); err != nil {
		return CouponBenchResult{}, err
	}
	kind := "batch"
	if budget {
		kind = "budget"
	}
	var claims, granted, errs, next atomic.Int64
	lat := make([][]float64, c.workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				user := next.Add(1) // another shopper each time, as a crowd claims
				units := int64(1)
				if budget {
					units = envelope.Draw(batch, user)
				}
				t0 := time.Now()
				_, err := ledger.Claim(ctx, batch, user, "claim", user, units, nil)
				lat[w] = append(lat[w], float64(time.Since(t0).Microseconds())/1000)
				if err != nil {
					errs.Add(1)
					continue
				}
				claims.Add(1)
				granted.Add(units)
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(c.duration)
	var last int64
wait:
	for {
		select {
		case <-tick.C:
			n := claims.Load()
			fmt.Fprintf(stderr, "bench: %s %s %5.1fs  %9d claims/s\n", c.backend, kind, time.Since(start).Seconds(), n-last)
			last = n
		case <-deadline:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	res := CouponBenchResult{Backend: c.backend, Ledger: kind, Buckets: c.buckets, Workers: c.workers, DurationSec: elapsed.Seconds(), Claims: claims.Load(),
		Errors: errs.Load()}
	res.ClaimsPerSec = float64(res.Claims) / elapsed.Seconds()
	res.P50Ms, res.P99Ms = loadgen.Percentiles(all)
	is, err := ledger.Issuance(ctx, batch)
	if err != nil {
		return res, err
	}
	res.Issued = is.Issued
	res.InvariantsOK = is.Issued == granted.Load() && is.Issued+is.Left == is.Total && is.Issued <= is.Total
	return res, nil
}
