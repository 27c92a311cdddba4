package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/surgecommerce/surge"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/reconcile"
	"github.com/surgecommerce/surge/settlement"
	"github.com/surgecommerce/surge/stream"
)

// reconcileAt is when, past midnight UTC, the node computing the live metrics reconciles the
// day before: the provider closes a day's ledger at its end.
const reconcileAt = 30 * time.Minute

// reconciliation starts the reconciliation's service and, on the node that computes the live
// metrics, the real-time reconciliation over the events log and the daily run.
func (m *Main) reconciliation(ctx, bg context.Context, b *backends, deps *surgehttp.Deps, orders *order.Service, ledgers reconcile.Ledgers, wg *sync.WaitGroup) error {
	daily := &reconcile.Daily{Store: b.db, Refunds: b.db, TempDir: m.Config.DataDir,
		Drift: func(ctx context.Context, from, to time.Time) ([]reconcile.Finding, error) {
			return reconcile.AuditDrift(b.db, deps.Audit)(ctx, from, to)
		}}
	svc := reconcile.NewService(b.db, daily, orders, ledgers, m.Log, nil)
	deps.Reconcile = svc
	deps.Settlement = settlement.New(b.db, m.Config.FeeBps, nil)
	if !m.Config.LiveCompute {
		return nil
	}
	ckpt, err := b.bus.Checkpoints(ctx)
	if err != nil {
		return err
	}
	// The whole events log, as risk control reads it: a filter of several kinds needs NATS 2.10.
	events := b.bus.Log(nats.EventsStream, nats.EventsSubject)
	r := reconcile.Runner{
		Log:         stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return events.Open(ctx, after) }),
		Checkpoints: ckpt, Sink: reconcile.NewSink(b.db, deps.Registry, m.Log), Grace: m.Config.ReconGrace,
		Stream: m.streamMetrics(deps), Logger: m.Log,
	}
	wg.Add(2)
	go func() { defer wg.Done(); r.Run(bg) }()                        // stops with bg
	go func() { defer wg.Done(); svc.RunSchedule(bg, reconcileAt) }() // stops with bg
	return nil
}

// fileLedgers opens the built-in provider's closed ledger files in dir.
func fileLedgers(dir string) reconcile.Ledgers {
	return func(_ context.Context, day string) (io.ReadCloser, error) {
		if _, err := payment.ParseLedgerDay(day); err != nil {
			return nil, err
		}
		f, err := os.Open(filepath.Join(dir, day+".csv"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, surge.Errorf(surge.ENOTFOUND, "the provider has no closed ledger of %s", day)
		}
		return f, err
	}
}

// urlLedgers fetches a provider's closed ledger of a day from base/<day>, the request signed
// with the payment key.
func urlLedgers(base string, key []byte) reconcile.Ledgers {
	client := &http.Client{Timeout: 10 * time.Minute}
	return func(ctx context.Context, day string) (io.ReadCloser, error) {
		if _, err := payment.ParseLedgerDay(day); err != nil {
			return nil, err
		}
		url := base + "/" + day
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set(payment.SignatureHeader, payment.LedgerRequestSignature(key, http.MethodGet, req.URL.Path, time.Now()))
		resp, err := client.Do(req)
		if err != nil {
			return nil, surge.Errorf(surge.EUNAVAILABLE, "the provider's ledger: %v", err)
		}
		switch {
		case resp.StatusCode == http.StatusNotFound:
			resp.Body.Close()
			return nil, surge.Errorf(surge.ENOTFOUND, "the provider has no closed ledger of %s", day)
		case resp.StatusCode != http.StatusOK:
			resp.Body.Close()
			return nil, surge.Errorf(surge.EUNAVAILABLE, "the provider's ledger of %s: %s", day, fmt.Sprint(resp.Status))
		}
		return resp.Body, nil
	}
}
