package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/postgres"
	"github.com/surgecommerce/surge/storetest"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// TestMain lets this test binary stand in for surge where a command runs surge again as a child
// process of its own (surge bench live measures serving from one): started with
// "bench get-at-rate", it is that command.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == "get-at-rate" {
		os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// shape is a deployment shape a test runs on.
type shape struct {
	name  string
	setup func(t *testing.T, c *Config)
}

// shapes returns the embedded shape, and the scale-out shape when its backends are configured.
func shapes() []shape {
	list := []shape{{name: "embedded", setup: func(*testing.T, *Config) {}}}
	pg, rd, nt := os.Getenv("SURGE_TEST_POSTGRES_URL"), os.Getenv("SURGE_TEST_REDIS_URL"), os.Getenv("SURGE_TEST_NATS_URL")
	if pg != "" && rd != "" && nt != "" {
		list = append(list, shape{name: "scale-out", setup: func(t *testing.T, c *Config) {
			c.PostgresURL, c.RedisURL, c.NATSURL = freshSchema(t, pg), rd, nt
			c.RedisPrefix = fmt.Sprintf("surge_e2e_%d", rand.Uint64())
		}})
	}
	return list
}

// freshSchema creates a schema for one test and returns a URL that uses it.
func freshSchema(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := postgres.Open(ctx, base, storetest.IDs())
	if err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("surge_e2e_%d", rand.Uint64()>>1)
	if _, err := admin.SQL().ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.SQL().ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	})
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// testConfig is the default configuration on port 0 in a temporary data dir.
func testConfig(t *testing.T) Config {
	t.Helper()
	c, _, err := parseConfig("serve", nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c.Addr, c.DataDir, c.Dev = "127.0.0.1:0", t.TempDir(), true
	c.AdminPassword, c.TokenSecret = "admin-password", testSecret
	return *c
}

// start runs a node with c and returns a client for it.
func start(t *testing.T, c Config) (*Main, *client.Client) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	m := NewMain(c, log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	base := "http://" + m.Addr
	return m, client.New(base).WithHTTP(&http.Client{Timeout: 30 * time.Second, Transport: newAPICheck(t, base)})
}

func TestParseConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/surge.toml"
	os.WriteFile(file, []byte("addr = \"127.0.0.1:1111\"\nworker-id = 7\naccess-ttl = \"1m\"\nredis-url = \"redis://file\"\n"), 0o600)
	env := map[string]string{"SURGE_CONFIG": file, "SURGE_WORKER_ID": "9", "SURGE_REDIS_URL": "redis://env"}
	c, _, err := parseConfig("serve", []string{"--redis-url", "redis://flag"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:1111" || c.WorkerID != 9 || c.RedisURL != "redis://flag" || c.AccessTTL != time.Minute || c.DataDir != "./surge-data" {
		t.Fatalf("parseConfig = %+v; want addr from file, worker from env, redis from flag, default data dir", c)
	}
	os.WriteFile(file, []byte("adr = \"x\"\n"), 0o600)
	if _, _, err := parseConfig("serve", nil, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown setting") {
		t.Fatalf("parseConfig(unknown key) = %v; want unknown setting", err)
	}
	for _, args := range [][]string{{"--worker-id", "1024"}, {"--token-secret", "short"}, {"--log-format", "xml"}, {"extra"}} {
		if _, _, err := parseConfig("serve", args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("parseConfig(%v) = nil error", args)
		}
	}
}

func TestRunCommands(t *testing.T) {
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"nonsense"}, os.Getenv, &out, &errOut); code != 2 {
		t.Errorf("run(nonsense) = %d; want 2", code)
	}
	dir := t.TempDir()
	env := func(k string) string { return map[string]string{"SURGE_DATA_DIR": dir}[k] }
	if code := run(context.Background(), []string{"migrate"}, env, &out, &errOut); code != 0 || !strings.Contains(out.String(), "applied versions [1 2") {
		t.Fatalf("run(migrate) = %d, %q, %q", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"migrate"}, env, &out, &errOut); code != 0 || !strings.Contains(out.String(), "up to date") {
		t.Fatalf("run(migrate again) = %d, %q", code, out.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"serve", "--help"}, env, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "SURGE_POSTGRES_URL") {
		t.Fatalf("run(serve --help) = %d; help lacks the environment variables: %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"payment-sim"}, env, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "payment-key") {
		t.Fatalf("run(payment-sim without a key) = %d, %q; want a clear refusal", code, errOut.String())
	}
}

// TestREADMEListsEverySetting keeps the configuration reference true.
func TestREADMEListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, fs, err := parseConfig("serve", nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		for _, want := range []string{"`--" + f.Name + "`", "`" + envName(f.Name) + "`"} {
			if !strings.Contains(string(readme), want) {
				t.Errorf("README.md does not mention %s", want)
			}
		}
	})
}

// Every command answers --help in the one style, with exit 0: what it does, each flag as
// --name [ENV], examples; never Go's bare "Usage of".
func TestEveryCommandsHelp(t *testing.T) {
	flagLine := regexp.MustCompile(`^  --[a-z0-9-]+(  \[SURGE_[A-Z0-9_]+\])?$`)
	for _, args := range [][]string{{"help"}, {"--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"reconcile", "--help"}, {"bench", "reconcile", "--help"}, {"bench", "--help"},
		{"bench", "stock", "--help"}, {"bench", "coupons", "--help"}, {"bench", "purchase", "--help"}, {"bench", "nexmark", "--help"}, {"bench", "live", "--help"}, {"bench", "orders", "--help"},
		{"loadgen", "--help"}, {"demo", "--help"}, {"payment-sim", "-h"}} {
		var out, errOut strings.Builder
		code := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
		help := out.String() + errOut.String()
		name := strings.Join(slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, "-") || a == "help" }), " ")
		if code != 0 {
			t.Errorf("surge %v exits %d; want 0", args, code)
		}
		if want := "Usage: surge " + cmp.Or(name, "<command>") + " "; !strings.HasPrefix(help, want) || strings.Contains(help, "Usage of") {
			t.Errorf("surge %v's help does not begin %q:\n%s", args, want, help)
		}
		if !strings.Contains(help, "\nExamples:\n  surge ") {
			t.Errorf("surge %v's help has no examples", args)
		}
		for _, line := range strings.Split(help, "\n") {
			if strings.HasPrefix(line, "  -") && !flagLine.MatchString(line) {
				t.Errorf("surge %v: flag line %q is not --name [ENV]", args, line)
			}
		}
		if name == "migrate" && strings.Contains(help, "--purchase-max-wait") {
			t.Errorf("surge migrate --help lists the serving flags")
		}
	}
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"bench"}, func(string) string { return "" }, &out, &errOut); code == 0 || strings.Contains(errOut.String(), "get-at-rate") {
		t.Errorf("surge bench = %d, %q; want a failure that lists the measurements only", code, errOut.String())
	}
}
