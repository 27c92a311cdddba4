package shed_test

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/surgecommerce/surge/shed"
)

var t0 = time.Date(2026, 11, 11, 20, 0, 0, 0, time.UTC)

// shareTurnedAway asks Shed often at now and returns the share it turned away, checking each
// retry hint against its bounds.
func shareTurnedAway(t *testing.T, d *shed.Delay, now time.Time) float64 {
	t.Helper()
	n := 0
	for range 10_000 {
		if why, retry := d.Shed(now, 1); why != "" {
			if why != shed.Standing {
				t.Fatalf("turned away for %q with nothing ahead; want %q", why, shed.Standing)
			}
			if retry < shed.RetryStep*4/5 || retry > 10*shed.RetryStep*6/5 {
				t.Fatalf("retry hint %s outside %s to %s, give or take a fifth", retry, shed.RetryStep, 10*shed.RetryStep)
			}
			n++
		}
	}
	return float64(n) / 10_000
}

func TestShareStepsWithTheStandingDelay(t *testing.T) {
	d := shed.New(100*time.Millisecond, 0, 0)
	at := t0
	// observe answers every 10 ms for a number of intervals, all having waited wait.
	observe := func(intervals int, wait time.Duration) {
		for range intervals * 10 {
			at = at.Add(10 * time.Millisecond)
			d.Observe(at, wait)
		}
	}
	if s := shareTurnedAway(t, d, at); s != 0 {
		t.Fatalf("share before any answer = %v; want 0", s)
	}
	observe(3, 30*time.Millisecond)
	if d.Share() != 0 {
		t.Fatalf("share after waits well under the target = %v; want 0", d.Share())
	}
	for i := 1; i <= 12; i++ { // every wait above the target, under twice it: a standing delay
		observe(1, 150*time.Millisecond)
		if want := min(0.1*float64(i), shed.MaxShare); d.Share() < want-0.11 || d.Share() > want+1e-9 {
			t.Fatalf("share after %d intervals above the target = %v; want about %v", i, d.Share(), want)
		}
	}
	if d.Share() != shed.MaxShare || d.Standing() != 150*time.Millisecond {
		t.Fatalf("share %v, standing delay %s; want %v and 150ms", d.Share(), d.Standing(), shed.MaxShare)
	}
	if s := shareTurnedAway(t, d, at); s < 0.85 || s > 0.95 {
		t.Fatalf("%.2f of arrivals turned away at a share of 0.9", s)
	}
	// A burst's slow answers do not count while one answer of each interval was quick: the
	// standing delay is the shortest wait.
	for range 5 {
		observe(1, 80*time.Millisecond) // between half the target and the target: held
		d.Observe(at, 2*time.Second)
	}
	if d.Share() != shed.MaxShare {
		t.Fatalf("share after waits between half the target and the target = %v; want it held", d.Share())
	}
	observe(10, 20*time.Millisecond) // the backlog is gone: nine steps down
	if d.Share() != 0 || shareTurnedAway(t, d, at) != 0 {
		t.Fatalf("share after ten quick intervals = %v; want 0", d.Share())
	}
	observe(1, 350*time.Millisecond) // three times the target: three steps at once
	observe(1, 350*time.Millisecond)
	if d.Share() < 0.3-1e-9 || d.Share() > 0.3+1e-9 {
		t.Fatalf("share after an interval at three times the target = %v; want 0.3", d.Share())
	}
	observe(3, time.Second) // a new backlog, then nothing answered for a while
	if d.Share() == 0 || shareTurnedAway(t, d, at) == 0 {
		t.Fatal("no share turned away during a backlog")
	}
	if s := shareTurnedAway(t, d, at.Add(time.Second)); s != 0 {
		t.Fatalf("share turned away a second after the last answer = %v; want 0: the load it was about is gone", s)
	}
}

// An arrival that finds more work ahead than the line answers in its longest wait is turned
// away at once, by the pace measured while the line was busy; a quiet line's pace is not taken.
func TestWorkAheadPastTheLongestWait(t *testing.T) {
	d := shed.New(100*time.Millisecond, 500*time.Millisecond, 0)
	at := t0
	for range 30 { // quiet: 10 answers a second, each quick
		at = at.Add(100 * time.Millisecond)
		d.Observe(at, time.Millisecond)
	}
	if d.Pace() != 0 {
		t.Fatalf("pace measured in a quiet line = %d; want none", d.Pace())
	}
	if why, _ := d.Shed(at, 5000); why != "" {
		t.Fatal("a burst after a lull was turned away by a quiet line's pace")
	}
	cold := shed.New(100*time.Millisecond, 500*time.Millisecond, 256)
	if why, _ := cold.Shed(at, 255); why != "" {
		t.Fatal("a line of no measured pace turned away the 256th arrival; want up to its cold bound let in")
	}
	if why, retry := cold.Shed(at, 256); why != shed.WorkAhead || retry < shed.RetryStep*4/5 {
		t.Fatalf("a line of no measured pace let in past its cold bound (%q, %s)", why, retry)
	}
	cold.Served(10, 50*time.Millisecond) // its first batch: 200 a second
	if why, _ := cold.Shed(at, 99); why != "" {
		t.Fatal("an arrival with 0.495 s of work ahead, by the first batch's pace, was turned away")
	}
	if why, _ := cold.Shed(at, 120); why != shed.WorkAhead {
		t.Fatal("an arrival with 0.6 s of work ahead, by the first batch's pace, was let in")
	}
	for range 300 { // busy: 1,000 answers a second, each having waited 60 ms
		at = at.Add(time.Millisecond)
		d.Observe(at, 60*time.Millisecond)
	}
	if p := d.Pace(); p < 900 || p > 1100 {
		t.Fatalf("pace of a busy line = %d; want about 1,000 a second", p)
	}
	if why, _ := d.Shed(at, 400); why != "" { // 0.4 s of work ahead
		t.Fatal("an arrival with 0.4 s of work ahead was turned away; want it let in under the 0.5 s bound")
	}
	why, retry := d.Shed(at, 2000) // 2 s of work ahead
	if why != shed.WorkAhead || retry < 1200*time.Millisecond || retry > 1800*time.Millisecond {
		t.Fatalf("an arrival with 2 s of work ahead: turned away for %q, retry %s; want %q, back in about 1.5 s", why, retry, shed.WorkAhead)
	}
}

// A simulated line served at a fixed pace, with arrivals at three times what it serves: the
// waits of those let in stay bounded, and the line keeps serving near its capacity. The clock
// is simulated: the run is the same for its seed.
func TestThreeTimesCapacityKeepsTheWaitBounded(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SURGE_SIM_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (SURGE_SIM_SEED replays it)", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	const (
		perItem  = 100 * time.Microsecond // the line's capacity: 10,000 a second
		batchMax = 256
		batchFix = 2 * time.Millisecond // each batch's fixed cost
		rate     = 30_000.0             // arrivals a second: three times the capacity
		run      = 20 * time.Second
	)
	d := shed.New(100*time.Millisecond, 500*time.Millisecond, batchMax)
	var queue []time.Time
	var waits []time.Duration
	admitted, refused := 0, 0
	serverFree, next := t0, t0
	for serverFree.Sub(t0) < run {
		for ; !next.After(serverFree); next = next.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Second))) {
			if why, _ := d.Shed(next, int64(len(queue))); why != "" {
				refused++
				continue
			}
			queue = append(queue, next)
			admitted++
		}
		if len(queue) == 0 {
			serverFree = next
			continue
		}
		n := min(len(queue), batchMax)
		done := serverFree.Add(batchFix + time.Duration(n)*perItem)
		for _, a := range queue[:n] {
			waits = append(waits, done.Sub(a))
			d.Observe(done, done.Sub(a))
		}
		queue = queue[n:]
		serverFree = done
	}
	slices.Sort(waits)
	p99 := waits[len(waits)*99/100]
	if p99 > time.Second {
		t.Fatalf("p99 wait of the arrivals let in = %s; want at most a second", p99)
	}
	capacity := int(run / (batchFix/batchMax + perItem))
	if len(waits) < capacity*7/10 {
		t.Fatalf("served %d in %s; want near the capacity of %d: turning away must not starve the line", len(waits), run, capacity)
	}
	if refused < admitted {
		t.Fatalf("refused %d, let in %d at three times the capacity; want most refused", refused, admitted)
	}
	t.Logf("let in %d, refused %d, served %d, p50 wait %s, p99 %s, share at the end %.1f", admitted, refused, len(waits),
		waits[len(waits)/2], p99, d.Share())
}
