package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/loadgen"
)

// loadgenFlags are the settings of surge loadgen.
type loadgenFlags struct {
	targets       string
	adminUser     string
	adminPassword string
	session       int64
	items         int
	units         int64
	limit         int64
	payTimeout    time.Duration
	opensIn       time.Duration
	cfg           loadgen.Config
	json          bool
	html          string
}

func parseLoadgen(args []string, env func(string) string, stderr io.Writer) (*loadgenFlags, error) {
	f := &loadgenFlags{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.targets, "target", "", "comma-separated base URLs of the nodes (http://host:port,…); required")
	fs.StringVar(&f.adminUser, "admin-user", "admin", "an operator or admin account, to set up the sale and provision shoppers")
	fs.StringVar(&f.adminPassword, "admin-password", env("SURGE_ADMIN_PASSWORD"), "its password (default $SURGE_ADMIN_PASSWORD)")
	fs.Int64Var(&f.session, "session", 0, "reuse this published session and its items instead of creating one")
	fs.IntVar(&f.items, "items", 10, "items in a new session")
	fs.Int64Var(&f.units, "units", 1000, "units of each item")
	fs.Int64Var(&f.limit, "limit", 1, "units one shopper may buy of an item")
	fs.DurationVar(&f.payTimeout, "pay-timeout", 20*time.Second, "the new session's payment timeout (abandoned orders expire after it)")
	fs.DurationVar(&f.opensIn, "opens-in", 3*time.Second, "from setup to the opening of a new session")
	fs.IntVar(&f.cfg.Shoppers, "shoppers", 20_000, "distinct shoppers; each arrives once")
	fs.DurationVar(&f.cfg.Duration, "duration", 20*time.Second, "how long arrivals go on")
	fs.Float64Var(&f.cfg.Rate, "rate", 1000, "arrivals per second after the opening spike")
	fs.Float64Var(&f.cfg.Spike, "spike", 5, "arrival rate multiplier while the sale opens")
	fs.DurationVar(&f.cfg.SpikeFor, "spike-for", 2*time.Second, "how long the opening spike lasts")
	fs.Float64Var(&f.cfg.Zipf, "zipf", 1.1, "item popularity skew (Zipf s; 0 for uniform)")
	fs.Float64Var(&f.cfg.BotShare, "bot-share", 0.05, "share of arrivals that are bots hammering the hottest item")
	fs.IntVar(&f.cfg.Bots, "bots", 20, "bot accounts")
	fs.IntVar(&f.cfg.BotIPs, "bot-ips", 2, "addresses the bots come from")
	fs.Float64Var(&f.cfg.PayShare, "pay-share", 0.8, "share of successful shoppers who pay; the rest abandon their orders")
	fs.DurationVar(&f.cfg.PayDelay, "pay-delay", 500*time.Millisecond, "from the order to the payment")
	fs.IntVar(&f.cfg.MaxInFlight, "in-flight", 1024, "attempts under way at once (late arrivals count their wait)")
	fs.Uint64Var(&f.cfg.Seed, "seed", 1, "seed of the crowd: the same seed replays the same crowd")
	fs.DurationVar(&f.cfg.Settle, "settle", time.Minute, "how long the checker waits for the sale to settle")
	fs.BoolVar(&f.json, "json", false, "print one JSON object instead of the summary")
	fs.StringVar(&f.html, "html", "", "also write a report with charts to this HTML file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case f.targets == "":
		return nil, errors.New("--target is required")
	case f.adminPassword == "":
		return nil, errors.New("--admin-password (or SURGE_ADMIN_PASSWORD) is required")
	case f.cfg.Shoppers < 1 || f.cfg.Rate <= 0 || f.cfg.Duration <= 0:
		return nil, errors.New("--shoppers, --rate and --duration must be positive")
	case f.session == 0 && (f.items < 1 || f.units < 1 || f.limit < 1 || f.payTimeout < time.Second):
		return nil, errors.New("--items, --units and --limit must be positive and --pay-timeout at least 1s")
	}
	f.cfg.PayTimeout = f.payTimeout + time.Second // the expiry sweep runs twice a second
	return f, nil
}

// runLoadgen replays a crowd against a running deployment and exits non-zero when an
// invariant failed.
func runLoadgen(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	f, err := parseLoadgen(args, env, stderr)
	if err != nil {
		return err
	}
	targets := strings.Split(f.targets, ",")
	api := loadgen.NewAPI(targets, f.cfg.MaxInFlight)
	tok, err := client.New(targets[0]).Login(ctx, f.adminUser, f.adminPassword)
	if err != nil {
		return fmt.Errorf("signing in as %s: %w", f.adminUser, err)
	}
	api.Admin = api.Nodes[0].As(tok.AccessToken)
	api.Session, api.Items, api.Units, api.Limit = f.session, f.items, f.units, f.limit
	api.PayTimeout, api.OpensIn, api.Duration = f.payTimeout, f.opensIn, f.cfg.Duration+time.Hour
	f.cfg.Progress = func(p loadgen.Progress) {
		keys := make([]string, 0, len(p.Outcomes))
		for k := range p.Outcomes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, p.Outcomes[k]))
		}
		fmt.Fprintf(stderr, "loadgen: %5.1fs  %6.0f/s  p50 %.2f ms  p99 %.2f ms  in flight %d  %s\n",
			p.Elapsed.Seconds(), p.Rate, p.P50, p.P99, p.InFlight, strings.Join(parts, ", "))
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "loadgen: "+format+"\n", args...) }
	res, err := loadgen.Run(ctx, api, f.cfg, logf)
	if err != nil {
		return err
	}
	res.Target = f.targets
	return report(stdout, f, res)
}

// report prints the run (summary or JSON), writes the HTML page if asked, and fails when an
// invariant did.
func report(stdout io.Writer, f *loadgenFlags, runs ...*loadgen.Result) error {
	if f.html != "" {
		file, err := os.Create(f.html)
		if err != nil {
			return err
		}
		if err := loadgen.WriteHTML(file, runs...); err != nil {
			file.Close()
			return err
		}
		if err := file.Close(); err != nil {
			return err
		}
	}
	if f.json {
		if err := json.NewEncoder(stdout).Encode(runs[0]); err != nil {
			return err
		}
	} else {
		for _, r := range runs {
			loadgen.Summary(stdout, r)
		}
	}
	for _, r := range runs {
		if !r.Passed {
			return fmt.Errorf("%s: %w", r.Target, loadgen.ErrFailed)
		}
	}
	return nil
}
