package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/loadgen"
)

// LiveBenchResult is what surge bench live --json prints.
type LiveBenchResult struct {
	Events  int `json:"events"`
	Batch   int `json:"batch"`
	Workers int `json:"workers"`
	Pace    int `json:"pace_events_per_sec,omitempty"` // the posting rate asked for (0: flat out)
	// IngestPerSec is events accepted per second: validated and durable in the events log.
	IngestPerSec float64 `json:"ingest_events_per_sec"`
	// ComputedPerSec is events per second from the first post until the live metrics counted
	// the last event.
	ComputedPerSec float64 `json:"computed_events_per_sec"`
	Correct        bool    `json:"correct"` // the totals equal what was sent
	// Visible*: an event posted until it shows in the query API or the SSE stream, measured
	// while the ingestion ran (under load) and after it (idle).
	VisibleQueryLoadP50Ms float64 `json:"visible_query_under_load_p50_ms"`
	VisibleQueryLoadP99Ms float64 `json:"visible_query_under_load_p99_ms"`
	VisibleSSELoadP50Ms   float64 `json:"visible_sse_under_load_p50_ms"`
	VisibleSSELoadP99Ms   float64 `json:"visible_sse_under_load_p99_ms"`
	// VisibleLoadLost counts the probes under load that failed or were not visible within
	// probeTimeout: each is in the under-load percentiles at probeTimeout, a bound on its time.
	VisibleLoadLost       int     `json:"visible_under_load_lost"`
	VisibleQueryIdleP50Ms float64 `json:"visible_query_idle_p50_ms"`
	VisibleQueryIdleP99Ms float64 `json:"visible_query_idle_p99_ms"`
	VisibleSSEIdleP50Ms   float64 `json:"visible_sse_idle_p50_ms"`
	VisibleSSEIdleP99Ms   float64 `json:"visible_sse_idle_p99_ms"`
	// Serve*: GET /v1/metrics/{name} at a fixed rate, latency from each request's intended
	// send time.
	ServeRate   int     `json:"serve_requests_per_sec"`
	ServeP50Ms  float64 `json:"serve_p50_ms"`
	ServeP99Ms  float64 `json:"serve_p99_ms"`
	ServeErrors int64   `json:"serve_errors"`
}

// benchLive starts an embedded node in process and measures the real-time platform: ingestion
// with the live metrics computing, an event's time to visibility, and the query API's latency.
func benchLive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := command{name: "bench live",
		about: `Starts an embedded node in process and measures the real-time platform: business events
ingested per second with the live metrics computing, an event's time from POST to visible in
the metric API, and the query API's latency at a fixed request rate.`,
		examples: []string{"surge bench live --events 1000000", "surge bench live --events 2000000 --rate 100000 --json"}}.flagSet(stderr)
	events := fs.Int("events", 1_000_000, "business events to ingest")
	batch := fs.Int("batch", 1000, "events per POST /v1/events")
	workers := fs.Int("workers", 8, "concurrent posting connections")
	paced := fs.Int("rate", 0, "post at most this many events per second (0: as fast as the node takes them)")
	probes := fs.Int("probes", 50, "events timed to visibility when idle (and as many as fit while ingesting)")
	rate := fs.Int("serve-rate", 1000, "query requests per second for the serving measurement")
	serveFor := fs.Duration("serve-for", 5*time.Second, "how long to measure serving")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the ingestion phase to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file once the events are counted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *events < 1 || *batch < 1 || *batch > live.MaxIngestLines || *workers < 1 || *probes < 1 || *rate < 1 || *serveFor <= 0 || *paced < 0 {
		return fmt.Errorf("events, workers, probes, serve-rate and serve-for must be positive, batch 1 to %d", live.MaxIngestLines)
	}
	bodies, want := liveBatches(*events, *batch)
	logBytes := int64(0)
	for _, b := range bodies {
		logBytes += int64(len(b))
	}
	m, _, closeNode, err := benchNode(ctx, stderr, func(c *Config) {
		// The log keeps every event posted, and a full log refuses the rest: room for all of
		// them, twice over for what the log adds to each batch.
		c.EventLogBytes = max(c.EventLogBytes, 2*logBytes)
	})
	if err != nil {
		return err
	}
	defer closeNode()
	base := "http://" + m.Addr
	tokens, err := client.New(base).Login(ctx, "admin", benchAdminPassword)
	if err != nil {
		return err
	}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}, Timeout: 60 * time.Second}
	cl := client.New(base).As(tokens.AccessToken).WithHTTP(httpc)
	res := LiveBenchResult{Events: *events, Batch: *batch, Workers: *workers, ServeRate: *rate, Pace: *paced}

	fmt.Fprintf(stderr, "bench live: ingesting %d events in batches of %d on %d connections\n", *events, *batch, *workers)
	var loadQuery, loadSSE []float64
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	probesDone := make(chan struct{})
	go func() { // stops with stopProbes
		defer close(probesDone)
		loadQuery, loadSSE, res.VisibleLoadLost = probeUntilDone(probeCtx, func(ctx context.Context, i int) (float64, float64, error) {
			return probeBoth(ctx, cl, base, tokens.AccessToken, fmt.Sprintf("load%d", i))
		}, 100*time.Millisecond, probeTimeout)
	}()
	stopProfile, err := startProfile(*profile)
	if err != nil {
		return err
	}
	start := time.Now()
	var posted atomic.Int64
	stopProgress := progress(stderr, "bench live: ingesting")
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(*workers)
	for i, b := range bodies {
		if *paced > 0 { // an open pace: batch i is due at i·batch/rate
			if wait := time.Until(start.Add(time.Duration(float64(i**batch) / float64(*paced) * float64(time.Second)))); wait > 0 {
				sleepCtx(gctx, wait)
			}
		}
		g.Go(func() error {
			r, err := cl.IngestEvents(gctx, b, false)
			if err != nil {
				return err
			}
			posted.Add(int64(r.Accepted))
			if r.Rejected > 0 {
				return fmt.Errorf("%d events refused: %v", r.Rejected, r.Errors[0])
			}
			return nil
		})
	}
	err = g.Wait()
	stopProgress()
	if err != nil {
		stopProbes()
		return err
	}
	bodies = nil // the bench's own copy of the events is not the node's to carry
	res.IngestPerSec = float64(*events) / time.Since(start).Seconds()
	res.Correct = waitTotals(ctx, cl, want, 5*time.Minute) == nil
	res.ComputedPerSec = float64(*events) / time.Since(start).Seconds()
	stopProfile()
	if err := writeHeapProfile(*memProfile); err != nil {
		return err
	}
	stopProbes()
	<-probesDone
	res.VisibleQueryLoadP50Ms, res.VisibleQueryLoadP99Ms = loadgen.Percentiles(loadQuery)
	res.VisibleSSELoadP50Ms, res.VisibleSSELoadP99Ms = loadgen.Percentiles(loadSSE)

	fmt.Fprintf(stderr, "bench live: timing %d events to visibility\n", *probes)
	var idleQuery, idleSSE []float64
	for i := range *probes {
		q, s, err := probeBoth(ctx, cl, base, tokens.AccessToken, fmt.Sprintf("idle%d", i))
		if err != nil {
			return err
		}
		idleQuery, idleSSE = append(idleQuery, q), append(idleSSE, s)
	}
	res.VisibleQueryIdleP50Ms, res.VisibleQueryIdleP99Ms = loadgen.Percentiles(idleQuery)
	res.VisibleSSEIdleP50Ms, res.VisibleSSEIdleP99Ms = loadgen.Percentiles(idleSSE)

	fmt.Fprintf(stderr, "bench live: serving GET /v1/metrics at %d/s for %s\n", *rate, *serveFor)
	served, err := getAtRateElsewhere(ctx, base+"/v1/metrics/gmv?room=r7", tokens.AccessToken, *rate, *serveFor, stderr)
	if err != nil {
		return err
	}
	res.ServeP50Ms, res.ServeP99Ms, res.ServeErrors = served.P50Ms, served.P99Ms, served.Errors

	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "ingested      %10.0f events/s (%d events, batches of %d, %d connections)\n", res.IngestPerSec, res.Events, res.Batch, res.Workers)
	fmt.Fprintf(stdout, "computed      %10.0f events/s (first post to the last event counted); totals correct: %v\n", res.ComputedPerSec, res.Correct)
	fmt.Fprintf(stdout, "visible, query API   under load p50 %.0f ms p99 %.0f ms; idle p50 %.0f ms p99 %.0f ms\n",
		res.VisibleQueryLoadP50Ms, res.VisibleQueryLoadP99Ms, res.VisibleQueryIdleP50Ms, res.VisibleQueryIdleP99Ms)
	fmt.Fprintf(stdout, "visible, SSE stream  under load p50 %.0f ms p99 %.0f ms; idle p50 %.0f ms p99 %.0f ms\n",
		res.VisibleSSELoadP50Ms, res.VisibleSSELoadP99Ms, res.VisibleSSEIdleP50Ms, res.VisibleSSEIdleP99Ms)
	if res.VisibleLoadLost > 0 {
		fmt.Fprintf(stdout, "visible, under load: %d probes lost (counted at %s)\n", res.VisibleLoadLost, probeTimeout)
	}
	fmt.Fprintf(stdout, "serving       %d requests/s: p50 %.2f ms p99 %.2f ms, %d errors\n", res.ServeRate, res.ServeP50Ms, res.ServeP99Ms, res.ServeErrors)
	if !res.Correct {
		return fmt.Errorf("the live totals did not reach what was sent")
	}
	return nil
}

// liveBatches makes the events as JSON-lines bodies, and the totals they must add up to.
func liveBatches(n, batch int) ([][]byte, map[string]int64) {
	r := rand.New(rand.NewPCG(1, 2))
	want := map[string]int64{}
	now := time.Now().UnixMilli()
	var bodies [][]byte
	var b bytes.Buffer
	for i := range n {
		room, sku, user := r.IntN(50), r.IntN(1000), r.IntN(100_000)
		at := now - int64(n-i)/100 // spread over the recent past, in order
		var line string
		switch k := r.IntN(100); {
		case k < 40:
			line = fmt.Sprintf(`{"id":"b%d","type":"exposure","time":%d,"platform":"ios","room":"r%d","sku":"s%d","user":"u%d"}`, i, at, room, sku, user)
			want["exposures"]++
		case k < 60:
			line = fmt.Sprintf(`{"id":"b%d","type":"click","time":%d,"platform":"android","room":"r%d","sku":"s%d","user":"u%d"}`, i, at, room, sku, user)
			want["clicks"]++
		case k < 85:
			line = fmt.Sprintf(`{"id":"b%d","type":"like","time":%d,"platform":"web","room":"r%d","user":"u%d"}`, i, at, room, user)
			want["likes"]++
		case k < 92:
			line = fmt.Sprintf(`{"id":"b%d","type":"order","time":%d,"platform":"ios","room":"r%d","shop":"%d","sku":"s%d","user":"u%d","order":"o%d","units":1,"amount":9900}`, i, at, room, sku%20+1, sku, user, i)
			want["orders"]++
		default:
			line = fmt.Sprintf(`{"id":"b%d","type":"pay","time":%d,"platform":"ios","room":"r%d","shop":"%d","sku":"s%d","user":"u%d","order":"o%d","units":1,"amount":9900}`, i, at, room, sku%20+1, sku, user, i)
			want["payments"]++
			want["gmv"] += 9900
		}
		b.WriteString(line)
		b.WriteByte('\n')
		if (i+1)%batch == 0 || i == n-1 {
			bodies = append(bodies, bytes.Clone(b.Bytes()))
			b.Reset()
		}
	}
	return bodies, want
}

// waitTotals polls the platform-wide metrics until they equal want.
func waitTotals(ctx context.Context, cl *client.Client, want map[string]int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		done := true
		for name, w := range want {
			s, err := cl.Metric(ctx, name, nil)
			if err != nil {
				return err
			}
			done = done && s.Value == w
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("totals not reached in %s", limit)
		}
		sleepCtx(ctx, 5*time.Millisecond)
	}
}

// probeLine is a share in its own room: shares are not among the totals the bench checks.
func probeLine(room string) []byte {
	return fmt.Appendf(nil, `{"id":"probe-%s","type":"share","time":%d,"room":"%s","user":"p"}`, room, time.Now().UnixMilli(), room)
}

// probeUntilDone runs probe after probe, every so often, until ctx ends, and returns their
// times. A probe that fails or does not show within bound while ctx lasts is lost: it is
// counted, its times are bound, and the next one waits until bound has passed since it began,
// so that a probe failing at once cannot fill the percentiles with bounds. Only the probe that
// the end of ctx cuts short is left out.
func probeUntilDone(ctx context.Context, probe func(ctx context.Context, i int) (query, sse float64, err error),
	every, bound time.Duration) (query, sse []float64, lost int) {
	for i := 0; ctx.Err() == nil; i++ {
		began := time.Now()
		q, s, err := probe(ctx, i)
		switch {
		case err == nil:
			query, sse = append(query, q), append(sse, s)
		case ctx.Err() == nil:
			lost++
			ms := float64(bound.Milliseconds())
			query, sse = append(query, ms), append(sse, ms)
			sleepCtx(ctx, bound-time.Since(began))
		}
		sleepCtx(ctx, every)
	}
	return query, sse, lost
}

// probeTimeout is how long a probe waits for its event to show.
const probeTimeout = 30 * time.Second

// probeBoth opens the room's event stream, posts a share, and times it to the stream and to the
// query API.
func probeBoth(ctx context.Context, cl *client.Client, base, token, room string) (query, sse float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/live/stream?room="+url.QueryEscape(room), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 0, 64<<10), 1<<20)
	first := true
	seen := make(chan float64, 1)
	queried := make(chan float64, 1)
	go func() { // ends when the stream closes (cancel)
		var start time.Time
		for lines.Scan() {
			data, ok := strings.CutPrefix(lines.Text(), "data: ")
			if !ok {
				continue
			}
			if first { // the screen as it was: now post the event, and time it to both
				first = false
				start = time.Now()
				go func() {
					if _, err := cl.IngestEvents(ctx, probeLine(room), false); err != nil {
						return
					}
					for ctx.Err() == nil {
						if s, err := cl.Metric(ctx, "shares", map[string]string{"room": room}); err == nil && s.Value == 1 {
							queried <- float64(time.Since(start).Microseconds()) / 1000
							return
						}
						sleepCtx(ctx, time.Millisecond)
					}
				}()
				continue
			}
			var s live.Screen
			if json.Unmarshal([]byte(data), &s) == nil && s.Shares == 1 {
				seen <- float64(time.Since(start).Microseconds()) / 1000
				return
			}
		}
	}()
	for range 2 {
		select {
		case sse = <-seen:
		case query = <-queried:
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("probe %s never became visible", room)
		}
	}
	return query, sse, nil
}

// RateResult is what surge bench get-at-rate prints.
type RateResult struct {
	Requests int     `json:"requests"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	Errors   int64   `json:"errors"`
}

// benchGetAtRate sends GETs to one address at a fixed rate and prints their latency: the client
// side of a serving measurement, in a process of its own so that its goroutines, its
// allocations and its collections are not counted as the server's. The access token, if any,
// is read from SURGE_BENCH_TOKEN.
func benchGetAtRate(ctx context.Context, args []string, env func(string) string, stdout io.Writer) error {
	fs := command{name: "bench get-at-rate", about: "The client side of bench live's serving measurement, run by it as a process of its own: GETs --url at --rate for --for and prints their latency as JSON (the access token from SURGE_BENCH_TOKEN).",
		examples: []string{"surge bench get-at-rate --url http://127.0.0.1:8080/v1/metrics/gmv?platform=1 --rate 1000 --for 5s"}}.flagSet(stdout)
	u := fs.String("url", "", "the address to GET")
	rate := fs.Int("rate", 1000, "requests per second")
	d := fs.Duration("for", 5*time.Second, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := url.ParseRequestURI(*u); err != nil || *rate < 1 || *d <= 0 {
		return fmt.Errorf("--url must be an address, --rate and --for positive")
	}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}
	res := RateResult{Requests: int(float64(*rate) * d.Seconds())}
	res.P50Ms, res.P99Ms, res.Errors = serveAtRate(ctx, httpc, *u, env("SURGE_BENCH_TOKEN"), *rate, *d)
	return json.NewEncoder(stdout).Encode(res)
}

// getAtRateElsewhere runs surge bench get-at-rate as a child process of this very program.
func getAtRateElsewhere(ctx context.Context, u, token string, rate int, d time.Duration, stderr io.Writer) (*RateResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "bench", "get-at-rate", "--url", u, "--rate", strconv.Itoa(rate), "--for", d.String())
	cmd.Env = append(os.Environ(), "SURGE_BENCH_TOKEN="+token)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("bench get-at-rate: %w", err)
	}
	var res RateResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("bench get-at-rate printed %q: %w", out, err)
	}
	return &res, nil
}

// serveAtRate sends GETs at a fixed rate (an open model) and returns latency percentiles
// measured from each request's intended send time.
func serveAtRate(ctx context.Context, httpc *http.Client, u, token string, rate int, d time.Duration) (p50, p99 float64, errs int64) {
	n := int(float64(rate) * d.Seconds())
	lat := make([]float64, n)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := httpc.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failed.Add(1)
			}
			lat[i] = float64(time.Since(due).Microseconds()) / 1000
		}()
	}
	wg.Wait()
	p50, p99 = loadgen.Percentiles(lat)
	return p50, p99, failed.Load()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
