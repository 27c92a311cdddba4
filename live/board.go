package live

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/surgecommerce/surge/stream"
)

// Point is one second of a series.
type Point struct {
	Second int64 `json:"t"` // Unix seconds
	Value  int64 `json:"v"`
}

// Snapshot is a series as served: its current value and its recent seconds.
type Snapshot struct {
	Key    string            `json:"key"`
	Metric string            `json:"metric"`
	Dims   map[string]string `json:"dims,omitempty"`
	Value  int64             `json:"value"`
	// UpdatedMs is when the pipeline published this value (wall clock, milliseconds).
	UpdatedMs int64 `json:"updated_ms"`
	// Series holds the last SeriesSeconds seconds up to the newest second with data, oldest
	// first: per-second values, or for a gauge the level at the end of each second.
	Series []Point `json:"series"`
}

// snapshot renders a series' state.
func snapshot(key string, st *SeriesState, now time.Time) Snapshot {
	s, _ := ParseKey(key)
	snap := Snapshot{Key: key, Metric: s.Metric, Dims: s.dimMap(), Value: st.Total, UpdatedMs: now.UnixMilli(), Series: make([]Point, SeriesSeconds)}
	newest := st.newest()
	if newest == 0 { // nothing in the recent seconds: the series ends now
		newest = now.Unix()
	}
	for i := range SeriesSeconds {
		sec := newest - int64(SeriesSeconds-1-i)
		snap.Series[i] = Point{Second: sec, Value: st.at(sec)}
	}
	if m, _ := Lookup(s.Metric); m.Kind == KindGauge { // per-second changes to levels, from the current one back
		level := st.Total
		for i := len(snap.Series) - 1; i >= 0; i-- {
			delta := snap.Series[i].Value
			snap.Series[i].Value = level
			level -= delta
		}
	}
	return snap
}

// Publisher publishes to the log that holds the served values (a JetStream KV bucket).
type Publisher = stream.Publisher

// Timings of the sink.
const (
	// FlushEvery is how often the sink publishes the series that changed: a series is
	// published at most this often however many events it counts.
	FlushEvery = 250 * time.Millisecond
	// RefreshEvery is how often the sink publishes every series again, so that a values
	// bucket that lost its contents (a restarted server) fills up again.
	RefreshEvery = 30 * time.Second
)

// Sink totals the contributions per series and publishes the series that changed, at most every
// FlushEvery and whenever the pipeline flushes, as snapshots keyed by series: upserts, so a
// replay after a restart rewrites the same values. Its totals are part of the pipeline's
// checkpoints (stream.StatefulSink).
type Sink struct {
	pub       Publisher
	subject   func(key string) string
	series    map[string]*SeriesState
	dirty     []dirtySeries // the series changed since they were last published, each once
	last      time.Time
	refreshed time.Time // when the last round of publishing every series began
	refresh   []string  // the series still to publish again in this round
	restored  bool      // the next round is the first after a restore: all at once
	writes    int
	local     func([]Published) // takes each round of snapshots published, if set
	// recent finds a series by the identity of its key string. The pipeline hands the sink the
	// same strings again and again (cached per metric and value), so most contributions find
	// their series here, without hashing the key and probing a map of tens of thousands.
	recent *[recentSeries]recentEntry
	// snapSize is the size of the last snapshot of the series, which the next one starts at.
	snapSize int
}

// recentSeries is the size of the sink's table of recently counted series (1.5 MB). A sale
// counts in thousands of series every second (each metric by SKU, say): in a table of 4,096
// they kept taking each other's places, and a quarter of the sink's time went to the map.
const recentSeries = 1 << 16

type recentEntry struct {
	key string // held, so that no other string can take its place in memory
	st  *SeriesState
}

// clockWrites is how many contributions the sink counts between looks at the clock.
const clockWrites = 256

// NewSink publishes each series' snapshot to subject(key).
func NewSink(pub Publisher, subject func(key string) string) *Sink {
	return &Sink{pub: pub, subject: subject, series: map[string]*SeriesState{}, refreshed: time.Now(), recent: new([recentSeries]recentEntry)}
}

// dirtySeries is a series to publish.
type dirtySeries struct {
	key string
	st  *SeriesState
}

// markDirty puts a series in the next round of publishing, once.
func (s *Sink) markDirty(key string, st *SeriesState) {
	if !st.dirty {
		st.dirty = true
		s.dirty = append(s.dirty, dirtySeries{key, st})
	}
}

// Write counts a contribution.
func (s *Sink) Write(_ uint64, _ int64, c Contribution) error {
	st := s.state(c.Key)
	st.add(c.Sec, c.Delta)
	s.markDirty(c.Key, st)
	if s.writes++; s.writes%clockWrites == 0 && time.Since(s.last) >= FlushEvery {
		return s.publish()
	}
	return nil
}

// state is the series of a key, made on first use. A key string that is the very one last
// seen in its slot (same bytes in memory, same length) names the same series.
func (s *Sink) state(key string) *SeriesState {
	p := unsafe.StringData(key)
	e := &s.recent[(uintptr(unsafe.Pointer(p))>>3^uintptr(len(key)))%recentSeries]
	if e.st != nil && unsafe.StringData(e.key) == p && len(e.key) == len(key) {
		return e.st
	}
	st := s.series[key]
	if st == nil {
		st = &SeriesState{}
		s.series[key] = st
	}
	e.key, e.st = key, st
	return st
}

// Published is a series' snapshot as the sink publishes it, and as Board.Apply takes it.
type Published struct {
	Key   string
	Value []byte
}

// Mirror makes the sink hand each round of snapshots it publishes to local too, once the round
// is sent (a round cut short by an error: what was sent of it). The board of the node that
// computes the values follows them this way (Board.Feed), without watching the bucket: each
// value the bus delivered back to it cost the node as much as storing it.
func (s *Sink) Mirror(local func([]Published)) *Sink {
	s.local = local
	return s
}

// Flush publishes every changed series and waits for the log to store them.
func (s *Sink) Flush(ctx context.Context) error {
	if err := s.publish(); err != nil {
		return err
	}
	return s.pub.Flush(ctx)
}

// FlushAsync publishes every changed series and returns what waits for the log to store them
// (stream.AsyncFlusher), when its publisher can split its flush; otherwise it flushes, waiting.
// A checkpoint's wait for the acknowledgements took 25-100 ms at 300,000 events a second, all
// of it on the pipeline's goroutine.
func (s *Sink) FlushAsync(ctx context.Context) (func(context.Context) error, error) {
	if err := s.publish(); err != nil {
		return nil, err
	}
	if sp, ok := s.pub.(stream.SplitPublisher); ok {
		return sp.Sent(), nil
	}
	return nil, s.pub.Flush(ctx)
}

// Total is a series' current total, for tests.
func (s *Sink) Total(key string) int64 {
	if st := s.series[key]; st != nil {
		return st.Total
	}
	return 0
}

func (s *Sink) publish() error {
	now := time.Now()
	s.last = now
	s.refreshSome(now)
	var round []Published
	if s.local != nil && len(s.dirty) > 0 {
		round = make([]Published, 0, len(s.dirty))
		defer func() { s.local(round) }()
	}
	for i, d := range s.dirty {
		data := encodePublished(d.key, d.st, now)
		if err := s.pub.PublishAsync(s.subject(d.key), "", data); err != nil {
			s.dirty = s.dirty[i:] // what is left goes in the next round
			return err
		}
		if s.local != nil {
			round = append(round, Published{d.key, data})
		}
		d.st.dirty = false
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
	return nil
}

// refreshSome marks a share of the series for publishing again, so that every series is
// published at least every RefreshEvery, spread over the flushes rather than all at once (a
// burst of every series would stall the boards that apply them).
func (s *Sink) refreshSome(now time.Time) {
	if now.Before(s.refreshed) {
		return // just restored: wait for the replay to catch up
	}
	if len(s.refresh) == 0 {
		if now.Sub(s.refreshed) < RefreshEvery {
			return
		}
		s.refreshed = now
		s.refresh = slices.Collect(maps.Keys(s.series))
	}
	n := len(s.series)/int(RefreshEvery/FlushEvery) + 1
	if s.restored { // the bucket may be empty after a restart: fill it at once
		n, s.restored = len(s.refresh), false
	}
	for _, k := range s.refresh[:min(n, len(s.refresh))] {
		if st, ok := s.series[k]; ok {
			s.markDirty(k, st)
		}
	}
	s.refresh = s.refresh[min(n, len(s.refresh)):]
}

// sinkStateVersion leads the sink's part of a checkpoint. The number of series follows, then
// each series as its key's length and key, then its state's length and state
// (SeriesState.appendBinary), all numbers uvarints. Gob spent an allocation and a reflective
// call on each of a sale's hundreds of thousands of series, on the pipeline's goroutine.
const sinkStateVersion = 1

// SnapshotState encodes the totals.
func (s *Sink) SnapshotState() ([]byte, error) {
	out := make([]byte, 0, s.snapSize+s.snapSize/8) // not grown from nothing, copied at each doubling
	out = binary.AppendUvarint(append(out, sinkStateVersion), uint64(len(s.series)))
	var scratch []byte
	for k, v := range s.series {
		st := v.encoded // as published, if it has not changed since
		if st == nil {
			scratch = v.appendBinary(scratch[:0])
			st = scratch
		}
		out = binary.AppendUvarint(out, uint64(len(k)))
		out = append(out, k...)
		out = binary.AppendUvarint(out, uint64(len(st)))
		out = append(out, st...)
	}
	s.snapSize = len(out)
	return out, nil
}

// readSinkState reads what SnapshotState wrote.
func readSinkState(data []byte) (map[string]*SeriesState, error) {
	if len(data) == 0 || data[0] != sinkStateVersion {
		return nil, errors.New("sink state: not a state of this version")
	}
	count, w := binary.Uvarint(data[1:])
	if w <= 0 || count > uint64(len(data)/3) { // a series takes at least three bytes
		return nil, errors.New("sink state: no count of series")
	}
	data = data[1+w:]
	field := func() ([]byte, bool) {
		n, w := binary.Uvarint(data)
		if w <= 0 || n > uint64(len(data)-w) {
			return nil, false
		}
		f := data[w : w+int(n)]
		data = data[w+int(n):]
		return f, true
	}
	series := make(map[string]*SeriesState, min(count, 1<<16)) // the count is the data's word: room grows with what is read
	for range count {
		key, ok1 := field()
		enc, ok2 := field()
		if !ok1 || !ok2 {
			return nil, errors.New("sink state: a series cut short")
		}
		st := &SeriesState{}
		if err := st.GobDecode(enc); err != nil {
			return nil, fmt.Errorf("sink state: series %q: %w", key, err)
		}
		series[string(key)] = st
	}
	if len(data) > 0 || len(series) != int(count) {
		return nil, errors.New("sink state: not the series it counts")
	}
	return series, nil
}

// RestoreState takes the totals back, and publishes every series again a few seconds later.
func (s *Sink) RestoreState(data []byte) error {
	series, err := readSinkState(data)
	if err != nil {
		return err
	}
	s.series = series
	// The series the recent table pointed to are replaced; and a restore comes before any write,
	// so nothing of the series replaced is left to publish.
	s.recent, s.dirty = new([recentSeries]recentEntry), nil
	// Publish everything again soon, not now: the totals of the checkpoint are older than what
	// the bucket may hold, until the replay from the checkpoint has caught up.
	s.refreshed, s.refresh, s.restored = time.Now().Add(restoredRefreshAfter), slices.Collect(maps.Keys(s.series)), true
	return nil
}

// restoredRefreshAfter is when a restored sink publishes every series again: after the replay
// of the few seconds since the checkpoint, in case the values bucket lost its contents.
const restoredRefreshAfter = 5 * time.Second

// Board is one node's copy of every series, fed by a watch on the published values: every node
// serves the same numbers from memory.
type Board struct {
	mu      sync.RWMutex
	series  map[string]*boardEntry
	top     map[string]map[string]int64 // room ("" for all) → sku → units sold
	changed chan struct{}               // closed and replaced on every change
}

type boardEntry struct {
	value    publishedValue         // its seconds read when the series is (state)
	rendered atomic.Pointer[[]byte] // the snapshot as JSON, made by the first read that asks
}

// state is the series in full. Seconds that cannot be read (a value readPublished let through,
// with a number too long for a varint, say) show as none: the total still stands.
func (e *boardEntry) state() *SeriesState {
	st, err := e.value.state()
	if err != nil {
		return &SeriesState{Total: e.value.total}
	}
	return st
}

// NewBoard returns an empty board.
func NewBoard() *Board {
	return &Board{series: map[string]*boardEntry{}, top: map[string]map[string]int64{}, changed: make(chan struct{})}
}

// Apply takes a published series (nil: the series was deleted). Malformed values are ignored.
func (b *Board) Apply(key string, value []byte) {
	b.applyRound([]Published{{key, value}})
}

// boardChunk is how many series a board takes under one hold of its lock: a round of thousands
// does not keep the readers waiting for all of them.
const boardChunk = 256

// applyRound takes a round of published series, and tells the waiting readers once, with the
// last chunk.
func (b *Board) applyRound(round []Published) {
	type change struct {
		key     string
		series  Series
		value   publishedValue
		deleted bool
	}
	var one [1]change // a watched value comes alone: no allocation for the list
	changes := one[:0]
	if len(round) > len(one) {
		changes = make([]change, 0, len(round))
	}
	for _, v := range round {
		c := change{key: v.Key, deleted: v.Value == nil}
		if !c.deleted {
			var err error
			if c.value, err = readPublished(v.Value); err != nil || string(c.value.key) != v.Key {
				continue
			}
		}
		var ok bool
		if c.series, ok = ParseKey(v.Key); !ok {
			continue
		}
		changes = append(changes, c)
	}
	for start := 0; start < len(changes); start += boardChunk {
		end := min(start+boardChunk, len(changes))
		b.mu.Lock()
		for _, c := range changes[start:end] {
			if c.deleted {
				delete(b.series, c.key)
			} else {
				b.series[c.key] = &boardEntry{value: c.value}
			}
			if c.series.Metric != roomSKUMetric {
				continue
			}
			if room, sku, ok := topScope(c.series); ok {
				if b.top[room] == nil {
					b.top[room] = map[string]int64{}
				}
				if c.deleted {
					delete(b.top[room], sku)
				} else {
					b.top[room][sku] = c.value.total
				}
			}
		}
		if end == len(changes) {
			close(b.changed)
			b.changed = make(chan struct{})
		}
		b.mu.Unlock()
	}
}

// boardRounds bounds the rounds of published values waiting for a board fed by Feed: a pipeline
// that gets that far ahead of its board waits for it.
const boardRounds = 16

// Feed returns a function that queues a round of published values for the board, and applies
// the queued rounds in order, on a goroutine of its own, until ctx ends: the pipeline that
// publishes them goes on counting meanwhile. Once ctx ends, rounds are dropped.
func (b *Board) Feed(ctx context.Context) func([]Published) {
	rounds := make(chan []Published, boardRounds)
	go func() { // ends with ctx
		for {
			select {
			case <-ctx.Done():
				return
			case round := <-rounds:
				b.applyRound(round)
			}
		}
	}()
	return func(round []Published) {
		select {
		case rounds <- round:
		case <-ctx.Done():
		}
	}
}

// topScope says whether a units_sold series is one item's, platform-wide or in a room.
func topScope(s Series) (room, sku string, ok bool) {
	switch {
	case len(s.Dims) == 1 && s.Dims[0][0] == DimSKU:
		return "", s.Dims[0][1], true
	case len(s.Dims) == 2 && s.Dims[0][0] == DimRoom && s.Dims[1][0] == DimSKU:
		return s.Dims[0][1], s.Dims[1][1], true
	}
	return "", "", false
}

// Changed is closed at the next change.
func (b *Board) Changed() <-chan struct{} {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.changed
}

// Get returns a series (value 0 and no seconds if nothing counted in it yet).
func (b *Board) Get(key string) Snapshot {
	b.mu.RLock()
	e, ok := b.series[key]
	b.mu.RUnlock()
	if ok {
		return snapshot(key, e.state(), e.value.updated)
	}
	s, _ := ParseKey(key)
	return Snapshot{Key: key, Metric: s.Metric, Dims: s.dimMap(), Series: []Point{}}
}

// GetJSON is Get encoded as JSON. A series' encoding is made once per published value and
// kept until the next: a dashboard's thousand reads a second of one series cost one encoding
// each time it changes (at most every FlushEvery), not one each.
func (b *Board) GetJSON(key string) (json.RawMessage, error) {
	b.mu.RLock()
	e, ok := b.series[key]
	b.mu.RUnlock()
	if ok {
		if r := e.rendered.Load(); r != nil {
			return *r, nil
		}
	}
	data, err := json.Marshal(b.Get(key))
	if err == nil && ok {
		e.rendered.Store(&data)
	}
	return data, err
}

// Value is a series' current total (0 if nothing counted in it yet).
func (b *Board) Value(key string) int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if e, ok := b.series[key]; ok {
		return e.value.total
	}
	return 0
}

// TopItem is an item and the units of it sold.
type TopItem struct {
	SKU   string `json:"sku"`
	Name  string `json:"name,omitempty"` // the product's name, where the catalog has the SKU (filled by who serves it)
	Units int64  `json:"units"`
}

// MaxTopItems bounds a top-items list.
const MaxTopItems = 100

// Top lists the n items with the most units sold, in a room or ("") everywhere.
func (b *Board) Top(room string, n int) []TopItem {
	b.mu.RLock()
	items := make([]TopItem, 0, len(b.top[room]))
	for sku, units := range b.top[room] {
		items = append(items, TopItem{SKU: sku, Units: units})
	}
	b.mu.RUnlock()
	slices.SortFunc(items, func(a, b TopItem) int { return cmp.Or(cmp.Compare(b.Units, a.Units), strings.Compare(a.SKU, b.SKU)) })
	return items[:min(len(items), max(n, 0), MaxTopItems)]
}

// Funnel is the conversion from exposure to payment.
type Funnel struct {
	Exposures  int64   `json:"exposures"`
	Clicks     int64   `json:"clicks"`
	AddToCarts int64   `json:"add_to_carts"`
	Orders     int64   `json:"orders"`
	Payments   int64   `json:"payments"`
	ClickRate  float64 `json:"click_rate"` // clicks per exposure
	OrderRate  float64 `json:"order_rate"` // orders per click
	PayRate    float64 `json:"pay_rate"`   // payments per order
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Screen is what the live-room big screen shows: one room, or ("") the whole platform.
type Screen struct {
	Room          string    `json:"room,omitempty"`
	GMV           int64     `json:"gmv"`
	Orders        int64     `json:"orders"`
	UnitsSold     int64     `json:"units_sold"`
	PayingUsers   int64     `json:"paying_users"`
	OnlineViewers int64     `json:"online_viewers"`
	Likes         int64     `json:"likes"`
	Comments      int64     `json:"comments"`
	Shares        int64     `json:"shares"`
	TopItems      []TopItem `json:"top_items"`
	Funnel        Funnel    `json:"funnel"`
	GMVSeries     []Point   `json:"gmv_series"`
	ViewerSeries  []Point   `json:"viewer_series"`
}

// screenTop is how many items the big screen lists.
const screenTop = 10

// Screen gathers a room's (or the platform's) numbers.
func (b *Board) Screen(room string) Screen {
	key := func(metric string) string {
		if room == "" {
			return metric
		}
		return Series{Metric: metric, Dims: [][2]string{{DimRoom, room}}}.Key()
	}
	b.mu.RLock() // one consistent view: a push never mixes old and new numbers
	v := func(metric string) int64 {
		if e, ok := b.series[key(metric)]; ok {
			return e.value.total
		}
		return 0
	}
	sc := Screen{Room: room, GMV: v("gmv"), Orders: v("orders"), UnitsSold: v("units_sold"), PayingUsers: v("paying_users"),
		OnlineViewers: v("online_viewers"), Likes: v("likes"), Comments: v("comments"), Shares: v("shares")}
	f := Funnel{Exposures: v("exposures"), Clicks: v("clicks"), AddToCarts: v("add_to_carts"), Orders: sc.Orders, Payments: v("payments")}
	series := func(metric string) []Point {
		if e, ok := b.series[key(metric)]; ok {
			return last(snapshot(key(metric), e.state(), e.value.updated).Series, 60)
		}
		return []Point{}
	}
	sc.GMVSeries, sc.ViewerSeries = series("gmv"), series("online_viewers")
	b.mu.RUnlock()
	sc.TopItems = b.Top(room, screenTop)
	f.ClickRate, f.OrderRate, f.PayRate = ratio(f.Clicks, f.Exposures), ratio(f.Orders, f.Clicks), ratio(f.Payments, f.Orders)
	sc.Funnel = f
	return sc
}

func last(p []Point, n int) []Point {
	if len(p) > n {
		return p[len(p)-n:]
	}
	return p
}
