package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/reconcile"
	"github.com/surgecommerce/surge/sqlite"
)

// ReconcileBenchResult is what surge bench reconcile measured.
type ReconcileBenchResult struct {
	Lines      int64   `json:"ledger_lines"`
	LedgerMB   float64 `json:"ledger_mb"`
	Surge      int     `json:"surge_payments"` // Surge's records of the day the ledger is merged with
	Seconds    float64 `json:"seconds"`
	LinesPerS  float64 `json:"lines_per_sec"`
	PeakHeapMB float64 `json:"peak_heap_mb"` // the Go heap in use, sampled every 50 ms during the run
	PeakRSSMB  float64 `json:"peak_rss_mb"`  // the process's resident memory, sampled likewise
	Findings   int64   `json:"findings"`
	Injected   int64   `json:"injected"` // charges the ledger has and Surge never heard of
}

// benchReconcile measures the daily reconciliation of a long ledger against a store of the
// day's payments.
func benchReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := command{name: "bench reconcile",
		about: `Measures the daily reconciliation: a ledger of --lines charges of one day is written to a file,
the day's payments (all but one in every 1,000, whose callbacks the ledger has and Surge never
got) are recorded in a fresh SQLite store, and the day is reconciled against the file: the time,
and the peak memory while it runs (the ledger is sorted in runs on disk, so memory stays bounded
whatever its length). --surge 0 leaves Surge's side empty, to measure the ledger's reading alone.`,
		examples: []string{"surge bench reconcile", "surge bench reconcile --lines 10000000 --surge 1000000 --json"}}.flagSet(stderr)
	lines := fs.Int64("lines", 10_000_000, "charges in the ledger")
	surgeN := fs.Int("surge", 1_000_000, "of them, the first this many are recorded at Surge (a store of 10 million payments takes long to fill)")
	dir := fs.String("dir", "", "where the ledger, the runs and the store go (default: a temporary directory)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *lines < 1 || *surgeN < 0 || int64(*surgeN) > *lines {
		return fmt.Errorf("lines must be positive, surge between 0 and lines")
	}
	work := *dir
	if work == "" {
		tmp, err := os.MkdirTemp("", "surge-bench-reconcile-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		work = tmp
	}
	const day = "2026-01-15"
	start, _ := payment.ParseLedgerDay(day)
	txn := func(i int64) string { return "T" + strconv.FormatInt(1_000_000_000+i, 10) }
	amount := func(i int64) int64 { return 100 + i%9_900 }
	at := func(i int64) time.Time { return start.Add(time.Duration(i%86_400_000) * time.Millisecond) }

	// Surge's side: the day's orders and their paid notifications.
	db, err := sqlite.Open(ctx, filepath.Join(work, "surge.db"), func() (int64, error) { return 0, nil })
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	var injected int64
	stop := progress(stderr, fmt.Sprintf("bench reconcile: recording %d payments at Surge", *surgeN))
	for from := int64(0); from < int64(*surgeN); from += surge.MaxOrdersPerMessage {
		n := min(int64(*surgeN)-from, surge.MaxOrdersPerMessage)
		orders := make([]surge.Order, 0, n)
		pays := make([]*surge.Payment, 0, n)
		for i := from; i < from+n; i++ {
			if i%1000 == 999 {
				injected++
				continue // its callback never came
			}
			id := 1_000_000_000 + i
			orders = append(orders, surge.Order{ID: id, TxnID: txn(i), RequestID: txn(i), UserID: 1 + i%100_000, SessionID: 1, ItemID: 1, SKUID: 1,
				MerchantID: 1, Quantity: 1, Amount: surge.Money{Amount: amount(i), Currency: "CNY"}, State: surge.OrderPendingPayment,
				CreatedAt: at(i), ExpiresAt: at(i).Add(time.Hour)})
			pays = append(pays, &surge.Payment{NotifyID: txn(i) + "-2", TxnID: txn(i), OrderID: id, Amount: surge.Money{Amount: amount(i), Currency: "CNY"},
				Status: surge.PaymentStatusPaid, PaidAt: at(i), ReceivedAt: at(i)})
		}
		if _, err := db.CreateOrders(ctx, orders); err != nil {
			stop()
			return err
		}
		for len(pays) > 0 {
			k := min(len(pays), 256)
			if _, err := db.ApplyPayments(ctx, pays[:k]); err != nil {
				stop()
				return err
			}
			pays = pays[k:]
		}
	}
	stop()
	injected += *lines - int64(*surgeN)

	// The provider's side: the ledger file.
	stop = progress(stderr, fmt.Sprintf("bench reconcile: writing a ledger of %d lines", *lines))
	path := filepath.Join(work, day+".csv")
	f, err := os.Create(path)
	if err != nil {
		stop()
		return err
	}
	lw, err := payment.NewLedgerWriter(f, day)
	if err == nil {
		for i := int64(0); i < *lines && err == nil; i++ {
			err = lw.Append(payment.LedgerEntry{ProviderID: "p" + strconv.FormatInt(i, 36), Type: payment.LedgerTypePayment, TxnID: txn(i),
				OrderID: 1_000_000_000 + i, Amount: surge.Money{Amount: amount(i), Currency: "CNY"}, At: at(i)})
		}
	}
	if err == nil {
		err = lw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	stop()
	if err != nil {
		return err
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}

	// The run, its memory sampled.
	runtime.GC()
	var peakHeap, peakRSS atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // stops when done closes
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
			}
			if rss := residentBytes(); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	ledger, err := os.Open(path)
	if err != nil {
		close(done)
		return err
	}
	defer ledger.Close()
	daily := &reconcile.Daily{Store: db, Refunds: db, TempDir: work}
	began := time.Now()
	rep, err := daily.Run(ctx, day, ledger, func(stage string, n int64) {
		fmt.Fprintf(stderr, "bench reconcile: %s %d (%.1fs)\n", stage, n, time.Since(began).Seconds())
	})
	took := time.Since(began)
	close(done)
	<-sampled
	if err != nil {
		return err
	}
	res := ReconcileBenchResult{Lines: *lines, LedgerMB: float64(info.Size()) / (1 << 20), Surge: *surgeN, Seconds: took.Seconds(),
		LinesPerS: float64(*lines) / took.Seconds(), PeakHeapMB: float64(peakHeap.Load()) / (1 << 20), PeakRSSMB: float64(peakRSS.Load()) / (1 << 20),
		Findings: int64(len(rep.Findings)) + rep.Unlisted, Injected: injected}
	if res.Findings != injected {
		return fmt.Errorf("the run found %d findings (%v); %d were injected", res.Findings, rep.Kinds, injected)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "reconciled a ledger of %d lines (%.0f MB) against %d payments at Surge in %.1f s (%.0f lines/s)\n",
		res.Lines, res.LedgerMB, res.Surge, res.Seconds, res.LinesPerS)
	fmt.Fprintf(stdout, "peak memory while it ran: heap %.1f MB, resident %.1f MB; findings %d (all %d injected)\n",
		res.PeakHeapMB, res.PeakRSSMB, res.Findings, res.Injected)
	return nil
}

// residentBytes is the process's resident memory (Linux), 0 where it cannot be read.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
