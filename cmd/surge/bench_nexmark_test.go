package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// Every query, from every source, gives results equal to the batch computation and positive
// rates in the JSON the issue asks for.
func TestBenchNexmark(t *testing.T) {
	for _, source := range []string{"memory", "generator", "jetstream"} {
		t.Run(source, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := []string{"bench", "nexmark", "--events", "20000", "--rate", "1000", "--source", source, "--json"}
			if code := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 0 {
				t.Fatalf("bench nexmark = %d: %s", code, errOut.String())
			}
			queries := map[string]bool{}
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var res struct {
					Query        string  `json:"query"`
					Events       int     `json:"events"`
					PerSec       float64 `json:"events_per_sec"`
					PerCore      float64 `json:"events_per_sec_per_core"`
					Correct      bool    `json:"correct"`
					RatioToFlink float64 `json:"ratio_to_flink_per_core"`
				}
				if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				if res.Events != 20000 || res.PerSec <= 0 || res.PerCore <= 0 || !res.Correct || res.RatioToFlink <= 0 {
					t.Errorf("bench nexmark %s = %+v; want 20000 events, rates, correct", source, res)
				}
				queries[res.Query] = true
			}
			if len(queries) != 8 {
				t.Errorf("queries run: %v; want q0–q5, q7, q8", queries)
			}
		})
	}
}

func TestBenchNexmarkRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--query", "q6"},
		{"--events", "0"},
		{"--source", "kafka"},
		{"--delay-ms", "5000"},
		{"--source", "generator", "--delay-ms", "100"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), append([]string{"bench", "nexmark"}, args...), func(string) string { return "" }, &out, &errOut); code == 0 {
			t.Errorf("bench nexmark %v succeeded; want a usage error", args)
		}
	}
}

// A small live bench ingests, sees every event counted, and measures visibility and serving.
func TestBenchLive(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"bench", "live", "--events", "5000", "--batch", "500", "--probes", "3", "--serve-rate", "200", "--serve-for", "500ms", "--json"}
	if code := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("bench live = %d: %s", code, errOut.String())
	}
	var res LiveBenchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	if !res.Correct || res.IngestPerSec <= 0 || res.ComputedPerSec <= 0 || res.VisibleQueryIdleP50Ms <= 0 ||
		res.VisibleSSEIdleP50Ms <= 0 || res.ServeP50Ms <= 0 || res.ServeErrors != 0 {
		t.Errorf("bench live = %+v; want correct totals, rates and latencies, no errors", res)
	}
}

// A post that fails part way through the ingestion (here the bench's context ends) is reported
// as the bench's error, not a crash on the answer it never got.
func TestBenchLiveReportsAFailedPost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &cancelOn{text: "bench live: ingesting", after: 300 * time.Millisecond, cancel: cancel}
	var out bytes.Buffer
	err := benchLive(ctx, []string{"--events", "200000", "--batch", "500", "--rate", "20000", "--json"}, &out, stderr)
	if err == nil || !stderr.seen.Load() {
		t.Fatalf("bench live cut short while ingesting = %v (ingestion began: %v); want its error", err, stderr.seen.Load())
	}
}

// cancelOn calls cancel a moment after text is first written to it.
type cancelOn struct {
	text   string
	after  time.Duration
	cancel func()
	seen   atomic.Bool
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(c.text)) && c.seen.CompareAndSwap(false, true) {
		time.AfterFunc(c.after, c.cancel)
	}
	return len(p), nil
}

// A probe under load that fails or never shows counts, at the bound, and holds the next one
// back until the bound has passed; only the one the end of the ingestion cuts short is left out.
func TestProbeUntilDoneCountsLostProbes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	const bound = 50 * time.Millisecond
	var lostAt, nextAt time.Time
	query, sse, lost := probeUntilDone(ctx, func(ctx context.Context, i int) (float64, float64, error) {
		switch i {
		case 1:
			lostAt = time.Now()
			return 0, 0, errors.New("probe load1 never became visible")
		case 2:
			nextAt = time.Now()
		case 3:
			cancel()
			return 0, 0, ctx.Err()
		}
		return float64(10 + i), float64(20 + i), nil
	}, 0, bound)
	ms := float64(bound.Milliseconds())
	if lost != 1 || !slices.Equal(query, []float64{10, ms, 12}) || !slices.Equal(sse, []float64{20, ms, 22}) {
		t.Fatalf("probeUntilDone = %v, %v, %d lost; want the lost probe at %v and the cut one left out", query, sse, lost, ms)
	}
	if gap := nextAt.Sub(lostAt); gap < bound {
		t.Fatalf("the probe after a lost one began %v after it; want at least %v", gap, bound)
	}
}
