package risk

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

func rule(id int64, expr, on, action string, mode string) *surge.RiskRule {
	r := &surge.RiskRule{ID: id, Version: 1, Name: "r", Expr: expr, On: on, Action: action, TTLSec: 600, Reason: "BOT_FARM", Mode: mode}
	if action == surge.ActionChallenge {
		r.Bits = 8
	}
	return r
}

// A rule is checked when saved: each wrong thing is EINVALID naming it.
func TestRulesAreCheckedWhenSaved(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(r *surge.RiskRule)
		want string
	}{
		{"syntax", func(r *surge.RiskRule) { r.Expr = "attempts_10s.device >" }, "expr: "},
		{"unknown feature", func(r *surge.RiskRule) { r.Expr = "attempts_10s.devic > 2" }, "undeclared reference"},
		{"unknown window", func(r *surge.RiskRule) { r.Expr = "attempts_5s.device > 2" }, "undeclared reference"},
		{"not a verdict", func(r *surge.RiskRule) { r.Expr = "attempts_10s.device + 1" }, "must give true or false, not int"},
		{"a string", func(r *surge.RiskRule) { r.Expr = `"yes"` }, "must give true or false"},
		{"empty", func(r *surge.RiskRule) { r.Expr = "  " }, "expr must be"},
		{"too long", func(r *surge.RiskRule) { r.Expr = strings.Repeat("(", surge.MaxRuleExprLen+1) }, "expr must be"},
		{"blocks everyone", func(r *surge.RiskRule) { r.Expr = "attempts_10s.device >= 1" }, "would block everyone"},
		{"always", func(r *surge.RiskRule) { r.Expr = "true" }, "would block everyone"},
		{"challenges everyone", func(r *surge.RiskRule) {
			r.Expr = "accounts_1h.device > 0"
			r.Action, r.Bits = surge.ActionChallenge, 8
		}, "would challenge everyone"},
		{"on", func(r *surge.RiskRule) { r.On = "shop" }, "on must be"},
		{"action", func(r *surge.RiskRule) { r.Action = "deny" }, "action must be"},
		{"bits on a block", func(r *surge.RiskRule) { r.Bits = 4 }, "bits is for challenge"},
		{"challenge without bits", func(r *surge.RiskRule) { r.Action, r.Bits = surge.ActionChallenge, 0 }, "bits must be between"},
		{"challenge too hard", func(r *surge.RiskRule) { r.Action, r.Bits = surge.ActionChallenge, 29 }, "bits must be between"},
		{"mode", func(r *surge.RiskRule) { r.Mode = "on" }, "mode must be"},
		{"ttl", func(r *surge.RiskRule) { r.TTLSec = 0 }, "ttl_sec"},
		{"ttl too long", func(r *surge.RiskRule) { r.TTLSec = 8 * 86400 }, "ttl_sec"},
		{"reason", func(r *surge.RiskRule) { r.Reason = "bot farm" }, "reason must be a code"},
		{"priority", func(r *surge.RiskRule) { r.Priority = 5000 }, "priority"},
		{"name", func(r *surge.RiskRule) { r.Name = "" }, "name"},
	} {
		r := rule(1, "accounts_1h.device > 5", surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing)
		tc.edit(r)
		_, err := Validate(r)
		if surge.ErrorCode(err) != surge.EINVALID || !strings.Contains(surge.ErrorMessage(err), tc.want) {
			t.Errorf("%s: %v; want EINVALID saying %q", tc.name, err, tc.want)
		}
	}
	r := rule(1, "attempts_10s.device >= 1", surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing)
	r.Force = true
	if _, err := Validate(r); err != nil {
		t.Errorf("a rule that blocks everyone, forced: %v", err)
	}
	for _, mode := range []string{surge.ModeOff, surge.ModeDryRun} {
		if _, err := Validate(rule(1, "attempts_10s.device >= 1", surge.SubjectDevice, surge.ActionBlock, mode)); err != nil {
			t.Errorf("a rule that would block everyone, %s: %v; it does not act", mode, err)
		}
	}
	ok := rule(1, "attempts_10s.device > 20 || accounts_1h.device > 5", surge.SubjectDevice, surge.ActionBlock, "")
	if _, err := Validate(ok); err != nil || ok.Mode != surge.ModeOff {
		t.Errorf("the issue's example: %v, mode %q; want saved as off", err, ok.Mode)
	}
}

// farm is a device farm's attempts: accounts users, each trying once from one of devices
// devices, one attempt every step milliseconds from start.
func farm(accounts, devices int, start, step int64) []Signal {
	out := make([]Signal, 0, accounts)
	for i := range accounts {
		s := Signal{Kind: SignalAttempt, Won: i%3 == 0, User: int64(1000 + i), At: start + int64(i)*step}
		s.Values = [subjects]string{userValue(int64(1000 + i)), fmt.Sprintf("farm-%d", i%devices), "172.16.0.9", "172.16.0.0/24", "", ""}
		out = append(out, s)
	}
	return out
}

// humans are shoppers each on their own device and address.
func humans(n int, start, step int64) []Signal {
	out := make([]Signal, 0, n)
	for i := range n {
		s := Signal{Kind: SignalAttempt, Won: true, User: int64(50_000 + i), At: start + int64(i)*step}
		s.Values = [subjects]string{userValue(int64(50_000 + i)), fmt.Sprintf("app-%d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "", "", ""}
		s.Values[onNetwork] = NetworkOf(s.Values[onIP])
		out = append(out, s)
	}
	return out
}

func run(t testing.TB, signals []Signal, rules ...*surge.RiskRule) []surge.Verdict {
	t.Helper()
	set, errs := NewRuleSet(rules)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var out []surge.Verdict
	p, src := stream.New("t", stream.Config{OutOfOrderness: OutOfOrderness}, func(s Signal) int64 { return s.At })
	stream.To(Build(src, func() *RuleSet { return set }, nil), stream.Sink[surge.Verdict](stream.SinkFunc[surge.Verdict](
		func(_ uint64, _ int64, v surge.Verdict) error { out = append(out, v); return nil })))
	if err := p.RunSlice(context.Background(), signals); err != nil {
		t.Fatal(err)
	}
	return out
}

func merge(a, b []Signal) []Signal {
	out := append(append([]Signal{}, a...), b...)
	for i := 1; i < len(out); i++ { // by time, a stable insertion sort
		for j := i; j > 0 && out[j].At < out[j-1].At; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// A device farm is caught by "many accounts on one device", each device once per verdict's
// TTL, at the attempt that crossed the line; shoppers on their own devices are not.
func TestAFarmIsCaughtAndShoppersAreNot(t *testing.T) {
	start := int64(1_800_000_000_000)
	signals := merge(farm(400, 4, start, 25), humans(400, start, 25))
	vs := run(t, signals, rule(7, "accounts_1h.device > 5", surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing))
	if len(vs) != 4 {
		t.Fatalf("%d verdicts, want one per farm device: %+v", len(vs), vs)
	}
	for _, v := range vs {
		if !strings.HasPrefix(v.Value, "farm-") || v.Subject != surge.SubjectDevice || v.Action != surge.ActionBlock ||
			v.Reason != "BOT_FARM" || v.RuleID != 7 || v.Mode != surge.ModeEnforcing || !v.ExpiresAt.Equal(v.CreatedAt.Add(600e9)) {
			t.Errorf("verdict %+v", v)
		}
		// the 6th account on a device (the 21st to 24th attempt of the farm) made it
		if u := v.User - 1000; u < 20 || u > 23 {
			t.Errorf("verdict made by the farm's account %d; want one of its 21st to 24th", u)
		}
	}
}

// Dry-run and enforcing make the same verdicts on the same events, but for their mode; an allow
// rule of higher priority keeps lower enforcing rules off its subject.
func TestDryRunMakesTheVerdictsEnforcingWould(t *testing.T) {
	start := int64(1_800_000_000_000)
	signals := merge(farm(300, 3, start, 10), humans(300, start, 10))
	dry := run(t, signals, rule(3, "attempts_10s.network > 30", surge.SubjectNetwork, surge.ActionChallenge, surge.ModeDryRun))
	enf := run(t, signals, rule(3, "attempts_10s.network > 30", surge.SubjectNetwork, surge.ActionChallenge, surge.ModeEnforcing))
	if len(dry) == 0 || len(dry) != len(enf) {
		t.Fatalf("dry-run made %d verdicts, enforcing %d", len(dry), len(enf))
	}
	for i := range dry {
		d := dry[i]
		d.Mode = surge.ModeEnforcing
		if d != enf[i] {
			t.Errorf("verdict %d: dry-run %+v, enforcing %+v", i, dry[i], enf[i])
		}
	}
	allow := rule(2, `attempts_1h.device < 1000000 && accounts_1h.network > 50`, surge.SubjectNetwork, surge.ActionAllow, surge.ModeEnforcing)
	allow.Priority = 10
	if vs := run(t, signals, allow, rule(3, "attempts_10s.network > 30", surge.SubjectNetwork, surge.ActionChallenge, surge.ModeEnforcing)); len(vs) != len(enf) {
		t.Errorf("an allow that never held changed the verdicts: %d, want %d", len(vs), len(enf))
	}
	allow.Expr = "accounts_1h.network > 1"
	if vs := run(t, signals, allow, rule(3, "attempts_10s.network > 30", surge.SubjectNetwork, surge.ActionChallenge, surge.ModeEnforcing)); len(vs) != 0 {
		t.Errorf("an allow of higher priority held; the lower rule still made %d verdicts", len(vs))
	}
}

// A rule that fails at run time (a division by zero) does not hold, and is counted.
func TestAFailingRuleDoesNotHold(t *testing.T) {
	set, _ := NewRuleSet([]*surge.RiskRule{rule(9, "attempts_10s.device / (orders_1h.address) > 1", surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing)})
	h := &countHits{}
	e := newEngine()
	for _, s := range farm(50, 1, 1_800_000_000_000, 10) {
		e.step(&s, set, h, func(surge.Verdict) { t.Fatal("a failing rule made a verdict") })
	}
	if h.failed != 50 || h.hits != 0 {
		t.Errorf("failures %d, hits %d; want 50 and 0", h.failed, h.hits)
	}
}

type countHits struct{ hits, failed, keys int }

func (c *countHits) Hit(*Rule)           { c.hits++ }
func (c *countHits) Failed(*Rule, error) { c.failed++ }
func (c *countHits) Keys(n int)          { c.keys = n }

// The features forget subjects quiet for an hour, and the verdicts that ended.
func TestQuietSubjectsAreForgotten(t *testing.T) {
	e := newEngine()
	set, _ := NewRuleSet([]*surge.RiskRule{rule(1, "accounts_1h.device > 2", surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing)})
	start := int64(1_800_000_000_000)
	for _, s := range farm(20, 2, start, 10) {
		e.step(&s, set, nil, func(surge.Verdict) {})
	}
	if e.f.Keys() == 0 || e.f.Verdicts() != 2 {
		t.Fatalf("%d subjects, %d verdicts", e.f.Keys(), e.f.Verdicts())
	}
	h := &countHits{}
	tick := Signal{Kind: signalTick, At: start + 3601_000}
	e.step(&tick, set, h, nil)
	if e.f.Keys() != 0 || e.f.Verdicts() != 0 || h.keys != 0 {
		t.Errorf("an hour later: %d subjects, %d verdicts kept", e.f.Keys(), e.f.Verdicts())
	}
}

// A rule switched from dry-run to enforcing (a new version) decides afresh about the subjects
// its dry run flagged: the farm it only counted is refused from then on.
func TestEnforcingARuleActsOnWhatItsDryRunFlagged(t *testing.T) {
	e := newEngine()
	dry := rule(4, "accounts_1h.device > 3", surge.SubjectDevice, surge.ActionBlock, surge.ModeDryRun)
	enf := *dry
	enf.Mode, enf.Version = surge.ModeEnforcing, 2
	dset, _ := NewRuleSet([]*surge.RiskRule{dry})
	eset, _ := NewRuleSet([]*surge.RiskRule{&enf})
	var got []surge.Verdict
	sigs := farm(40, 1, 1_800_000_000_000, 10)
	for i := range sigs {
		set := dset
		if i >= 20 {
			set = eset
		}
		e.step(&sigs[i], set, nil, func(v surge.Verdict) { got = append(got, v) })
	}
	if len(got) != 2 || got[0].Mode != surge.ModeDryRun || got[1].Mode != surge.ModeEnforcing || got[1].Version != 2 || got[1].User != 1020 {
		t.Fatalf("verdicts %+v; want the dry run's, then the enforcing version's at the first attempt after the switch", got)
	}
}
