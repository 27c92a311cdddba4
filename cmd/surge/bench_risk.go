package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/stream"
)

// RiskBenchResult is what surge bench risk measured.
type RiskBenchResult struct {
	Events  int `json:"events"`
	Devices int `json:"devices"`
	Rules   int `json:"rules"`
	// FeaturesPerSec is attempts per second through the risk pipeline with no rules: read from
	// the events log's JSON, counted in every window of their user, device, IP and network.
	FeaturesPerSec float64 `json:"features_events_per_sec"`
	// RulesPerSec is the same with the rules running; RuleNsPerEvent what they add per attempt.
	RulesPerSec    float64 `json:"rules_events_per_sec"`
	RuleNsPerEvent float64 `json:"rules_ns_per_event"`
	Verdicts       int64   `json:"verdicts"`
	Subjects       int     `json:"subjects"`          // users, devices, IPs and networks kept
	BytesPerKey    float64 `json:"bytes_per_subject"` // heap held by the features, per subject
	// ScreenNs is the gate's check of one attempt against VerdictsHeld verdicts.
	ScreenNs     float64 `json:"gate_screen_ns"`
	VerdictsHeld int     `json:"gate_verdicts_held"`
}

// benchRisk measures the risk pipeline in process: features over a crowd with a million
// devices, the cost of the rules per attempt, and the gate's check.
func benchRisk(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := command{name: "bench risk",
		about: `Measures risk control in process: purchase attempts through the risk pipeline as the events
log holds them (JSON batches of 1,000), first with no rules (the features alone: every window of
each attempt's user, device, IP and network), then with the rules of operators' shapes running;
the memory the features hold per subject; and the gate's check of one attempt.`,
		examples: []string{"surge bench risk", "surge bench risk --events 3000000 --devices 1000000 --rules 50 --json"}}.flagSet(stderr)
	events := fs.Int("events", 3_000_000, "purchase attempts")
	devices := fs.Int("devices", 1_000_000, "distinct devices (and users) among them")
	rules := fs.Int("rules", 50, "rules running in the second pass")
	rate := fs.Int("rate", 300_000, "attempts per second of the crowd's own time (spreads them over the windows)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the pass with rules to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *events < 1 || *devices < 1 || *devices > *events || *rules < 0 || *rate < 1 {
		return fmt.Errorf("events, devices and rate must be positive, devices at most events, rules not negative")
	}
	res := RiskBenchResult{Events: *events, Devices: *devices, Rules: *rules}
	stop := progress(stderr, "bench risk: writing the attempts as the events log holds them")
	msgs, err := riskAttempts(*events, *devices, *rate)
	stop()
	if err != nil {
		return err
	}
	run := func(set *risk.RuleSet, what string) (float64, int64, error) {
		var verdicts atomic.Int64
		p, src := stream.New("bench-risk", stream.Config{OutOfOrderness: risk.OutOfOrderness}, func(s risk.Signal) int64 { return s.At })
		stream.To(risk.Build(src, func() *risk.RuleSet { return set }, nil), stream.Sink[surge.Verdict](stream.SinkFunc[surge.Verdict](
			func(uint64, int64, surge.Verdict) error { verdicts.Add(1); return nil })))
		var decodeErr error
		seq := func(yield func(risk.Signal) bool) {
			for _, m := range msgs {
				list, err := risk.DecodeSignals(m)
				if err != nil {
					decodeErr = err
					return
				}
				for _, s := range list {
					if !yield(s) {
						return
					}
				}
			}
		}
		stop := progress(stderr, "bench risk: "+what)
		runtime.GC()
		start := time.Now()
		err := p.RunSeq(ctx, seq)
		took := time.Since(start)
		stop()
		if err == nil {
			err = decodeErr
		}
		return float64(*events) / took.Seconds(), verdicts.Load(), err
	}
	if res.FeaturesPerSec, _, err = run(nil, "the features alone"); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bench risk: features alone: %.0f attempts/s\n", res.FeaturesPerSec)
	res.Subjects, res.BytesPerKey = featureMemory(msgs)
	set, errs := risk.NewRuleSet(risk.BenchRules(*rules))
	if len(errs) > 0 {
		return errs[0]
	}
	stopProfile, err := startProfile(*profile)
	if err != nil {
		return err
	}
	res.RulesPerSec, res.Verdicts, err = run(set, fmt.Sprintf("with %d rules", *rules))
	stopProfile()
	if err != nil {
		return err
	}
	res.RuleNsPerEvent = (1/res.RulesPerSec - 1/res.FeaturesPerSec) * 1e9
	res.ScreenNs, res.VerdictsHeld = screenCost()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "%d attempts from %d devices (and users), %d IPs\n", res.Events, res.Devices, res.Devices/4)
	fmt.Fprintf(stdout, "features alone   %9.0f attempts/s   %d subjects, %.0f bytes each\n", res.FeaturesPerSec, res.Subjects, res.BytesPerKey)
	fmt.Fprintf(stdout, "with %2d rules    %9.0f attempts/s   the rules add %.0f ns an attempt; %d verdicts\n", res.Rules, res.RulesPerSec, res.RuleNsPerEvent, res.Verdicts)
	fmt.Fprintf(stdout, "gate check       %9.0f ns an attempt against %d verdicts held\n", res.ScreenNs, res.VerdictsHeld)
	return nil
}

// riskAttempts writes n attempts as purchase.attempts events of 1,000: shopper i of devices on
// device i (so every device is new until the crowd comes round again), four shoppers to an IP
// and a few IPs to a network, rate attempts a second.
func riskAttempts(n, devices, rate int) ([][]byte, error) {
	start := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	var out [][]byte
	batch := make([]purchase.Attempt, 0, 1000)
	for i := range n {
		d := i % devices
		at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		batch = append(batch, purchase.Attempt{ItemID: 1, UserID: int64(10_000_000 + d), Quantity: 1, RequestID: "r" + strconv.Itoa(i),
			Outcome: []string{"success", surge.ESOLDOUT, surge.ERATELIMIT}[i%3], IP: fmt.Sprintf("10.%d.%d.%d", d>>10&255, d>>2&255, d>>18+1),
			Device: "app-" + strconv.Itoa(d), At: at})
		if len(batch) == cap(batch) || i == n-1 {
			b, err := json.Marshal(surge.Event{ID: "bench-" + strconv.Itoa(i), Kind: surge.EventPurchaseAttempts, At: at, Data: batch})
			if err != nil {
				return nil, err
			}
			out = append(out, b)
			batch = batch[:0]
		}
	}
	return out, nil
}

// featureMemory counts the attempts into features alone and measures the heap they hold.
func featureMemory(msgs [][]byte) (int, float64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := risk.NewFeatures()
	for _, m := range msgs {
		list, _ := risk.DecodeSignals(m)
		for i := range list {
			f.Count(&list[i])
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := f.Keys()
	runtime.KeepAlive(f)
	return n, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(max(n, 1))
}

// screenCost times the gate's check of an attempt that no verdict names, with 100,000 held.
func screenCost() (float64, int) {
	now := time.Now()
	g := risk.NewGate(nil, nil, []byte("bench"), nil, nil, func() time.Time { return now })
	const held = 100_000
	vs := make([]surge.Verdict, held)
	for i := range vs {
		vs[i] = surge.Verdict{ID: strconv.Itoa(i), RuleID: 1, Subject: surge.SubjectDevice, Value: "farm-" + strconv.Itoa(i), Action: surge.ActionBlock,
			Reason: "BENCH", Mode: surge.ModeEnforcing, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	}
	g.Apply(vs)
	a := risk.Attempt{User: 123456789, Device: "app-1234", IP: "10.1.2.3", Item: 1, Session: 1, RequestID: "r"}
	const n = 2_000_000
	start := time.Now()
	for range n {
		if g.Screen(a) != nil {
			return -1, held
		}
	}
	return float64(time.Since(start).Nanoseconds()) / n, held
}
