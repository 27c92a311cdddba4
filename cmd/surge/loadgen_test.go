package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/loadgen"
	"github.com/surgecommerce/surge/purchase"
)

// A short crowd against a test server passes every invariant, on both shapes: shoppers and
// bots, Zipf popularity, payments and abandoned orders that expire before the check.
func TestLoadgenPassesTheInvariants(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			c.Proxies, c.IPRate = "127.0.0.1/32", 50 // the crowd's own addresses count, so bots get throttled
			sh.setup(t, &c)
			_, cl := start(t, c)
			tm := newTeam(t, cl)
			api := loadgen.NewAPI([]string{cl.BaseURL()}, 128)
			api.Admin, api.Items, api.Units, api.Limit = tm.admin, 3, 40, 1
			api.PayTimeout, api.Duration, api.OpensIn = 5*time.Second, time.Hour, 1500*time.Millisecond
			cfg := loadgen.Config{Shoppers: 300, Duration: 2 * time.Second, Rate: 150, Spike: 4, SpikeFor: 500 * time.Millisecond,
				Zipf: 1.2, BotShare: 0.2, Bots: 3, BotIPs: 1, PayShare: 0.5, PayDelay: 100 * time.Millisecond, CouponShare: 0.5,
				MaxInFlight: 64, Seed: 7, Settle: 20 * time.Second, PayTimeout: api.PayTimeout + time.Second}
			res, err := loadgen.Run(context.Background(), api, cfg, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Passed {
				t.Fatalf("invariants failed: %+v", res.Invariants)
			}
			got := map[string]string{}
			for _, r := range res.Invariants {
				got[r.Invariant] = r.Status
				if r.Invariant == audit.CouponsBudgets && r.Checked < 2 {
					t.Errorf("invariant 5 checked %d orders and batches; want the coupon orders and their batch", r.Checked)
				}
			}
			// Invariant 6 too: the paid orders' amount equals the live GMV of the session.
			// And the crowd's own: every winner read its order in time, and every payer paid.
			// Invariant 5 as well: half the shoppers bought with a coupon.
			for _, name := range []string{audit.StockBalance, audit.PerUserLimit, audit.OneOrderEach, audit.ReleasedOnce, audit.GMVMatches,
				audit.CouponsBudgets, loadgen.AcknowledgedOrders, loadgen.OrdersReadable, loadgen.PaymentsSucceed} {
				if got[name] != audit.Pass {
					t.Errorf("%s = %s; want PASS", name, got[name])
				}
			}
			// Units of abandoned orders come back when the orders expire, and can sell again
			// while the crowd goes on: the audit's stock balance counts them exactly.
			o := res.Outcomes
			if res.Orders == 0 || res.Orders > 3*40+res.Abandoned || o[loadgen.OutSuccess] < res.Orders || o[loadgen.OutError] > 0 ||
				res.Paid == 0 || res.Abandoned == 0 || res.PayErrors > 0 || res.Attempts == 0 || len(res.Series) == 0 {
				t.Fatalf("result = %+v", res)
			}
			// The stock chart was read: units left, within the allotment.
			read := 0
			for _, p := range res.Series {
				if p.Remaining > 3*40 {
					t.Fatalf("second %d: %d units left of %d", p.Second, p.Remaining, 3*40)
				}
				if p.Remaining >= 0 {
					read++
				}
			}
			if read == 0 {
				t.Fatalf("the stock chart has no reading: %+v", res.Series)
			}
		})
	}
}

// The command prints one JSON object with the figures and verdicts, writes the HTML report,
// and runs the same crowd against the reference build.
// Bots on a few devices buy until a rule about accounts per device is enabled; within a second
// of it they stop, while the shoppers keep buying, on both shapes; the report has both curves.
func TestLoadgenBotsStopOnceARuleActs(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			c.Proxies = "127.0.0.1/32"
			sh.setup(t, &c)
			_, cl := start(t, c)
			tm := newTeam(t, cl)
			api := loadgen.NewAPI([]string{cl.BaseURL()}, 128)
			riskCaughtUp(t, cl)
			api.Admin, api.Items, api.Units, api.Limit = tm.admin, 2, 5000, 50
			api.PayTimeout, api.Duration, api.OpensIn = 5*time.Second, time.Hour, 1500*time.Millisecond
			cfg := loadgen.Config{Shoppers: 1200, Duration: 6 * time.Second, Rate: 200, Spike: 1, SpikeFor: time.Second,
				BotShare: 0.3, Bots: 40, BotIPs: 4, BotDevices: 4, PayShare: 0.5, PayDelay: 100 * time.Millisecond,
				MaxInFlight: 64, Seed: 11, Settle: 20 * time.Second, PayTimeout: api.PayTimeout + time.Second,
				RiskRule: "accounts_1h.device > 3", RiskOn: surge.SubjectDevice, RiskAction: surge.ActionBlock, RiskAfter: 2 * time.Second}
			res, err := loadgen.Run(context.Background(), api, cfg, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Passed {
				t.Fatalf("invariants failed: %+v", res.Invariants)
			}
			var botsBefore int64
			for i, n := range res.BotSuccessesPerSec {
				if float64(i+1)*1000 <= res.RiskRuleAtMs {
					botsBefore += n
				}
			}
			if res.RiskRule == nil || res.RiskRuleError != "" || res.RiskRuleAtMs < 1000 || botsBefore == 0 ||
				res.BotSuccessesAfterRule != 0 || res.ShopperSuccessesAfterRule == 0 || res.BotRiskRefused == 0 || res.ShopperRiskRefused != 0 {
				t.Fatalf("rule at %.0f ms (%v %s): bots bought %d before it and %d after, shoppers %d after; refused bots %d, shoppers %d; curves %v %v",
					res.RiskRuleAtMs, res.RiskRule != nil, res.RiskRuleError, botsBefore, res.BotSuccessesAfterRule, res.ShopperSuccessesAfterRule,
					res.BotRiskRefused, res.ShopperRiskRefused, res.BotSuccessesPerSec, res.ShopperSuccessesPerSec)
			}
			t.Logf("orders per second, bots %v, shoppers %v; rule at %.0f ms", res.BotSuccessesPerSec, res.ShopperSuccessesPerSec, res.RiskRuleAtMs)
		})
	}
}

func TestLoadgenCommand(t *testing.T) {
	c := saleConfig(t)
	c.Proxies = "127.0.0.1/32"
	_, cl := start(t, c)
	html := filepath.Join(t.TempDir(), "report.html")
	crowd := []string{"--shoppers", "200", "--rate", "150", "--duration", "1s", "--items", "2", "--units", "30",
		"--pay-timeout", "1s", "--opens-in", "1500ms", "--in-flight", "32", "--settle", "20s", "--json"}
	runJSON := func(args ...string) map[string]any {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append([]string{"loadgen"}, args...), func(string) string { return "" }, &out, &errOut); code != 0 {
			t.Fatalf("loadgen %v = %d: %s", args, code, errOut.String())
		}
		var res map[string]any
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("output %q: %v", out.String(), err)
		}
		return res
	}
	res := runJSON(append(crowd, "--target", cl.BaseURL(), "--admin-password", "admin-password", "--html", html)...)
	for _, k := range []string{"attempts_per_sec", "p50_ms", "p99_ms", "outcomes", "invariants", "shed", "pay_errors",
		"order_visible_p99_ms", "send_lag_p99_ms", "requests", "node_requests", "node_requests_per_sec"} {
		if _, ok := res[k]; !ok {
			t.Errorf("JSON lacks %s: %v", k, res)
		}
	}
	if res["passed"] != true {
		t.Fatalf("passed = %v: %v", res["passed"], res["invariants"])
	}
	if n := res["node_requests"].(map[string]any)["POST /v1/payments/callback"]; n == nil || n.(float64) < 1 {
		t.Errorf("node_requests = %v; want the provider's callbacks counted", res["node_requests"])
	}
	if b, err := os.ReadFile(html); err != nil || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("PASS")) ||
		!bytes.Contains(b, []byte("7-orders-readable")) || !bytes.Contains(b, []byte("readable after success")) {
		t.Fatalf("HTML report: %v, %d bytes", err, len(b))
	}
	redisURL := os.Getenv("SURGE_TEST_REDIS_URL")
	if redisURL == "" {
		return
	}
	ref := runJSON(append(crowd, "--reference", "--redis-url", redisURL)...)
	if ref["passed"] != true || ref["target"] != "reference (Redis + SQLite)" {
		t.Fatalf("reference run = %v", ref)
	}
	if out := ref["outcomes"].(map[string]any); out["success"].(float64) != 60 {
		t.Fatalf("reference sold %v; want all 60 units", out["success"])
	}
}

// surge demo starts its own node afresh, runs the sale with a quiet console (its own lines and
// the crowd's progress, the node's log in a file), reports with product names and payment
// errors explained, writes the HTML report, and stays up with a big screen address whose
// token works, until interrupted.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	var out, errOut syncBuffer
	args := []string{"demo", "--data-dir", dir, "--addr", "127.0.0.1:0", "--duration", "1s", "--shoppers", "200",
		"--rate", "100", "--pay-timeout", "1s"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, &out, &errOut) }()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "The node stays up") {
		select {
		case code := <-done:
			t.Fatalf("demo ended (%d) before staying up: %s\n%s", code, errOut.String(), out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not report in 2 minutes: %s\n%s", errOut.String(), out.String())
		}
	}
	console := errOut.String() + out.String()
	for _, want := range []string{"demo: node up at http://127.0.0.1:", "demo: watch the sale on the big screen: http://", "demo: replaying ",
		"PASSED", "payment errors 0\n", "items:\n  Phone X 256GB ", "Report with charts: " + filepath.Join(dir, "report.html"), "The node logged 0 errors"} {
		if !strings.Contains(console, want) {
			t.Errorf("the console lacks %q:\n%s", want, console)
		}
	}
	if strings.Contains(console, `"level":`) || strings.Contains(console, "level=") {
		t.Errorf("the node's log reached the console:\n%s", console)
	}
	if n := strings.Count(console, "\n"); n > 80 {
		t.Errorf("the console has %d lines for a 1 s sale; want progress and the result only", n)
	}
	if html, err := os.ReadFile(filepath.Join(dir, "report.html")); err != nil || !bytes.Contains(html, []byte("<td>Phone X 256GB</td>")) {
		t.Errorf("report.html: %v; want the items by name", err)
	}
	if info, err := os.Stat(filepath.Join(dir, "node.log")); err != nil || info.Size() == 0 {
		t.Errorf("node.log: %v; want the node's log", err)
	}
	screen := regexp.MustCompile(`big screen +(http://[^/]+)/live#token=(\S+)`).FindStringSubmatch(out.String())
	if screen == nil {
		t.Fatalf("no big screen address in:\n%s", out.String())
	}
	sc := ok[*live.Screen](t, "Screen")(client.New(screen[1]).As(screen[2]).Screen(ctx, ""))
	if len(sc.TopItems) == 0 || sc.TopItems[0].Name == "" {
		t.Errorf("the big screen's top items %+v; want them by name", sc.TopItems)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("demo = %d after Ctrl-C: %s", code, errOut.String())
	}

	// A second demo starts afresh in the same directory; a directory a demo did not make is refused.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "precious.db"), []byte("x"), 0o644)
	var o, e syncBuffer
	if code := run(context.Background(), []string{"demo", "--data-dir", other, "--exit"}, func(string) string { return "" }, &o, &e); code != 1 ||
		!strings.Contains(e.String(), "holds precious.db, which a demo did not make") {
		t.Fatalf("demo in a directory it did not make = %d, %s", code, e.String())
	}
	if err := freshDemoDir(dir); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the last demo's directory holds %d entries after a fresh start; want only its mark", len(entries))
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644) // a user's file in a demo's directory stays
	if err := freshDemoDir(dir); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("freshDemoDir with a user's file in it = %v; want a refusal naming it", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatalf("the user's file: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lyingNode is a deployment that acknowledges one purchase it never made: the fault the
// crowd's own check is there to catch.
type lyingNode struct {
	*loadgen.API
	lied atomic.Bool
}

func (l *lyingNode) Buy(ctx context.Context, sh loadgen.Shopper, req purchase.Request) (*purchase.Result, error) {
	if l.lied.CompareAndSwap(false, true) {
		return &purchase.Result{Status: purchase.StatusSuccess, OrderID: 1 << 60}, nil
	}
	return l.API.Buy(ctx, sh, req)
}

// An acknowledged order that does not exist fails the run, even though the stores agree.
func TestLoadgenCatchesALostAcknowledgedOrder(t *testing.T) {
	c := saleConfig(t)
	c.Proxies = "127.0.0.1/32"
	_, cl := start(t, c)
	tm := newTeam(t, cl)
	api := loadgen.NewAPI([]string{cl.BaseURL()}, 32)
	api.Admin, api.Items, api.Units, api.Limit = tm.admin, 1, 20, 1
	api.PayTimeout, api.Duration, api.OpensIn = time.Minute, time.Hour, 1500*time.Millisecond
	res, err := loadgen.Run(context.Background(), &lyingNode{API: api}, loadgen.Config{Shoppers: 40, Duration: time.Second, Rate: 60,
		MaxInFlight: 16, Seed: 3, Settle: 10 * time.Second}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	verdict := map[string]audit.Result{}
	for _, r := range res.Invariants {
		verdict[r.Invariant] = r
	}
	if ack := verdict[loadgen.AcknowledgedOrders]; res.Passed || ack.Status != audit.Fail || ack.Violations != 1 {
		t.Fatalf("passed %v, %s = %+v; want FAIL with the one lost order", res.Passed, loadgen.AcknowledgedOrders, ack)
	}
	if verdict[audit.OneOrderEach].Status != audit.Pass {
		t.Fatalf("%s = %+v; the stores themselves agree", audit.OneOrderEach, verdict[audit.OneOrderEach])
	}
}
