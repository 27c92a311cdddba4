package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge/client"
)

// A demo's data directory holds only these: its mark, the node's data directory, the node's
// log and the report. A demo starts afresh by removing them, and refuses a directory that holds
// anything else (or lacks the mark): it removes nothing it did not make.
const (
	demoMark   = ".surge-demo"
	demoNode   = "node"
	demoLog    = "node.log"
	demoReport = "report.html"
)

// runDemo starts an embedded node, runs a sale with a crowd against it, prints the report,
// and keeps the node up (until interrupted) for a look at its big screen, API and metrics. The
// console shows the demo's progress and result; the node's own log goes to a file.
func runDemo(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := command{name: "demo",
		about: `Starts an embedded node, runs a flash sale against it (a crowd of shoppers arriving with an
opening spike, bots among them, four in five winners paying through the simulated provider),
prints the report (figures, items, invariants) and writes it with charts as HTML, then keeps the
node up for a look at the big screen, the API and the metrics until Ctrl-C.

The console shows the demo's progress and result; the node's log goes to node.log in the data
directory. Each run starts afresh: it removes the data directory of the last demo (and refuses
a directory that a demo did not make).`,
		examples: []string{"surge demo", "surge demo --shoppers 50000 --rate 2000 --duration 1m", "surge demo --addr 127.0.0.1:9090 --exit"}}.flagSet(stderr)
	dataDir := fs.String("data-dir", "./surge-demo", "the demo node's data directory, made afresh each run")
	addr := fs.String("addr", "127.0.0.1:8080", "the demo node's API address")
	duration := fs.Duration("duration", 30*time.Second, "how long the crowd arrives")
	shoppers := fs.Int("shoppers", 20_000, "distinct shoppers")
	rate := fs.Float64("rate", 500, "arrivals per second after the opening spike")
	payTimeout := fs.Duration("pay-timeout", 10*time.Second, "the sale's payment timeout: abandoned orders expire after it")
	html := fs.String("html", "", "where to write the HTML report (default: report.html in the data directory)")
	exit := fs.Bool("exit", false, "stop the node after the report instead of keeping it up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	*dataDir = filepath.Clean(*dataDir)
	if err := freshDemoDir(*dataDir); err != nil {
		return err
	}
	if *html == "" {
		*html = filepath.Join(*dataDir, demoReport)
	}
	logPath := filepath.Join(*dataDir, demoLog)
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	stderr = &lockedWriter{w: stderr} // the crowd's progress comes from its own goroutine
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "demo: "+format+"\n", args...) }

	c, _, err := parseConfig("serve", nil, env, io.Discard)
	if err != nil {
		return err
	}
	pw := make([]byte, 9)
	rand.Read(pw)
	c.DataDir, c.Addr, c.AdminPassword, c.Proxies = filepath.Join(*dataDir, demoNode), *addr, hex.EncodeToString(pw), "127.0.0.1/32"
	c.AccessTTL = 24 * time.Hour // the big screen's address printed below keeps working while the demo is up
	log, err := newLogger(*c, logFile)
	if err != nil {
		return err
	}
	counted := &levelCounter{Handler: log.Handler(), warnings: new(atomic.Int64), errors: new(atomic.Int64)}
	m := NewMain(*c, slog.New(counted))
	if err := m.Run(ctx); err != nil {
		return err
	}
	defer m.Close()
	base := "http://" + m.Addr
	tok, err := client.New(base).Login(ctx, c.AdminUser, c.AdminPassword)
	if err != nil {
		return fmt.Errorf("signing in to the demo node: %w", err)
	}
	screen := base + "/live#token=" + tok.AccessToken
	say("node up at %s (data in %s, its log in %s)", base, *dataDir, logPath)
	say("watch the sale on the big screen: %s", screen)
	say("a %s sale of 10 products, 500 units each, to %d shoppers follows", *duration, *shoppers)
	f, err := parseLoadgen([]string{"--target", base, "--admin-user", c.AdminUser, "--admin-password", c.AdminPassword,
		"--shoppers", fmt.Sprint(*shoppers), "--rate", fmt.Sprint(*rate), "--duration", duration.String(),
		"--items", "10", "--units", "500", "--pay-timeout", payTimeout.String(), "--html", *html}, env, stderr)
	if err != nil {
		return err
	}
	f.cfg.Progress = progressPrinter(stderr)
	res, err := runSurge(ctx, f, say)
	if err != nil {
		return err
	}
	rerr := report(stdout, f, res)
	fmt.Fprintf(stdout, "\nReport with charts: %s\n", *html)
	fmt.Fprintf(stdout, "The node logged %d errors and %d warnings (%s).\n", counted.errors.Load(), counted.warnings.Load(), logPath)
	if *exit || errors.Is(ctx.Err(), context.Canceled) {
		return rerr
	}
	fmt.Fprintf(stdout, "\nThe node stays up until Ctrl-C:\n  big screen  %s\n  API         %s/openapi.json (as %s, password %s)\n  metrics     %s/metrics\n",
		screen, base, c.AdminUser, c.AdminPassword, base)
	<-ctx.Done()
	return rerr
}

// freshDemoDir readies a demo's data directory: it makes it, or empties the last demo's, or
// refuses a directory with anything a demo does not make in it.
func freshDemoDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) == 0:
	default:
		mine := map[string]bool{demoMark: true, demoNode: true, demoLog: true, demoReport: true}
		marked := false
		for _, e := range entries {
			if !mine[e.Name()] {
				return fmt.Errorf("%s holds %s, which a demo did not make; choose another --data-dir", dir, e.Name())
			}
			marked = marked || e.Name() == demoMark
		}
		if !marked {
			return fmt.Errorf("%s was not made by a demo; choose another --data-dir", dir)
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, demoMark), []byte("made by surge demo; the next demo removes this directory\n"), 0o644)
}

// levelCounter counts the warnings and errors a handler is given.
type levelCounter struct {
	slog.Handler
	warnings, errors *atomic.Int64
}

func (l *levelCounter) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case r.Level >= slog.LevelError:
		l.errors.Add(1)
	case r.Level >= slog.LevelWarn:
		l.warnings.Add(1)
	}
	return l.Handler.Handle(ctx, r)
}

func (l *levelCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelCounter{Handler: l.Handler.WithAttrs(as), warnings: l.warnings, errors: l.errors}
}

func (l *levelCounter) WithGroup(name string) slog.Handler {
	return &levelCounter{Handler: l.Handler.WithGroup(name), warnings: l.warnings, errors: l.errors}
}

// lockedWriter serializes writes from several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
