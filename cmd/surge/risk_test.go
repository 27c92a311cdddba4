package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/client"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
)

// attempt sends one purchase attempt from a device, with a proof if given, answered at once
// (a queued answer counts as taken).
func attempt(ctx context.Context, c *client.Client, item int64, device, proof, req string) (*purchase.Result, error) {
	d, err := c.Item(ctx, item)
	if err != nil {
		return nil, err
	}
	if device != "" {
		c = c.WithHeader(surgehttp.DeviceHeader, device)
	}
	if proof != "" {
		c = c.WithHeader(surgehttp.ProofHeader, proof)
	}
	return c.Purchase(ctx, purchase.Request{ItemID: item, Quantity: 1, RequestID: req, Token: d.Token})
}

// riskCaughtUp waits until the node's risk pipeline has read the events log up to now: its
// watermark is within seconds of the clock. A scale-out events log outlives the tests, and a
// node's pipeline first reads what came since the last checkpoint any node saved; a verdict
// comes within a second of its event once the pipeline is there.
func riskCaughtUp(t *testing.T, cl *client.Client) {
	t.Helper()
	name := `surge_stream_watermark_delay_seconds{pipeline="` + risk.PipelineName + `"}`
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if d := metric(t, cl, name); d > 0 && d < 10 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the risk pipeline did not catch up with the events log in 2 minutes (%s = %v)", name, metric(t, cl, name))
		}
	}
}

func refusedBy(err error, code, reason string) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Code == code && ce.Reason == reason
}

// Risk control over HTTP on every shape: rules are checked when saved and audited when changed;
// a device farm is refused at the gate within a second of the attempt that crossed the rule's
// line (and, in the scale-out shape, at a second node's gate too), while a shopper on her own
// device buys; support finds the verdict by the user and undoes it at once with the allow-list;
// a challenge is met with a proof of work; a dry-run rule only counts; a replay of the last hour
// finds what a draft would have caught, the same in dry-run and enforcing; and the refusals show
// in the live metrics and in Prometheus.
func TestRiskControl(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			_, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			// Before any rule runs: one that ran while the pipeline caught up would decide on
			// events of minutes ago, and its verdicts would reach the gates that late after them.
			riskCaughtUp(t, cl)

			// Bad rules are refused with what is wrong.
			good := surge.RiskRule{Name: "device farm", Expr: "accounts_1h.device > 3", On: surge.SubjectDevice, Action: surge.ActionBlock,
				TTLSec: 600, Reason: "BOT_FARM", Mode: surge.ModeEnforcing}
			for _, tc := range []struct {
				what, expr, want string
			}{
				{"a rule that does not compile", "accounts_1h.device >", "expr:"},
				{"a feature that does not exist", "accounts_1h.phone > 3", "undeclared reference to 'accounts_1h.phone'"},
				{"a rule that gives no verdict", "accounts_1h.device * 2", "must give true or false"},
				{"a rule that would block everyone", "attempts_10s.user > 0", "would block everyone"},
			} {
				r := good
				r.Expr = tc.expr
				_, err := tm.op.CreateRiskRule(ctx, r)
				if wantCode(t, tc.what, err, surge.EINVALID); !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v; want it to say %q", tc.what, err, tc.want)
				}
			}
			_, err := tm.m1.CreateRiskRule(ctx, good)
			wantCode(t, "a merchant's rule", err, surge.EFORBIDDEN)
			everyone := good
			everyone.Expr, everyone.Mode, everyone.Force = "attempts_10s.user > 0", surge.ModeOff, true
			forced := ok[*surge.RiskRule](t, "a forced rule")(tm.op.CreateRiskRule(ctx, everyone))
			_, err = tm.op.SetRiskMode(ctx, forced.ID, risk.ModeInput{Mode: surge.ModeEnforcing})
			wantCode(t, "enforcing a rule that blocks everyone, unforced", err, surge.EINVALID)
			if _, err := tm.op.SetRiskMode(ctx, forced.ID, risk.ModeInput{Mode: surge.ModeDryRun}); err != nil {
				t.Fatalf("a rule that would block everyone, run dry: %v", err)
			}
			ok[*surge.RiskRule](t, "switching it off")(tm.op.SetRiskMode(ctx, forced.ID, risk.ModeInput{Mode: surge.ModeOff}))

			farmRule := ok[*surge.RiskRule](t, "CreateRiskRule")(tm.op.CreateRiskRule(ctx, good))
			dry := ok[*surge.RiskRule](t, "a dry-run rule")(tm.op.CreateRiskRule(ctx, surge.RiskRule{Name: "busy network",
				Expr: "accounts_1h.network > 2", On: surge.SubjectNetwork, Action: surge.ActionBlock, TTLSec: 600, Reason: "BUSY_NET", Mode: surge.ModeDryRun}))
			ok[*surge.RiskRule](t, "a challenge rule")(tm.op.CreateRiskRule(ctx, surge.RiskRule{Name: "eager",
				Expr: "attempts_1m.user > 2", On: surge.SubjectUser, Action: surge.ActionChallenge, Bits: 12, TTLSec: 600, Reason: "EAGER", Mode: surge.ModeEnforcing}))
			// the audit trail: who changed what
			changed := farmRule
			changed.Name = "device farm (4 accounts)"
			changed = ok[*surge.RiskRule](t, "UpdateRiskRule")(tm.op.UpdateRiskRule(ctx, farmRule.ID, *changed))
			changes := ok[[]surge.RiskRuleChange](t, "RiskRuleChanges")(tm.op.RiskRuleChanges(ctx, farmRule.ID))
			if changed.Version != 2 || len(changes) != 2 || changes[0].Before == nil || changes[0].Before.Name != "device farm" ||
				changes[0].After.Name != changed.Name || changes[0].By != farmRule.UpdatedBy || farmRule.UpdatedBy == 0 || changes[1].Before != nil {
				t.Fatalf("changes %+v", changes)
			}

			item := openSaleItem(t, tm, 1000, 5, 900)
			var node2 *client.Client
			if c.NATSURL != "" { // a second node, not computing: its gate takes the verdicts too
				c2 := c
				c2.DataDir, c2.WorkerID, c2.LiveCompute, c2.AdminPassword = t.TempDir(), 1, false, ""
				_, node2 = start(t, c2)
			}

			// A farm: accounts on one device. The fourth account's attempt crosses the line.
			// Users and devices of this run alone: a scale-out deployment's events log (and the
			// pipeline's state) outlives a test's database.
			base := 8_000_000 + rand.Int64N(1_000_000)*100
			device := fmt.Sprint("farm-", base)
			farm := func(i int) *client.Client { return shopper(t, cl, base+int64(i)) }
			for i := range 4 {
				if _, err := attempt(ctx, farm(i), item.ID, device, "", fmt.Sprint("f", i)); err != nil {
					t.Fatalf("the farm's account %d before the rule held: %v", i, err)
				}
			}
			waitFor(t, "the farm refused", func() bool {
				_, err := attempt(ctx, farm(10), item.ID, device, "", fmt.Sprint("x", time.Now().UnixNano()))
				return refusedBy(err, surge.EFORBIDDEN, "BOT_FARM")
			})
			var vs []surge.Verdict
			waitFor(t, "the verdict stored", func() bool { // it acts at the gates first, then it is stored
				vs = ok[[]surge.Verdict](t, "RiskVerdicts")(tm.op.RiskVerdicts(ctx, base+3))
				return len(vs) > 0
			})
			if len(vs) != 1 || vs[0].RuleID != farmRule.ID || vs[0].Value != device || vs[0].Reason != "BOT_FARM" || vs[0].Mode != surge.ModeEnforcing {
				t.Fatalf("support's view of the fourth account: %+v", vs)
			}
			// Every gate had the verdict within a second of the event that made it: each measures
			// from the event's time to the verdict's note reaching it.
			reached := func(cl *client.Client, node string) {
				n := metric(t, cl, "surge_risk_verdict_arrival_seconds_count")
				if within := metric(t, cl, `surge_risk_verdict_arrival_seconds_bucket{le="1"}`); n < 1 || within != n {
					t.Errorf("%s: %v of %v verdicts reached the gate within a second of their event", node, within, n)
				}
				t.Logf("%s: %v verdicts reached the gate, %.0f ms after their event on average", node, n,
					1000*metric(t, cl, "surge_risk_verdict_arrival_seconds_sum")/n)
			}
			reached(cl, "the node")
			if node2 != nil {
				waitFor(t, "the second node's gate", func() bool {
					_, err := attempt(ctx, node2.As(farm(11).Token()), item.ID, device, "", fmt.Sprint("y", time.Now().UnixNano()))
					return refusedBy(err, surge.EFORBIDDEN, "BOT_FARM")
				})
				reached(node2, "the second node")
			}
			// a shopper on her own device buys
			if _, err := attempt(ctx, shopper(t, cl, base+50), item.ID, fmt.Sprint("app-", base+50), "", "h1"); err != nil {
				t.Fatalf("a shopper on her own device: %v", err)
			}
			_, err = attempt(ctx, shopper(t, cl, base+51), item.ID, "a device id", "", "h2")
			wantCode(t, "a device id that is not one", err, surge.EINVALID)

			// Support undoes the verdict at once.
			ok[*surge.RiskAllow](t, "RiskAllow")(tm.op.RiskAllow(ctx, risk.AllowInput{Subject: surge.SubjectDevice, Value: device, Reason: "a family tablet", TTLSec: 3600}))
			if _, err := attempt(ctx, farm(12), item.ID, device, "", "after-allow"); err != nil {
				t.Fatalf("an allowed device: %v", err)
			}
			if err := tm.op.RiskDisallow(ctx, surge.SubjectDevice, device); err != nil {
				t.Fatal(err)
			}
			_, err = attempt(ctx, farm(13), item.ID, device, "", "after-disallow")
			if !refusedBy(err, surge.EFORBIDDEN, "BOT_FARM") {
				t.Fatalf("off the allow-list again: %v", err)
			}
			_, err = tm.op.RiskAllow(ctx, risk.AllowInput{Subject: "phone", Value: "x", Reason: "r", TTLSec: 60})
			wantCode(t, "an allow-list entry of no subject", err, surge.EINVALID)
			_, err = tm.op.RiskVerdicts(ctx, 0)
			wantCode(t, "verdicts of no user", err, surge.EINVALID)

			// An eager shopper is challenged, and her proof of work lets the attempt through.
			eager, eagerDevice := shopper(t, cl, base+60), fmt.Sprint("app-", base+60)
			for i := range 3 {
				if _, err := attempt(ctx, eager, item.ID, eagerDevice, "", fmt.Sprint("e", i)); err != nil {
					t.Fatal(err)
				}
			}
			var ce *client.Error
			waitFor(t, "the challenge", func() bool {
				_, err := attempt(ctx, eager, item.ID, eagerDevice, "", "e-last")
				return errors.As(err, &ce) && ce.Code == surge.ECHALLENGE
			})
			if ce.Status != 428 || ce.Reason != "EAGER" || ce.Challenge == nil || ce.Challenge.Bits != 12 {
				t.Fatalf("challenge %+v", ce)
			}
			proof, err := risk.Solve(ctx, ce.Challenge.Seed, ce.Challenge.Bits)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := attempt(ctx, eager, item.ID, eagerDevice, proof, "e-last"); err != nil {
				t.Fatalf("with the proof: %v", err)
			}
			_, err = attempt(ctx, eager, item.ID, eagerDevice, proof, "e-other")
			wantCode(t, "a proof of another attempt", err, surge.ECHALLENGE)
			_, err = attempt(ctx, eager, item.ID, eagerDevice, proof, "e-last")
			wantCode(t, "a proof sent again", err, surge.ECHALLENGE)

			// The replay of the last hour finds the farm, the same in both modes.
			draft := good
			draft.Mode = surge.ModeDryRun
			rd := ok[*risk.ReplayResult](t, "RiskReplay")(tm.op.RiskReplay(ctx, risk.ReplayInput{Rule: draft}))
			draft.Mode = surge.ModeEnforcing
			re := ok[*risk.ReplayResult](t, "RiskReplay")(tm.op.RiskReplay(ctx, risk.ReplayInput{Rule: draft}))
			// (a scale-out events log may hold earlier farms too)
			found := slices.IndexFunc(rd.First, func(v surge.Verdict) bool { return v.Value == device })
			if found < 0 || rd.First[found].User != base+3 || rd.Signals < 10 || int64(len(rd.First)) != rd.Verdicts {
				t.Fatalf("replay %+v", rd)
			}
			if len(re.First) != len(rd.First) || re.Verdicts != rd.Verdicts {
				t.Fatalf("the replay enforcing %+v, dry-run %+v", re, rd)
			}
			for i := range re.First {
				if re.First[i].ID != rd.First[i].ID || re.First[i].Mode != surge.ModeEnforcing || rd.First[i].Mode != surge.ModeDryRun {
					t.Fatalf("replay verdict %d: enforcing %+v, dry-run %+v", i, re.First[i], rd.First[i])
				}
			}
			// What happened shows: live metrics of the session, Prometheus.
			session := fmt.Sprint(item.SessionID)
			waitFor(t, "the live metrics", func() bool {
				blocked, err1 := tm.op.Metric(ctx, "attempts_blocked", map[string]string{"session": session})
				challenged, err2 := tm.op.Metric(ctx, "attempts_challenged", map[string]string{"session": session})
				bots, err3 := tm.op.Metric(ctx, "bot_attempts", map[string]string{"session": session})
				return err1 == nil && err2 == nil && err3 == nil && blocked.Value >= 2 && challenged.Value >= 2 && bots.Value > blocked.Value+challenged.Value
			})
			if n := metric(t, cl, `surge_risk_rule_hits_total{mode="enforcing",rule="`+fmt.Sprint(farmRule.ID)+`"}`); n != 1 {
				t.Errorf("farm rule hits %v, want 1", n)
			}
			if n := metric(t, cl, `surge_risk_rule_hits_total{mode="dry_run",rule="`+fmt.Sprint(dry.ID)+`"}`); n < 1 {
				t.Errorf("dry-run rule hits %v", n)
			}
			if n := metric(t, cl, `surge_risk_gate_attempts_total{action="solved"}`); n != 1 {
				t.Errorf("solved challenges %v, want 1", n)
			}
		})
	}
}

// The risk pipeline reads the live metrics' ticks: its time moves when no attempt comes.
func TestRiskReadsTheLiveTicks(t *testing.T) {
	_, data := live.TickMessage(time.UnixMilli(1_800_000_000_123))
	sigs, err := risk.DecodeSignals(data)
	if err != nil || len(sigs) != 1 || sigs[0].At != 1_800_000_000_123 || sigs[0].Kind == risk.SignalAttempt {
		t.Fatalf("a tick reads as %+v, %v", sigs, err)
	}
}

// TestKillDuringRiskCounting kills the node that computes the risk features (SIGKILL) after
// attempts it checkpointed and attempts it had not: restarted, it counts each attempt once. A
// rule that holds past 30 attempts from a device lets the 30 through and makes its verdict at
// the 31st, not at an attempt counted twice.
func TestKillDuringRiskCounting(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	cl, cmd := child(t, dir)
	tm := newTeam(t, cl)
	ctx := context.Background()
	rule := ok[*surge.RiskRule](t, "CreateRiskRule")(tm.op.CreateRiskRule(ctx, surge.RiskRule{Name: "busy device", Expr: "attempts_1h.device > 30",
		On: surge.SubjectDevice, Action: surge.ActionBlock, TTLSec: 600, Reason: "BUSY_DEVICE", Mode: surge.ModeEnforcing}))
	item := openSale(t, tm, 1000, 1, 900)
	const base = 9_000_000
	try := func(cl *client.Client, i int) error {
		_, err := attempt(ctx, shopper(t, cl, int64(base+i)), item, "tablet-1", "", fmt.Sprint("k", i))
		return err
	}
	for i := 1; i <= 10; i++ {
		if err := try(cl, i); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	time.Sleep(15 * time.Second) // a checkpoint (every 10 s) holds these ten
	for i := 11; i <= 20; i++ {
		if err := try(cl, i); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	time.Sleep(2 * time.Second) // in the events log (sent every 20 ms), and past the checkpoint
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cl, cmd = child(t, dir)
	defer func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }()
	time.Sleep(2 * time.Second) // the pipeline replays what followed its checkpoint
	for i := 21; i <= 31; i++ {
		if err := try(cl, i); err != nil {
			t.Fatalf("after the restart, attempt %d (of 30 let through, and the 31st that makes the verdict): %v", i, err)
		}
	}
	waitFor(t, "the verdict of the 31st attempt", func() bool {
		err := try(cl, 100)
		return refusedBy(err, surge.EFORBIDDEN, "BUSY_DEVICE")
	})
	op := cl.As(tm.op.Token())
	vs := ok[[]surge.Verdict](t, "RiskVerdicts")(op.RiskVerdicts(ctx, base+31))
	if len(vs) != 1 || vs[0].RuleID != rule.ID || vs[0].Value != "tablet-1" {
		t.Fatalf("the 31st attempt's verdicts: %+v; want the rule's, made by it", vs)
	}
	for _, i := range []int{20, 30} {
		if vs := ok[[]surge.Verdict](t, "RiskVerdicts")(op.RiskVerdicts(ctx, int64(base+i))); len(vs) != 0 {
			t.Fatalf("attempt %d made a verdict: %+v (counted twice)", i, vs)
		}
	}
}
