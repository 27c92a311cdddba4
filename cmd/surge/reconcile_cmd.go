package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/reconcile"
)

// runReconcile reconciles a day against a ledger file, in process on the relational store,
// and writes the report.
func runReconcile(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	c, _, err := parseConfig("reconcile", args, env, stderr)
	if err != nil {
		return err
	}
	day := c.ReconDay
	if day == "" {
		day = payment.LedgerDay(time.Now().Add(-24 * time.Hour))
	}
	if _, err := payment.ParseLedgerDay(day); err != nil {
		return err
	}
	path := c.ReconLedger
	if path == "" {
		dir := c.PaySimLedger
		if dir == "" {
			dir = filepath.Join(c.DataDir, "paysim-ledger")
		}
		path = filepath.Join(dir, day+".csv")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m, db, err := openStore(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	svc := reconcile.NewService(db, &reconcile.Daily{Store: db, Refunds: db}, nil, nil, m.Log, nil) // runs in the system's temporary directory
	started := time.Now()
	rep, err := svc.Reconcile(ctx, day, f, func(stage string, n int64) {
		fmt.Fprintf(stderr, "reconcile %s: %s %d (%.1fs)\n", day, stage, n, time.Since(started).Seconds())
	})
	if err != nil {
		return err
	}
	base := filepath.Join(c.ReconOut, "reconcile-"+day)
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", b, 0o644); err != nil {
		return err
	}
	page, err := os.Create(base + ".html")
	if err != nil {
		return err
	}
	if err := rep.WriteHTML(page); err != nil {
		page.Close()
		return err
	}
	if err := page.Close(); err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.Summary())
	fmt.Fprintf(stdout, "report: %s.json, %s.html; repairs: POST /v1/reconcile/days/%s/findings/{finding}/repair on a running node\n", base, base, day)
	return nil
}
