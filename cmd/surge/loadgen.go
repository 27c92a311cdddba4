package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/loadgen"
	"github.com/surgecommerce/surge/postgres"
	"github.com/surgecommerce/surge/redis"
	"github.com/surgecommerce/surge/snowflake"
	"github.com/surgecommerce/surge/sqlite"
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
	reference     bool
	compare       bool
	rounds        int
	redisURL      string
	refPostgres   string
	profile       string
}

func parseLoadgen(args []string, env func(string) string, stderr io.Writer) (*loadgenFlags, error) {
	f := &loadgenFlags{}
	fs := command{name: "loadgen", envInDefault: true, env: envFlags(map[string]string{"admin-password": "SURGE_ADMIN_PASSWORD", "redis-url": "SURGE_REDIS_URL"}),
		about: `Replays a flash-sale crowd against a running deployment (one node or several) over HTTP: sets
up a sale, provisions shoppers and bots, sends the crowd on a schedule (an opening spike, then a
steady rate), pays a share of the orders, waits for the sale to settle, then checks the
invariants and prints the report. Exits 1 if an invariant fails. Every shopper's app solves the
proofs of work risk control asks for; with --risk-rule the load generator enables a rule partway
through the sale and reports the bots' and the shoppers' orders before and after it.`,
		examples: []string{"surge loadgen --target http://127.0.0.1:8080 --admin-password change-me-now",
			"surge loadgen --target http://10.0.0.1:8080,http://10.0.0.2:8080 --shoppers 80000 --rate 12000 --spike 1 --duration 6s --html report.html",
			"surge loadgen --target http://127.0.0.1:8080 --compare --rounds 3 --redis-url redis://127.0.0.1:6379/0",
			"surge loadgen --target http://127.0.0.1:8080 --bot-share 0.3 --risk-rule 'accounts_1h.device > 3' --risk-after 3s"}}.flagSet(stderr)
	fs.StringVar(&f.targets, "target", "", "comma-separated base URLs of the nodes (http://host:port,…); required")
	fs.StringVar(&f.adminUser, "admin-user", "admin", "an operator or admin account, to set up the sale and provision shoppers")
	fs.StringVar(&f.adminPassword, "admin-password", env("SURGE_ADMIN_PASSWORD"), "its password")
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
	fs.IntVar(&f.cfg.BotDevices, "bot-devices", 4, "device ids the bots share (a device farm of many accounts); each human shopper has its own")
	fs.StringVar(&f.cfg.RiskRule, "risk-rule", "", "enable this risk rule (CEL over the features, e.g. 'accounts_1h.device > 3'), enforcing, during the run, and report what it stopped")
	fs.StringVar(&f.cfg.RiskOn, "risk-on", surge.SubjectDevice, "what the rule's verdicts are about: user, device, ip or network")
	fs.StringVar(&f.cfg.RiskAction, "risk-action", surge.ActionBlock, "what the rule does: block, or challenge (a proof of work every shopper's app solves)")
	fs.IntVar(&f.cfg.RiskBits, "risk-bits", 16, "with --risk-action challenge: the proof of work's difficulty in bits")
	fs.DurationVar(&f.cfg.RiskAfter, "risk-after", 3*time.Second, "when to enable the rule, from the sale's opening")
	fs.Float64Var(&f.cfg.PayShare, "pay-share", 0.8, "share of successful shoppers who pay; the rest abandon their orders")
	fs.DurationVar(&f.cfg.PayDelay, "pay-delay", 500*time.Millisecond, "from the order to the payment")
	fs.Float64Var(&f.cfg.CouponShare, "coupon-share", 0, "share of shoppers who claim a coupon (¥5 off, the platform's) before the sale and buy with it")
	fs.IntVar(&f.cfg.MaxInFlight, "in-flight", 1024, "attempts waiting on an answer at once; a queued shopper polls apart from these (late arrivals count their wait)")
	fs.Uint64Var(&f.cfg.Seed, "seed", 1, "seed of the crowd: the same seed replays the same crowd")
	fs.DurationVar(&f.cfg.Settle, "settle", time.Minute, "how long the checker waits for the sale to settle")
	fs.BoolVar(&f.json, "json", false, "print one JSON object instead of the summary")
	fs.StringVar(&f.html, "html", "", "also write a report with charts to this HTML file")
	fs.BoolVar(&f.reference, "reference", false, "run the crowd against the reference build instead (per attempt a Redis Lua decrement and a synchronous SQL insert; per payment callback a synchronous SQL update and a Redis confirm), started in this process")
	fs.BoolVar(&f.compare, "compare", false, "run the crowd against --target and the reference, alternating, with the same seed, and print the ratios")
	fs.IntVar(&f.rounds, "rounds", 1, "with --compare: rounds of the two runs; the medians are compared")
	fs.StringVar(&f.redisURL, "redis-url", env("SURGE_REDIS_URL"), "the reference's Redis (required with --reference or --compare)")
	fs.StringVar(&f.refPostgres, "reference-postgres-url", "", "the reference's PostgreSQL (an empty database); default a SQLite file in a temporary directory")
	fs.StringVar(&f.profile, "cpuprofile", "", "write a CPU profile of the load generator (and of the reference, which runs in it) to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case (f.reference || f.compare) && f.redisURL == "":
		return nil, errors.New("--reference and --compare need --redis-url for the reference build")
	case f.reference && f.compare:
		return nil, errors.New("--reference and --compare exclude each other")
	case f.compare && f.rounds < 1:
		return nil, errors.New("--rounds must be at least 1")
	case f.cfg.CouponShare < 0 || f.cfg.CouponShare > 1:
		return nil, errors.New("--coupon-share must be from 0 to 1")
	case (f.reference || f.compare) && f.cfg.CouponShare > 0:
		return nil, errors.New("the reference build hands out no coupons: --coupon-share goes without --reference and --compare")
	case (f.reference || f.compare) && f.cfg.RiskRule != "":
		return nil, errors.New("the reference build has no risk control: --risk-rule goes without --reference and --compare")
	case f.cfg.BotDevices < 1 || f.cfg.RiskAfter < 0:
		return nil, errors.New("--bot-devices must be positive and --risk-after not negative")
	case f.cfg.Shoppers < 1 || f.cfg.Rate <= 0 || f.cfg.Duration <= 0:
		return nil, errors.New("--shoppers, --rate and --duration must be positive")
	case f.session == 0 && (f.items < 1 || f.units < 1 || f.limit < 1 || f.payTimeout < time.Second):
		return nil, errors.New("--items, --units and --limit must be positive and --pay-timeout at least 1s")
	case f.reference: // the reference runs in this process: no target, no admin
	case f.targets == "":
		return nil, errors.New("--target is required")
	case f.adminPassword == "":
		return nil, errors.New("--admin-password (or SURGE_ADMIN_PASSWORD) is required")
	}
	f.cfg.PayTimeout = f.payTimeout + time.Second // the expiry sweep runs twice a second
	return f, nil
}

// runLoadgen replays a crowd against a running deployment (or the reference build, or both)
// and exits non-zero when an invariant failed.
func runLoadgen(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	f, err := parseLoadgen(args, env, stderr)
	if err != nil {
		return err
	}
	stopProfile, err := startProfile(f.profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	stderr = &lockedWriter{w: stderr} // progress comes from its own goroutine
	f.cfg.Progress = progressPrinter(stderr)
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "loadgen: "+format+"\n", args...) }
	if f.reference {
		res, err := runReference(ctx, f, logf)
		if err != nil {
			return err
		}
		return report(stdout, f, res)
	}
	if f.compare {
		return runCompare(ctx, f, stdout, logf)
	}
	res, err := runSurge(ctx, f, logf)
	if err != nil {
		return err
	}
	return report(stdout, f, res)
}

// progressPrinter prints the crowd's progress once a second.
func progressPrinter(w io.Writer) func(loadgen.Progress) {
	return func(p loadgen.Progress) { fmt.Fprintf(w, "loadgen: %s\n", p) }
}

// runSurge runs the crowd against the deployment at --target.
func runSurge(ctx context.Context, f *loadgenFlags, logf func(string, ...any)) (*loadgen.Result, error) {
	targets := strings.Split(f.targets, ",")
	api := loadgen.NewAPI(targets, f.cfg.MaxInFlight)
	tok, err := client.New(targets[0]).Login(ctx, f.adminUser, f.adminPassword)
	if err != nil {
		return nil, fmt.Errorf("signing in as %s: %w", f.adminUser, err)
	}
	api.Admin = api.Nodes[0].As(tok.AccessToken)
	api.Session, api.Items, api.Units, api.Limit = f.session, f.items, f.units, f.limit
	api.PayTimeout, api.OpensIn, api.Duration = f.payTimeout, f.opensIn, f.cfg.Duration+time.Hour
	res, err := loadgen.Run(ctx, api, f.cfg, logf)
	if err != nil {
		return nil, err
	}
	res.Target = "surge " + f.targets
	return res, nil
}

// runReference starts the reference build in this process and runs the crowd against it.
func runReference(ctx context.Context, f *loadgenFlags, logf func(string, ...any)) (*loadgen.Result, error) {
	rc, err := redis.Open(ctx, f.redisURL, fmt.Sprintf("surgeref%d", time.Now().UnixNano()))
	if err != nil {
		return nil, err
	}
	defer func() { rc.Purge(context.WithoutCancel(ctx)); rc.Close() }()
	ids, err := snowflake.New(1)
	if err != nil {
		return nil, err
	}
	var orders interface {
		surge.OrderStore
		Migrate(context.Context) ([]int64, error)
		Close() error
	}
	where := "SQLite"
	if f.refPostgres != "" {
		orders, err = postgres.Open(ctx, f.refPostgres, ids.Next)
		where = "PostgreSQL"
	} else {
		dir, derr := os.MkdirTemp("", "surge-reference-")
		if derr != nil {
			return nil, derr
		}
		defer os.RemoveAll(dir)
		orders, err = sqlite.Open(ctx, filepath.Join(dir, "reference.db"), ids.Next)
	}
	if err != nil {
		return nil, err
	}
	defer orders.Close()
	if _, err := orders.Migrate(ctx); err != nil {
		return nil, err
	}
	ref := &loadgen.Reference{Stock: rc.Plain(), Orders: orders, IDs: ids.Next, Items: f.items, Units: f.units, Limit: f.limit,
		PayTimeout: f.payTimeout}
	if err := ref.Start(f.cfg.MaxInFlight); err != nil {
		return nil, err
	}
	defer ref.Close()
	cfg := f.cfg
	cfg.PayTimeout = 0 // the reference expires nothing: no wait for abandoned orders
	logf("reference build at %s (per attempt a Redis Lua decrement and a synchronous %s insert; per payment callback a synchronous %[2]s update and a Redis confirm)", ref.URL(), where)
	res, err := loadgen.Run(ctx, ref, cfg, logf)
	if err != nil {
		return nil, err
	}
	res.Target = "reference (Redis + " + where + ")"
	return res, nil
}

// Comparison is what surge loadgen --compare --json prints.
type Comparison struct {
	Surge           *loadgen.Result   `json:"surge"`
	Reference       *loadgen.Result   `json:"reference"`
	Rounds          []*loadgen.Result `json:"rounds"`           // every run, in the order they ran
	ThroughputRatio float64           `json:"throughput_ratio"` // Surge over reference, medians over rounds
	P99Ratio        float64           `json:"p99_ratio"`        // Surge over reference: below 1 is better
	Passed          bool              `json:"passed"`
}

// runCompare alternates Surge and the reference, same crowd and seed, and compares medians.
func runCompare(ctx context.Context, f *loadgenFlags, stdout io.Writer, logf func(string, ...any)) error {
	var cmp Comparison
	var surgeRuns, refRuns []*loadgen.Result
	for round := range f.rounds {
		logf("round %d of %d: Surge", round+1, f.rounds)
		s, err := runSurge(ctx, f, logf)
		if err != nil {
			return err
		}
		logf("round %d of %d: reference", round+1, f.rounds)
		r, err := runReference(ctx, f, logf)
		if err != nil {
			return err
		}
		surgeRuns, refRuns = append(surgeRuns, s), append(refRuns, r)
		cmp.Rounds = append(cmp.Rounds, s, r)
	}
	cmp.Surge, cmp.Reference = medianRun(surgeRuns), medianRun(refRuns)
	if cmp.Reference.AttemptsPerSec > 0 {
		cmp.ThroughputRatio = cmp.Surge.AttemptsPerSec / cmp.Reference.AttemptsPerSec
	}
	if cmp.Reference.P99Ms > 0 {
		cmp.P99Ratio = cmp.Surge.P99Ms / cmp.Reference.P99Ms
	}
	cmp.Passed = cmp.Surge.Passed && cmp.Reference.Passed
	if f.html != "" {
		if err := writeHTML(f.html, cmp.Rounds...); err != nil {
			return err
		}
	}
	if f.json {
		if err := json.NewEncoder(stdout).Encode(cmp); err != nil {
			return err
		}
	} else {
		loadgen.Summary(stdout, cmp.Surge)
		loadgen.Summary(stdout, cmp.Reference)
		fmt.Fprintf(stdout, "Surge over reference (median of %d rounds): throughput %.2f×, p99 %.2f×\n", f.rounds, cmp.ThroughputRatio, cmp.P99Ratio)
	}
	if !cmp.Passed {
		return loadgen.ErrFailed
	}
	return nil
}

// medianRun is the run with the median throughput.
func medianRun(runs []*loadgen.Result) *loadgen.Result {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b *loadgen.Result) int { return cmp.Compare(a.AttemptsPerSec, b.AttemptsPerSec) })
	return s[len(s)/2]
}

func writeHTML(path string, runs ...*loadgen.Result) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := loadgen.WriteHTML(file, runs...); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

// report prints the run (summary or JSON), writes the HTML page if asked, and fails when an
// invariant did.
func report(stdout io.Writer, f *loadgenFlags, runs ...*loadgen.Result) error {
	if f.html != "" {
		if err := writeHTML(f.html, runs...); err != nil {
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
