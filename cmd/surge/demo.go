package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// runDemo starts an embedded node, runs a sale with a crowd against it, prints the report,
// and keeps the node up (until interrupted) for a look at its metrics and API.
func runDemo(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./surge-demo", "the demo node's data directory")
	addr := fs.String("addr", "127.0.0.1:8080", "the demo node's API address")
	duration := fs.Duration("duration", 30*time.Second, "how long the crowd arrives")
	shoppers := fs.Int("shoppers", 20_000, "distinct shoppers")
	rate := fs.Float64("rate", 500, "arrivals per second after the opening spike")
	payTimeout := fs.Duration("pay-timeout", 10*time.Second, "the sale's payment timeout: abandoned orders expire after it")
	exit := fs.Bool("exit", false, "stop the node after the report instead of keeping it up")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr} // the node's log and the crowd's progress share it
	c, _, err := parseConfig("serve", nil, env, io.Discard)
	if err != nil {
		return err
	}
	pw := make([]byte, 9)
	rand.Read(pw)
	c.DataDir, c.Addr, c.AdminPassword, c.Proxies = *dataDir, *addr, hex.EncodeToString(pw), "127.0.0.1/32"
	log, err := newLogger(*c, stderr)
	if err != nil {
		return err
	}
	m := NewMain(*c, slog.New(discardBelowWarn{log.Handler()}))
	if err := m.Run(ctx); err != nil {
		return err
	}
	defer m.Close()
	fmt.Fprintf(stderr, "demo: node up at http://%s (data in %s); a %s sale with %d shoppers follows\n", m.Addr, *dataDir, *duration, *shoppers)
	f, err := parseLoadgen([]string{"--target", "http://" + m.Addr, "--admin-user", c.AdminUser, "--admin-password", c.AdminPassword,
		"--shoppers", fmt.Sprint(*shoppers), "--rate", fmt.Sprint(*rate), "--duration", duration.String(),
		"--items", "10", "--units", "500", "--pay-timeout", payTimeout.String()}, env, stderr)
	if err != nil {
		return err
	}
	f.cfg.Progress = progressPrinter(stderr)
	res, err := runSurge(ctx, f, func(format string, args ...any) { fmt.Fprintf(stderr, "demo: "+format+"\n", args...) })
	if err != nil {
		return err
	}
	rerr := report(stdout, f, res)
	if *exit || errors.Is(ctx.Err(), context.Canceled) {
		return rerr
	}
	fmt.Fprintf(stdout, "\nThe node stays up at http://%s: metrics at /metrics, the API at /openapi.json; admin password %s. Ctrl-C stops it.\n",
		m.Addr, c.AdminPassword)
	<-ctx.Done()
	return rerr
}

// discardBelowWarn keeps the demo's terminal for the crowd's progress: only warnings and
// errors of the node get through.
type discardBelowWarn struct{ slog.Handler }

func (d discardBelowWarn) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && d.Handler.Enabled(ctx, l)
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
