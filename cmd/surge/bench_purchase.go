package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/client"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/loadgen"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/sale"
)

// PurchaseBenchResult is what surge bench purchase --json prints.
type PurchaseBenchResult struct {
	Driver             string           `json:"driver"`
	Shoppers           int              `json:"shoppers"`
	Units              int64            `json:"units"`
	Workers            int              `json:"workers"`
	RiskRules          int              `json:"risk_rules"` // enforcing rules the node's risk pipeline ran over the attempts
	Successes          int64            `json:"successes"`
	SoldOut            int64            `json:"sold_out"`
	Errors             int64            `json:"errors"`
	BeforeSelloutPerS  float64          `json:"before_sellout_attempts_per_sec"`
	BeforeSelloutP50Ms float64          `json:"before_sellout_p50_ms"`
	BeforeSelloutP99Ms float64          `json:"before_sellout_p99_ms"`
	AfterSelloutPerS   float64          `json:"after_sellout_attempts_per_sec"`
	AfterSelloutP50Ms  float64          `json:"after_sellout_p50_ms"`
	AfterSelloutP99Ms  float64          `json:"after_sellout_p99_ms"`
	BaselinePerS       float64          `json:"baseline_trivial_handler_per_sec"`
	ExtraRequests      int64            `json:"extra_requests"`                    // wrk: repeats sent while a phase's last answers were awaited
	BeforeStatuses     map[string]int64 `json:"before_sellout_statuses,omitempty"` // wrk: answers by HTTP status
	AfterStatuses      map[string]int64 `json:"after_sellout_statuses,omitempty"`
	PurchaseRatio      float64          `json:"purchase_over_baseline"`
	SoldOutRatio       float64          `json:"sold_out_over_baseline"`
}

// benchNode starts a node in process on a temporary data directory, with a fresh token secret
// and the bench admin; adjust sets what the bench needs. It returns the node, its directory and
// what stops it and removes the directory. The node's warnings and errors go to errLog (a
// bench's standard error): a 500 in the middle of a run is otherwise only "internal error",
// and the bus closing a connection that fell behind is a warning.
func benchNode(ctx context.Context, errLog io.Writer, adjust func(*Config)) (*Main, string, func(), error) {
	dir, err := os.MkdirTemp("", "surge-bench-")
	if err != nil {
		return nil, "", nil, err
	}
	c, _, err := parseConfig("serve", nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	c.Addr, c.DataDir, c.TokenSecret, c.AdminPassword = "127.0.0.1:0", dir, fmt.Sprintf("%032x", rand.Uint64()), benchAdminPassword
	adjust(c)
	m := NewMain(*c, slog.New(slog.NewTextHandler(errLog, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := m.Run(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return m, dir, func() { m.Close(); os.RemoveAll(dir) }, nil
}

// benchAdminPassword is the password of the admin of a bench's node.
const benchAdminPassword = "bench-admin-pass"

// benchPurchase starts an embedded node in process, opens a sale of --units to --shoppers
// distinct shoppers (each fetches the item page for its token first), and measures the purchase
// API over HTTP on loopback: before the sell-out, after it (the sold-out path), and a trivial
// JSON handler driven the same way in the same run, for the ratio.
func benchPurchase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The scale-out shape needs an empty database: the bench creates its admin and merchant.
	fs := command{name: "bench purchase",
		about: `Measures the purchase API on an in-process node with one hot item: every shopper fetches the
item page (its purchase token), then wrk (or --driver go) sends each shopper's attempt once:
first as many as there are units, then the rest (the sold-out path), then a trivial JSON
handler in the same process, for the ratio. --postgres-url, --redis-url and --nats-url run the
node on the scale-out shape (an empty database).`,
		examples: []string{"surge bench purchase --shoppers 200000 --units 10000 --workers 256",
			"surge bench purchase --driver go --postgres-url postgres://…/empty_db --redis-url redis://127.0.0.1:6379/0 --nats-url nats://127.0.0.1:4222"}}.flagSet(stderr)
	shoppers := fs.Int("shoppers", 200_000, "distinct shoppers, one attempt each")
	units := fs.Int64("units", 10_000, "units of the one hot item")
	workers := fs.Int("workers", 64, "concurrent connections")
	asJSON := fs.Bool("json", false, "print one JSON object")
	driver := fs.String("driver", "wrk", "load generator: wrk (a separate process; needs wrk on PATH) or go (the bench's own client, in process)")
	profile := fs.String("cpuprofile", "", "write CPU profiles of the purchases: with wrk one per phase, to this path with -purchase, -sold-out and -trivial appended; with go one of the whole run")
	pgURL := fs.String("postgres-url", "", "run the node on this PostgreSQL (scale-out shape; default SQLite)")
	redisURL := fs.String("redis-url", "", "run the node's stock and counters on this Redis")
	natsURL := fs.String("nats-url", "", "run the node on this external NATS JetStream")
	riskRules := fs.Int("risk-rules", 0, "enforcing risk rules (of operators' shapes, none holding for the crowd) the node runs over the attempts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var secret string
	m, dir, closeNode, err := benchNode(ctx, stderr, func(c *Config) {
		secret = c.TokenSecret
		c.IPRate, c.InFlight = 1e9, 1_000_000
		c.Proxies = "127.0.0.1/32" // the go driver's shoppers each come from an address of their own
		c.PostgresURL, c.RedisURL, c.NATSURL = *pgURL, *redisURL, *natsURL
		c.RedisPrefix = fmt.Sprintf("surgebench%d", rand.Uint32())
	})
	if err != nil {
		return err
	}
	defer closeNode()
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers, MaxConnsPerHost: *workers}, Timeout: 30 * time.Second}
	cl := client.New("http://" + m.Addr)
	item, err := benchSale(ctx, cl, *units)
	if err != nil {
		return err
	}
	if *riskRules > 0 && *driver != "go" {
		return errors.New("--risk-rules needs --driver go: its shoppers send a device id and an address each")
	}
	if *riskRules > 0 {
		tok, err := cl.Login(ctx, "admin", benchAdminPassword)
		if err != nil {
			return err
		}
		for _, r := range risk.BenchRules(*riskRules) {
			if _, err := cl.As(tok.AccessToken).CreateRiskRule(ctx, *r); err != nil {
				return err
			}
		}
		fmt.Fprintf(stderr, "bench: %d risk rules enforcing\n", *riskRules)
	}
	fmt.Fprintf(stderr, "bench: fetching item pages (purchase tokens) for %d shoppers\n", *shoppers)
	tokens := make([]string, *shoppers)
	jwts := make([]string, *shoppers)
	err = parallel(*shoppers, *workers, func(i int) error {
		jwts[i] = mintShopper(secret, int64(10_000_000+i))
		d, err := cl.As(jwts[i]).Item(ctx, item)
		if err == nil {
			tokens[i] = d.Token
		}
		return err
	})
	if err != nil {
		return err
	}
	bodies := make([][]byte, *shoppers)
	for i := range bodies {
		bodies[i], _ = json.Marshal(purchase.Request{ItemID: item, Quantity: 1, RequestID: "b" + strconv.Itoa(i), Token: tokens[i]})
	}
	fmt.Fprintf(stderr, "bench: %d shoppers buy now (driver %s)\n", *shoppers, *driver)
	res := PurchaseBenchResult{Driver: *driver, Shoppers: *shoppers, Units: *units, Workers: *workers, RiskRules: *riskRules}
	switch *driver {
	case "wrk":
		err = purchaseWrk(ctx, &res, "http://"+m.Addr+"/v1/purchases", jwts, bodies, dir, *profile, stderr)
	case "go":
		var stopProfile func()
		if stopProfile, err = startProfile(*profile); err != nil {
			return err
		}
		err = purchaseGo(ctx, &res, httpc, "http://"+m.Addr+"/v1/purchases", jwts, bodies)
		stopProfile()
	default:
		err = fmt.Errorf("--driver is wrk or go, not %q", *driver)
	}
	if err != nil {
		return err
	}
	res.PurchaseRatio, res.SoldOutRatio = res.BeforeSelloutPerS/res.BaselinePerS, res.AfterSelloutPerS/res.BaselinePerS
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "%d shoppers, %d units, %d connections: %d orders, %d sold out, %d errors\n", res.Shoppers, res.Units, res.Workers, res.Successes, res.SoldOut, res.Errors)
	fmt.Fprintf(stdout, "before sell-out  %9.0f attempts/s  p50 %.2f ms  p99 %.2f ms  (%.0f%% of the trivial handler)\n", res.BeforeSelloutPerS, res.BeforeSelloutP50Ms, res.BeforeSelloutP99Ms, 100*res.PurchaseRatio)
	fmt.Fprintf(stdout, "after sell-out   %9.0f attempts/s  p50 %.2f ms  p99 %.2f ms  (%.0f%% of the trivial handler)\n", res.AfterSelloutPerS, res.AfterSelloutP50Ms, res.AfterSelloutP99Ms, 100*res.SoldOutRatio)
	fmt.Fprintf(stdout, "trivial handler  %9.0f requests/s (same load generator, same run)\n", res.BaselinePerS)
	if res.Driver == "wrk" {
		fmt.Fprintf(stdout, "answers by status: before %v, after %v\n", res.BeforeStatuses, res.AfterStatuses)
	}
	if res.Successes < min(res.Units, int64(res.Shoppers)) {
		return fmt.Errorf("%d orders for %d units", res.Successes, res.Units)
	}
	return nil
}

// purchaseGo drives the purchases with the bench's own client, one attempt per shopper on
// --workers connections, and splits the samples at the first "sold out"; then the trivial
// handler the same way.
func purchaseGo(ctx context.Context, res *PurchaseBenchResult, httpc *http.Client, url string, jwts []string, bodies [][]byte) error {
	type sample struct {
		at, d time.Duration
	}
	samples := make([]sample, len(jwts))
	var soldOutAt atomic.Int64
	start := time.Now()
	var successes, soldOut, errs atomic.Int64
	err := parallel(len(jwts), res.Workers, func(i int) error {
		t0 := time.Now()
		status, err := post(ctx, httpc, url, jwts[i], bodies[i], shopperOrigin(i))
		samples[i] = sample{at: t0.Sub(start), d: time.Since(t0)}
		switch {
		case err != nil:
			errs.Add(1)
		case status == http.StatusCreated:
			successes.Add(1)
		case status == http.StatusConflict:
			soldOut.Add(1)
			soldOutAt.CompareAndSwap(0, int64(t0.Sub(start)))
		default:
			errs.Add(1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	end := time.Since(start)
	res.Successes, res.SoldOut, res.Errors = successes.Load(), soldOut.Load(), errs.Load()
	cut := time.Duration(soldOutAt.Load())
	var before, after []float64
	for _, s := range samples {
		if s.at < cut || cut == 0 {
			before = append(before, float64(s.d.Microseconds())/1000)
		} else {
			after = append(after, float64(s.d.Microseconds())/1000)
		}
	}
	if cut == 0 {
		cut = end
	}
	res.BeforeSelloutPerS = float64(len(before)) / cut.Seconds()
	res.AfterSelloutPerS = float64(len(after)) / (end - cut).Seconds()
	res.BeforeSelloutP50Ms, res.BeforeSelloutP99Ms = loadgen.Percentiles(before)
	res.AfterSelloutP50Ms, res.AfterSelloutP99Ms = loadgen.Percentiles(after)
	res.BaselinePerS, err = baseline(ctx, len(jwts), res.Workers)
	return err
}

//go:embed bench_purchase.lua
var wrkScript string

// wrkRun is what the wrk script prints when it is done.
type wrkRun struct {
	Requests     int64            `json:"requests"`
	DurationUs   float64          `json:"duration_us"`
	P50Us        float64          `json:"p50_us"`
	P99Us        float64          `json:"p99_us"`
	SocketErrors int64            `json:"socket_errors"`
	Status       map[string]int64 `json:"status"`
}

// purchaseWrk drives the purchases with wrk, a separate process: first the shoppers the stock
// can serve (the purchase path, every answer after a durable reservation and order command),
// then everyone else (the sold-out path), then a trivial JSON handler with the same requests.
// Each phase sends every shopper's attempt exactly once. With profile set, each phase writes a
// CPU profile of the node (and the trivial handler) while wrk runs, to profile + "-" + its name:
// the phases cost so differently that one profile of all three answers nothing.
func purchaseWrk(ctx context.Context, res *PurchaseBenchResult, url string, jwts []string, bodies [][]byte, dir, profile string, stderr io.Writer) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("--driver wrk needs wrk on PATH (Debian: apt-get install wrk), or use --driver go: %w", err)
	}
	script := filepath.Join(dir, "purchase.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o600); err != nil {
		return err
	}
	const threads = 2
	phase := func(name, url string, from, to int) (*wrkRun, error) {
		var b bytes.Buffer
		for i := from; i < to; i++ {
			b.WriteString(jwts[i])
			b.WriteByte(' ')
			b.Write(bodies[i])
			b.WriteByte('\n')
		}
		data := filepath.Join(dir, name+".txt")
		if err := os.WriteFile(data, b.Bytes(), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "bench: %s: %d requests with wrk on %d connections\n", name, to-from, res.Workers)
		cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(res.Workers),
			"-d", "10m", "--timeout", "10s", "-s", script, url, "--", data, strconv.Itoa(threads))
		stopProfile := func() {}
		if profile != "" {
			var err error
			if stopProfile, err = startProfile(profile + "-" + name); err != nil {
				return nil, err
			}
		}
		defer stopProfile()
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("wrk: %w", err)
		}
		var last []byte
		sc := bufio.NewScanner(stdout)
		for finished := 0; sc.Scan(); {
			if last = append(last[:0], sc.Bytes()...); string(last) == "thread done" {
				if finished++; finished == threads {
					cmd.Process.Signal(os.Interrupt) // every request answered: stop wrk's clock now
				}
			}
		}
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("wrk: %w", err)
		}
		var run wrkRun
		if err := json.Unmarshal(last, &run); err != nil {
			return nil, fmt.Errorf("wrk printed %q last: %w", last, err)
		}
		if run.Requests != int64(to-from) {
			return nil, fmt.Errorf("wrk answered %d of %d requests", run.Requests, to-from)
		}
		return &run, nil
	}
	sellable := int(min(res.Units, int64(len(jwts))))
	if len(jwts)-sellable < threads || sellable < threads {
		return fmt.Errorf("--driver wrk needs at least %d units and %d shoppers more than units", threads, threads)
	}
	buy, err := phase("purchase", url, 0, sellable)
	if err != nil {
		return err
	}
	late, err := phase("sold-out", url, sellable, len(jwts))
	if err != nil {
		return err
	}
	srv, trivialURL, err := trivialServer()
	if err != nil {
		return err
	}
	defer srv.Close()
	triv, err := phase("trivial", trivialURL, sellable, len(jwts))
	if err != nil {
		return err
	}
	rate := func(r *wrkRun) float64 { return float64(r.Requests) / (r.DurationUs / 1e6) }
	res.Successes, res.SoldOut = buy.Status["201"], late.Status["409"]
	res.Errors = buy.SocketErrors + late.SocketErrors + buy.Requests - buy.Status["201"] + late.Requests - late.Status["409"]
	res.BeforeStatuses, res.AfterStatuses = buy.Status, late.Status
	res.BeforeSelloutPerS, res.BeforeSelloutP50Ms, res.BeforeSelloutP99Ms = rate(buy), buy.P50Us/1000, buy.P99Us/1000
	res.AfterSelloutPerS, res.AfterSelloutP50Ms, res.AfterSelloutP99Ms = rate(late), late.P50Us/1000, late.P99Us/1000
	res.BaselinePerS = rate(triv)
	return nil
}

// benchSale creates a merchant, an item of units, and a session opening in a second.
func benchSale(ctx context.Context, cl *client.Client, units int64) (int64, error) {
	tok, err := cl.Login(ctx, "admin", benchAdminPassword)
	if err != nil {
		return 0, err
	}
	admin := cl.As(tok.AccessToken)
	mu, err := admin.CreateUser(ctx, auth.NewUser{Username: "benchshop", Password: "bench-shop-pass", Role: surge.RoleMerchant})
	if err != nil {
		return 0, err
	}
	spu, err := admin.CreateSPU(ctx, catalog.SPUInput{MerchantID: mu.ID, Code: "HOT", Title: "Hot item", CategoryL1: "Digital"})
	if err != nil {
		return 0, err
	}
	sku, err := admin.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: "HOT-1", Title: "Hot item", Stock: units,
		Price: surge.Money{Amount: 100, Currency: "CNY"}, CostPrice: surge.Money{Amount: 50, Currency: "CNY"}})
	if err != nil {
		return 0, err
	}
	start := time.Now().Add(time.Second)
	se, err := admin.CreateSession(ctx, sale.SessionInput{Name: "bench", StartAt: start, EndAt: start.Add(time.Hour)})
	if err != nil {
		return 0, err
	}
	it, err := admin.AddItem(ctx, se.ID, sale.ItemInput{SKUID: sku.ID, Allotted: units, SalePrice: surge.Money{Amount: 1, Currency: "CNY"}, PerUserLimit: 1})
	if err != nil {
		return 0, err
	}
	if _, err := admin.Publish(ctx, se.ID); err != nil {
		return 0, err
	}
	time.Sleep(time.Until(start) + 10*time.Millisecond)
	return it.ID, nil
}

func mintShopper(secret string, user int64) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "surge", "sub": strconv.FormatInt(user, 10),
		"role": "shopper", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	return s
}

// shopperOrigin is shopper i's device and address: four shoppers to an address, a few
// addresses to a network, as a crowd comes.
func shopperOrigin(i int) http.Header {
	return http.Header{surgehttp.DeviceHeader: {"bench-" + strconv.Itoa(i)},
		"X-Forwarded-For": {fmt.Sprintf("10.%d.%d.%d", i>>10&255, i>>2&255, i>>18+1)}}
}

func post(ctx context.Context, c *http.Client, url, token string, body []byte, hdr http.Header) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// baseline drives a trivial JSON handler with the same client for as many requests.
func baseline(ctx context.Context, n, workers int) (float64, error) {
	srv, url, err := trivialServer()
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	body := []byte(`{"item_id":"1","quantity":1,"request_id":"x","token":"y"}`)
	start := time.Now()
	err = parallel(n, workers, func(int) error { _, err := post(ctx, httpc, url, "", body, nil); return err })
	return float64(n) / time.Since(start).Seconds(), err
}

// trivialServer serves a trivial JSON handler on loopback, the yardstick of the purchase path.
func trivialServer() (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"status":"success"}`)
	})}
	go srv.Serve(ln) // stopped by the caller's Close
	return srv, "http://" + ln.Addr().String() + "/", nil
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
