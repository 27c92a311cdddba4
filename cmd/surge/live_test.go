package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/nats"
)

// liveSet is a known set of business events, in lines, with what they must add up to.
type liveSet struct {
	tag           string
	rooms         [2]string
	shop, sku     string
	batch1        []string
	batch2        []string
	invalid       int // lines of both batches that must be refused
	wantRoomA     map[string]int64
	wantShop      map[string]int64
	wantViewersA  int64
	wantTopSKU    string
	wantTopUnits  int64
	lateDuplicate string // an event of batch 1 sent again in batch 2
}

func newLiveSet() liveSet {
	tag := fmt.Sprintf("t%d", rand.Uint64()%1_000_000_000)
	s := liveSet{tag: tag, rooms: [2]string{"ra" + tag, "rb" + tag}, shop: fmt.Sprint(900_000_000 + rand.IntN(99_999_999)), sku: "sku" + tag}
	now := time.Now().UnixMilli() - 10_000
	line := func(id, typ, room, extra string, at int64) string { // the user is u1 unless extra names one
		user := `"user":"u1",`
		if strings.Contains(extra, `"user":`) {
			user = ""
		}
		return fmt.Sprintf(`{"id":"%s-%s","type":"%s","time":%d,"platform":"ios","room":"%s",%s"shop":"%s","sku":"%s","order":"o-%s"%s}`,
			tag, id, typ, at, room, user, s.shop, s.sku, id, extra)
	}
	ra, rb := s.rooms[0], s.rooms[1]
	s.batch1 = []string{
		line("p1", "pay", ra, `,"units":2,"amount":1000`, now),
		line("p2", "pay", ra, `,"units":1,"amount":500,"user":"u2"`, now+100),
		line("o1", "order", ra, `,"units":2,"amount":1000`, now-50), // out of order
		line("l1", "like", ra, ``, now+10),
		line("l1", "like", ra, ``, now+10), // a copy within the batch
		`{"id":"bad-1","type":"teleport","time":1790000000000}`,
		`not json at all`,
		line("e1", "live_enter", ra, ``, now),
		strings.Replace(line("e2", "live_enter", ra, ``, now+1), `"user":"u1"`, `"user":"u2"`, 1),
		line("x1", "click", rb, ``, now),
	}
	s.lateDuplicate = s.batch1[0]
	s.batch2 = []string{
		s.lateDuplicate, // a copy of a batch 1 event, after a restart
		line("p3", "pay", rb, `,"units":4,"amount":2000,"user":"u3"`, now+200),
		line("r1", "refund", ra, `,"amount":300`, now+300),
		line("c1", "comment", ra, `,"text":"hello"`, now+400),
		line("s1", "share", ra, ``, now-2000), // out of order
		line("e3", "live_enter", ra, `,"user":"u3"`, now+500),
		line("v1", "live_leave", ra, ``, now+600), // u1 leaves
		`{"id":"bad-2","type":"pay","time":1790000000000,"order":"o"}`,
	}
	s.invalid = 3
	s.wantRoomA = map[string]int64{"gmv": 1000 + 500 - 300, "orders": 1, "payments": 2, "units_sold": 3, "paying_users": 2,
		"likes": 1, "comments": 1, "shares": 1, "refunds": 300}
	s.wantShop = map[string]int64{"gmv": 1000 + 500 - 300 + 2000, "units_sold": 7, "paying_users": 3}
	s.wantViewersA = 2 // u1, u2, u3 entered; u1 left
	s.wantTopSKU, s.wantTopUnits = s.sku, 3
	return s
}

// waitMetrics polls until every metric of a series filter has its value.
func waitMetrics(t *testing.T, c *client.Client, filter map[string]string, want map[string]int64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var diffs []string
		for name, w := range want {
			snap, err := c.Metric(ctx, name, filter)
			if err != nil {
				t.Fatalf("Metric(%s, %v) = %v", name, filter, err)
			}
			if snap.Value != w {
				diffs = append(diffs, fmt.Sprintf("%s = %d, want %d", name, snap.Value, w))
			}
		}
		if len(diffs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("live metrics %v: %s", filter, strings.Join(diffs, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLiveMetricsFromIngestedEvents ingests a known set of events, with copies, events out of
// order and invalid lines, restarts the node in the middle, and checks the live metrics against
// the sums worked out by hand, and the dead letters against the invalid lines.
func TestLiveMetricsFromIngestedEvents(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			ctx := context.Background()
			c := testConfig(t)
			sh.setup(t, &c)
			if c.NATSURL == "" {
				c.NATSListen = "127.0.0.1:0"
			}
			s := newLiveSet()
			m, cl := start(t, c)
			admin := cl.As(ok[*auth.Tokens](t, "Login(admin)")(cl.Login(ctx, "admin", "admin-password")).AccessToken)
			res, err := admin.WithHeader("X-Request-Id", s.tag+"-1").IngestEvents(ctx, []byte(strings.Join(s.batch1, "\n")+"\n"), false)
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 7 || res.Rejected != 2 || res.Duplicates != 1 || len(res.Errors) != 2 || res.Errors[0].Line != 6 {
				t.Fatalf("batch 1: %+v; want 7 accepted, 2 rejected (lines 6 and 7), 1 duplicate", res)
			}
			waitMetrics(t, admin, map[string]string{"room": s.rooms[0]}, map[string]int64{"gmv": 1500, "likes": 1, "online_viewers": 2})

			// Restart the node between the batches: nothing counted twice, nothing lost.
			m.Close()
			m, cl = start(t, c)
			admin = cl.As(ok[*auth.Tokens](t, "Login(admin)")(cl.Login(ctx, "admin", "admin-password")).AccessToken)
			res, err = admin.WithHeader("X-Request-Id", s.tag+"-2").IngestEvents(ctx, []byte(strings.Join(s.batch2, "\n")), true)
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 7 || res.Rejected != 1 {
				t.Fatalf("batch 2: %+v; want 7 accepted (one a copy of batch 1's), 1 rejected", res)
			}
			waitMetrics(t, admin, map[string]string{"room": s.rooms[0]}, s.wantRoomA)
			waitMetrics(t, admin, map[string]string{"shop": s.shop}, s.wantShop)
			waitMetrics(t, admin, map[string]string{"room": s.rooms[0]}, map[string]int64{"online_viewers": s.wantViewersA})
			waitMetrics(t, admin, map[string]string{"room": s.rooms[1]}, map[string]int64{"clicks": 1, "gmv": 2000})

			screen, err := admin.Screen(ctx, s.rooms[0])
			if err != nil {
				t.Fatal(err)
			}
			if screen.GMV != s.wantRoomA["gmv"] || len(screen.TopItems) != 1 || screen.TopItems[0].SKU != s.wantTopSKU ||
				screen.TopItems[0].Units != s.wantTopUnits || screen.Funnel.Payments != 2 || screen.OnlineViewers != s.wantViewersA {
				t.Errorf("screen = %+v", screen)
			}
			checkDeadLetters(t, c, m, s)
			checkMetricAccess(t, ctx, cl, admin, s)
			if c.NATSURL != "" { // a second node, not computing, serves the same numbers
				c2 := c
				c2.DataDir, c2.WorkerID, c2.LiveCompute, c2.AdminPassword = t.TempDir(), 1, false, ""
				_, cl2 := start(t, c2)
				waitMetrics(t, cl2.As(admin.Token()), map[string]string{"room": s.rooms[0]}, s.wantRoomA)
				waitMetrics(t, cl2.As(admin.Token()), map[string]string{"shop": s.shop}, s.wantShop)
			}
		})
	}
}

// checkDeadLetters reads the dead-letter stream: it must hold exactly the invalid lines.
func checkDeadLetters(t *testing.T, c Config, m *Main, s liveSet) {
	t.Helper()
	var lines []string
	for _, d := range deadLetters(t, c, m, s.tag) {
		if d.Code != surge.EINVALID || d.Reason == "" {
			t.Errorf("dead letter %+v has no reason", d)
		}
		lines = append(lines, d.Raw)
	}
	if len(lines) != s.invalid || !strings.Contains(strings.Join(lines, "\n"), "teleport") {
		t.Errorf("dead letters %q; want the %d invalid lines", lines, s.invalid)
	}
}

// deadLetters reads the dead letters of the requests whose id starts with tag.
func deadLetters(t *testing.T, c Config, m *Main, tag string) []live.DeadLetter {
	t.Helper()
	ctx := context.Background()
	bus := openBus(t, busURL(m, c))
	defer bus.Close()
	r, err := bus.Log(nats.DeadLetterStream, nats.DeadLetterSubjects).Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []live.DeadLetter
	for {
		_, data, ok, err := r.Next(500 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		var d live.DeadLetter
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(d.RequestID, tag+"-") {
			out = append(out, d)
		}
	}
}

// checkMetricAccess: merchants read only their shop; shoppers no metrics at all.
func checkMetricAccess(t *testing.T, ctx context.Context, cl, admin *client.Client, s liveSet) {
	t.Helper()
	merchant, err := admin.CreateUser(ctx, auth.NewUser{Username: "m" + s.tag, Password: "merchant-password", Role: surge.RoleMerchant})
	if err != nil {
		t.Fatal(err)
	}
	mc := cl.As(ok[*auth.Tokens](t, "Login(merchant)")(cl.Login(ctx, "m"+s.tag, "merchant-password")).AccessToken)
	if _, err := mc.Metric(ctx, "gmv", map[string]string{"shop": fmt.Sprint(merchant.ID)}); err != nil {
		t.Errorf("merchant reading its own shop: %v", err)
	}
	var ce *client.Error
	if _, err := mc.Metric(ctx, "gmv", map[string]string{"shop": s.shop}); !errors.As(err, &ce) || ce.Status != 403 {
		t.Errorf("merchant reading another shop: %v; want 403", err)
	}
	if _, err := admin.Metric(ctx, "gmv", map[string]string{"colour": "red"}); !errors.As(err, &ce) || ce.Status != 400 {
		t.Errorf("unknown dimension: %v; want 400", err)
	}
	if _, err := admin.Metric(ctx, "happiness", nil); !errors.As(err, &ce) || ce.Status != 404 {
		t.Errorf("unknown metric: %v; want 404", err)
	}
	// The big screen's stream opens with a bearer token or a screen ticket for that room only.
	var tk live.Ticket
	if err := admin.Do(ctx, "POST", "/v1/live/tickets?room="+s.rooms[0], nil, &tk); err != nil || tk.Ticket == "" {
		t.Fatalf("POST /v1/live/tickets = %+v, %v", tk, err)
	}
	if err := mc.Do(ctx, "POST", "/v1/live/tickets?room="+s.rooms[0], nil, nil); !errors.As(err, &ce) || ce.Status != 403 {
		t.Errorf("a merchant's screen ticket: %v; want 403", err)
	}
	for _, c := range []struct {
		query  string
		status int
	}{
		{"?room=" + s.rooms[0] + "&ticket=" + url.QueryEscape(tk.Ticket), 200},
		{"?room=" + s.rooms[1] + "&ticket=" + url.QueryEscape(tk.Ticket), 403},
		{"?room=" + s.rooms[0] + "&ticket=forged", 401},
		{"?room=" + s.rooms[0], 401},
	} {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", cl.BaseURL()+"/v1/live/stream"+c.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		if resp.StatusCode != c.status {
			t.Errorf("GET /v1/live/stream%s = %d; want %d", c.query, resp.StatusCode, c.status)
		}
	}
	items, err := admin.MetricCatalog(ctx)
	if err != nil || len(items) < 10 {
		t.Errorf("catalog = %d metrics, %v", len(items), err)
	}
}
