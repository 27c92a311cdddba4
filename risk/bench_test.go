package risk

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// BenchmarkRules50 is what evaluating the rules costs per attempt: 50 rules, none of which
// holds, over the counts of an attempt's user, device, IP and network.
func BenchmarkRules50(b *testing.B) { benchRules50(b, true) }

func benchRules50(b *testing.B, closures bool) {
	set, errs := NewRuleSet(BenchRules(50))
	if len(errs) > 0 || len(set.Rules) != 50 {
		b.Fatal(errs)
	}
	for _, r := range set.Rules {
		if r.fast == nil {
			b.Fatalf("%s runs on CEL", r.Expr)
		}
		if !closures {
			r.fast = nil
		}
	}
	e := newEngine()
	ip := "10.1.2.7"
	s := Signal{Kind: SignalAttempt, Won: true, User: 1, At: 1_800_000_000_000}
	s.Values = [subjects]string{"1", "app-1", ip, NetworkOf(ip), "", ""}
	e.step(&s, nil, nil, nil)
	now := s.At / 1000
	b.ReportAllocs()
	for b.Loop() {
		e.act = activation{ents: &e.ents, now: now}
		e.vals.reset(&e.act)
		for _, r := range set.Rules {
			if e.ents[subjectIndex(r.On)].decided(r.ID, r.Version, now) {
				b.Fatal("decided")
			}
			if hit, err := r.eval(&e.act, &e.vals); hit || err != nil {
				b.Fatal(r.Expr, hit, err)
			}
		}
	}
}

// BenchmarkRules50CEL is BenchmarkRules50 on CEL's own interpreter: what the closures save.
func BenchmarkRules50CEL(b *testing.B) {
	benchRules50(b, false)
}

// BenchmarkAttempt50Rules is an attempt's whole cost in the pipeline: an ordinary shopper's
// attempt counted (100,000 shoppers, each on its own device and network, trying every 20 s) and
// run through 50 rules, none of which holds.
func BenchmarkAttempt50Rules(b *testing.B) {
	set, errs := NewRuleSet(BenchRules(50))
	if len(errs) > 0 || len(set.Rules) != 50 {
		b.Fatal(errs)
	}
	e := newEngine()
	// 100,000 shoppers, each on its own device and network, each trying every 20 s
	const shoppers = 100_000
	sigs := make([]Signal, shoppers)
	for i := range sigs {
		ip := fmt.Sprintf("10.%d.%d.7", i>>8, i&255)
		sigs[i] = Signal{Kind: SignalAttempt, Won: true, User: int64(i + 1)}
		sigs[i].Values = [subjects]string{userValue(int64(i + 1)), "app-" + strconv.Itoa(i), ip, NetworkOf(ip), "", ""}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s := sigs[i%shoppers]
		s.At = 1_800_000_000_000 + int64(i/shoppers)*20_000 + int64(i%shoppers)/5
		e.step(&s, set, nil, func(v surge.Verdict) { b.Fatalf("a verdict: %+v", v) })
	}
}

// BenchmarkFeatures is the counting alone, over a million devices: what it costs per attempt,
// and the memory per subject.
func BenchmarkFeatures(b *testing.B) {
	const devices = 1_000_000
	sigs := make([]Signal, devices)
	for i := range sigs {
		sigs[i] = Signal{Kind: SignalAttempt, User: int64(i), At: 1_800_000_000_000 + int64(i)/300}
		sigs[i].Values = [subjects]string{strconv.Itoa(i), "dev-" + strconv.Itoa(i), "", "", "", ""}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := NewFeatures()
	var ents [subjects]*entity
	for i := range sigs {
		f.Add(&sigs[i], &ents)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perKey := float64(after.HeapAlloc-before.HeapAlloc) / float64(f.Keys())
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s := &sigs[i%devices]
		f.Add(s, &ents)
	}
	b.ReportMetric(perKey, "bytes/subject")
	runtime.KeepAlive(f)
}

// BenchmarkScreen is the gate's check of one attempt against 100,000 verdicts held.
func BenchmarkScreen(b *testing.B) {
	c := &clock{t: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)}
	g := NewGate(nil, nil, []byte("k"), nil, nil, c.now)
	var vs []surge.Verdict
	for i := range 100_000 {
		vs = append(vs, verdict(strconv.Itoa(i), surge.SubjectDevice, "farm-"+strconv.Itoa(i), surge.ActionBlock, 0, surge.ModeEnforcing, c.now()))
	}
	g.Apply(vs)
	a := Attempt{User: 123456789, Device: "app-1234", IP: "10.1.2.3", Item: 1, Session: 1, RequestID: "r"}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Screen(a); err != nil {
			b.Fatal(err)
		}
	}
}
