package snowflake_test

import (
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/snowflake"
)

// fakeClock is a settable clock whose sleep advances it.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) sleep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
}
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

func TestUniqueAndIncreasingUnderConcurrency(t *testing.T) {
	g, err := snowflake.New(7)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 20000
	out := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]int64, each)
			for i := range ids {
				var err error
				if ids[i], err = g.Next(); err != nil {
					t.Errorf("Next() = %v", err)
					return
				}
			}
			out[w] = ids
		}()
	}
	wg.Wait()
	seen := make(map[int64]bool, workers*each)
	for _, ids := range out {
		for i, id := range ids {
			if seen[id] {
				t.Fatalf("id %d handed out twice", id)
			}
			seen[id] = true
			if i > 0 && id <= ids[i-1] {
				t.Fatalf("ids not increasing within one goroutine: %d after %d", id, ids[i-1])
			}
			if snowflake.Worker(id) != 7 {
				t.Fatalf("Worker(%d) = %d; want 7", id, snowflake.Worker(id))
			}
		}
	}
}

func TestSequenceOverflowWaitsForNextMillisecond(t *testing.T) {
	c := &fakeClock{t: snowflake.Epoch.Add(time.Hour)}
	g, _ := snowflake.NewWithClock(1, c.now, c.sleep)
	var last int64
	for i := 0; i < 3*4096; i++ {
		id, err := g.Next()
		if err != nil {
			t.Fatalf("Next() #%d = %v", i, err)
		}
		if id <= last {
			t.Fatalf("Next() #%d = %d; want > %d", i, id, last)
		}
		last = id
	}
	if c.slept == 0 {
		t.Fatal("4096 ids in one frozen millisecond should have waited for the next")
	}
}

func TestClockStepBackWaitsShortAndFailsLong(t *testing.T) {
	start := snowflake.Epoch.Add(time.Hour)
	c := &fakeClock{t: start}
	g, _ := snowflake.NewWithClock(1, c.now, c.sleep)
	first, _ := g.Next()

	c.set(start.Add(-50 * time.Millisecond)) // small step: wait it out
	second, err := g.Next()
	if err != nil {
		t.Fatalf("Next() after a 50ms step back = %v; want it to wait", err)
	}
	if second <= first {
		t.Fatalf("Next() = %d after %d; want larger", second, first)
	}
	if c.slept < 50*time.Millisecond {
		t.Fatalf("slept %s; want at least 50ms", c.slept)
	}

	c.set(start.Add(-time.Hour)) // large step: refuse
	if _, err := g.Next(); surge.ErrorCode(err) != surge.ECLOCK {
		t.Fatalf("Next() after a 1h step back = %v; want ECLOCK", err)
	}
	c.set(start.Add(time.Second)) // the clock recovers: ids flow again and stay increasing
	third, err := g.Next()
	if err != nil || third <= second {
		t.Fatalf("Next() after recovery = %d, %v; want > %d", third, err, second)
	}
}

func TestLayout(t *testing.T) {
	c := &fakeClock{t: snowflake.Epoch.Add(1234 * time.Millisecond)}
	g, _ := snowflake.NewWithClock(snowflake.MaxWorker, c.now, c.sleep)
	id, _ := g.Next()
	if got := snowflake.Time(id); !got.Equal(c.t) {
		t.Errorf("Time(%d) = %s; want %s", id, got, c.t)
	}
	if got := snowflake.Worker(id); got != snowflake.MaxWorker {
		t.Errorf("Worker(%d) = %d; want %d", id, got, snowflake.MaxWorker)
	}
	for _, w := range []int64{-1, snowflake.MaxWorker + 1} {
		if _, err := snowflake.New(w); surge.ErrorCode(err) != surge.EINVALID {
			t.Errorf("New(%d) = %v; want EINVALID", w, err)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	g, _ := snowflake.New(1)
	for b.Loop() {
		if _, err := g.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// A failed wait for the next millisecond must not leave the sequence advanced, or the next
// call in the same millisecond would repeat an id.
func TestOverflowThenClockStepNeverRepeats(t *testing.T) {
	start := snowflake.Epoch.Add(time.Hour)
	c := &fakeClock{t: start}
	frozen := true
	now := func() time.Time {
		if frozen {
			return start
		}
		return c.now()
	}
	sleeps := 0
	sleep := func(d time.Duration) {
		sleeps++
		if sleeps > 1 { // the clock jumps back while waiting out a full millisecond
			c.set(start.Add(-time.Hour))
			frozen = false
		}
	}
	g, _ := snowflake.NewWithClock(1, now, sleep)
	seen := map[int64]bool{}
	for i := 0; i < 5000; i++ {
		id, err := g.Next()
		if err != nil {
			break
		}
		if seen[id] {
			t.Fatalf("id %d handed out twice", id)
		}
		seen[id] = true
	}
	c.set(start)
	frozen = true
	for i := 0; i < 10; i++ {
		id, err := g.Next()
		if err == nil && seen[id] {
			t.Fatalf("id %d handed out twice after a failed wait", id)
		}
		if err == nil {
			seen[id] = true
		}
	}
}
