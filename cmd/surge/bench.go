package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stock"
)

// runBench dispatches surge bench subcommands.
func runBench(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "stock" {
		return benchStock(ctx, args[1:], env, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "purchase" {
		return benchPurchase(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "nexmark" {
		return benchNexmark(ctx, args[1:], env, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "coupons" {
		return benchCoupons(ctx, args[1:], env, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "promo" {
		return benchPromo(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "risk" {
		return benchRisk(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "reconcile" {
		return benchReconcile(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "orders" {
		return benchOrders(ctx, args[1:], env, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "live" {
		return benchLive(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "get-at-rate" {
		return benchGetAtRate(ctx, args[1:], env, stdout)
	}
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, benchHelp)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, benchHelp)
	if len(args) == 0 {
		return errors.New("which measurement? (above)")
	}
	return fmt.Errorf("unknown measurement %q (above)", args[0])
}

const benchHelp = `Usage: surge bench <stock|purchase|nexmark|live|coupons|promo|risk|orders|reconcile> [flags]

Measurements of Surge's parts, each with figures to compare (see surge bench <name> --help):

  stock     the stock engine alone: reservations per second, their latency, fsyncs
  purchase  the purchase API on an in-process node with one hot item, driven by wrk
  nexmark   the stream engine on the Nexmark queries, checked against a batch computation
  live      ingestion, live metrics' freshness and the query API on an in-process node
  coupons   the coupon ledger: claims of one hot batch per second, embedded and on Redis
  promo     price quotes over a big catalog and many live activities, in process and over HTTP
  risk      risk control's features over a million devices, the cost of its rules, the gate's check
  orders    the order views' readers (shopper, merchant, support search) over a shop of millions of orders
  reconcile the daily reconciliation of a long ledger file: time and peak memory

Examples:
  surge bench stock --items 1 --workers 64 --duration 5s
  surge bench purchase --shoppers 200000 --units 10000 --workers 256
  surge bench nexmark --query q5 --events 1000000
  surge bench live --events 1000000
  surge bench coupons --redis-url redis://127.0.0.1:6379/0
  surge bench promo --activities 100000
  surge bench risk --events 3000000 --devices 1000000 --rules 50
  surge bench orders --orders 1000000
  surge bench reconcile --lines 10000000
`

// stockBenchConfig are the settings of surge bench stock.
type stockBenchConfig struct {
	backend  string
	items    int
	duration time.Duration
	workers  int
	batch    int
	json     bool
	dataDir  string
	redisURL string
	profile  string
	buckets  int
}

// batcher is what the bench drives: the embedded engine and the Redis engine both offer it.
type batcher interface {
	surge.StockEngine
	ReserveBatch(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) error
}

// StockBenchResult is what surge bench stock --json prints.
type StockBenchResult struct {
	Backend                 string  `json:"backend"`
	Items                   int     `json:"items"`
	Workers                 int     `json:"workers"`
	Batch                   int     `json:"batch"`
	DurationSec             float64 `json:"duration_sec"`
	Decisions               int64   `json:"decisions"`
	Reserved                int64   `json:"reserved"`
	DecisionsPerSec         float64 `json:"decisions_per_sec"`
	P50AckMs                float64 `json:"p50_ack_ms"`
	P99AckMs                float64 `json:"p99_ack_ms"`
	FsyncsPerSec            float64 `json:"fsyncs_per_sec"`
	DecisionsPerFsync       float64 `json:"decisions_per_fsync"`
	Errors                  int64   `json:"errors"`
	InvariantsOK            bool    `json:"invariants_ok"`
	GoMaxProcs              int     `json:"gomaxprocs"`
	HeapBytesPerItem        int64   `json:"heap_bytes_per_item"`
	HeapBytesPerReservation int64   `json:"heap_bytes_per_reservation"`
}

func benchStock(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	var c stockBenchConfig
	fs := command{name: "bench stock", envInDefault: true, env: envFlags(map[string]string{"redis-url": "SURGE_REDIS_URL"}),
		about: `Measures the stock engine alone: reservations decided per second, their acknowledgement
latency, and (embedded) fsyncs of the write-ahead log per second, with the invariants checked
after the run. The embedded engine runs in a temporary directory; --backend redis on --redis-url.`,
		examples: []string{"surge bench stock --items 1 --workers 64 --batch 64 --duration 5s",
			"surge bench stock --backend redis --redis-url redis://127.0.0.1:6379/0 --json"}}.flagSet(stderr)
	fs.StringVar(&c.backend, "backend", "embedded", "embedded or redis")
	fs.IntVar(&c.items, "items", 1, "items the reservations spread over (1 = one hot item)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "how long to run")
	fs.IntVar(&c.workers, "workers", 64, "concurrent callers")
	fs.IntVar(&c.batch, "batch", 64, "reservations per call (1 calls Reserve; more calls ReserveBatch, as the purchase queue does)")
	fs.BoolVar(&c.json, "json", false, "print one JSON object instead of a summary")
	fs.StringVar(&c.dataDir, "data-dir", "", "engine directory for embedded (default: a temporary one, removed after)")
	fs.StringVar(&c.redisURL, "redis-url", env("SURGE_REDIS_URL"), "Redis URL for the redis backend")
	fs.StringVar(&c.profile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.IntVar(&c.buckets, "buckets", 0, "redis: split each item into this many stock buckets (hot items on Redis Cluster)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.items < 1 || c.workers < 1 || c.batch < 1 || c.batch > stock.MaxBatchOps || c.duration <= 0 {
		return fmt.Errorf("items, workers and duration must be positive, batch 1 to %d", stock.MaxBatchOps)
	}
	eng, fsyncs, check, closeEngine, err := openBenchEngine(c)
	if err != nil {
		return err
	}
	defer closeEngine()
	heap0 := heapInUse()
	ids := make([]int64, c.items)
	base := rand.Int64N(1<<40) + 1
	for i := range ids {
		ids[i] = base + int64(i)
		if err := eng.Load(ctx, surge.StockItem{ID: ids[i], Allotted: surge.MaxStock, PerUserLimit: surge.MaxPerUserLimit}); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	}
	heap1 := heapInUse()
	stopProfile, err := startProfile(c.profile)
	if err != nil {
		return err
	}
	res := runStockBench(ctx, c, eng, ids, fsyncs, stderr)
	stopProfile()
	if c.backend == "embedded" { // Redis keeps its state in its own process
		res.HeapBytesPerItem = (heap1 - heap0) / int64(c.items)
		if res.Reserved > 0 {
			res.HeapBytesPerReservation = (heapInUse() - heap1) / res.Reserved
		}
	}
	// Every acknowledged reservation must be in the counters, and the counters must balance.
	res.InvariantsOK = check() == nil
	var total int64
	for _, id := range ids {
		l, err := eng.Levels(ctx, id)
		res.InvariantsOK = res.InvariantsOK && err == nil && l.Check() == nil
		total += l.Reserved
	}
	res.InvariantsOK = res.InvariantsOK && total == res.Reserved
	if res.Errors > 0 {
		fmt.Fprintf(stderr, "bench: %d calls failed\n", res.Errors)
	}
	if c.json {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "backend %s, %d item(s), %d workers, batch %d, GOMAXPROCS %d\n", res.Backend, res.Items, res.Workers, res.Batch, res.GoMaxProcs)
	fmt.Fprintf(stdout, "decisions/s       %12.0f  (%d in %.1fs)\n", res.DecisionsPerSec, res.Decisions, res.DurationSec)
	fmt.Fprintf(stdout, "ack p50 / p99     %9.3f ms / %.3f ms  (call to durable acknowledgement)\n", res.P50AckMs, res.P99AckMs)
	fmt.Fprintf(stdout, "fsyncs/s          %12.0f  (%.0f decisions per fsync)\n", res.FsyncsPerSec, res.DecisionsPerFsync)
	if res.HeapBytesPerReservation > 0 {
		fmt.Fprintf(stdout, "heap              %12d bytes per item, %d per reservation (holding)\n", res.HeapBytesPerItem, res.HeapBytesPerReservation)
	}
	fmt.Fprintf(stdout, "invariants        %12v\n", res.InvariantsOK)
	if !res.InvariantsOK {
		return errors.New("invariants broken")
	}
	return nil
}

// openBenchEngine opens the chosen backend and returns it with a counter of fsyncs, an
// invariant check and a close function.
func openBenchEngine(c stockBenchConfig) (batcher, func() int64, func() error, func(), error) {
	switch c.backend {
	case "embedded":
		dir, cleanup := c.dataDir, func() {}
		if dir == "" {
			tmp, err := os.MkdirTemp("", "surge-bench-stock-")
			if err != nil {
				return nil, nil, nil, nil, err
			}
			dir, cleanup = tmp, func() { os.RemoveAll(tmp) }
		}
		e, err := stock.Open(stock.Options{Dir: dir})
		if err != nil {
			cleanup()
			return nil, nil, nil, nil, err
		}
		return e, func() int64 { return e.Stats().Syncs }, e.Check, func() { e.Close(); cleanup() }, nil
	case "redis":
		return openRedisBench(c)
	}
	return nil, nil, nil, nil, fmt.Errorf("backend must be embedded or redis")
}

// runStockBench drives the engine for the configured duration, printing progress each second.
func runStockBench(ctx context.Context, c stockBenchConfig, eng batcher, ids []int64, fsyncs func() int64, stderr io.Writer) StockBenchResult {
	var decisions, reserved, errs atomic.Int64
	stop := make(chan struct{})
	lat := make([][]float64, c.workers)
	var wg sync.WaitGroup
	start := time.Now()
	syncs0 := fsyncs()
	for w := range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			reqs := make([]surge.ReserveRequest, c.batch)
			out := make([]surge.BatchResult, c.batch)
			prefix := "b" + strconv.Itoa(w) + "-"
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				for i := range reqs {
					reqs[i] = surge.ReserveRequest{ItemID: ids[rng.IntN(len(ids))], UserID: rng.Int64N(1<<40) + 1,
						Quantity: 1, RequestID: prefix + strconv.Itoa(n*c.batch+i)}
				}
				t0 := time.Now()
				var err error
				if c.batch == 1 {
					out[0].ReserveResult, out[0].Err = eng.Reserve(ctx, reqs[0])
				} else {
					err = eng.ReserveBatch(ctx, reqs, out)
				}
				d := time.Since(t0)
				if err != nil {
					errs.Add(1)
					continue
				}
				for _, o := range out {
					if o.Err != nil {
						errs.Add(1)
					} else if o.Outcome == surge.Reserved {
						reserved.Add(1)
					}
				}
				decisions.Add(int64(c.batch))
				if n%4 == 0 { // a sample is plenty and keeps memory flat
					lat[w] = append(lat[w], float64(d.Microseconds())/1000)
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	deadline := time.After(c.duration)
	var last int64
loop:
	for {
		select {
		case <-tick.C:
			n := decisions.Load()
			fmt.Fprintf(stderr, "bench: %5.1fs  %10d decisions/s  %6d fsyncs so far  %d errors\n",
				time.Since(start).Seconds(), n-last, fsyncs()-syncs0, errs.Load())
			last = n
		case <-deadline:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	close(stop)
	wg.Wait()
	tick.Stop()
	elapsed := time.Since(start).Seconds()
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	n, syncs := decisions.Load(), fsyncs()-syncs0
	res := StockBenchResult{Backend: c.backend, Items: c.items, Workers: c.workers, Batch: c.batch, DurationSec: elapsed,
		Decisions: n, Reserved: reserved.Load(), DecisionsPerSec: float64(n) / elapsed, P50AckMs: pct(0.50), P99AckMs: pct(0.99),
		FsyncsPerSec: float64(syncs) / elapsed, Errors: errs.Load(), GoMaxProcs: runtime.GOMAXPROCS(0)}
	if syncs > 0 {
		res.DecisionsPerFsync = float64(n) / float64(syncs)
	}
	return res
}

// heapInUse is the live heap after a collection.
// startProfile writes a CPU profile to path until stop is called; with no path it does nothing.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeHeapProfile writes what the heap holds now (after a collection) to path, if one is given.
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
