package live

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

// A round bigger than a chunk is applied whole, malformed values and all, before the readers
// waiting for a change are told, once.
func TestBoardAppliesARoundWhole(t *testing.T) {
	b := NewBoard()
	now := time.UnixMilli(1_790_000_000_000)
	var round []Published
	for i := range 2*boardChunk + 1 {
		key := Series{Metric: roomSKUMetric, Dims: [][2]string{{DimRoom, "r"}, {DimSKU, strconv.Itoa(i)}}}.Key()
		st := &SeriesState{}
		st.add(now.Unix(), int64(i+1))
		round = append(round, Published{key, encodePublished(key, st, now)})
	}
	st := &SeriesState{}
	st.add(now.Unix(), 7)
	b.applyRound([]Published{{"gmv", encodePublished("gmv", st, now)}, {"likes", encodePublished("likes", st, now)}})
	round = append(round, Published{"gmv", encodePublished("orders", st, now)}, // another series' value
		Published{"likes", []byte{0}}) // not a published value
	b.applyRound(round[:1])
	changed := b.Changed()
	round[0].Value = nil // deleted
	b.applyRound(round)
	select {
	case <-changed:
	default:
		t.Fatal("the readers were not told of the round")
	}
	if b.Changed() == changed {
		t.Fatal("the next change has no channel of its own")
	}
	first := round[0].Key
	if b.Value(first) != 0 || len(b.top["r"]) != 2*boardChunk {
		t.Fatalf("after deleting %s: value %d, %d items ranked", first, b.Value(first), len(b.top["r"]))
	}
	if last := round[2*boardChunk].Key; b.Value(last) != 2*boardChunk+1 {
		t.Fatalf("%s = %d; want %d", last, b.Value(last), 2*boardChunk+1)
	}
	if b.Value("gmv") != 7 || b.Value("likes") != 7 {
		t.Fatalf("gmv %d, likes %d after malformed values; want 7, as before them", b.Value("gmv"), b.Value("likes"))
	}
}

// A board reads a value's seconds only when the series is read: a value whose seconds then
// cannot be read shows its total and no seconds, and a value cut short is not taken at all.
func TestBoardReadsTheSecondsWhenAsked(t *testing.T) {
	b := NewBoard()
	now := time.UnixMilli(1_790_000_000_000)
	st := &SeriesState{}
	st.add(now.Unix(), 5)
	good := encodePublished("gmv", st, now)
	b.Apply("gmv", good)
	if s := b.Get("gmv"); s.Value != 5 || s.Series[len(s.Series)-1] != (Point{now.Unix(), 5}) {
		t.Fatalf("gmv = %d, last second %+v; want 5 in second %d", s.Value, s.Series[len(s.Series)-1], now.Unix())
	}
	st.add(now.Unix(), 2)
	tooLong := append(encodePublished("gmv", st, now), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02)
	b.Apply("gmv", tooLong)
	if s := b.Get("gmv"); s.Value != 7 || slices.ContainsFunc(s.Series, func(p Point) bool { return p.Value != 0 }) {
		t.Fatalf("gmv with unreadable seconds = %d, %+v; want 7 and no seconds", s.Value, s.Series)
	}
	b.Apply("gmv", good[:len(good)-1]) // ends inside a second
	if b.Value("gmv") != 7 {
		t.Fatalf("gmv = %d after a value cut short; want 7, as before it", b.Value("gmv"))
	}
}

// countingPublisher counts what it is asked; with split set it splits its flush.
type countingPublisher struct {
	published, flushes, sent int
}

func (p *countingPublisher) PublishAsync(string, string, []byte) error { p.published++; return nil }
func (p *countingPublisher) Flush(context.Context) error               { p.flushes++; return nil }

type splitPublisher struct{ countingPublisher }

func (p *splitPublisher) Sent() func(context.Context) error {
	p.sent++
	return func(context.Context) error { return errors.New("refused") }
}

// A sink's flush for a checkpoint publishes what changed and leaves the waiting to the caller
// when its publisher can split its flush; otherwise it flushes, waiting.
func TestSinkFlushAsync(t *testing.T) {
	split := &splitPublisher{}
	s := NewSink(split, func(key string) string { return key })
	if err := s.Write(0, 0, Contribution{Key: "gmv", Sec: 1_790_000_000, Delta: 5}); err != nil {
		t.Fatal(err)
	}
	wait, err := s.FlushAsync(context.Background())
	if err != nil || wait == nil || split.published != 1 || split.sent != 1 || split.flushes != 0 {
		t.Fatalf("split: wait %v, %v, %+v; want a wait, one series sent, no flush", wait != nil, err, split.countingPublisher)
	}
	if err := wait(context.Background()); err == nil || err.Error() != "refused" {
		t.Fatalf("the wait = %v; want the publisher's", err)
	}
	plain := &countingPublisher{}
	s = NewSink(plain, func(key string) string { return key })
	if err := s.Write(0, 0, Contribution{Key: "gmv", Sec: 1_790_000_000, Delta: 5}); err != nil {
		t.Fatal(err)
	}
	if wait, err := s.FlushAsync(context.Background()); err != nil || wait != nil || plain.published != 1 || plain.flushes != 1 {
		t.Fatalf("plain: wait %v, %v, %+v; want the series published and flushed, no wait", wait != nil, err, *plain)
	}
}
