package shed_test

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/surgecommerce/surge/shed"
)

var t0 = time.Date(2026, 11, 11, 20, 0, 0, 0, time.UTC)

func TestAdmitByExpectedWait(t *testing.T) {
	g := shed.New(shed.Config{})
	if ok, _ := g.Admit(1_000_000); !ok {
		t.Fatal("Admit before any service was measured refused; want every arrival let in")
	}
	// A quiet queue: batches of one, nothing left. Their cost says nothing of a full batch's.
	for i := range 10 {
		g.Taken(t0.Add(time.Duration(i)*10*time.Millisecond), 0, 1, 0)
	}
	if ok, _ := g.Admit(1_000_000); !ok || g.Wait(1_000_000) != 0 {
		t.Fatalf("Admit after quiet takes refused (wait %s); want no estimate from a quiet queue", g.Wait(1_000_000))
	}
	// Backlogged: batches of 100 taken 1 ms apart, so 10 µs a piece.
	at := t0.Add(time.Second)
	for i := range 20 {
		g.Taken(at.Add(time.Duration(i)*time.Millisecond), time.Millisecond, 100, 500)
	}
	if w := g.Wait(1000); w < 9*time.Millisecond || w > 11*time.Millisecond {
		t.Fatalf("Wait(1000) = %s; want about 10ms at 10µs a piece", w)
	}
	for _, tc := range []struct {
		name  string
		ahead int
		ok    bool
	}{
		{"short queue", 10, true},
		{"within MaxWait", 40_000, true},     // 400 ms
		{"past MaxWait", 100_000, false},     // 1 s
		{"far past it", 10_000_000, false},   // 100 s: the hint is capped
		{"exactly MaxWait", 50_000, true},    // 500 ms
		{"just past MaxWait", 50_100, false}, // 501 ms
		{"nothing ahead", 0, true},           // never refused
		{"one ahead", 1, true},               // never refused either
		{"a full queue's worth", 8192, true}, // 82 ms
		{"twice the allowance", 100_000, false},
	} {
		ok, retry := g.Admit(tc.ahead)
		if ok != tc.ok {
			t.Errorf("%s: Admit(%d) = %v (retry %s); want %v", tc.name, tc.ahead, ok, retry, tc.ok)
		}
		if !ok && (retry < shed.MinRetry*4/5 || retry > shed.MaxRetry*6/5) {
			t.Errorf("%s: retry hint %s outside [%s, %s] give or take a fifth", tc.name, retry, shed.MinRetry, shed.MaxRetry)
		}
	}
	if _, retry := g.Admit(100_000); retry < 400*time.Millisecond || retry > 600*time.Millisecond {
		t.Fatalf("retry hint for 1 s of work against 500 ms allowed = %s; want about 500 ms", retry)
	}
}

func TestStandingDelayIsOverload(t *testing.T) {
	g := shed.New(shed.Config{Target: 50 * time.Millisecond, Interval: 200 * time.Millisecond, MaxWait: 500 * time.Millisecond})
	at := t0
	take := func(waited time.Duration) {
		at = at.Add(10 * time.Millisecond)
		g.Taken(at, waited, 100, 1000) // 100 µs a piece
	}
	for range 5 {
		take(10 * time.Millisecond)
	}
	if ok, _ := g.Admit(2000); !ok || g.Overloaded() { // 200 ms of work: within MaxWait
		t.Fatalf("Admit(200 ms of work) refused or overloaded %v before any standing delay", g.Overloaded())
	}
	for range 15 { // 150 ms above Target: not yet a whole Interval
		take(80 * time.Millisecond)
	}
	if g.Overloaded() {
		t.Fatal("overloaded after 150 ms above Target; want a whole Interval (200 ms) first")
	}
	for range 10 {
		take(80 * time.Millisecond)
	}
	if !g.Overloaded() {
		t.Fatal("not overloaded after 250 ms above Target")
	}
	if ok, _ := g.Admit(2000); ok {
		t.Fatal("Admit(200 ms of work) while overloaded let it in; want only what is served within Target")
	}
	if ok, _ := g.Admit(400); !ok { // 40 ms
		t.Fatal("Admit(40 ms of work) while overloaded refused; want it let in")
	}
	take(20 * time.Millisecond) // one wait below Target: the backlog is gone
	if g.Overloaded() {
		t.Fatal("still overloaded after a wait below Target")
	}
}

// A simulated queue served at a fixed rate, with arrivals at three times that rate: every
// arrival let in is served within the allowed wait (plus one batch), and the queue takes as
// much work as it can serve. No clock is read: the simulation is deterministic for its seed.
func TestThreeTimesCapacityKeepsTheWaitBounded(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SURGE_SIM_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (SURGE_SIM_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	cfg := shed.Config{Target: 50 * time.Millisecond, Interval: 200 * time.Millisecond, MaxWait: 500 * time.Millisecond}
	g := shed.New(cfg)
	const (
		perItem  = 100 * time.Microsecond // the server's capacity: 10,000 a second
		batchMax = 256
		batchFix = 2 * time.Millisecond // each batch's fixed cost
		rate     = 30_000.0             // arrivals a second: three times the capacity
		run      = 10 * time.Second
	)
	var queue []time.Time // arrival times of the work waiting
	var admitted, refused, served int
	var worst time.Duration
	now, serverFree := t0, t0
	next := t0
	for now.Sub(t0) < run {
		// Arrivals up to the server's next take.
		for ; !next.After(serverFree); next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second))) {
			if ok, _ := g.Admit(len(queue)); ok {
				queue = append(queue, next)
				admitted++
			} else {
				refused++
			}
		}
		now = serverFree
		if len(queue) == 0 {
			serverFree = next
			continue
		}
		n := min(len(queue), batchMax)
		waited := now.Sub(queue[0])
		for _, a := range queue[:n] {
			worst = max(worst, now.Sub(a))
		}
		queue = queue[n:]
		g.Taken(now, waited, n, len(queue))
		served += n
		serverFree = now.Add(batchFix + time.Duration(n)*perItem)
	}
	// A batch of 256 takes 27.6 ms: the allowed wait, give or take the batch the estimate is
	// one behind on.
	if limit := cfg.MaxWait + 2*(batchFix+batchMax*perItem); worst > limit {
		t.Fatalf("worst wait of an admitted arrival = %s; want at most %s", worst, limit)
	}
	capacity := int(run / perItem)
	if served < capacity*8/10 {
		t.Fatalf("served %d in %s; want near the capacity of %d: refusals must not starve the queue", served, run, capacity)
	}
	if refused < admitted {
		t.Fatalf("refused %d, admitted %d at three times the capacity; want most refused", refused, admitted)
	}
	t.Logf("admitted %d, refused %d, served %d, worst wait %s", admitted, refused, served, worst)
}
