package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/purchase"
)

// A small purchase bench sells exactly its units and answers everyone else "sold out", with
// either load generator. wrk runs where it is installed; CI installs it and sets
// SURGE_TEST_REQUIRE_WRK so that its absence fails the run rather than skipping.
func TestBenchPurchase(t *testing.T) {
	for _, driver := range []string{"go", "wrk"} {
		t.Run(driver, func(t *testing.T) {
			if _, err := exec.LookPath(driver); driver == "wrk" && err != nil {
				if os.Getenv("SURGE_TEST_REQUIRE_WRK") != "" {
					t.Fatal("wrk is required (SURGE_TEST_REQUIRE_WRK) but not on PATH")
				}
				t.Skip("wrk is not installed")
			}
			var out, errOut bytes.Buffer
			profile := filepath.Join(t.TempDir(), "cpu")
			args := []string{"bench", "purchase", "--shoppers", "600", "--units", "150", "--workers", "8", "--driver", driver, "--json",
				"--cpuprofile", profile}
			if code := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 0 {
				t.Fatalf("bench purchase = %d: %s", code, errOut.String())
			}
			var res PurchaseBenchResult
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("output %q: %v", out.String(), err)
			}
			if res.Successes != 150 || res.SoldOut != 450 || res.Errors != 0 || res.BeforeSelloutPerS <= 0 ||
				res.AfterSelloutPerS <= 0 || res.BaselinePerS <= 0 || res.Driver != driver {
				t.Fatalf("bench purchase = %+v; want 150 orders, 450 sold out, no errors, rates", res)
			}
			profiles := []string{profile} // the go driver's run is one
			if driver == "wrk" {
				profiles = []string{profile + "-purchase", profile + "-sold-out", profile + "-trivial"}
			}
			for _, p := range profiles {
				if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
					t.Errorf("CPU profile %s: %v", p, err)
				}
			}
		})
	}
}

// BenchmarkSoldOutAnswer is the node's own cost of a "sold out" answer, the answer nearly every
// shopper of a sale gets: the whole handler chain of a real embedded node (request id, metrics,
// authentication, body, the gate, the reservation lookup, the error body), called in process
// without the network, so that its time and allocations are not drowned in the load
// generator's and the kernel's. It runs on every core, so that ns/op is the wall time per answer
// with all of them busy: the node's CPU per answer is about ns/op times GOMAXPROCS.
func BenchmarkSoldOutAnswer(b *testing.B) {
	ctx := context.Background()
	var secret string
	m, _, closeNode, err := benchNode(ctx, io.Discard, func(c *Config) { secret = c.TokenSecret; c.IPRate = 1e9 })
	if err != nil {
		b.Fatal(err)
	}
	defer closeNode()
	cl := client.New("http://" + m.Addr)
	item, err := benchSale(ctx, cl, 1)
	if err != nil {
		b.Fatal(err)
	}
	buyer := cl.As(mintShopper(secret, 9))
	d, err := buyer.Item(ctx, item)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := buyer.Purchase(ctx, purchase.Request{ItemID: item, Quantity: 1, RequestID: "first", Token: d.Token}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // past the lane's refresh of the stock left (100 ms)

	const shoppers = 1024 // each remembered as authenticated, as in a sale's first seconds
	jwts := make([]string, shoppers)
	bodies := make([][]byte, shoppers)
	for i := range jwts {
		jwts[i] = "Bearer " + mintShopper(secret, int64(1000+i))
		bodies[i], _ = json.Marshal(purchase.Request{ItemID: item, Quantity: 1, RequestID: "r" + strconv.Itoa(i), Token: d.Token})
	}
	h := m.srv.Handler
	answer := func(i int) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/purchases", bytes.NewReader(bodies[i%shoppers]))
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Authorization", jwts[i%shoppers])
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range shoppers {
		if w := answer(i); w.Code != http.StatusConflict || !bytes.Contains(w.Body.Bytes(), []byte(`"code":"ESOLDOUT"`)) {
			b.Fatalf("shopper %d got %d %s; want sold out", i, w.Code, w.Body)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) { // on every core, so that the node's background work (the attempts' events) competes as in a sale
		for pb.Next() {
			if w := answer(int(next.Add(1))); w.Code != http.StatusConflict {
				b.Errorf("answered %d; want 409 sold out", w.Code)
				return
			}
		}
	})
}

// A bench's node reports its errors on the bench's standard error, and nothing quieter: a 500
// in the middle of a run says why.
func TestBenchNodeLogsWarningsAndErrors(t *testing.T) {
	var errLog syncBuffer
	m, _, closeNode, err := benchNode(context.Background(), &errLog, func(*Config) {})
	if err != nil {
		t.Fatal(err)
	}
	m.Log.Info("a notice")
	m.Log.Warn("a warning")
	m.Log.Error("an error", "err", "disk full")
	closeNode()
	if got := errLog.String(); !strings.Contains(got, "disk full") || !strings.Contains(got, "a warning") || strings.Contains(got, "a notice") {
		t.Errorf("the bench node's log = %q; want its warnings and errors, and nothing else", got)
	}
}

// surge bench coupons claims coupons and red envelopes on every configured backend (a Redis
// budget unsplit and split) and checks the ledger's count.
func TestBenchCoupons(t *testing.T) {
	args := []string{"bench", "coupons", "--duration", "300ms", "--workers", "8", "--json"}
	want := []string{"embedded batch 0", "embedded budget 0"}
	if url := os.Getenv("SURGE_TEST_REDIS_URL"); url != "" {
		args = append(args, "--redis-url", url, "--buckets", "4")
		want = append(want, "redis batch 0", "redis budget 0", "redis budget 4")
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("bench coupons = %d: %s", code, errOut.String())
	}
	dec := json.NewDecoder(&out)
	for i, w := range want {
		var r CouponBenchResult
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		if got := fmt.Sprint(r.Backend, " ", r.Ledger, " ", r.Buckets); got != w {
			t.Fatalf("result %d is %s; want %s", i, got, w)
		}
		if !r.InvariantsOK || r.Claims == 0 || r.Issued < r.Claims || r.Ledger == "batch" && r.Issued != r.Claims || r.Errors != 0 {
			t.Fatalf("bench coupons on %s = %+v", w, r)
		}
	}
}
