package live

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The kept seconds are those a plain map of every second would show in the window that ends at
// the newest second counted, whatever the order the contributions arrive in.
func TestSeriesStateKeepsTheWindow(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for round := range 200 {
		var st SeriesState
		all := map[int64]int64{}
		var total, newest int64
		base := int64(1_790_000_000)
		for range 1 + r.IntN(400) {
			sec := base + int64(r.IntN(3*SeriesSeconds)) // out of order, often older than the window
			if r.IntN(4) > 0 {
				base++ // mostly moving forward
			}
			delta := int64(r.IntN(11) - 3)
			st.add(sec, delta)
			total += delta
			newest = max(newest, sec)
			if sec > newest-SeriesSeconds {
				all[sec] += delta
			}
		}
		if st.Total != total {
			t.Fatalf("round %d: total %d; want %d", round, st.Total, total)
		}
		if st.newest() != newest {
			t.Fatalf("round %d: newest %d; want %d", round, st.newest(), newest)
		}
		// A second that arrived when it was within the window of the newest second then may
		// still have counted later contributions; only seconds inside the final window are shown.
		for sec := newest - SeriesSeconds + 1; sec <= newest; sec++ {
			if got, want := st.at(sec), all[sec]; got != want {
				t.Fatalf("round %d: second %d = %d; want %d", round, sec, got, want)
			}
		}
		if st.seconds() > SeriesSeconds {
			t.Fatalf("round %d: %d seconds kept", round, st.seconds())
		}
		var back SeriesState
		if err := back.GobDecode(st.appendBinary(nil)); err != nil {
			t.Fatal(err)
		}
		for sec := newest - SeriesSeconds + 1; sec <= newest; sec++ {
			if back.at(sec) != st.at(sec) {
				t.Fatalf("round %d: second %d decoded as %d; want %d", round, sec, back.at(sec), st.at(sec))
			}
		}
	}
}

func TestPublishedRoundTrip(t *testing.T) {
	var st SeriesState
	st.add(1_790_000_000, 100)
	st.add(1_790_000_003, -5)
	at := time.UnixMilli(1_790_000_003_250)
	key, back, updated, err := decodePublished(encodePublished("gmv.room=r1", &st, at))
	if err != nil {
		t.Fatal(err)
	}
	if key != "gmv.room=r1" || !updated.Equal(at) || back.Total != 95 || back.at(1_790_000_000) != 100 || back.at(1_790_000_003) != -5 {
		t.Errorf("decoded %q %v %+v", key, updated, back)
	}
	// A newest second whose changes cancelled out still ends the window: viewers who came and
	// went within it leave it at zero, not gone.
	st.add(1_790_000_009, 1)
	st.add(1_790_000_009, -1)
	_, back, _, err = decodePublished(encodePublished("online_viewers.room=r1", &st, at))
	if err != nil || back.newest() != 1_790_000_009 || back.Total != 95 {
		t.Errorf("decoded a series whose newest second is zero: newest %d, total %d (%v); want %d, 95", back.newest(), back.Total, err, 1_790_000_009)
	}
	for _, bad := range [][]byte{nil, {}, []byte(`{"key":"gmv"}`), {publishedVersion}, {publishedVersion, 200}, {publishedVersion, 1, 'g'}} {
		if _, _, _, err := decodePublished(bad); err == nil {
			t.Errorf("decodePublished(%q) took a malformed value", bad)
		}
	}
}

// Values on the bus may come from another version, or be damaged: a board must never crash
// on one, and what it accepts must encode back to the same series.
func FuzzDecodePublished(f *testing.F) {
	var st SeriesState
	st.add(1_790_000_000, 7)
	f.Add(encodePublished("gmv", &st, time.UnixMilli(1)))
	f.Add([]byte(`{"key":"gmv","total":1}`))
	f.Add([]byte{publishedVersion, 3, 'g', 'm', 'v', 2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewBoard() // takes the value as it comes, and reads its seconds when asked
		b.Apply("gmv", data)
		_, _ = b.GetJSON("gmv")
		_ = b.Screen("")
		if p, err := readPublished(data); err == nil && string(p.key) == "gmv" && b.Value("gmv") != p.total {
			t.Fatalf("board holds %d for %q; want %d", b.Value("gmv"), data, p.total)
		}
		key, st, at, err := decodePublished(data)
		if err != nil {
			return
		}
		k2, st2, at2, err := decodePublished(encodePublished(key, st, at))
		if err != nil || k2 != key || !at2.Equal(at) || st2.Total != st.Total || st2.newest() != st.newest() {
			t.Fatalf("re-encoded %q as %q %v %+v (%v)", data, k2, at2, st2, err)
		}
		for _, p := range allSeconds(st) {
			if st2.at(p.sec) != p.val {
				t.Fatalf("re-encoded %q: second %d = %d; want %d", data, p.sec, st2.at(p.sec), p.val)
			}
		}
	})
}

// A board's JSON of a series is the series as Get renders it, and follows every published
// value: the encoding it keeps never outlives the value it was made from.
func TestBoardJSONFollowsTheValues(t *testing.T) {
	b := NewBoard()
	var st SeriesState
	for i := range 5 {
		st.add(1_790_000_000+int64(i), int64(10*i))
		b.Apply("gmv.room=r1", encodePublished("gmv.room=r1", &st, time.UnixMilli(1_790_000_000_000+int64(i))))
		for range 2 { // the second read comes from what the first kept
			got, err := b.GetJSON("gmv.room=r1")
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(b.Get("gmv.room=r1"))
			if !bytes.Equal(got, want) {
				t.Fatalf("after value %d: GetJSON = %s; Get = %s", i, got, want)
			}
			var snap Snapshot
			if err := json.Unmarshal(got, &snap); err != nil || snap.Value != st.Total {
				t.Fatalf("after value %d: value %d (%v); want %d", i, snap.Value, err, st.Total)
			}
		}
	}
	if got, _ := b.GetJSON("likes"); !bytes.Contains(got, []byte(`"value":0`)) {
		t.Errorf("GetJSON of a series never published = %s", got)
	}
}

// The key cache gives each metric, dimension and value (and units_sold each room and SKU) the
// series key it names, stays within its bound, and still gives the right keys after it starts
// over.
func TestKeyCacheGivesTheSeriesKey(t *testing.T) {
	c := newKeyCache()
	cleared := 0
	for round := range 2 {
		for v := range maxCachedKeys + 10 {
			for i, m := range catalog {
				for j, d := range m.Dimensions {
					if (v+i+j)%5 != 0 { // a sample of the metrics and dimensions per value
						continue
					}
					value := "v" + strconv.Itoa(v)
					want := Series{Metric: m.Name, Dims: [][2]string{{d, value}}}.Key()
					before := c.n
					if got := c.key(i, j, value); got != want {
						t.Fatalf("round %d: key(%s, %s, %s) = %q; want %q", round, m.Name, d, value, got, want)
					}
					if c.n < before {
						cleared++
					}
					if c.n > maxCachedKeys {
						t.Fatalf("the cache holds %d keys; its bound is %d", c.n, maxCachedKeys)
					}
				}
			}
			if v%3 == 0 { // and units_sold by room and SKU
				room, sku := "r"+strconv.Itoa(v%50), "s"+strconv.Itoa(v)
				want := Series{Metric: roomSKUMetric, Dims: [][2]string{{DimRoom, room}, {DimSKU, sku}}}.Key()
				if got := c.roomSKUKey(room, sku); got != want {
					t.Fatalf("round %d: roomSKUKey(%s, %s) = %q; want %q", round, room, sku, got, want)
				}
				if c.n > maxCachedKeys {
					t.Fatalf("the cache holds %d keys; its bound is %d", c.n, maxCachedKeys)
				}
			}
		}
	}
	if cleared == 0 {
		t.Fatal("the cache never started over: the test did not reach its bound")
	}
}

// A batch as ingestion writes it is read in one pass; a message in any other shape is left to
// the general reading (which FuzzDecodeBusEvents holds to the same answers).
func TestIngestedBatchesAreReadInOnePass(t *testing.T) {
	events := `[{"id":"a","type":"click","time":1790000000000,"sku":"s"}]`
	for _, c := range []struct {
		msg  string
		fast bool
	}{
		{`{"id":"x1-1","kind":"events.ingested","at":"2026-12-02T07:00:00.123Z","data":` + events + `}`, true},
		{`{"kind":"events.ingested","id":"x1-1","at":"2026-12-02T07:00:00Z","data":` + events + `}`, false},
		{`{"id":"x 1","kind":"events.ingested","at":"2026-12-02T07:00:00Z","data":` + events + `}`, false},
		{`{"id":"x1-1","kind":"orders.created","at":"2026-12-02T07:00:00Z","data":[]}`, false},
		{`{"id":"x1-1","kind":"events.ingested","at":"2026-12-02T07:00:00Z","data":` + events + `,"more":1}`, false},
	} {
		evs, ok := ingestedBatch([]byte(c.msg))
		if ok != c.fast || (ok && (len(evs) != 1 || evs[0].ID != "a" || evs[0].SKU != "s")) {
			t.Errorf("ingestedBatch(%s) = %+v, %v; want one pass %v", c.msg, evs, ok, c.fast)
		}
	}
}

// The sink's part of a checkpoint gives back every series whole, its total and its seconds:
// series never published, series as published (whose bytes it reuses), and series changed
// since they were.
func TestSinkStateKeepsEverySeries(t *testing.T) {
	s := NewSink(nopPublisher{}, func(key string) string { return key })
	r := rand.New(rand.NewPCG(3, 4))
	add := func(n, from int) {
		for i := range n {
			c := Contribution{Key: "units_sold.sku=s" + strconv.Itoa(r.IntN(300)), Sec: 1_790_000_000 + int64((from+i)/20), Delta: r.Int64N(5) - 1}
			if err := s.Write(0, 0, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	var data []byte
	check := func(when string) {
		t.Helper()
		var err error
		if data, err = s.SnapshotState(); err != nil {
			t.Fatal(err)
		}
		back, err := readSinkState(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(s.series) {
			t.Fatalf("%s: %d series back of %d", when, len(back), len(s.series))
		}
		for k, st := range s.series {
			b := back[k]
			if b == nil || b.Total != st.Total || b.newest() != st.newest() {
				t.Fatalf("%s: series %s back as %+v; saved %+v", when, k, b, st)
			}
			for _, p := range allSeconds(st) {
				if b.at(p.sec) != p.val {
					t.Fatalf("%s: series %s: second %d back as %d; saved %d", when, k, p.sec, b.at(p.sec), p.val)
				}
			}
		}
	}
	add(5_000, 0)
	check("never published")
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("as published")
	add(100, 5_000) // a third of the series change, in old seconds and new
	check("changed since")
	for _, cut := range []int{0, 1, len(data) / 2, len(data) - 1} {
		if _, err := readSinkState(data[:cut]); err == nil {
			t.Errorf("a state cut to %d of %d bytes was read", cut, len(data))
		}
	}
}

// A checkpoint is Surge's own, but a damaged one must be refused, never crash a restart; and
// what is read encodes back to the same series.
func FuzzSinkState(f *testing.F) {
	s := NewSink(nil, func(key string) string { return key })
	s.state("gmv").add(1_790_000_000, 7)
	s.state("likes.room=r1").add(1_790_000_001, 1)
	data, _ := s.SnapshotState()
	f.Add(data)
	f.Add([]byte{sinkStateVersion, 3, 'g', 'm', 'v', 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		series, err := readSinkState(data)
		if err != nil {
			return
		}
		again := NewSink(nil, func(key string) string { return key })
		again.series = series
		enc, err := again.SnapshotState()
		if err != nil {
			t.Fatal(err)
		}
		back, err := readSinkState(enc)
		if err != nil || len(back) != len(series) {
			t.Fatalf("re-encoded state read back as %d series (%v); want %d", len(back), err, len(series))
		}
		for k, st := range series {
			if b := back[k]; b == nil || b.Total != st.Total || b.newest() != st.newest() {
				t.Fatalf("series %q read back as %+v; want %+v", k, b, st)
			}
		}
	})
}

// decodePublished reads what encodePublished wrote, in full, as a board does when the series
// is read.
func decodePublished(data []byte) (key string, st *SeriesState, updated time.Time, err error) {
	p, err := readPublished(data)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	if st, err = p.state(); err != nil {
		return "", nil, time.Time{}, err
	}
	return string(p.key), st, p.updated, nil
}

// allSeconds is every second a series holds, oldest first.
func allSeconds(s *SeriesState) []secondValue {
	if !s.hasLast {
		return s.recent
	}
	return append(slices.Clone(s.recent), s.last)
}

// BenchmarkSinkSnapshot is the sink's part of a checkpoint, of 50,000 series of 120 seconds
// each: right after the flush that published them (as the pipeline checkpoints), and with
// every series changed since.
func BenchmarkSinkSnapshot(b *testing.B) {
	s := NewSink(nopPublisher{}, func(key string) string { return key })
	for i := range 50_000 {
		key := "units_sold.sku=s" + strconv.Itoa(i)
		for sec := range int64(SeriesSeconds) {
			if err := s.Write(0, 0, Contribution{Key: key, Sec: 1_790_000_000 + sec, Delta: 3 + sec%5}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, published := range []bool{true, false} {
		b.Run(map[bool]string{true: "published", false: "changed"}[published], func(b *testing.B) {
			if published {
				if err := s.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			} else {
				for _, st := range s.series {
					st.add(1_790_000_000+SeriesSeconds-1, 1)
				}
			}
			for b.Loop() {
				if _, err := s.SnapshotState(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
