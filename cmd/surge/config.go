package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/reconcile"
	"github.com/surgecommerce/surge/settlement"
)

// Config is every setting of surge serve and surge migrate.
type Config struct {
	Addr         string
	DataDir      string
	ConfigFile   string
	PostgresURL  string
	RedisURL     string
	RedisPrefix  string
	StockBuckets int
	GrantRate    float64
	ReconGrace   time.Duration
	FeeBps       int64
	// surge reconcile's: the day, its ledger file, where the report goes.
	ReconDay, ReconLedger, ReconOut string
	BucketMin                       int64
	NATSURL                         string
	NATSListen                      string
	LiveCompute                     bool
	EventLogBytes                   int64
	WorkerID                        int64
	TokenSecret                     string
	AccessTTL                       time.Duration
	RefreshTTL                      time.Duration
	OTPTTL                          time.Duration
	AdminUser                       string
	AdminPassword                   string
	AdminAddr                       string
	PublicURL                       string
	PaymentURL                      string
	RefundURL                       string
	LedgerURL                       string
	PaymentKey                      string
	PaySimFlight                    int
	PaySimLedger                    string
	UserRate                        float64
	IPRate                          float64
	InFlight                        int
	Proxies                         string
	AnswerWait                      time.Duration
	MaxWait                         time.Duration
	Dev                             bool
	LogLevel                        string
	LogFormat                       string

	// Hooks for tests, set by no flag.
	orderWriterOff bool                                      // the node writes no orders from the bus, as if its writer were far behind
	wrapStock      func(surge.StockEngine) surge.StockEngine // wraps the stock engine (a slow one, say)
}

// flags declares the settings on fs with their defaults and help. The name of each flag is also
// its key in the config file and, upper-cased with SURGE_ in front and '-' as '_', its
// environment variable.
func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "HTTP API listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&c.DataDir, "data-dir", "./surge-data", "directory for all embedded state: SQLite, JetStream, token secret")
	fs.StringVar(&c.ConfigFile, "config", "", "optional TOML config file; keys are the flag names")
	fs.StringVar(&c.PostgresURL, "postgres-url", "", "PostgreSQL URL for relational data (default: SQLite in the data dir)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL for shared counters and hot stock (default: in process)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "surge", "prefix of every Redis key, so deployments can share a Redis")
	fs.IntVar(&c.StockBuckets, "stock-buckets", 0, "on Redis, split items into this many stock buckets (spreads a hot item over a Redis Cluster)")
	fs.Int64Var(&c.BucketMin, "stock-bucket-min", 10_000, "on Redis, split only items allotted at least this many units")
	fs.StringVar(&c.ReconDay, "date", "", "the day to reconcile, YYYY-MM-DD (UTC; default: yesterday)")
	fs.StringVar(&c.ReconLedger, "ledger", "", "the provider's ledger file of the day (default: the simulated provider's, <payment-sim-ledger-dir>/<day>.csv)")
	fs.StringVar(&c.ReconOut, "out", ".", "directory the report goes to, as reconcile-<day>.json and reconcile-<day>.html")
	fs.Int64Var(&c.FeeBps, "settlement-fee-bps", settlement.DefaultFeeBps, "the platform's commission on what shops take, in basis points (60: 0.6%)")
	fs.DurationVar(&c.ReconGrace, "reconcile-grace", reconcile.DefaultGrace, "how long after a transaction's last event the real-time reconciliation judges it (a mismatch is raised this long after, plus a few seconds)")
	fs.Float64Var(&c.GrantRate, "coupon-grant-rate", 1000, "coupons a node grants per second in bulk grants, so a grant never starves a sale")
	fs.StringVar(&c.NATSURL, "nats-url", "", "external NATS JetStream URL for the event log (default: embedded server)")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "also let other processes reach the embedded NATS at this host:port")
	fs.Int64Var(&c.WorkerID, "worker-id", 0, "snowflake worker id, unique per node, 0-1023")
	fs.StringVar(&c.TokenSecret, "token-secret", "", "HMAC secret for access tokens, 32+ bytes, shared by all nodes (default: generated once into the data dir)")
	fs.DurationVar(&c.AccessTTL, "access-ttl", 15*time.Minute, "life of an access token")
	fs.DurationVar(&c.RefreshTTL, "refresh-ttl", 30*24*time.Hour, "life of a refresh token")
	fs.DurationVar(&c.OTPTTL, "otp-ttl", 5*time.Minute, "life of a one-time login code")
	fs.StringVar(&c.AdminUser, "admin-user", "admin", "username of the bootstrap admin, created on first start if admin-password is set")
	fs.StringVar(&c.AdminPassword, "admin-password", "", "password of the bootstrap admin (no admin is created when empty)")
	fs.StringVar(&c.AdminAddr, "admin-addr", "", "listen address for pprof profiling endpoints (off when empty)")
	fs.StringVar(&c.PublicURL, "public-url", "", "the URL shoppers and the payment provider reach this deployment at (default: http://<addr>)")
	fs.StringVar(&c.RefundURL, "payment-refund-url", "", "the payment provider's refund endpoint (default: the simulated provider's, at <public-url>/paysim/v1/refunds)")
	fs.StringVar(&c.LedgerURL, "payment-ledger-url", "", "where the payment provider serves its daily ledger files, <url>/<YYYY-MM-DD> (default: the simulated provider's files, read in place)")
	fs.StringVar(&c.PaymentURL, "payment-url", "", "the payment provider's pay endpoint (default: the simulated provider built in, at <public-url>/paysim/v1/pay)")
	fs.StringVar(&c.PaymentKey, "payment-key", "", "key shared with the payment provider for tickets and notifications (default: generated once into the data dir)")
	fs.StringVar(&c.PaySimLedger, "payment-sim-ledger-dir", "", "directory of the built-in simulated provider's daily ledger files, one CSV per UTC day of every charge and refund (default: <data-dir>/paysim-ledger)")
	fs.IntVar(&c.PaySimFlight, "payment-sim-in-flight", paysim.DefaultInFlight, "payments the built-in simulated provider holds at once, from the charge until its last notification is acknowledged; past it the payment page is told to retry (503)")
	fs.Float64Var(&c.UserRate, "purchase-user-rate", 2, "purchase attempts per second one shopper may make (burst 2.5x)")
	fs.Float64Var(&c.IPRate, "purchase-ip-rate", 200, "purchase attempts per second from one client IP (burst 2x)")
	fs.IntVar(&c.InFlight, "purchase-in-flight", 20_000, "purchase attempts one node holds at once before it sheds load (503)")
	fs.DurationVar(&c.AnswerWait, "purchase-answer-wait", 200*time.Millisecond, "how long a purchase waits for its decision before it is answered 202 queued with a ticket")
	fs.DurationVar(&c.MaxWait, "purchase-max-wait", purchase.DefaultMaxWait, "the longest an attempt is let into an item's line to wait for its answer, by the work ahead and the line's measured pace; while the line's shortest wait stands above a fifth of it, a rising share is turned away; both answered 503 with Retry-After-Ms")
	fs.StringVar(&c.Proxies, "trusted-proxies", "", "comma-separated CIDRs of load balancers whose X-Forwarded-For gives the client IP (none by default)")
	fs.Int64Var(&c.EventLogBytes, "event-log-bytes", nats.DefaultEventBytes, "bound of the events log; size it for the peak event rate times an hour (a full log answers ingestion 429)")
	fs.BoolVar(&c.LiveCompute, "live-compute", true, "compute the live metrics on this node (in a scale-out deployment, on exactly one node; every node serves them)")
	fs.BoolVar(&c.Dev, "dev", false, "development mode: exposes one-time codes at GET /v1/dev/otp")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or text")
}

// configCommand is the help of a command that takes the serving settings (serve, or migrate,
// which takes only those it uses: usesFlag).
func configCommand(name string) command {
	if name == "reconcile" {
		return command{name: "reconcile", env: envName,
			about: `Reconciles a day's payments and refunds against the payment provider's ledger file of that day
(one CSV per UTC day; the format is in the README): count and amount mismatches, missing
callbacks, charges twice, charges of cancelled orders, refunds due, refunds missing on either
side (stock drift needs a node's stock engine: the node's own daily run and POST
/v1/reconcile/days/{day}/run check it). It reads the relational store the node uses (--data-dir or --postgres-url),
stores the report for the API (where each finding's repair is made) and writes it as JSON and
HTML. The ledger is read in bounded memory whatever its size, and refused whole when it is
malformed, truncated or another day's.`,
			examples: []string{"surge reconcile --date 2026-12-06 --data-dir ./surge-data",
				"surge reconcile --date 2026-12-06 --ledger ./provider/2026-12-06.csv --postgres-url postgres://surge@db/surge --out ./reports"}}
	}
	if name == "migrate" {
		return command{name: "migrate", env: envName,
			about: `Applies the relational schema's migrations (SQLite in --data-dir, or --postgres-url) and says
which it applied. surge serve applies them too, at start; run this ahead of a rolling upgrade.
Every flag can also be set as the environment variable shown or as a key in the --config file.`,
			examples: []string{"surge migrate --postgres-url postgres://surge@db/surge", "surge migrate --data-dir ./surge-data"}}
	}
	return command{name: name, env: envName,
		about: `Runs a Surge node: the API, the purchase path, the payment simulator, the live metrics and the big screen.
With no backend flags it runs the embedded shape: the stock engine, SQLite and NATS JetStream in
process, all state under --data-dir. --postgres-url, --redis-url and --nats-url move each part
to a shared backend (the scale-out shape: many identical nodes, each with its own --worker-id).

Every flag can also be set as the environment variable shown or as a key in the --config TOML
file. Precedence: flag, then environment, then file, then default.`,
		examples: []string{
			"surge serve --admin-password change-me-now",
			"surge serve --data-dir /var/lib/surge --addr 0.0.0.0:8080 --public-url https://shop.example.com",
			"SURGE_POSTGRES_URL=postgres://surge@db/surge surge serve --redis-url redis://cache:6379/0 --nats-url nats://bus:4222 --worker-id 2 --token-secret \"$SECRET\"",
		}}
}

// usesFlag says whether a command of the serving settings takes a flag.
func usesFlag(command, flagName string) bool {
	stores := []string{"config", "data-dir", "postgres-url", "worker-id", "log-level", "log-format"}
	switch command {
	case "migrate":
		return slices.Contains(stores, flagName)
	case "reconcile":
		return slices.Contains(stores, flagName) || slices.Contains(reconcileFlags, flagName) || flagName == "payment-sim-ledger-dir"
	}
	return !slices.Contains(reconcileFlags, flagName)
}

// reconcileFlags are surge reconcile's own.
var reconcileFlags = []string{"date", "ledger", "out"}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "SURGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads the settings. Precedence, highest first: command-line flags, SURGE_*
// environment variables, the config file, the defaults.
func parseConfig(name string, args []string, env func(string) string, out io.Writer) (*Config, *flag.FlagSet, error) {
	c := &Config{}
	all := flag.NewFlagSet(name, flag.ContinueOnError)
	c.flags(all)
	fs := configCommand(name).flagSet(out)
	all.VisitAll(func(f *flag.Flag) {
		if usesFlag(name, f.Name) {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	if fs.NArg() > 0 {
		return nil, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	file := c.ConfigFile
	if !set["config"] && env(envName("config")) != "" {
		file = env(envName("config"))
	}
	fromFile := map[string]string{}
	if file != "" {
		var err error
		if fromFile, err = readConfigFile(file, all); err != nil { // a file shared with serve is fine
			return nil, fs, err
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v := env(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", envName(f.Name), e)
			}
			return
		}
		if v, ok := fromFile[f.Name]; ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %s: %w", file, f.Name, e)
			}
		}
	})
	if err != nil {
		return nil, fs, err
	}
	return c, fs, c.validate()
}

// readConfigFile reads a TOML file whose keys are flag names.
func readConfigFile(path string, fs *flag.FlagSet) (map[string]string, error) {
	raw := map[string]any{}
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if fs.Lookup(k) == nil || k == "config" {
			return nil, fmt.Errorf("config file %s: unknown setting %q", path, k)
		}
		out[k] = fmt.Sprint(v)
	}
	return out, nil
}

func (c *Config) validate() error {
	switch {
	case c.WorkerID < 0 || c.WorkerID > 1023:
		return fmt.Errorf("worker-id must be between 0 and 1023")
	case c.TokenSecret != "" && len(c.TokenSecret) < 32:
		return fmt.Errorf("token-secret must be at least 32 bytes")
	case c.AccessTTL <= 0 || c.RefreshTTL <= 0 || c.OTPTTL <= 0:
		return fmt.Errorf("access-ttl, refresh-ttl and otp-ttl must be positive")
	case c.LogFormat != "json" && c.LogFormat != "text":
		return fmt.Errorf("log-format must be json or text")
	case c.AnswerWait <= 0 || c.AnswerWait > time.Minute:
		return fmt.Errorf("purchase-answer-wait must be between 1ns and 1m")
	case c.MaxWait < 10*time.Millisecond || c.MaxWait > time.Minute:
		return fmt.Errorf("purchase-max-wait must be between 10ms and 1m")
	case c.UserRate <= 0 || c.IPRate <= 0 || c.InFlight <= 0 || c.PaySimFlight <= 0:
		return fmt.Errorf("purchase-user-rate, purchase-ip-rate, purchase-in-flight and payment-sim-in-flight must be positive")
	case c.proxies() == nil && c.Proxies != "":
		return fmt.Errorf("trusted-proxies must be comma-separated CIDRs such as 10.0.0.0/8")
	case c.FeeBps < 0 || c.FeeBps > 10000:
		return fmt.Errorf("settlement-fee-bps must be between 0 and 10000")
	case c.ReconGrace < time.Second || c.ReconGrace > time.Hour:
		return fmt.Errorf("reconcile-grace must be between 1s and 1h")
	case c.GrantRate < 1 || c.GrantRate > 1e6:
		return fmt.Errorf("coupon-grant-rate must be between 1 and 1000000")
	case c.StockBuckets < 0 || c.StockBuckets > 64:
		return fmt.Errorf("stock-buckets must be between 0 and 64")
	}
	return nil
}

// proxies parses --trusted-proxies; nil when empty or malformed.
func (c *Config) proxies() []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Split(c.Proxies, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil
		}
		out = append(out, p.Masked())
	}
	return out
}
