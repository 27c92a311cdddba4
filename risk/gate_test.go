package risk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/storetest"
)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "surge.db"), storetest.IDs())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// emitted keeps what a gate sends to the events log.
type emitted struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (e *emitted) Emit(_, _ string, data []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, data)
	return nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func verdict(id, subject, value, action string, bits int, mode string, at time.Time) surge.Verdict {
	return surge.Verdict{ID: id, RuleID: 1, Version: 1, Subject: subject, Value: value, Action: action, Bits: bits,
		Reason: "BOT_FARM", Mode: mode, User: 5, Trigger: at.Add(-50 * time.Millisecond), CreatedAt: at, ExpiresAt: at.Add(time.Minute)}
}

func newGate(t *testing.T, store surge.RiskStore, c *clock, bus surge.EventEmitter) (*Gate, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return NewGate(store, bus, []byte("key"), reg, slog.New(slog.NewTextHandler(io.Discard, nil)), c.now), reg
}

func refusal(t *testing.T, err error, code string) *surge.RiskRefusal {
	t.Helper()
	r, ok := errors.AsType[*surge.RiskRefusal](err)
	if !ok || r.Err.Code != code || r.Reason != "BOT_FARM" {
		t.Fatalf("screen: %v; want a %s refusal with the rule's reason", err, code)
	}
	return r
}

// Verdicts about a device, an IP, a network or a user stop the attempts they name; an
// allow-list entry undoes them at once; a dry-run verdict only counts.
func TestGateActsOnVerdicts(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)}
	bus := &emitted{}
	g, reg := newGate(t, openStore(t), c, bus)
	a := Attempt{User: 7, Device: "farm-1", IP: "172.16.0.9", Item: 3, Session: 11, RequestID: "r1"}
	if err := g.Screen(a); err != nil {
		t.Fatal(err)
	}
	g.Apply([]surge.Verdict{verdict("v1", surge.SubjectDevice, "farm-1", surge.ActionBlock, 0, surge.ModeEnforcing, c.now())})
	refusal(t, g.Screen(a), surge.EFORBIDDEN)
	if err := g.Screen(Attempt{User: 8, Device: "app-8", IP: "10.0.0.8", Item: 3, Session: 11}); err != nil {
		t.Errorf("another device: %v", err)
	}
	other := Attempt{User: 9, Device: "app-9", IP: "172.16.0.77", Item: 3, Session: 11}
	g.Apply([]surge.Verdict{verdict("v2", surge.SubjectNetwork, "172.16.0.0/24", surge.ActionBlock, 0, surge.ModeEnforcing, c.now())})
	refusal(t, g.Screen(other), surge.EFORBIDDEN)
	g.AllowNow(surge.SubjectNetwork, "172.16.0.0/24", c.now().Add(time.Hour))
	if err := g.Screen(other); err != nil {
		t.Errorf("an allowed network: %v", err)
	}
	refusal(t, g.Screen(a), surge.EFORBIDDEN) // its device is still blocked
	g.AllowNow(surge.SubjectUser, "7", c.now().Add(time.Hour))
	if err := g.Screen(a); err != nil {
		t.Errorf("an allowed user: %v", err)
	}
	g.AllowNow(surge.SubjectUser, "7", time.Time{})
	refusal(t, g.Screen(a), surge.EFORBIDDEN)

	dry := Attempt{User: 20, Device: "farm-2", IP: "10.9.9.9", Session: 11}
	g.Apply([]surge.Verdict{verdict("v3", surge.SubjectDevice, "farm-2", surge.ActionBlock, 0, surge.ModeDryRun, c.now())})
	if err := g.Screen(dry); err != nil {
		t.Errorf("a dry-run verdict refused: %v", err)
	}
	c.add(2 * time.Minute) // every verdict ended
	if err := g.Screen(a); err != nil {
		t.Errorf("an ended verdict: %v", err)
	}
	if got := testutil.ToFloat64(g.m.screened.WithLabelValues("dry_run")); got != 1 {
		t.Errorf("dry-run counted %v times, want 1", got)
	}
	var h dto.Metric
	if err := g.m.delay.Write(&h); err != nil || h.Histogram.GetSampleCount() != 2 || h.Histogram.GetSampleSum() < 0.1 {
		t.Errorf("delays measured: %v, %v; want the first refusal of each of the 2 blocks, 50 ms after its event", h.Histogram, err)
	}
	if n, err := testutil.GatherAndCount(reg, "surge_risk_verdict_delay_seconds"); err != nil || n != 1 {
		t.Errorf("delay histogram: %d, %v", n, err)
	}
	g.sendOutcomes()
	if len(bus.msgs) != 1 {
		t.Fatalf("%d outcome events sent, want 1", len(bus.msgs))
	}
	var e struct {
		Kind string              `json:"kind"`
		Data []surge.RiskOutcome `json:"data"`
	}
	if err := json.Unmarshal(bus.msgs[0], &e); err != nil || e.Kind != surge.EventRiskOutcomes {
		t.Fatal(err, e.Kind)
	}
	counts := map[string]int64{}
	for _, o := range e.Data {
		if o.Session != 11 {
			t.Errorf("outcome of session %d", o.Session)
		}
		counts[o.Action] += o.Count
	}
	if counts[surge.ActionBlock] != 4 || counts[surge.ModeDryRun] != 1 {
		t.Errorf("outcomes %v; want 4 blocks and 1 dry-run", counts)
	}
}

// A challenge asks for a proof of work; the proof solved for the attempt lets it through, once;
// a proof of another request, too easy, forged or stale does not.
func TestChallengeTakesAProofOfWork(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)}
	g, _ := newGate(t, openStore(t), c, nil)
	g.Apply([]surge.Verdict{verdict("c1", surge.SubjectIP, "203.0.113.5", surge.ActionChallenge, 10, surge.ModeEnforcing, c.now())})
	a := Attempt{User: 7, IP: "203.0.113.5", Item: 3, Session: 1, RequestID: "r1"}
	r := refusal(t, g.Screen(a), surge.ECHALLENGE)
	if r.Bits != 10 || r.Seed == "" {
		t.Fatalf("challenge %+v", r)
	}
	proof, err := Solve(context.Background(), r.Seed, r.Bits)
	if err != nil || LeadingZeros(proof) < 10 {
		t.Fatalf("solve: %q %v", proof, err)
	}
	a.Proof = proof
	if err := g.Screen(a); err != nil {
		t.Errorf("a solved challenge: %v", err)
	}
	refusal(t, g.Screen(a), surge.ECHALLENGE) // a proof is taken once
	other := a
	other.RequestID = "r2"
	refusal(t, g.Screen(other), surge.ECHALLENGE)
	other = a
	other.Item = 4
	refusal(t, g.Screen(other), surge.ECHALLENGE)
	forged := a
	forged.Proof = "zzzz." + r.Seed[5:] + proof[len(r.Seed):]
	refusal(t, g.Screen(forged), surge.ECHALLENGE)
	for _, p := range []string{"", "x", r.Seed, r.Seed + ":", "no-dot:1"} {
		bad := a
		bad.Proof = p
		refusal(t, g.Screen(bad), surge.ECHALLENGE)
	}
	if LeadingZeros(proof) < 24 { // a harder challenge needs a new proof (unless this one happens to do)
		g.Apply([]surge.Verdict{verdict("c2", surge.SubjectUser, "7", surge.ActionChallenge, 24, surge.ModeEnforcing, c.now())})
		refusal(t, g.Screen(a), surge.ECHALLENGE)
	}
	c.add(ProofTTL + time.Second)
	g.Apply([]surge.Verdict{verdict("c3", surge.SubjectIP, "203.0.113.5", surge.ActionChallenge, 10, surge.ModeEnforcing, c.now())})
	refusal(t, g.Screen(a), surge.ECHALLENGE) // the seed has ended
}

// brokenStore is a verdict store that is down.
type brokenStore struct{ surge.RiskStore }

var errDown = errors.New("store down")

func (brokenStore) ActiveVerdicts(context.Context, time.Time, int) ([]surge.Verdict, error) {
	return nil, errDown
}
func (brokenStore) VerdictsSince(context.Context, time.Time, string, int) ([]surge.Verdict, error) {
	return nil, errDown
}

// With its store down, a gate keeps the verdicts it has and takes new ones from the bus: it says
// so in its metrics, lets through who it let through, and never lets a known block through.
func TestGateKeepsItsVerdictsWhileTheStoreIsDown(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)}
	store := openStore(t)
	ctx := context.Background()
	if err := store.PutVerdicts(ctx, []surge.Verdict{verdict("s1", surge.SubjectDevice, "farm-1", surge.ActionBlock, 0, surge.ModeEnforcing, c.now())}); err != nil {
		t.Fatal(err)
	}
	g, reg := newGate(t, store, c, nil)
	if err := g.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	blocked, free := Attempt{User: 1, Device: "farm-1", IP: "10.0.0.1"}, Attempt{User: 2, Device: "app-2", IP: "10.0.0.2"}
	refusal(t, g.Screen(blocked), surge.EFORBIDDEN)
	g.store = brokenStore{store}
	if err := g.Reload(ctx); !errors.Is(err, errDown) {
		t.Fatalf("reload from a store that is down: %v", err)
	}
	if err := g.catchUp(ctx); !errors.Is(err, errDown) {
		t.Fatalf("catch-up from a store that is down: %v", err)
	}
	if got := testutil.ToFloat64(g.m.refreshErrors); got != 2 {
		t.Errorf("refresh errors %v, want 2", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "surge_risk_verdicts_stale"); n != 1 || !g.stale.Load() {
		t.Error("the gate does not say its verdicts are stale")
	}
	refusal(t, g.Screen(blocked), surge.EFORBIDDEN)
	if err := g.Screen(free); err != nil {
		t.Errorf("with the store down, a shopper without a verdict: %v", err)
	}
	note, _ := json.Marshal(Note{Verdicts: []surge.Verdict{verdict("n1", surge.SubjectDevice, "app-2", surge.ActionBlock, 0, surge.ModeEnforcing, c.now())}})
	g.Take(note)
	refusal(t, g.Screen(free), surge.EFORBIDDEN)
	g.Take([]byte(`{"verdicts":[{"id":"x"}]}`)) // not a verdict: dropped
	g.store = store
	if err := g.Reload(ctx); err != nil || g.stale.Load() {
		t.Fatalf("the store is back: %v, stale %v", err, g.stale.Load())
	}
	refusal(t, g.Screen(free), surge.EFORBIDDEN) // the noted verdict outlived the reload
}

// A gate at its bound of subjects makes room from the verdicts that ended; with every one still
// acting, a new one waits for the store's reload rather than push an acting one out.
func TestGateAtItsBoundKeepsWhatActs(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)}
	g, _ := newGate(t, openStore(t), c, nil)
	g.maxHeld = 2
	g.Apply([]surge.Verdict{verdict("a", surge.SubjectDevice, "d1", surge.ActionBlock, 0, surge.ModeEnforcing, c.now()),
		verdict("b", surge.SubjectDevice, "d2", surge.ActionBlock, 0, surge.ModeEnforcing, c.now()),
		verdict("c", surge.SubjectDevice, "d3", surge.ActionBlock, 0, surge.ModeEnforcing, c.now())})
	if err := g.Screen(Attempt{User: 1, Device: "d3"}); err != nil {
		t.Fatalf("a third subject past the bound of two: %v", err)
	}
	refusal(t, g.Screen(Attempt{User: 1, Device: "d1"}), surge.EFORBIDDEN)
	c.add(2 * time.Minute) // both ended
	g.Apply([]surge.Verdict{verdict("d", surge.SubjectDevice, "d4", surge.ActionBlock, 0, surge.ModeEnforcing, c.now())})
	refusal(t, g.Screen(Attempt{User: 1, Device: "d4"}), surge.EFORBIDDEN)
	if n := g.sets.size(); n != 1 {
		t.Errorf("%d subjects held; want the one that acts", n)
	}
}
