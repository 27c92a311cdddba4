package stream_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge/stream"
)

// memLog is a log held in memory: the record with sequence i+1 is data[i]. It stands in for
// JetStream in this package's tests; the nats package runs the same kind of test on JetStream.
type memLog struct {
	data [][]byte
	// first is the sequence of the oldest record still held (0 or 1: all of them).
	first uint64
	// crashAfter cancels the run once this many records were read (0: never).
	crashAfter int
	cancel     context.CancelFunc
}

func (l *memLog) Open(_ context.Context, after uint64) (stream.Reader, error) {
	if l.first > 1 && after+1 < l.first {
		if after > 0 {
			return nil, fmt.Errorf("%w: held from %d, asked after %d", stream.ErrLogGap, l.first, after)
		}
		after = l.first - 1
	}
	return &memReader{l: l, next: after}, nil
}

type memReader struct {
	l    *memLog
	next uint64
	read int
}

func (r *memReader) Next(time.Duration) (uint64, []byte, bool, error) {
	if r.l.crashAfter > 0 && r.read == r.l.crashAfter {
		r.l.cancel()
		return 0, nil, false, nil
	}
	if r.next >= uint64(len(r.l.data)) {
		return 0, nil, false, nil
	}
	r.next++
	r.read++
	return r.next, r.l.data[r.next-1], true, nil
}

func (r *memReader) Pending() uint64 { return uint64(len(r.l.data)) - r.next }
func (r *memReader) Close()          {}

type memCheckpoints struct {
	mu    sync.Mutex
	saved map[string][]byte
	saves int
	// gate, if set, holds every Save until it can receive; fail, if set, is what Save returns;
	// hang makes Save wait for its context to end.
	gate chan struct{}
	fail error
	hang bool
}

func (m *memCheckpoints) Load(_ context.Context, name string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.saved[name]
	return d, ok, nil
}

func (m *memCheckpoints) Save(ctx context.Context, name string, data []byte) error {
	if m.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if m.gate != nil {
		<-m.gate
	}
	if m.fail != nil {
		return m.fail
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saved[name] = slices.Clone(data)
	m.saves++
	return nil
}

// allKinds builds a pipeline with every stateful operator: sliding windows, sessions, an
// interval join, a table join and a process function, all feeding one sink.
func allKinds(cfg stream.Config) (*stream.Pipeline[click], stream.Stream[string]) {
	p, src := stream.New("all", cfg, clickTime)
	byUser := stream.KeyBy(src, func(c click) string { return c.User })
	win, _ := stream.Aggregate(byUser, stream.Sliding(4*time.Second, 2*time.Second), sumClicks, toResult)
	ses, _ := stream.Aggregate(byUser, stream.Session(500*time.Millisecond), sumClicks, toResult)
	even := stream.KeyBy(stream.Filter(src, func(c click) bool { return c.Amount%2 == 0 }), func(c click) string { return c.User })
	odd := stream.KeyBy(stream.Filter(src, func(c click) bool { return c.Amount%2 == 1 }), func(c click) string { return c.User })
	joined, _, _ := stream.IntervalJoin(even, odd, -time.Second, time.Second, func(u string, a, b click) string {
		return fmt.Sprintf("join %s %d %d", u, a.TS, b.TS)
	})
	table := stream.JoinTable(even, odd, func(u string, c click, row click, ok bool) (string, bool) {
		return fmt.Sprintf("table %s %d %d", u, c.TS, row.TS), ok
	})
	type total struct{ Sum int64 }
	proc := stream.Process(byUser, stream.Processor[string, click, total, string]{
		OnRecord: func(c *stream.Context[string, total, string], v click) {
			c.State().Sum += v.Amount
			c.SetTimer(c.Time - c.Time%5_000 + 5_000)
		},
		OnTimer: func(c *stream.Context[string, total, string]) {
			c.Emit(c.Time, fmt.Sprintf("total %s %d %d", c.Key, c.Time, c.State().Sum))
		},
	})
	str := func(r winResult) string { return fmt.Sprintf("%v", r) }
	return p, stream.Union(stream.Map(win, str), stream.Map(ses, str), joined, table, proc)
}

func TestCrashAndRestartEqualsOneRun(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	in := clicks(seed, 5_000, 20, 13, 300)
	data := make([][]byte, len(in))
	for i, c := range in {
		data[i], _ = json.Marshal(c)
	}
	data = append(data, []byte("not json")) // counted, skipped, and never stops the pipeline
	decode := func(b []byte) (click, error) {
		var c click
		return c, json.Unmarshal(b, &c)
	}
	cfg := stream.Config{OutOfOrderness: 300 * time.Millisecond, AllowedLateness: time.Second, CheckpointInterval: time.Nanosecond}

	// One run without a crash.
	p, out := allKinds(cfg)
	once := collect(t, out)
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	// Runs that crash at random points, each restarting from the last checkpoint.
	store := &memCheckpoints{saved: map[string][]byte{}}
	log := &memLog{data: data}
	var got *collector[string]
	r := rand.New(rand.NewPCG(seed, 3))
	var invalid int
	for crashes := 0; ; crashes++ {
		ctx, cancel := context.WithCancel(context.Background())
		log.cancel, log.crashAfter = cancel, 0
		if crashes < 8 {
			log.crashAfter = 1 + r.IntN(len(data)/4)
		}
		p, out := allKinds(cfg)
		if got == nil {
			got = collect(t, out)
		} else {
			stream.To[string](out, got)
		}
		err := p.RunLog(ctx, stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: uint64(len(data)),
			Invalid: func(uint64, []byte, error) { invalid++ }})
		cancel()
		if err == nil {
			t.Logf("%d crashes, %d checkpoints, %d results replayed", crashes, store.saves, got.dup)
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	byString := strings.Compare
	if g, w := got.values(byString), once.values(byString); !slices.Equal(g, w) {
		t.Errorf("after crashes: %d results; one run: %d; first difference %s", len(g), len(w), firstDiff(g, w))
	}
	if invalid != 1 {
		t.Errorf("%d invalid records reported; want 1", invalid)
	}
}

func TestCheckpointOfAnotherPipelineIsRefused(t *testing.T) {
	store := &memCheckpoints{saved: map[string][]byte{}}
	log := &memLog{data: [][]byte{[]byte(`{"User":"a","TS":1}`)}}
	decode := func(b []byte) (click, error) {
		var c click
		return c, json.Unmarshal(b, &c)
	}
	p, out := allKinds(stream.Config{})
	collect(t, out)
	if err := p.RunLog(context.Background(), stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: 1}); err != nil {
		t.Fatal(err)
	}
	other, src := stream.New("all", stream.Config{}, clickTime)
	collect(t, stream.Map(src, func(c click) string { return c.User }))
	err := other.RunLog(context.Background(), stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: 2})
	if !errors.Is(err, stream.ErrCheckpointMismatch) {
		t.Errorf("RunLog with another pipeline's checkpoint = %v; want ErrCheckpointMismatch", err)
	}
}

// A checkpoint written before checkpoints carried their format, or one that cannot be decoded,
// is refused with its own error; a run told to start fresh ignores it, reads the log from its
// start and replaces it with a checkpoint that restores.
func TestUnreadableCheckpoints(t *testing.T) {
	decode := func(b []byte) (click, error) {
		var c click
		return c, json.Unmarshal(b, &c)
	}
	log := &memLog{data: [][]byte{[]byte(`{"User":"a","TS":1,"Amount":3}`), []byte(`{"User":"b","TS":2,"Amount":4}`)}}
	store := &memCheckpoints{saved: map[string][]byte{}}
	p, out := allKinds(stream.Config{})
	collect(t, out)
	if err := p.RunLog(context.Background(), stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: 1}); err != nil {
		t.Fatal(err)
	}
	// The same header as this pipeline's, with no format: as checkpoints were written before.
	var h struct {
		Pipeline  string
		Operators []string
		Position  uint64
	}
	if err := gob.NewDecoder(bytes.NewReader(store.saved["all"])).Decode(&h); err != nil || len(h.Operators) == 0 {
		t.Fatalf("header %+v: %v", h, err)
	}
	var old bytes.Buffer
	if err := gob.NewEncoder(&old).Encode(&h); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{{"unnumbered", old.Bytes(), stream.ErrCheckpointMismatch}, {"garbage", []byte("not gob"), stream.ErrCheckpointUnreadable}} {
		store.saved["all"] = c.data
		p, out := allKinds(stream.Config{})
		collect(t, out)
		if err := p.RunLog(context.Background(), stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: 2}); !errors.Is(err, c.want) {
			t.Errorf("%s checkpoint: RunLog = %v; want %v", c.name, err, c.want)
		}
		p, out = allKinds(stream.Config{})
		fresh := collect(t, out)
		if err := p.RunLog(context.Background(), stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: 2, Fresh: true}); err != nil {
			t.Fatalf("%s checkpoint, fresh: %v", c.name, err)
		}
		if len(fresh.values(strings.Compare)) == 0 {
			t.Errorf("%s checkpoint, fresh: no results from the log's start", c.name)
		}
		p, out = allKinds(stream.Config{})
		collect(t, out)
		if err := p.RunLog(context.Background(), stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: 2}); err != nil {
			t.Errorf("%s checkpoint: the fresh run's checkpoint does not restore: %v", c.name, err)
		}
	}
}

func TestMetricsCountPerOperator(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := stream.NewMetrics(reg)
	store := &memCheckpoints{saved: map[string][]byte{}}
	in := clicks(5, 10_000, 10, 10, 0)
	data := make([][]byte, len(in))
	for i, c := range in {
		data[i], _ = json.Marshal(c)
	}
	p, src := stream.New("metered", stream.Config{Metrics: m, CheckpointInterval: time.Nanosecond}, clickTime)
	out, _ := stream.Aggregate(stream.KeyBy(src, func(c click) string { return c.User }), stream.Tumbling(time.Second), sumClicks, toResult)
	collect(t, out)
	decode := func(b []byte) (click, error) {
		var c click
		return c, json.Unmarshal(b, &c)
	}
	if err := p.RunLog(context.Background(), stream.LogRun[click]{Log: &memLog{data: data}, Decode: decode, Checkpoints: store, Until: uint64(len(data))}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	value := func(name, operator string) (float64, bool) {
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if operator == "" || (l.GetName() == "operator" && l.GetValue() == operator) {
						return m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount()), true
					}
				}
			}
		}
		return 0, false
	}
	if got, _ := value("surge_stream_records_in_total", "01-window"); got != float64(len(in)) {
		t.Errorf("window records in = %v; want %d", got, len(in))
	}
	if got, _ := value("surge_stream_records_in_total", "02-sink"); got == 0 || got >= float64(len(in)) {
		t.Errorf("sink records in = %v; want the windows, fewer than the clicks", got)
	}
	for _, name := range []string{"surge_stream_checkpoint_seconds", "surge_stream_state_entries", "surge_stream_lag_records", "surge_stream_watermark_delay_seconds"} {
		if _, ok := value(name, ""); !ok {
			t.Errorf("no %s series", name)
		}
	}
}

// A checkpoint whose position the log no longer holds fails the run, unless OnGap lets it go on
// from the oldest record held.
func TestLogGap(t *testing.T) {
	store := &memCheckpoints{saved: map[string][]byte{}}
	decode := func(b []byte) (click, error) {
		var c click
		return c, json.Unmarshal(b, &c)
	}
	log := &memLog{data: clickLines(10)}
	run := func(until uint64, onGap func(error) bool) (int64, error) {
		p, src := stream.New("gap", stream.Config{CheckpointInterval: time.Nanosecond}, clickTime)
		var sum int64
		stream.To(stream.Map(src, func(c click) int64 { return c.Amount }), stream.SinkFunc[int64](func(_ uint64, _ int64, v int64) error { sum += v; return nil }))
		err := p.RunLog(context.Background(), stream.LogRun[click]{Log: log, Decode: decode, Checkpoints: store, Until: until, OnGap: onGap})
		return sum, err
	}
	if _, err := run(3, nil); err != nil {
		t.Fatal(err)
	}
	log.first = 7 // records 4 to 6 aged out
	if _, err := run(10, nil); !errors.Is(err, stream.ErrLogGap) {
		t.Fatalf("RunLog over a gap = %v; want ErrLogGap", err)
	}
	told := false
	sum, err := run(10, func(error) bool { told = true; return true })
	if err != nil || !told || sum != 4 {
		t.Errorf("RunLog with OnGap = %d records, told %v, %v; want the 4 records still held", sum, told, err)
	}
}

// clickLines are n records of one user's clicks, a second apart, as a log holds them.
func clickLines(n int) [][]byte {
	var data [][]byte
	for i := range n {
		data = append(data, []byte(fmt.Sprintf(`{"User":"a","TS":%d,"Amount":1}`, 1000*(i+1))))
	}
	return data
}

// startCounting runs a pipeline that sums the clicks of log on a goroutine, checkpointing as
// often as it can, and returns the running sum, RunLog's result and its cancel.
func startCounting(store *memCheckpoints, log *memLog, timeout time.Duration) (*atomic.Int64, chan error, context.CancelFunc) {
	var sum atomic.Int64
	done, cancel := startCountingInto(stream.SinkFunc[int64](func(_ uint64, _ int64, v int64) error { sum.Add(v); return nil }), store, log, timeout)
	return &sum, done, cancel
}

// startCountingInto is startCounting with the sums going to sink.
func startCountingInto(sink stream.Sink[int64], store *memCheckpoints, log *memLog, timeout time.Duration) (chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	p, src := stream.New("counting", stream.Config{CheckpointInterval: time.Nanosecond, CheckpointTimeout: timeout}, clickTime)
	stream.To(stream.Map(src, func(c click) int64 { return c.Amount }), sink)
	done := make(chan error, 1)
	go func() {
		done <- p.RunLog(ctx, stream.LogRun[click]{Log: log, Checkpoints: store, Decode: func(b []byte) (click, error) {
			var c click
			return c, json.Unmarshal(b, &c)
		}})
	}()
	return done, cancel
}

// wantRunLogError waits for a pipeline started by startCounting to fail with want.
func wantRunLogError(t *testing.T, done chan error, want error, pipeline string) {
	t.Helper()
	select {
	case err := <-done:
		if !errors.Is(err, want) {
			t.Errorf("RunLog of a pipeline %s = %v; want %v", pipeline, err, want)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("a pipeline %s kept running", pipeline)
	}
}

// A pipeline checkpoints while it reads, and not again while its log is quiet: its state has
// not changed since.
func TestIdlePipelineDoesNotCheckpointAgain(t *testing.T) {
	store := &memCheckpoints{saved: map[string][]byte{}}
	sum, done, cancel := startCounting(store, &memLog{data: clickLines(50)}, 0)
	saves := func() int {
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.saves
	}
	for deadline := time.Now().Add(10 * time.Second); (sum.Load() < 50 || saves() == 0) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	busy := saves()
	time.Sleep(200 * time.Millisecond) // many quiet turns of the loop, each past the interval
	cancel()
	<-done
	if busy == 0 || saves() > busy+1 {
		t.Errorf("%d checkpoints once the records were read, %d in all; want some, then at most one more", busy, saves())
	}
}

// Records of time alone (LogRun.TimeOnly) move the position but not the state that matters: a
// pipeline that reads only those since its last checkpoint does not checkpoint again at every
// interval. The same log without TimeOnly checkpoints as the ticks go by.
func TestTicksDoNotCheckpointAnIdlePipeline(t *testing.T) {
	data := clickLines(50)
	for i := range 3000 {
		data = append(data, []byte(fmt.Sprintf(`{"TS":%d}`, 100_000+1000*i))) // a tick: no user
	}
	saves := func(timeOnly func(click) bool) int {
		store := &memCheckpoints{saved: map[string][]byte{}}
		ctx, cancel := context.WithCancel(context.Background())
		p, src := stream.New("ticking", stream.Config{CheckpointInterval: time.Nanosecond}, clickTime)
		var sum atomic.Int64
		stream.To(stream.Map(src, func(c click) int64 { return c.Amount }), stream.SinkFunc[int64](func(_ uint64, _ int64, v int64) error { sum.Add(v); return nil }))
		done := make(chan error, 1)
		go func() {
			done <- p.RunLog(ctx, stream.LogRun[click]{Log: &memLog{data: data}, Checkpoints: store, TimeOnly: timeOnly,
				Decode: func(b []byte) (click, error) {
					var c click
					return c, json.Unmarshal(b, &c)
				}})
		}()
		for deadline := time.Now().Add(10 * time.Second); sum.Load() < 50 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // the ticks read, then quiet turns of the loop, each past the interval
		cancel()
		<-done
		if sum.Load() != 50 {
			t.Fatalf("summed %d; want the 50 clicks", sum.Load())
		}
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.saves
	}
	ticks, plain := saves(func(c click) bool { return c.User == "" }), saves(nil)
	if ticks > 2 || plain < 5 {
		t.Errorf("%d checkpoints with the ticks known as time alone, %d without; want at most 2 (the clicks), and more without", ticks, plain)
	}
}

// A checkpoint is stored while the pipeline goes on counting; one that cannot be stored stops
// the pipeline, even once its log has gone quiet.
func TestCheckpointsAreStoredWhileThePipelineGoesOn(t *testing.T) {
	const n = 2000
	held := &memCheckpoints{saved: map[string][]byte{}, gate: make(chan struct{})}
	sum, done, cancel := startCounting(held, &memLog{data: clickLines(n)}, 0)
	deadline := time.Now().Add(10 * time.Second)
	for sum.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := sum.Load(); got != n {
		t.Errorf("counted %d of %d records while the first checkpoint was being stored", got, n)
	}
	close(held.gate)
	cancel()
	<-done
	held.mu.Lock()
	if held.saves == 0 {
		t.Error("no checkpoint was stored")
	}
	held.mu.Unlock()

	broken := errors.New("the store is down")
	_, done, cancel = startCounting(&memCheckpoints{saved: map[string][]byte{}, fail: broken}, &memLog{data: clickLines(n)}, 0)
	defer cancel()
	wantRunLogError(t, done, broken, "whose checkpoints cannot be stored")
}

// A store that never answers fails the task after Config.CheckpointTimeout, instead of leaving
// it running with every later checkpoint skipped.
func TestHungCheckpointStoreFailsThePipeline(t *testing.T) {
	_, done, cancel := startCounting(&memCheckpoints{saved: map[string][]byte{}, hang: true}, &memLog{data: clickLines(100)}, 50*time.Millisecond)
	defer cancel()
	wantRunLogError(t, done, context.DeadlineExceeded, "whose checkpoint store hangs")
}

// A task reads and decodes its log ahead of its operators, but only a few records ahead: while
// the sink holds the first record, the next ones are decoded, and no more than the read-ahead's
// bound.
func TestLogIsDecodedAheadWithinItsBound(t *testing.T) {
	const records = 20
	var decoded atomic.Int64
	second := make(chan struct{}) // closed when the second record is decoded
	release := make(chan struct{})
	log := &memLog{data: make([][]byte, records)}
	for i := range log.data {
		log.data[i] = []byte(fmt.Sprint(i + 1))
	}
	p, src := stream.New("ahead", stream.Config{}, func(v int64) int64 { return v })
	var firstSeen sync.Once
	stream.To(src, stream.SinkFunc[int64](func(_ uint64, _ int64, v int64) error {
		firstSeen.Do(func() {
			select { // a task that decoded only when it was done with the record before would wait forever here
			case <-second:
				<-release
			case <-time.After(5 * time.Second):
			}
		})
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- p.RunLog(ctx, stream.LogRun[int64]{Log: log, Checkpoints: &memCheckpoints{saved: map[string][]byte{}},
			Decode: func(b []byte) (int64, error) {
				if decoded.Add(1) == 2 {
					close(second)
				}
				var v int64
				_, err := fmt.Sscan(string(b), &v)
				return v, err
			}})
	}()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("the second record was not decoded while the first was in the sink")
	}
	time.Sleep(100 * time.Millisecond) // room for a reader with no bound to read on
	// One record in the sink, the read-ahead's channel full, and one more decoded, waiting to go in.
	if n := decoded.Load(); n > 6 {
		t.Errorf("%d of %d records decoded while the first was held; the read-ahead is unbounded", n, records)
	}
	close(release)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunLog = %v; want it to end with its context", err)
	}
}

// bigSink keeps a state of its own that grows about a kilobyte a record.
type bigSink struct{ state []byte }

func (s *bigSink) Write(id uint64, _ int64, v string) error {
	s.state = append(s.state, strings.Repeat(fmt.Sprintf("%d:%s;", id, v), 100)...)
	return nil
}
func (s *bigSink) Flush(context.Context) error    { return nil }
func (s *bigSink) SnapshotState() ([]byte, error) { return slices.Clone(s.state), nil }
func (s *bigSink) RestoreState(data []byte) error { s.state = slices.Clone(data); return nil }

// tally is a keyed state that encodes itself, as the live pipeline's sets of ids do.
type tally struct{ N int }

func (t tally) GobEncode() ([]byte, error) { return binary.AppendUvarint(nil, uint64(t.N)), nil }
func (t *tally) GobDecode(b []byte) error {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return errors.New("not a tally")
	}
	t.N = int(n)
	return nil
}

// A sink's state of several megabytes goes into a checkpoint in pieces and comes back whole, as
// do keyed states of thousands of keys, plain (in chunks) and self-encoding (one by one).
func TestBigStatesSurviveACheckpoint(t *testing.T) {
	const keys = 3_000
	data := make([][]byte, 0, 2*keys)
	for range 2 { // every key, then every key again after the first run's checkpoint
		for i := range keys {
			data = append(data, []byte(fmt.Sprint("r", i)))
		}
	}
	store := &memCheckpoints{saved: map[string][]byte{}}
	log := &memLog{data: data}
	run := func(until int) (*bigSink, map[string]int, map[string]int) {
		p, src := stream.New("big", stream.Config{CheckpointInterval: time.Hour}, func(string) int64 { return 0 })
		plain, encoded := map[string]int{}, map[string]int{}
		type seen struct{ N int }
		byKey := stream.KeyBy(src, func(v string) string { return v })
		counted := stream.Process(byKey, stream.Processor[string, string, seen, string]{
			OnRecord: func(c *stream.Context[string, seen, string], v string) {
				c.State().N++
				plain[c.Key] = c.State().N
				c.Emit(c.Time, v)
			},
		})
		tallied := stream.Process(byKey, stream.Processor[string, string, tally, string]{
			OnRecord: func(c *stream.Context[string, tally, string], v string) {
				c.State().N++
				encoded[c.Key] = c.State().N
			},
		})
		sink := &bigSink{}
		stream.To(stream.Union(counted, tallied), stream.Sink[string](sink))
		err := p.RunLog(context.Background(), stream.LogRun[string]{Log: log, Checkpoints: store,
			Decode: func(b []byte) (string, error) { return string(b), nil }, Until: uint64(until)})
		if err != nil {
			t.Fatal(err)
		}
		return sink, plain, encoded
	}
	first, _, _ := run(keys) // ends with a checkpoint
	if len(first.state) < 2*(1<<20)+1 {
		t.Fatalf("the sink's state is %d bytes; the test wants it in several pieces", len(first.state))
	}
	again, plain, encoded := run(len(data)) // restores that checkpoint, then reads every key again
	if len(again.state) <= len(first.state) || !slices.Equal(again.state[:len(first.state)], first.state) {
		t.Errorf("restored sink state of %d bytes does not begin with the %d saved", len(again.state), len(first.state))
	}
	for name, counts := range map[string]map[string]int{"plain": plain, "self-encoding": encoded} {
		wrong := 0
		for _, n := range counts {
			if n != 2 {
				wrong++
			}
		}
		if len(counts) != keys || wrong > 0 {
			t.Errorf("%s states: %d keys counted after the restore, %d not at 2; want all %d at 2, the first from the checkpoint", name, len(counts), wrong, keys)
		}
	}
}

// heldSink sums its results and splits its flush: the wait of each flush holds until release
// is closed, then returns fail.
type heldSink struct {
	sum     atomic.Int64
	release chan struct{}
	fail    error
}

func (s *heldSink) Write(_ uint64, _ int64, v int64) error { s.sum.Add(v); return nil }
func (s *heldSink) Flush(context.Context) error            { return nil }
func (s *heldSink) FlushAsync(context.Context) (func(context.Context) error, error) {
	return func(ctx context.Context) error {
		select {
		case <-s.release:
			return s.fail
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// A sink that splits its flush is waited for off the pipeline's goroutine: the counting goes on
// while the log acknowledges, and the checkpoint is stored only once what the sink sent before
// it is durable. A wait that fails stops the pipeline, as a failed store does.
func TestSplitFlushIsWaitedForBeforeTheCheckpointIsStored(t *testing.T) {
	const n = 2000 // clicks of 1
	sink, store := &heldSink{release: make(chan struct{})}, &memCheckpoints{saved: map[string][]byte{}}
	done, cancel := startCountingInto(sink, store, &memLog{data: clickLines(n)}, 0)
	for deadline := time.Now().Add(10 * time.Second); sink.sum.Load() < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	store.mu.Lock()
	early := store.saves
	store.mu.Unlock()
	if got := sink.sum.Load(); got != n || early != 0 {
		t.Errorf("while the sink's first flush was unacknowledged: counted %d of %d, %d checkpoints stored; want all, none", got, n, early)
	}
	close(sink.release)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		store.mu.Lock()
		saves := store.saves
		store.mu.Unlock()
		if saves > 0 {
			break
		}
	}
	cancel()
	<-done
	if store.saves == 0 {
		t.Error("no checkpoint was stored once the sink's flush was acknowledged")
	}

	refused := errors.New("the log refused a result")
	failing := &heldSink{release: make(chan struct{}), fail: refused}
	close(failing.release)
	done, cancel = startCountingInto(failing, &memCheckpoints{saved: map[string][]byte{}}, &memLog{data: clickLines(n)}, 0)
	defer cancel()
	wantRunLogError(t, done, refused, "whose sink's flush failed")
}
