package nats_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/stream"
)

// A full events log refuses new events with ERATELIMIT (the ingestion endpoint's 429), and
// keeps the ones it has.
func TestFullEventsLogRefusesWithRateLimit(t *testing.T) {
	ctx := context.Background()
	b, err := nats.Open(ctx, nats.Config{DataDir: t.TempDir(), EventBytes: 16 << 10}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	pub := b.AsyncPublisher()
	payload := bytes.Repeat([]byte("x"), 1024)
	for i := range 64 {
		if err := pub.PublishAsync("surge.events.test", fmt.Sprint(i), payload); err != nil {
			t.Fatal(err)
		}
	}
	err = pub.Flush(ctx)
	if surge.ErrorCode(err) != surge.ERATELIMIT {
		t.Fatalf("Flush after 64 KiB into a 16 KiB log = %v; want ERATELIMIT", err)
	}
	info, err := b.JS.Stream(ctx, nats.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n == 0 || n >= 64 {
		t.Errorf("the log holds %d messages; want the ones that fit", n)
	}
}

// visit is a test record for the partitioned pipeline.
type visit struct {
	User string `json:"user"`
	TS   int64  `json:"ts"`
}

// TestPartitionedPipelines splits work by key through partitioned subjects: producers publish
// each record to its key's partition, and one task per partition (as on separate nodes, by
// stream.Assign) counts visits per user and minute. Together they give exactly the counts of one
// computation over everything.
func TestPartitionedPipelines(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	const partitions, nodes = 4, 2
	if err := b.EnsureLog(ctx, "VISITS", "visits.>"); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	pub := b.AsyncPublisher()
	last := make([]uint64, partitions) // records per partition: each task reads its own to the end
	for i := range 3000 {
		v := visit{User: fmt.Sprint("u", i%37), TS: 1_790_000_000_000 + int64(i)*100}
		data, _ := json.Marshal(v)
		p := stream.Partition(v.User, partitions)
		if err := pub.PublishAsync(stream.Subject("visits", p), fmt.Sprint(i), data); err != nil {
			t.Fatal(err)
		}
		last[p]++
		want[fmt.Sprintf("%s@%d", v.User, v.TS/60_000)]++
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ckpt, err := b.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, partitions)
	for node := range nodes {
		mine, err := stream.Assign(partitions, node, nodes)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range mine {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pl, src := stream.New(fmt.Sprintf("visits/p%d", p), stream.Config{}, func(v visit) int64 { return v.TS })
				counts, _ := stream.Aggregate(stream.KeyBy(src, func(v visit) string { return v.User }), stream.Tumbling(time.Minute),
					stream.Aggregator[visit, int]{Add: func(n int, _ visit) int { return n + 1 }},
					func(u string, w stream.Window, n int) string { return fmt.Sprintf("%s@%d=%d", u, w.Start/60_000, n) })
				stream.To(counts, stream.SinkFunc[string](func(_ uint64, _ int64, r string) error {
					k, n, _ := strings.Cut(r, "=")
					mu.Lock()
					defer mu.Unlock()
					if _, dup := got[k]; dup {
						return fmt.Errorf("%s counted by two tasks", k)
					}
					got[k], _ = strconv.Atoi(n)
					return nil
				}))
				log := b.Log("VISITS", stream.Subject("visits", p))
				// The partition's last record: its stream sequence, found by reading it through.
				until, err := lastSeq(ctx, log, last[p])
				if err != nil {
					errs <- err
					return
				}
				errs <- pl.RunLog(ctx, stream.LogRun[visit]{Log: stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return log.Open(ctx, after) }),
					Decode: func(data []byte) (visit, error) {
						var v visit
						return v, json.Unmarshal(data, &v)
					}, Checkpoints: ckpt, Until: until})
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("%d counts from the partitions; one computation has %d", len(got), len(want))
	}
}

// lastSeq reads n records of a log and returns the sequence of the last.
func lastSeq(ctx context.Context, log *nats.Log, n uint64) (uint64, error) {
	r, err := log.Open(ctx, 0)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var seq uint64
	for range n {
		s, _, ok, err := r.Next(5 * time.Second)
		if err != nil || !ok {
			return 0, fmt.Errorf("read %d records: %v", n, err)
		}
		seq = s
	}
	return seq, nil
}

// A pipeline that publishes its results to JetStream, crashes after publishing some of them and
// restarts from its checkpoint leaves each result in the stream once: the replay publishes
// under the same message ids, and JetStream drops the repeats.
func TestPublishSinkAcrossACrash(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	for _, name := range []string{"IN", "OUT"} {
		if err := b.EnsureLog(ctx, name, strings.ToLower(name)+".>"); err != nil {
			t.Fatal(err)
		}
	}
	pub := b.AsyncPublisher()
	const n = 2000
	for i := range n {
		if err := pub.PublishAsync("in.x", fmt.Sprint(i), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ckpt, err := b.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in := b.Log("IN", "in.x")
	run := func(ctx context.Context) error {
		p, src := stream.New("doubler", stream.Config{CheckpointInterval: time.Nanosecond}, func(int) int64 { return 1_790_000_000_000 })
		stream.Publish(stream.Map(src, func(v int) int { return 2 * v }), b.AsyncPublisher(),
			func(int) string { return "out.x" }, func(v int) ([]byte, error) { return []byte(strconv.Itoa(v)), nil })
		return p.RunLog(ctx, stream.LogRun[int]{Log: stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return in.Open(ctx, after) }),
			Decode: func(d []byte) (int, error) { return strconv.Atoi(string(d)) }, Checkpoints: ckpt, Until: n})
	}
	// The first run stops part-way, once some results are out but not all.
	crashCtx, crash := context.WithCancel(ctx)
	go func() {
		for crashCtx.Err() == nil {
			if s, err := b.JS.Stream(ctx, "OUT"); err == nil && s.CachedInfo().State.Msgs > n/3 {
				crash()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if err := run(crashCtx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	crash()
	if err := run(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := b.JS.Stream(ctx, "OUT")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != n {
		t.Errorf("OUT holds %d results; want %d, each once", got, n)
	}
}

// A reader asked to start where the log no longer holds records says so (ErrLogGap) rather than
// skip them.
func TestLogGapIsReported(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	if _, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "SHORT", Subjects: []string{"short.>"}, MaxMsgs: 5}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := b.JS.Publish(ctx, "short.x", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	log := b.Log("SHORT", "short.x")
	if _, err := log.Open(ctx, 2); !errors.Is(err, stream.ErrLogGap) {
		t.Errorf("Open(after 2) with records 6 to 10 held = %v; want ErrLogGap", err)
	}
	r, err := log.Open(ctx, 6)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if seq, _, ok, err := r.Next(5 * time.Second); err != nil || !ok || seq != 7 {
		t.Errorf("Next after 6 = %d, %v, %v; want record 7", seq, ok, err)
	}
}

// expiresAfter is a context whose Err turns into a deadline after n calls: a deadline that
// falls part way through a save, at a chunk the test chooses.
type expiresAfter struct {
	context.Context
	calls, n int
}

func (e *expiresAfter) Err() error {
	if e.calls++; e.calls > e.n {
		return context.DeadlineExceeded
	}
	return nil
}

// A checkpoint save whose deadline passes part way stops, and leaves neither its chunks in the
// store nor the previous checkpoint damaged.
func TestCheckpointSavePastItsDeadlineLeavesNothing(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	store, err := b.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte("a"), 4<<20)
	if err := store.Save(ctx, "p", first); err != nil {
		t.Fatal(err)
	}
	size := func() uint64 {
		s, err := b.JS.Stream(ctx, "OBJ_SURGE_STREAM_CHECKPOINTS")
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.Bytes
	}
	before := size()
	for range 3 {
		err := store.Save(&expiresAfter{Context: ctx, n: 10}, "p", bytes.Repeat([]byte("b"), 4<<20))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a save past its deadline = %v; want the deadline", err)
		}
	}
	if after := size(); after > before {
		t.Errorf("the store grew from %d to %d bytes with saves that did not happen", before, after)
	}
	got, ok, err := store.Load(ctx, "p")
	if err != nil || !ok || !bytes.Equal(got, first) {
		t.Errorf("the checkpoint before the failed saves: %d bytes, %v, %v; want the first one", len(got), ok, err)
	}
}

// scratchBus is an embedded bus on a temporary directory, for data the test throws away: it
// syncs on JetStream's own schedule. It closes when the test ends.
func scratchBus(t *testing.T) *nats.Bus {
	t.Helper()
	b, err := nats.Open(context.Background(), nats.Config{DataDir: t.TempDir(), RelaxedSync: true}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// A snapshot publisher asks for few acknowledgements, yet once Flush returns every key holds
// its last value, and a bucket that refused the puts is reported, even when no message but
// the last would have asked.
func TestSnapshotPublisherFlushMeansStored(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	if err := b.EnsureKV(ctx, "SNAP", 64<<20, true); err != nil {
		t.Fatal(err)
	}
	pub := b.SnapshotPublisher()
	const keys, rounds = 300, 3
	for r := range rounds {
		for k := range keys {
			if err := pub.PublishAsync(nats.KVSubject("SNAP", fmt.Sprint("k", k)), "", []byte(fmt.Sprint("v", r))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for k := range keys {
		if got := kvValue(t, b, "SNAP", fmt.Sprint("k", k)); got != fmt.Sprint("v", rounds-1) {
			t.Fatalf("k%d after Flush = %q; want v%d", k, got, rounds-1)
		}
	}

	if err := b.EnsureKV(ctx, "TINY", 2<<10, true); err != nil {
		t.Fatal(err)
	}
	pub = b.SnapshotPublisher()
	for k := range 100 { // 100 × 64 bytes into 2 KiB, all without asking
		if err := pub.PublishAsync(nats.KVSubject("TINY", fmt.Sprint("k", k)), "", bytes.Repeat([]byte("x"), 64)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); surge.ErrorCode(err) != surge.ERATELIMIT {
		t.Fatalf("Flush after 6 KiB of puts into a 2 KiB bucket = %v; want ERATELIMIT", err)
	}
}

// A message with a dedup id after quiet ones is acknowledged after them, so Flush does not send
// the last quiet one again over it; and a connection re-established while snapshots went
// unacknowledged fails the Flush, since they may be lost.
func TestSnapshotPublisherKeepsOrderAndReportsReconnects(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	if err := b.EnsureKV(ctx, "SNAP", 64<<20, true); err != nil {
		t.Fatal(err)
	}
	pub := b.SnapshotPublisher()
	subject := nats.KVSubject("SNAP", "k")
	if err := pub.PublishAsync(subject, "", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishAsync(subject, "new-1", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kvValue(t, b, "SNAP", "k"); got != "new" {
		t.Fatalf("k after Flush = %q; want new", got)
	}

	if err := pub.PublishAsync(subject, "", []byte("quiet")); err != nil {
		t.Fatal(err)
	}
	conn := pub.Conn() // the snapshot publishers' own, apart from the bus's
	if conn == b.Conn {
		t.Fatal("a snapshot publisher shares the bus's connection")
	}
	before := conn.Stats().Reconnects
	if err := conn.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); conn.Stats().Reconnects == before || !conn.IsConnected(); {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not come back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := pub.Flush(ctx); err == nil {
		t.Fatal("Flush after a reconnect with quiet snapshots pending = nil; want an error")
	}
	if err := pub.PublishAsync(subject, "", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatalf("Flush of snapshots sent after the reconnect: %v", err)
	}
}

// kvValue is a key's value in a bucket now ("" when it has none).
func kvValue(t *testing.T, b *nats.Bus, bucket, key string) string {
	t.Helper()
	kv, err := b.JS.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ""
	} else if err != nil {
		t.Fatal(err)
	}
	return string(e.Value())
}

// LoadKV hands over the current value of every key, the last put of each and not a deleted
// key, then returns: what is put after is not handed over.
func TestLoadKVReadsTheCurrentValuesOnce(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	if err := b.EnsureKV(ctx, "LOAD", 64<<20, true); err != nil {
		t.Fatal(err)
	}
	kv, err := b.JS.KeyValue(ctx, "LOAD")
	if err != nil {
		t.Fatal(err)
	}
	for k := range 50 {
		for r := range 2 {
			if _, err := kv.Put(ctx, fmt.Sprint("k", k), []byte(fmt.Sprint("v", r))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := kv.Delete(ctx, "k7"); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var mu sync.Mutex
	if err := b.LoadKV(ctx, "LOAD", func(key string, value []byte) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := got[key]; ok {
			t.Errorf("%s handed over twice", key)
		}
		got[key] = string(value)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "later", []byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // room for a watch left running to hand the put over
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 49 || got["k3"] != "v1" || got["k7"] != "" {
		t.Errorf("loaded %d keys, k3 = %q, k7 = %q; want 49 keys, k3 = v1 and no k7", len(got), got["k3"], got["k7"])
	}
	if _, ok := got["later"]; ok {
		t.Error("a put after LoadKV returned was handed over")
	}

	if err := b.LoadKV(ctx, "NO_SUCH_BUCKET", func(string, []byte) {}); err == nil {
		t.Error("LoadKV of a bucket that does not exist succeeded")
	}
}

// A reader of a log of big records, opened on a backlog, does not make the server queue more
// than a connection may hold: the server would close the connection as a slow consumer, and with
// it the publishes of everything else that shares it (the node's ingestion did, with 500s).
func TestLogReaderOfBigRecordsKeepsTheConnection(t *testing.T) {
	ctx := context.Background()
	b := scratchBus(t)
	if _, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big.>"}}); err != nil {
		t.Fatal(err)
	}
	const records, size = 192, 512 << 10 // 96 MiB, past the server's 64 MiB per connection
	pub := b.AsyncPublisher()
	record := bytes.Repeat([]byte("x"), size)
	for i := range records {
		if err := pub.PublishAsync("big.x", strconv.Itoa(i), record); err != nil {
			t.Fatal(err)
		}
		if i%32 == 31 {
			if err := pub.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := b.Log("BIG", "big.x").Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range records {
		seq, data, ok, err := r.Next(5 * time.Second)
		if err != nil || !ok || seq != uint64(i+1) || len(data) != size {
			t.Fatalf("record %d: seq %d, %d bytes, %v, %v", i+1, seq, len(data), ok, err)
		}
	}
	if s := b.Conn.Stats(); s.Reconnects != 0 {
		t.Fatalf("the connection was re-established %d times while reading", s.Reconnects)
	}
}
