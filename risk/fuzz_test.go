package risk

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"cel.dev/cel-go/common/types"

	"github.com/surgecommerce/surge"
)

// A rule as an operator sends it is checked without a crash; one that is saved evaluates
// without a crash over any counts.
func FuzzRule(f *testing.F) {
	f.Add(`{"name":"farm","expr":"attempts_10s.device > 20 || accounts_1h.device > 5","on":"device","action":"block","ttl_sec":600,"reason":"BOT","mode":"enforcing"}`, uint16(3))
	f.Add(`{"name":"c","expr":"orders_1m.ip / attempts_1m.ip > 2","on":"ip","action":"challenge","bits":12,"ttl_sec":60,"reason":"C","mode":"dry_run"}`, uint16(0))
	f.Add(`{"name":"x","expr":"size('abc') == 3 && attempts_1h.user % 7 == 1","on":"user","action":"allow","ttl_sec":1,"reason":"A"}`, uint16(9))
	f.Add(`{"name":"x","expr":"[1,2,3].all(x, x < attempts_10s.network)","on":"network","action":"block","ttl_sec":1,"reason":"A","force":true}`, uint16(65535))
	f.Fuzz(func(t *testing.T, body string, n uint16) {
		var r surge.RiskRule
		if json.Unmarshal([]byte(body), &r) != nil {
			return
		}
		rule, err := Validate(&r)
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("a bad rule: %v; want EINVALID", err)
			}
			return
		}
		var ents [subjects]*entity
		for i := range ents {
			e := &entity{}
			e.attempts.add(1000, uint32(n))
			e.orders.add(1000, uint32(n/2))
			e.accounts.add(uint32(n), 16)
			ents[i] = e
		}
		a := &activation{ents: &ents, now: 1000}
		var v values
		v.reset(a)
		hit, err := rule.eval(a, &v)
		if rule.fast != nil {
			agree(t, rule, a, hit, err)
		}
	})
}

// A note from the bus is read or refused with EINVALID, never a crash; what it holds is checked.
func FuzzNote(f *testing.F) {
	f.Add(`{"verdicts":[{"id":"1.1.device.x.1","rule_id":"1","rule_version":1,"subject":"device","value":"farm-1","action":"block","reason":"BOT","mode":"enforcing","user":"5","trigger_at":"2026-11-11T00:00:00Z","created_at":"2026-11-11T00:00:00Z","expires_at":"2026-11-11T00:10:00Z"}]}`)
	f.Add(`{"allow":{"subject":"ip","value":"10.0.0.1","expires_at":"2026-11-11T00:10:00Z"}}`)
	f.Add(`{"verdicts":[{"subject":"user","value":"x"}]}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, body string) {
		n, err := DecodeNote([]byte(body))
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("%v; want EINVALID", err)
			}
			return
		}
		for _, v := range n.Verdicts {
			if checkVerdict(&v) != nil {
				t.Fatalf("a verdict let through: %+v", v)
			}
		}
		s := newSets()
		for i := range n.Verdicts {
			s.put(&n.Verdicts[i])
		}
		if a := n.Allow; a != nil {
			s.allow(a.Subject, a.Value, a.ExpiresAt)
		}
	})
}

// A record of the events log is read into signals or refused, never a crash.
func FuzzSignals(f *testing.F) {
	f.Add(`{"id":"a","kind":"purchase.attempts","at":"2026-11-11T00:00:00Z","data":[{"item_id":"1","user_id":"5","quantity":1,"request_id":"r","outcome":"success","ip":"10.0.0.1","device":"d","coupons":2,"at":"2026-11-11T00:00:00Z"}]}`)
	f.Add(`{"id":"o","kind":"orders.created","at":"2026-11-11T00:00:00Z","data":[{"id":"9","user_id":"5","merchant_id":"5"}]}`)
	f.Add(`{"id":"r","kind":"order.refunded","at":"2026-11-11T00:00:00Z","data":{"id":"9","user_id":"5"}}`)
	f.Add(`{"id":"t","kind":"live.tick","at":"2026-11-11T00:00:00Z"}`)
	f.Add(`{"kind":"purchase.attempts","at":"x"}`)
	f.Fuzz(func(t *testing.T, body string) {
		list, err := DecodeSignals([]byte(body))
		if err != nil {
			return
		}
		e := newEngine()
		set, _ := NewRuleSet([]*surge.RiskRule{rule(1, "attempts_10s.device > 1", surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing)})
		for i := range list {
			e.step(&list[i], set, nil, func(surge.Verdict) {})
		}
	})
}

// agree checks a fast rule's answer against CEL's own evaluation of it.
func agree(t *testing.T, rule *Rule, a *activation, hit bool, err error) {
	t.Helper()
	cv, _, cerr := rule.prog.Eval(a)
	if (err != nil) != (cerr != nil) || err == nil && hit != (cv == types.True) {
		t.Fatalf("%s: fast %v %v, CEL %v %v", rule.Expr, hit, err, cv, cerr)
	}
}

// exprGen writes random rules of the fast kind: integer arithmetic over features and literals,
// comparisons, && || ! and ?:, with values that overflow and divisors that are zero.
type exprGen struct{ r *rand.Rand }

func (g exprGen) int(depth int) string {
	if depth == 0 || g.r.IntN(3) == 0 {
		switch g.r.IntN(4) {
		case 0:
			return fmt.Sprint([]int64{0, 1, 2, 7, -3, 1 << 40, 9223372036854775807, -9223372036854775807}[g.r.IntN(8)])
		default:
			return featureList[g.r.IntN(len(featureList))].name
		}
	}
	switch g.r.IntN(7) {
	case 0:
		return "-(" + g.int(depth-1) + ")"
	case 1:
		return "(" + g.bool(depth-1) + " ? " + g.int(depth-1) + " : " + g.int(depth-1) + ")"
	default:
		return "(" + g.int(depth-1) + " " + []string{"+", "-", "*", "/", "%"}[g.r.IntN(5)] + " " + g.int(depth-1) + ")"
	}
}

func (g exprGen) bool(depth int) string {
	if depth == 0 {
		return g.int(0) + " > " + g.int(0)
	}
	switch g.r.IntN(6) {
	case 0:
		return "!(" + g.bool(depth-1) + ")"
	case 1:
		return "(" + g.bool(depth-1) + " && " + g.bool(depth-1) + ")"
	case 2:
		return "(" + g.bool(depth-1) + " || " + g.bool(depth-1) + ")"
	case 3:
		return "(" + g.bool(depth-1) + " == " + g.bool(depth-1) + ")"
	default:
		return "(" + g.int(depth-1) + " " + []string{"<", "<=", ">", ">=", "==", "!="}[g.r.IntN(6)] + " " + g.int(depth-1) + ")"
	}
}

// The closures a rule is turned into answer as CEL does, errors included, on thousands of
// random rules over random counts.
func TestFastRulesAgreeWithCEL(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	g := exprGen{rng}
	fastOnes := 0
	for range 3000 {
		r := rule(1, g.bool(1+rng.IntN(4)), surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing)
		r.Force = true
		rl, err := Validate(r)
		if err != nil {
			continue // too long, say
		}
		if rl.fast == nil {
			t.Fatalf("%s is not fast", r.Expr)
		}
		fastOnes++
		for range 5 {
			var ents [subjects]*entity
			for i := range ents {
				if rng.IntN(4) == 0 {
					continue // no such subject: its counts read 0
				}
				e := &entity{}
				e.attempts.add(1000, uint32(rng.IntN(50)))
				e.orders.add(1000-int64(rng.IntN(3000)), uint32(rng.IntN(5)))
				if rng.IntN(2) == 0 {
					e.accounts.add(uint32(rng.IntN(9)), 16)
					e.extra().refunds.add(1000, uint32(rng.Uint32()))
				}
				ents[i] = e
			}
			a := &activation{ents: &ents, now: 1000}
			var v values
			v.reset(a)
			hit, err := rl.eval(a, &v)
			agree(t, rl, a, hit, err)
		}
	}
	if fastOnes < 2000 {
		t.Errorf("only %d rules were made", fastOnes)
	}
}
