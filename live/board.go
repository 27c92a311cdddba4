package live

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

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
	snap := Snapshot{Key: key, Metric: s.Metric, Value: st.Total, UpdatedMs: now.UnixMilli(), Series: make([]Point, SeriesSeconds)}
	if len(s.Dims) > 0 {
		snap.Dims = make(map[string]string, len(s.Dims))
		for _, d := range s.Dims {
			snap.Dims[d[0]] = d[1]
		}
	}
	newest := slices.Max(st.Secs[:])
	for i := range SeriesSeconds {
		sec := newest - int64(SeriesSeconds-1-i)
		snap.Series[i].Second = sec
		if j := sec % SeriesSeconds; sec >= 0 && st.Secs[j] == sec {
			snap.Series[i].Value = st.Vals[j]
		}
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

// FlushEvery is how often the sink publishes the series that changed.
const FlushEvery = 100 * time.Millisecond

// Sink publishes changed series, at most every FlushEvery and whenever the pipeline flushes,
// as snapshots keyed by series: an upsert, so a replay after a restart rewrites the same values.
type Sink struct {
	pub     Publisher
	subject func(key string) string
	dirty   map[string]*SeriesState
	last    time.Time
}

// NewSink publishes each series' snapshot to subject(key).
func NewSink(pub Publisher, subject func(key string) string) *Sink {
	return &Sink{pub: pub, subject: subject, dirty: map[string]*SeriesState{}}
}

// Write notes a changed series.
func (s *Sink) Write(_ uint64, _ int64, u Update) error {
	s.dirty[u.Key] = u.State
	if time.Since(s.last) >= FlushEvery {
		return s.publish()
	}
	return nil
}

// Flush publishes every changed series and waits for the log to store them.
func (s *Sink) Flush(ctx context.Context) error {
	if err := s.publish(); err != nil {
		return err
	}
	return s.pub.Flush(ctx)
}

func (s *Sink) publish() error {
	now := time.Now()
	s.last = now
	for k, st := range s.dirty {
		data, err := json.Marshal(snapshot(k, st, now))
		if err != nil {
			return err
		}
		if err := s.pub.PublishAsync(s.subject(k), "", data); err != nil {
			return err
		}
		delete(s.dirty, k)
	}
	return nil
}

// Board is one node's copy of every series, fed by a watch on the published values: every node
// serves the same numbers from memory.
type Board struct {
	mu      sync.RWMutex
	snaps   map[string]*Snapshot
	top     map[string]map[string]int64 // room ("" for all) → sku → units sold
	changed chan struct{}               // closed and replaced on every change
}

// NewBoard returns an empty board.
func NewBoard() *Board {
	return &Board{snaps: map[string]*Snapshot{}, top: map[string]map[string]int64{}, changed: make(chan struct{})}
}

// Apply takes a published snapshot (nil: the series was deleted). Malformed values are ignored.
func (b *Board) Apply(key string, value []byte) {
	var snap *Snapshot
	if value != nil {
		snap = &Snapshot{}
		if err := json.Unmarshal(value, snap); err != nil || snap.Key != key {
			return
		}
	}
	s, ok := ParseKey(key)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if snap == nil {
		delete(b.snaps, key)
	} else {
		b.snaps[key] = snap
	}
	if s.Metric == roomSKUMetric {
		if room, sku, ok := topScope(s); ok {
			if b.top[room] == nil {
				b.top[room] = map[string]int64{}
			}
			if snap == nil {
				delete(b.top[room], sku)
			} else {
				b.top[room][sku] = snap.Value
			}
		}
	}
	close(b.changed)
	b.changed = make(chan struct{})
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
	snap := b.snaps[key]
	b.mu.RUnlock()
	if snap != nil {
		return *snap
	}
	s, _ := ParseKey(key)
	out := Snapshot{Key: key, Metric: s.Metric, Series: []Point{}}
	for _, d := range s.Dims {
		if out.Dims == nil {
			out.Dims = map[string]string{}
		}
		out.Dims[d[0]] = d[1]
	}
	return out
}

func (b *Board) value(key string) int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if s := b.snaps[key]; s != nil {
		return s.Value
	}
	return 0
}

// TopItem is an item and the units of it sold.
type TopItem struct {
	SKU   string `json:"sku"`
	Units int64  `json:"units"`
}

// MaxTopItems bounds a top-items list.
const MaxTopItems = 100

// Top lists the n items with the most units sold, in a room or ("") everywhere.
func (b *Board) Top(room string, n int) []TopItem {
	b.mu.RLock()
	items := make([]TopItem, 0, len(b.top[room]))
	for sku, units := range b.top[room] {
		items = append(items, TopItem{sku, units})
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
	sc := Screen{Room: room, GMV: b.value(key("gmv")), Orders: b.value(key("orders")), UnitsSold: b.value(key("units_sold")),
		PayingUsers: b.value(key("paying_users")), OnlineViewers: b.value(key("online_viewers")), Likes: b.value(key("likes")),
		Comments: b.value(key("comments")), Shares: b.value(key("shares")), TopItems: b.Top(room, screenTop)}
	f := Funnel{Exposures: b.value(key("exposures")), Clicks: b.value(key("clicks")), AddToCarts: b.value(key("add_to_carts")),
		Orders: sc.Orders, Payments: b.value(key("payments"))}
	f.ClickRate, f.OrderRate, f.PayRate = ratio(f.Clicks, f.Exposures), ratio(f.Orders, f.Clicks), ratio(f.Payments, f.Orders)
	sc.Funnel = f
	sc.GMVSeries = last(b.Get(key("gmv")).Series, 60)
	sc.ViewerSeries = last(b.Get(key("online_viewers")).Series, 60)
	return sc
}

func last(p []Point, n int) []Point {
	if len(p) > n {
		return p[len(p)-n:]
	}
	return p
}
