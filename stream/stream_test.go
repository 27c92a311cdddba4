package stream_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge/stream"
)

// click is a test record: a user's click at a time, worth some amount.
type click struct {
	User   string
	TS     int64
	Amount int64
}

func clickTime(c click) int64 { return c.TS }

// clicks makes n clicks over users, in time order, then shuffles each within maxDelay of its
// place, the way events reach a log out of order.
func clicks(seed uint64, n, users int, spacing, maxDelay int64) []click {
	r := rand.New(rand.NewPCG(seed, 0))
	out := make([]click, n)
	for i := range out {
		out[i] = click{User: fmt.Sprintf("u%d", r.IntN(users)), TS: 1_700_000_000_000 + int64(i)*spacing, Amount: int64(r.IntN(100))}
	}
	// Delay each record's arrival by up to maxDelay: sort by time plus a random delay.
	arrive := make([]int64, n)
	for i := range out {
		arrive[i] = out[i].TS + r.Int64N(maxDelay+1)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return int(arrive[a] - arrive[b]) })
	shuffled := make([]click, n)
	for i, j := range idx {
		shuffled[i] = out[j]
	}
	return shuffled
}

type winResult struct {
	User  string
	Start int64
	Sum   int64
	Count int64
}

type acc struct{ Sum, Count int64 }

var sumClicks = stream.Aggregator[click, acc]{
	Add:   func(a acc, c click) acc { return acc{a.Sum + c.Amount, a.Count + 1} },
	Merge: func(a, b acc) acc { return acc{a.Sum + b.Sum, a.Count + b.Count} },
}

func toResult(u string, w stream.Window, a acc) winResult {
	return winResult{u, w.Start, a.Sum, a.Count}
}

// collect runs p over in and returns the results by id, failing on an id seen twice with a
// different value.
func collect[T comparable](t *testing.T, s stream.Stream[T]) *collector[T] {
	t.Helper()
	c := &collector[T]{t: t, got: map[uint64]T{}}
	stream.To[T](s, c)
	return c
}

type collector[T comparable] struct {
	t   *testing.T
	mu  sync.Mutex
	got map[uint64]T
	dup int
}

func (c *collector[T]) Write(id uint64, _ int64, v T) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.got[id]; ok {
		c.dup++
		if old != v {
			c.t.Errorf("result %d replayed as %v; first was %v", id, v, old)
		}
	}
	c.got[id] = v
	return nil
}

func (c *collector[T]) Flush(context.Context) error { return nil }

// values is the multiset of results, sorted for comparison.
func (c *collector[T]) values(less func(a, b T) int) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := slices.Collect(maps.Values(c.got))
	slices.SortFunc(v, less)
	return v
}

func byResult(a, b winResult) int {
	if a.User != b.User {
		if a.User < b.User {
			return -1
		}
		return 1
	}
	return int(a.Start - b.Start)
}

// batchWindows is the straightforward computation: every click in every window containing it.
func batchWindows(in []click, size, slide int64) []winResult {
	m := map[[2]any]*winResult{}
	for _, c := range in {
		last := c.TS - c.TS%slide
		for start := last; start > c.TS-size; start -= slide {
			k := [2]any{c.User, start}
			if m[k] == nil {
				m[k] = &winResult{User: c.User, Start: start}
			}
			m[k].Sum += c.Amount
			m[k].Count++
		}
	}
	var out []winResult
	for _, r := range m {
		out = append(out, *r)
	}
	slices.SortFunc(out, byResult)
	return out
}

func TestWindowsMatchBatchOutOfOrder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	in := clicks(seed, 20_000, 50, 7, 2_000)
	for _, tc := range []struct {
		name        string
		size, slide time.Duration
	}{
		{"tumbling", 10 * time.Second, 10 * time.Second},
		{"sliding", 10 * time.Second, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, src := stream.New("w", stream.Config{OutOfOrderness: 2 * time.Second}, clickTime)
			out, late := stream.Aggregate(stream.KeyBy(src, func(c click) string { return c.User }),
				stream.Sliding(tc.size, tc.slide), sumClicks, toResult)
			got := collect(t, out)
			lateGot := collect(t, late)
			if err := p.RunSlice(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			want := batchWindows(in, tc.size.Milliseconds(), tc.slide.Milliseconds())
			if g := got.values(byResult); !slices.Equal(g, want) {
				t.Errorf("%d windows, want %d; first difference %s", len(g), len(want), firstDiff(g, want))
			}
			if len(lateGot.got) != 0 {
				t.Errorf("%d late records within the out-of-orderness bound", len(lateGot.got))
			}
		})
	}
}

func firstDiff[T comparable](a, b []T) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d: %v vs %v", i, a[i], b[i])
		}
	}
	return "in length"
}

func TestSessionWindowsMatchBatch(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	var in []click
	ts := int64(1_000_000)
	for range 5_000 {
		ts += r.Int64N(400) // gaps below and above the session gap of 1s
		if r.IntN(20) == 0 {
			ts += 3_000
		}
		in = append(in, click{User: fmt.Sprintf("u%d", r.IntN(5)), TS: ts, Amount: 1})
	}
	// Batch: per user, sort by time; a gap of at least 1s starts a new session.
	byUser := map[string][]int64{}
	for _, c := range in {
		byUser[c.User] = append(byUser[c.User], c.TS)
	}
	var want []winResult
	for u, tss := range byUser {
		slices.Sort(tss)
		start, n := tss[0], int64(1)
		for i := 1; i <= len(tss); i++ {
			if i == len(tss) || tss[i]-tss[i-1] >= 1000 {
				want = append(want, winResult{u, start, n, n})
				if i < len(tss) {
					start, n = tss[i], 0
				}
			}
			n++
		}
	}
	slices.SortFunc(want, byResult)
	// Shuffle arrivals a little (within 300 ms).
	for i := range in {
		j := min(len(in)-1, i+r.IntN(2))
		if in[j].TS-in[i].TS < 300 {
			in[i], in[j] = in[j], in[i]
		}
	}
	p, src := stream.New("s", stream.Config{OutOfOrderness: 300 * time.Millisecond}, clickTime)
	out, _ := stream.Aggregate(stream.KeyBy(src, func(c click) string { return c.User }), stream.Session(time.Second), sumClicks, toResult)
	got := collect(t, out)
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if g := got.values(byResult); !slices.Equal(g, want) {
		t.Errorf("%d sessions, want %d; first difference %s", len(g), len(want), firstDiff(g, want))
	}
}

func TestLateRecordsGoToTheLateOutput(t *testing.T) {
	in := []click{
		{"a", 1_000, 1}, {"a", 5_000, 1}, {"a", 12_000, 1}, // watermark passes 10s: [0,10s) fires
		{"a", 9_000, 5},  // late: its window has fired and lateness is 0
		{"a", 13_000, 1}, // on time
	}
	p, src := stream.New("late", stream.Config{OutOfOrderness: time.Second}, clickTime)
	out, late := stream.Aggregate(stream.KeyBy(src, func(c click) string { return c.User }), stream.Tumbling(10*time.Second), sumClicks, toResult)
	got, lateGot := collect(t, out), collect(t, late)
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	want := []winResult{{"a", 0, 2, 2}, {"a", 10_000, 2, 2}}
	if g := got.values(byResult); !slices.Equal(g, want) {
		t.Errorf("windows = %v; want %v", g, want)
	}
	if l := slices.Collect(maps.Values(lateGot.got)); len(l) != 1 || l[0].TS != 9_000 {
		t.Errorf("late = %v; want the click at 9s", l)
	}
}

func TestAllowedLatenessFiresAgain(t *testing.T) {
	in := []click{{"a", 1_000, 1}, {"a", 12_000, 1}, {"a", 9_000, 5}, {"a", 40_000, 1}, {"a", 8_000, 7}}
	p, src := stream.New("lateness", stream.Config{AllowedLateness: 5 * time.Second}, clickTime)
	out, late := stream.Aggregate(stream.KeyBy(src, func(c click) string { return c.User }), stream.Tumbling(10*time.Second), sumClicks, toResult)
	var fired []winResult
	stream.To(out, stream.SinkFunc[winResult](func(_ uint64, _ int64, r winResult) error { fired = append(fired, r); return nil }))
	lateGot := collect(t, late)
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	want := []winResult{{"a", 0, 1, 1}, {"a", 0, 6, 2}, {"a", 10_000, 1, 1}, {"a", 40_000, 1, 1}}
	if !slices.Equal(fired, want) {
		t.Errorf("fired %v; want %v (first window again with the record within lateness)", fired, want)
	}
	if len(lateGot.got) != 1 {
		t.Errorf("late = %v; want the click at 8s, after the first window's state was dropped", lateGot.got)
	}
}

type order struct {
	ID, User string
	TS       int64
}
type payment struct {
	Order string
	TS    int64
}
type either struct {
	O *order
	P *payment
}

func eitherTime(e either) int64 {
	if e.O != nil {
		return e.O.TS
	}
	return e.P.TS
}

func TestIntervalJoinOrderPayment(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	var in []either
	const window = 30 * 60_000
	want := map[string]bool{}
	for i := range 3_000 {
		o := &order{ID: fmt.Sprint("o", i), TS: int64(i) * 1_000}
		in = append(in, either{O: o})
		if r.IntN(4) > 0 {
			delay := r.Int64N(2 * window)
			in = append(in, either{P: &payment{o.ID, o.TS + delay}})
			if delay <= window {
				want[o.ID] = true
			}
		}
	}
	slices.SortStableFunc(in, func(a, b either) int { return int(eitherTime(a) - eitherTime(b)) })
	// Out of order within 10 s.
	for i := 0; i+1 < len(in); i += 2 {
		if eitherTime(in[i+1])-eitherTime(in[i]) < 10_000 {
			in[i], in[i+1] = in[i+1], in[i]
		}
	}
	p, src := stream.New("join", stream.Config{OutOfOrderness: 10 * time.Second}, eitherTime)
	orders := stream.Map(stream.Filter(src, func(e either) bool { return e.O != nil }), func(e either) order { return *e.O })
	pays := stream.Map(stream.Filter(src, func(e either) bool { return e.P != nil }), func(e either) payment { return *e.P })
	joined, lateO, lateP := stream.IntervalJoin(stream.KeyBy(orders, func(o order) string { return o.ID }),
		stream.KeyBy(pays, func(p payment) string { return p.Order }), 0, 30*time.Minute,
		func(id string, _ order, _ payment) string { return id })
	got, lo, lp := collect(t, joined), collect(t, lateO), collect(t, lateP)
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	paid := map[string]bool{}
	for _, id := range got.got {
		if paid[id] {
			t.Errorf("order %s joined twice", id)
		}
		paid[id] = true
	}
	if !maps.Equal(paid, want) {
		t.Errorf("%d orders paid within 30 min, want %d", len(paid), len(want))
	}
	if len(lo.got)+len(lp.got) != 0 {
		t.Errorf("late orders %d, payments %d; want none", len(lo.got), len(lp.got))
	}
}

func TestTableJoinEnriches(t *testing.T) {
	type row struct {
		User, Tier string
		TS         int64
	}
	type ev struct {
		R *row
		C *click
	}
	in := []ev{{C: &click{"a", 1, 1}}, {R: &row{"a", "gold", 2}}, {C: &click{"a", 3, 1}}, {R: &row{"a", "silver", 4}}, {C: &click{"a", 5, 1}}, {C: &click{"b", 6, 1}}}
	p, src := stream.New("table", stream.Config{}, func(e ev) int64 {
		if e.R != nil {
			return e.R.TS
		}
		return e.C.TS
	})
	cl := stream.Map(stream.Filter(src, func(e ev) bool { return e.C != nil }), func(e ev) click { return *e.C })
	rows := stream.Map(stream.Filter(src, func(e ev) bool { return e.R != nil }), func(e ev) row { return *e.R })
	out := stream.JoinTable(stream.KeyBy(cl, func(c click) string { return c.User }), stream.KeyBy(rows, func(r row) string { return r.User }),
		func(u string, c click, r row, ok bool) (string, bool) {
			if !ok {
				return u + ":none", true
			}
			return u + ":" + r.Tier, true
		})
	var got []string
	stream.To(out, stream.SinkFunc[string](func(_ uint64, _ int64, s string) error { got = append(got, s); return nil }))
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:none", "a:gold", "a:silver", "b:none"}; !slices.Equal(got, want) {
		t.Errorf("enriched = %v; want %v", got, want)
	}
}

func TestProcessTimers(t *testing.T) {
	// Count clicks per user and report each user's count 5s after their first click.
	type count struct{ N int64 }
	p, src := stream.New("proc", stream.Config{}, clickTime)
	out := stream.Process(stream.KeyBy(src, func(c click) string { return c.User }), stream.Processor[string, click, count, string]{
		OnRecord: func(c *stream.Context[string, count, string], v click) {
			s := c.State()
			if s.N == 0 {
				c.SetTimer(c.Time + 5_000)
			}
			s.N++
		},
		OnTimer: func(c *stream.Context[string, count, string]) {
			c.Emit(c.Time, fmt.Sprintf("%s=%d@%d", c.Key, c.State().N, c.Time))
			c.Clear()
		},
	})
	var got []string
	stream.To(out, stream.SinkFunc[string](func(_ uint64, _ int64, s string) error { got = append(got, s); return nil }))
	in := []click{{"a", 0, 0}, {"b", 1_000, 0}, {"a", 4_000, 0}, {"a", 6_000, 0}, {"b", 7_000, 0}, {"a", 20_000, 0}}
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// A record is handled before the watermark it moves: a@6000 counts before a's timer at 5000.
	if want := []string{"a=3@5000", "b=2@6000", "a=1@25000"}; !slices.Equal(got, want) {
		t.Errorf("timers fired %v; want %v", got, want)
	}
}

func TestStateLimitStopsThePipeline(t *testing.T) {
	p, src := stream.New("full", stream.Config{MaxStateEntries: 10}, clickTime)
	out, _ := stream.Aggregate(stream.KeyBy(src, func(c click) string { return c.User }), stream.Tumbling(time.Hour), sumClicks, toResult)
	collect(t, out)
	err := p.RunSlice(context.Background(), clicks(1, 100, 50, 1, 0))
	if !errors.Is(err, stream.ErrStateFull) {
		t.Fatalf("RunSlice with 50 keys and room for 10 = %v; want ErrStateFull", err)
	}
}

func TestWindowedBadDefinitionPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a sliding window whose size is not a multiple of its slide was accepted")
		}
	}()
	_, src := stream.New("bad", stream.Config{}, clickTime)
	stream.Aggregate(stream.KeyBy(src, func(c click) string { return c.User }), stream.Sliding(10*time.Second, 3*time.Second), sumClicks, toResult)
}

func TestAssign(t *testing.T) {
	seen := map[int]int{}
	for node := range 3 {
		ps, err := stream.Assign(8, node, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			seen[p]++
		}
	}
	for p := range 8 {
		if seen[p] != 1 {
			t.Errorf("partition %d assigned %d times", p, seen[p])
		}
	}
	if _, err := stream.Assign(8, 3, 3); err == nil {
		t.Error("Assign(8, 3, 3) accepted a node index out of range")
	}
	if a, b := stream.Partition("user-1", 16), stream.Partition("user-1", 16); a != b || a < 0 || a >= 16 {
		t.Errorf("Partition = %d, %d", a, b)
	}
}
