package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
)

func authNewMerchant(name string) auth.NewUser {
	return auth.NewUser{Username: name, Password: name + "-password", Role: surge.RoleMerchant}
}

// screenshotDir is where the browser test leaves its screenshot for a person to look at
// (git-ignored).
const screenshotDir = "../../testdata-out/screenshots"

// chromiumPath finds headless Chromium; CI installs it and sets SURGE_TEST_REQUIRE_CHROMIUM so
// that its absence fails the run rather than skipping.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SURGE_TEST_REQUIRE_CHROMIUM") != "" {
		t.Fatal("chromium is required (SURGE_TEST_REQUIRE_CHROMIUM) but not on PATH")
	}
	t.Skip("chromium is not installed")
	return ""
}

// devtools is a connection to one page of a headless Chromium over the DevTools protocol.
type devtools struct {
	conn *websocket.Conn
	next int
}

// startChromium starts a headless browser and connects to its first page.
func startChromium(t *testing.T, ctx context.Context) *devtools {
	t.Helper()
	cmd := exec.CommandContext(ctx, chromiumPath(t), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--window-size=1600,900", "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	listening := regexp.MustCompile(`DevTools listening on (ws://127\.0\.0\.1:\d+)/`)
	found := make(chan string, 1)
	go func() { // ends when Chromium closes its stderr
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- strings.Replace(m[1], "ws://", "http://", 1)
			}
		}
	}()
	var base string
	select {
	case base = <-found:
	case <-time.After(20 * time.Second):
		t.Fatal("chromium did not start its DevTools endpoint")
	}
	resp, err := http.Get(base + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var targets []struct {
		Type string `json:"type"`
		WS   string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Type == "page" {
			conn, _, err := websocket.Dial(ctx, tg.WS, nil)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetReadLimit(64 << 20) // screenshots
			t.Cleanup(func() { conn.CloseNow() })
			return &devtools{conn: conn}
		}
	}
	t.Fatal("chromium has no page")
	return nil
}

// call sends one DevTools command and returns its result.
func (d *devtools) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	d.next++
	id := d.next
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err := d.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		return nil, err
	}
	for {
		_, data, err := d.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		var reply struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &reply) != nil || reply.ID != id {
			continue // an event, or another command's answer
		}
		if reply.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, reply.Error.Message)
		}
		return reply.Result, nil
	}
}

// text returns the text of the element with an id.
func (d *devtools) text(ctx context.Context, id string) (string, error) {
	res, err := d.call(ctx, "Runtime.evaluate", map[string]any{"returnByValue": true,
		"expression": fmt.Sprintf("(document.getElementById(%q) || {}).textContent || ''", id)})
	if err != nil {
		return "", err
	}
	var out struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
	}
	err = json.Unmarshal(res, &out)
	return out.Result.Value, err
}

// waitTexts polls the page until every element shows its expected text.
func (d *devtools) waitTexts(t *testing.T, ctx context.Context, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var diffs []string
		for id, w := range want {
			got, err := d.text(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got != w {
				diffs = append(diffs, fmt.Sprintf("#%s shows %q, want %q", id, got, w))
			}
		}
		if len(diffs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the big screen: %s", strings.Join(diffs, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBigScreenInBrowser opens a live room's big screen in headless Chromium, posts events,
// and watches the numbers on the page change to the expected values; it leaves a screenshot.
func TestBigScreenInBrowser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := startChromium(t, ctx)
	_, cl := start(t, testConfig(t))
	admin := cl.As(ok[*auth.Tokens](t, "Login(admin)")(cl.Login(ctx, "admin", "admin-password")).AccessToken)
	tok := ok[*auth.Tokens](t, "Login(admin)")(cl.Login(ctx, "admin", "admin-password")).AccessToken
	if _, err := d.call(ctx, "Page.navigate", map[string]any{"url": cl.BaseURL() + "/live/hall1#token=" + tok}); err != nil {
		t.Fatal(err)
	}
	d.waitTexts(t, ctx, map[string]string{"status": "live", "title": "Live room hall1", "gmv": "¥0", "likes": "0"})

	// The phone is in the catalog, and shows by its name; the case is a merchant's own code.
	shop := ok[*surge.User](t, "CreateUser")(admin.CreateUser(ctx, authNewMerchant("screen-shop")))
	spu := ok[*surge.SPU](t, "CreateSPU")(admin.CreateSPU(ctx, catalog.SPUInput{MerchantID: shop.ID, Code: "PHONE", Title: "Phone X", CategoryL1: "Digital"}))
	phone := ok[*surge.SKU](t, "CreateSKU")(admin.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: "PHONE-256", Title: "Phone X 256GB",
		Price: surge.Money{Amount: 129_900, Currency: "CNY"}, CostPrice: surge.Money{Amount: 90_000, Currency: "CNY"}, Stock: 10}))
	now := time.Now().UnixMilli() - 5_000
	var lines []string
	for i, amount := range []int64{129_900, 59_900, 129_900} {
		sku := []string{fmt.Sprint(phone.ID), "case", fmt.Sprint(phone.ID)}[i]
		lines = append(lines, fmt.Sprintf(`{"id":"bs-pay-%d","type":"pay","time":%d,"room":"hall1","user":"u%d","shop":"8","sku":"%s","order":"o%d","units":1,"amount":%d}`,
			i, now+int64(i), i, sku, i, amount))
	}
	for i := range 42 {
		lines = append(lines, fmt.Sprintf(`{"id":"bs-like-%d","type":"like","time":%d,"room":"hall1","user":"u%d"}`, i, now+int64(i), i))
	}
	for i := range 3 {
		lines = append(lines, fmt.Sprintf(`{"id":"bs-enter-%d","type":"live_enter","time":%d,"room":"hall1","user":"v%d"}`, i, now, i))
	}
	if _, err := admin.IngestEvents(ctx, []byte(strings.Join(lines, "\n")), false); err != nil {
		t.Fatal(err)
	}
	d.waitTexts(t, ctx, map[string]string{"gmv": "¥3,197", "likes": "42", "paying_users": "3", "units_sold": "3", "online_viewers": "3"})
	top, err := d.text(ctx, "top_items")
	if err != nil || !strings.HasPrefix(top, "Phone X 256GB 2") || !strings.Contains(top, "SKU case 1") {
		t.Errorf("top items %q (%v); want the phone first by its name with 2 units, then the case by its code", top, err)
	}

	// A viewer leaves and one more like: the page follows.
	more := fmt.Sprintf(`{"id":"bs-leave-0","type":"live_leave","time":%d,"room":"hall1","user":"v0"}`+"\n"+
		`{"id":"bs-like-99","type":"like","time":%d,"room":"hall1","user":"u99"}`, now+100, now+100)
	if _, err := admin.IngestEvents(ctx, []byte(more), false); err != nil {
		t.Fatal(err)
	}
	d.waitTexts(t, ctx, map[string]string{"likes": "43", "online_viewers": "2"})

	res, err := d.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"})
	if err != nil {
		t.Fatal(err)
	}
	var shot struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(res, &shot); err != nil {
		t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot of %d bytes: %v", len(png), err)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(screenshotDir, "bigscreen-hall1.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
