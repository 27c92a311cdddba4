package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/nexmark"
	"github.com/surgecommerce/surge/stream"
)

// flinkPerCore is Flink 1.13's published Nexmark throughput per core (nexmark/nexmark README),
// in events per second: the bar each query is measured against.
var flinkPerCore = map[string]float64{
	"q0": 155_000, "q1": 158_000, "q2": 175_000, "q3": 152_000, "q4": 34_300, "q5": 22_100, "q7": 12_300, "q8": 146_000,
}

// NexmarkBenchResult is one line of surge bench nexmark --json.
type NexmarkBenchResult struct {
	Query               string    `json:"query"`
	Source              string    `json:"source"`
	Events              int       `json:"events"`
	Results             int       `json:"results"`
	Rounds              int       `json:"rounds"`
	EventsPerSec        float64   `json:"events_per_sec"`          // median of the rounds
	EventsPerSecPerCore float64   `json:"events_per_sec_per_core"` // events per CPU-second, median
	CoresUsed           float64   `json:"cores_used"`              // CPU time over wall time, median round
	FlinkPerCore        float64   `json:"flink_1_13_per_core"`
	RatioToFlink        float64   `json:"ratio_to_flink_per_core"`
	Correct             bool      `json:"correct"`
	RoundsPerSec        []float64 `json:"rounds_events_per_sec"`
}

type nexmarkBenchConfig struct {
	query, source, natsURL string
	events, rounds, rate   int
	delayMs                int64
	seed                   uint64
	json                   bool
	profile                string
}

// benchNexmark generates Nexmark events and runs queries on them, in memory or from a durable
// JetStream stream, checking every run against the batch computation.
func benchNexmark(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	var c nexmarkBenchConfig
	fs := command{name: "bench nexmark", envInDefault: true, env: envFlags(map[string]string{"nats-url": "SURGE_NATS_URL"}),
		about: `Runs the Nexmark queries on Surge's stream engine: events per second per query, each run
checked against a batch computation of the same events. --source jetstream reads them from a
durable JetStream stream, as the live platform does.`,
		examples: []string{"surge bench nexmark --query all --events 10000000", "surge bench nexmark --query q5 --source jetstream --events 1000000 --rounds 3"}}.flagSet(stderr)
	fs.StringVar(&c.query, "query", "all", "q0, q1, q2, q3, q4, q5, q7, q8, or all")
	fs.IntVar(&c.events, "events", 10_000_000, "events to generate")
	fs.StringVar(&c.source, "source", "memory", "memory (events generated beforehand), generator (generated as the query reads them), or jetstream (JSON events read from a durable stream)")
	fs.StringVar(&c.natsURL, "nats-url", env("SURGE_NATS_URL"), "jetstream source: external NATS server (default: an embedded one in a temporary directory)")
	fs.IntVar(&c.rounds, "rounds", 1, "runs per query; figures are medians")
	fs.IntVar(&c.rate, "rate", nexmark.DefaultRate, "events per second of event time")
	fs.Int64Var(&c.delayMs, "delay-ms", 0, "deliver events out of order, each up to this late (at most the 2s out-of-orderness bound)")
	fs.Uint64Var(&c.seed, "seed", 1, "generator seed")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per query")
	fs.StringVar(&c.profile, "cpuprofile", "", "write a CPU profile of the query runs to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	queries := nexmark.Queries()
	if c.query != "all" {
		q, err := nexmark.Lookup(c.query)
		if err != nil {
			return err
		}
		queries = []nexmark.Runner{q}
	}
	if c.events < 1 || c.rounds < 1 || c.rate < 1 || c.delayMs < 0 || c.delayMs > nexmark.DefaultOutOfOrderness.Milliseconds() {
		return fmt.Errorf("events, rounds and rate must be positive, delay-ms 0 to %d", nexmark.DefaultOutOfOrderness.Milliseconds())
	}
	if c.source != "memory" && c.source != "generator" && c.source != "jetstream" {
		return fmt.Errorf("source %q: want memory, generator or jetstream", c.source)
	}
	if c.source == "generator" && c.delayMs > 0 {
		return fmt.Errorf("the generator source delivers events in order; use --source memory with --delay-ms")
	}
	fmt.Fprintf(stderr, "nexmark: generating %d events (seed %d)\n", c.events, c.seed)
	events := nexmark.Generate(nexmark.Config{Events: c.events, Seed: c.seed, Rate: c.rate, MaxDelayMs: c.delayMs})
	run := func(q nexmark.Runner, _ int) (nexmark.Outcome, error) {
		return q.RunEvents(ctx, stream.Config{OutOfOrderness: nexmark.DefaultOutOfOrderness}, events)
	}
	if c.source == "generator" {
		run = func(q nexmark.Runner, _ int) (nexmark.Outcome, error) {
			return q.RunGenerated(ctx, stream.Config{OutOfOrderness: nexmark.DefaultOutOfOrderness}, nexmark.Config{Events: c.events, Seed: c.seed, Rate: c.rate}, events)
		}
	}
	if c.source == "jetstream" {
		js, closeJS, err := openNexmarkLog(ctx, c, events, stderr)
		if err != nil {
			return err
		}
		defer closeJS()
		run = js
	}
	if !c.json {
		fmt.Fprintf(stdout, "%-5s %-9s %12s %14s %7s %12s %7s %s\n", "query", "source", "events/s", "events/s/core", "cores", "flink/core", "ratio", "correct")
	}
	stopProfile, err := startProfile(c.profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var wrong []string
	for _, q := range queries {
		res, err := benchQuery(q, c, run, stderr)
		if err != nil {
			return err
		}
		if !res.Correct {
			wrong = append(wrong, res.Query)
		}
		if c.json {
			if err := json.NewEncoder(stdout).Encode(res); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(stdout, "%-5s %-9s %12.0f %14.0f %7.2f %12.0f %6.1fx %v\n", res.Query, res.Source, res.EventsPerSec,
			res.EventsPerSecPerCore, res.CoresUsed, res.FlinkPerCore, res.RatioToFlink, res.Correct)
	}
	if len(wrong) > 0 {
		return fmt.Errorf("results differ from the batch computation: %v", wrong)
	}
	return nil
}

// benchQuery runs one query for the rounds and takes medians.
func benchQuery(q nexmark.Runner, c nexmarkBenchConfig, run func(nexmark.Runner, int) (nexmark.Outcome, error), stderr io.Writer) (NexmarkBenchResult, error) {
	res := NexmarkBenchResult{Query: q.QueryName(), Source: c.source, Events: c.events, Rounds: c.rounds,
		FlinkPerCore: flinkPerCore[q.QueryName()], Correct: true}
	var perCore, cores []float64
	for round := range c.rounds {
		runtime.GC() // start each round from the same heap: the last round's garbage is not this one's cost
		stop := progress(stderr, fmt.Sprintf("nexmark: %s round %d/%d", q.QueryName(), round+1, c.rounds))
		o, err := run(q, round)
		stop()
		if err != nil {
			return res, fmt.Errorf("%s: %w", q.QueryName(), err)
		}
		res.Results = o.Results
		res.Correct = res.Correct && o.Correct
		res.RoundsPerSec = append(res.RoundsPerSec, o.EventsPerSec())
		perCore = append(perCore, o.EventsPerCoreSec())
		cores = append(cores, o.CPU.Seconds()/o.Elapsed.Seconds())
	}
	res.EventsPerSec = median(res.RoundsPerSec)
	res.EventsPerSecPerCore = median(perCore)
	res.CoresUsed = median(cores)
	if res.FlinkPerCore > 0 {
		res.RatioToFlink = res.EventsPerSecPerCore / res.FlinkPerCore
	}
	return res, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// progress prints a line every second until stopped, for runs that take a while.
func progress(w io.Writer, what string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() { // stops when stop is called
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "%s: %s\n", what, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done); <-finished }
}

// openNexmarkLog publishes the events, as JSON, to a durable JetStream stream and returns a
// run function that reads them back through the query from the stream's start.
func openNexmarkLog(ctx context.Context, c nexmarkBenchConfig, events []nexmark.Event, stderr io.Writer) (func(nexmark.Runner, int) (nexmark.Outcome, error), func(), error) {
	cfg := nats.Config{URL: c.natsURL}
	var dir string
	if c.natsURL == "" {
		var err error
		if dir, err = os.MkdirTemp("", "surge-nexmark-"); err != nil {
			return nil, nil, err
		}
		// Bench data is disposable: let JetStream sync on its own schedule while loading.
		cfg.DataDir, cfg.RelaxedSync = dir, true
	}
	bus, err := nats.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	name := "NEXMARK_BENCH_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	subject := name + ".events"
	closeAll := func() {
		_ = bus.JS.DeleteStream(context.Background(), name)
		bus.Close()
		os.RemoveAll(dir)
	}
	if err := bus.EnsureLog(ctx, name, name+".>"); err != nil {
		closeAll()
		return nil, nil, err
	}
	if err := publishEvents(ctx, bus, subject, events, stderr); err != nil {
		closeAll()
		return nil, nil, err
	}
	ckpt, err := bus.Checkpoints(ctx)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	log := bus.Log(name, subject)
	l := stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return log.Open(ctx, after) })
	run := func(q nexmark.Runner, round int) (nexmark.Outcome, error) {
		ckName := fmt.Sprintf("%s/%s/%d", name, q.QueryName(), round)
		defer ckpt.Delete(context.Background(), ckName)
		res := q.NewResults()
		start, cpu0 := time.Now(), nexmark.CPUTime()
		err := q.ResumeLog(ctx, stream.Config{OutOfOrderness: nexmark.DefaultOutOfOrderness}, ckName, l, ckpt, uint64(len(events)), res)
		o := nexmark.Outcome{Query: q.QueryName(), Events: len(events), Results: res.Len(), Elapsed: time.Since(start), CPU: nexmark.CPUTime() - cpu0}
		if err != nil {
			return o, err
		}
		o.Correct = q.CheckResults(res, events) == nil
		return o, nil
	}
	return run, closeAll, nil
}

func publishEvents(ctx context.Context, bus *nats.Bus, subject string, events []nexmark.Event, stderr io.Writer) error {
	pub := bus.AsyncPublisher()
	last := time.Now()
	for i, e := range events {
		data, err := nexmark.Encode(e)
		if err != nil {
			return err
		}
		if err := pub.PublishAsync(subject, strconv.Itoa(i), data); err != nil {
			return err
		}
		if time.Since(last) >= time.Second {
			fmt.Fprintf(stderr, "nexmark: published %d of %d events to JetStream\n", i, len(events))
			last = time.Now()
		}
	}
	if err := pub.Flush(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "nexmark: published %d events to JetStream\n", len(events))
	return nil
}
