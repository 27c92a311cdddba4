package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/live"
)

// TestLiveMetricsTrustNoSendersClock posts a crowd's events to a running server as a hostile or
// careless client would: a crowd of 2,000 viewers on one platform, one client whose clock is 4
// minutes fast and one 10 minutes slow, copies of events sent again in a later batch with other
// times, events missing a required field, and bodies that are no batch at all. The platform's
// live metrics must equal a batch computation of the documented rules (live.MaxClockAhead,
// live.MaxEventAge, copies by id, viewers by the time Surge receives their events), and the
// refused-lines counter and the dead letters must equal the refused lines the answers report.
func TestLiveMetricsTrustNoSendersClock(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			ctx := context.Background()
			c := testConfig(t)
			sh.setup(t, &c)
			if c.NATSURL == "" {
				c.NATSListen = "127.0.0.1:0"
			}
			m, cl := start(t, c)
			admin := cl.As(ok[*auth.Tokens](t, "Login(admin)")(cl.Login(ctx, "admin", "admin-password")).AccessToken)
			tag := fmt.Sprintf("k%d", rand.Uint64()%1_000_000_000)
			rejectedBefore := metric(t, cl, "surge_ingest_events_rejected_total")

			crowd := newCrowd(tag, 2000)
			var reported int // refused lines the answers report
			var sent []sentBatch
			post := func(name string, evs []surge.BusinessEvent, extra ...string) *live.IngestResult {
				t.Helper()
				var body []byte
				for i := range evs {
					var err error
					if body, err = evs[i].AppendJSON(body); err != nil {
						t.Fatal(err)
					}
					body = append(body, '\n')
				}
				for _, l := range extra {
					body = append(body, l+"\n"...)
				}
				at := time.Now()
				res, err := admin.WithHeader("X-Request-Id", tag+"-"+name).IngestEvents(ctx, body, false)
				if err != nil {
					t.Fatalf("batch %s: %v", name, err)
				}
				reported += res.Rejected
				sent = append(sent, sentBatch{at: at, events: evs})
				return res
			}
			// The crowd enters and likes; the fast client's like comes first in the second batch,
			// ahead of everyone's heartbeats; the copies of the first batch come later, with
			// other times.
			post("1", crowd.first())
			res := post("2", crowd.second())
			if want := len(crowd.ahead); res.Rejected != want {
				t.Errorf("batch 2: %d refused; want the fast client's %d events", res.Rejected, want)
			}
			for _, e := range res.Errors {
				if e.Code != surge.ECLOCK || !strings.Contains(e.Message, "ahead of the server's clock") {
					t.Errorf("batch 2 refused line %d: %s %s; want ECLOCK for a time ahead of the server's clock", e.Line, e.Code, e.Message)
				}
			}
			// Before the heartbeats: the fast client moved no one's time, so the crowd is online.
			filter := map[string]string{"platform": crowd.platform}
			waitMetrics(t, admin, filter, map[string]int64{"online_viewers": liveRules(sent)["online_viewers"]})
			post("3", crowd.third())

			// Every required field's absence is refused, naming the field.
			missing, lines := requiredFieldLines(t, tag)
			res = post("4", nil, lines...)
			if res.Rejected != len(missing) || len(res.Errors) != len(missing) {
				t.Fatalf("batch 4: %d refused, %d errors; want the %d lines that lack a required field", res.Rejected, len(res.Errors), len(missing))
			}
			for i, e := range res.Errors {
				if e.Code != surge.EINVALID || e.Line != i+1 || !strings.Contains(e.Message, missing[i]) {
					t.Errorf("line %d lacks %s: refused as %+v; want EINVALID naming the field", i+1, missing[i], e)
				}
			}

			want := liveRules(sent)
			waitMetrics(t, admin, filter, want)
			if want["online_viewers"] < 1500 || want["likes"] < 500 || want["payments"] < 50 {
				t.Fatalf("the rules leave %v: the crowd is not tested", want)
			}

			// Bodies refused whole count no line and dead-letter none.
			checkRefusedBodies(t, admin, tag)
			if got := metric(t, cl, "surge_ingest_events_rejected_total") - rejectedBefore; int(got) != reported {
				t.Errorf("surge_ingest_events_rejected_total rose by %v; the answers reported %d refused lines", got, reported)
			}
			if got := len(deadLetters(t, c, m, tag)); got != reported {
				t.Errorf("%d dead letters; the answers reported %d refused lines", got, reported)
			}
		})
	}
}

// crowd is the events of a crowd of viewers on one platform, and of two clients with wrong
// clocks.
type crowd struct {
	platform   string
	tag        string
	r          *rand.Rand
	viewers    int
	ahead      []surge.BusinessEvent // the fast client's events: all refused
	firstBatch []surge.BusinessEvent
	nextID     int
	shop       string
}

func newCrowd(tag string, viewers int) *crowd {
	return &crowd{platform: "p" + tag, tag: tag, r: rand.New(rand.NewPCG(rand.Uint64(), 1)), viewers: viewers,
		shop: strconv.Itoa(900_000_000 + rand.IntN(99_999_999))}
}

func (c *crowd) event(typ string, user int, at int64) surge.BusinessEvent {
	c.nextID++
	e := surge.BusinessEvent{ID: fmt.Sprintf("%s-%d", c.tag, c.nextID), Type: typ, Time: at, Platform: c.platform,
		User: fmt.Sprintf("u%d", user), Room: fmt.Sprintf("r%s-%d", c.tag, user%10)}
	switch typ {
	case surge.BizPay, surge.BizRefund:
		e.Shop, e.SKU, e.Order, e.Units, e.Amount = c.shop, "s"+c.tag, "o"+e.ID, 1+c.r.Int64N(3), 1+c.r.Int64N(10_000)
	}
	return e
}

// first: every viewer enters within the last 3 s, a third like, 60 pay; the slow client enters
// and likes, dated 10 minutes ago.
func (c *crowd) first() []surge.BusinessEvent {
	now := time.Now().UnixMilli()
	var out []surge.BusinessEvent
	for u := range c.viewers {
		out = append(out, c.event(surge.BizLiveEnter, u, now-c.r.Int64N(3000)))
		if u%3 == 0 {
			out = append(out, c.event(surge.BizLike, u, now-c.r.Int64N(3000)))
		}
		if u%33 == 0 {
			out = append(out, c.event(surge.BizPay, u, now-c.r.Int64N(3000)))
		}
	}
	slow := now - 10*time.Minute.Milliseconds()
	out = append(out, c.event(surge.BizLiveEnter, c.viewers, slow), c.event(surge.BizLike, c.viewers, slow+10),
		c.event(surge.BizLike, c.viewers, slow+20))
	c.firstBatch = out
	return out
}

// second: the fast client's events, 4 minutes ahead, come first; then a copy of a tenth of the
// first batch's events, each with a time 1.5 s later, and a few refunds.
func (c *crowd) second() []surge.BusinessEvent {
	now := time.Now().UnixMilli()
	fast := now + 4*time.Minute.Milliseconds()
	c.ahead = []surge.BusinessEvent{c.event(surge.BizLike, c.viewers+1, fast), c.event(surge.BizLiveEnter, c.viewers+1, fast+1),
		c.event(surge.BizPay, c.viewers+1, fast+2)}
	out := append([]surge.BusinessEvent{}, c.ahead...)
	for i, e := range c.firstBatch {
		if i%10 == 0 {
			e.Time += 1500
			out = append(out, e)
		}
	}
	for u := 0; u < c.viewers; u += 400 {
		out = append(out, c.event(surge.BizRefund, u, now))
	}
	return out
}

// third: heartbeats from every viewer, the slow client's among them (10 minutes behind), then a
// tenth of the crowd leaves.
func (c *crowd) third() []surge.BusinessEvent {
	now := time.Now().UnixMilli()
	var out []surge.BusinessEvent
	for u := range c.viewers {
		out = append(out, c.event(surge.BizLiveHeartbeat, u, now))
	}
	out = append(out, c.event(surge.BizLiveHeartbeat, c.viewers, now-10*time.Minute.Milliseconds()))
	for u := 0; u < c.viewers; u += 10 {
		out = append(out, c.event(surge.BizLiveLeave, u, now+5))
	}
	return out
}

// sentBatch is a batch as posted, and when.
type sentBatch struct {
	at     time.Time
	events []surge.BusinessEvent
}

// liveRules computes the platform's metrics from the batches sent, in order, by the documented
// rules: an event dated more than live.MaxClockAhead after its batch was sent, or more than
// live.MaxEventAge before, is refused; a copy (the same id) of an event taken in the last
// minute is dropped, whatever its time; a viewer is online from an enter or heartbeat until a
// leave (all received within the minute a viewer stays online without one).
func liveRules(batches []sentBatch) map[string]int64 {
	want := map[string]int64{"online_viewers": 0, "likes": 0, "gmv": 0, "payments": 0, "refunds": 0, "units_sold": 0, "paying_users": 0}
	seen := map[string]bool{}
	online, payers := map[string]bool{}, map[string]bool{}
	for _, b := range batches {
		now := b.at.UnixMilli()
		for _, e := range b.events {
			if e.Time > now+live.MaxClockAhead.Milliseconds() || e.Time < now-live.MaxEventAge.Milliseconds() || seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			viewer := e.Room + "|" + e.User
			switch e.Type {
			case surge.BizLiveEnter, surge.BizLiveHeartbeat:
				online[viewer] = true
			case surge.BizLiveLeave:
				delete(online, viewer)
			case surge.BizLike:
				want["likes"]++
			case surge.BizPay:
				want["gmv"] += e.Amount
				want["payments"]++
				want["units_sold"] += e.Units
				payers[e.User] = true
			case surge.BizRefund:
				want["gmv"] -= e.Amount
				want["refunds"] += e.Amount
			}
		}
	}
	want["online_viewers"], want["paying_users"] = int64(len(online)), int64(len(payers))
	return want
}

// requiredFieldLines makes, for every event type, one line without each field the type
// requires (surge.BizRequired), on a platform of its own, and lists the field each line lacks.
func requiredFieldLines(t *testing.T, tag string) (missing, lines []string) {
	t.Helper()
	now := time.Now().UnixMilli()
	for _, typ := range surge.BizTypes() {
		full := map[string]any{"id": "req-" + tag + "-" + typ, "type": typ, "time": now, "platform": "q" + tag, "user": "u1", "room": "r1",
			"shop": "1", "sku": "s1", "order": "o1", "units": 1, "amount": 100, "status": "shipped"}
		for _, f := range surge.BizRequired(typ) {
			var b strings.Builder
			b.WriteString("{")
			first := true
			for _, k := range []string{"id", "type", "time", "platform", "user", "room", "shop", "sku", "order", "units", "amount", "status"} {
				if k == f {
					continue
				}
				if !first {
					b.WriteString(",")
				}
				first = false
				fmt.Fprintf(&b, "%q:", k)
				switch v := full[k].(type) {
				case string:
					fmt.Fprintf(&b, "%q", v)
				default:
					fmt.Fprintf(&b, "%d", v)
				}
			}
			b.WriteString("}")
			missing, lines = append(missing, f), append(lines, b.String())
		}
	}
	if len(missing) < 13*4 {
		t.Fatalf("only %d required fields across the types", len(missing))
	}
	return missing, lines
}

// checkRefusedBodies posts bodies that are no batch: each is answered 4xx with a code, and
// nothing of it is counted or dead-lettered (the caller checks the counts). A gzipped body
// sent as x-gzip, gzip's other name, is taken.
func checkRefusedBodies(t *testing.T, admin *client.Client, tag string) {
	t.Helper()
	bad := `{"id":"x","type":"teleport","time":1}` + "\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(strings.Repeat(bad, 100)))
	zw.Close()
	truncated := gz.Bytes()[:gz.Len()-12] // the refused lines are read before the cut is seen
	var click bytes.Buffer
	zw = gzip.NewWriter(&click)
	fmt.Fprintf(zw, `{"id":"%s-xgzip","type":"click","sku":"s1","platform":"q%s","time":%d}`, tag, tag, time.Now().UnixMilli())
	zw.Close()
	for _, c := range []struct {
		name, contentType, encoding string
		body                        []byte
		status                      int
		code                        string
	}{
		{"empty", "application/x-ndjson", "", nil, 400, surge.EINVALID},
		{"blank", "application/x-ndjson", "", []byte("\n  \n\r\n"), 400, surge.EINVALID},
		{"csv", "text/csv", "", []byte(bad), 400, surge.EINVALID},
		{"form", "application/x-www-form-urlencoded", "", []byte(bad), 400, surge.EINVALID},
		{"no type", "", "", []byte(bad), 400, surge.EINVALID},
		{"brotli", "application/x-ndjson", "br", []byte(bad), 400, surge.EINVALID},
		{"too many lines", "application/x-ndjson", "", []byte(strings.Repeat(bad, 10) + strings.Repeat("\n", live.MaxIngestLines)), 413, surge.ETOOLARGE},
		{"truncated gzip", "application/x-ndjson", "gzip", truncated, 400, surge.EINVALID},
		{"x-gzip, gzip's other name", "application/x-ndjson", "x-gzip", click.Bytes(), 200, ""},
	} {
		req, _ := http.NewRequest("POST", admin.BaseURL()+"/v1/events", bytes.NewReader(c.body))
		req = authorized(req, admin)
		req.Header.Set("X-Request-Id", tag+"-refused-"+c.name)
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		if c.encoding != "" {
			req.Header.Set("Content-Encoding", c.encoding)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := `"` + c.code + `"`
		if c.code == "" {
			want = `"accepted":1`
		}
		if resp.StatusCode != c.status || !strings.Contains(string(body), want) {
			t.Errorf("a %s body: %d %s; want %d %s", c.name, resp.StatusCode, body, c.status, c.code)
		}
	}
}
