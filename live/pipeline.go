package live

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// Bounds and timings of the live pipeline.
const (
	// DedupWindow is how long after Surge received an event a copy of it (the same id, whatever
	// its time) is recognised and dropped.
	DedupWindow = time.Minute
	// ViewerTimeout is how long a viewer stays online without a heartbeat received.
	ViewerTimeout = 60 * time.Second
	// OutOfOrderness is the pipeline's watermark bound, in the time Surge received the events:
	// how far out of that order the nodes' batches may reach the log (their clocks, their
	// writes). It only delays viewer timeouts and the end of dedup windows; totals count every
	// event as it arrives.
	OutOfOrderness = 5 * time.Second
	// TickEvery is how often the node computing the live metrics writes the time to the events
	// log, so that the pipeline's time moves on when no event comes: viewers time out on a quiet
	// platform too. The time is in the log, so a replay makes the same decisions.
	TickEvery = time.Second
	// Tick is the bus event kind of such a time.
	Tick = "live.tick"
	// TickSubject is where ticks are written.
	TickSubject = "surge.events." + Tick
	// EventsIngested is the bus event kind of a batch of ingested business events.
	EventsIngested = "events.ingested"
	// dedupBucketMs is the time received whose ids are forgotten together, as the dedup window
	// passes.
	dedupBucketMs = 100
	daySeconds    = 86_400
)

// Contribution is what one event adds to one series at one second.
type Contribution struct {
	Key      string
	Delta    int64
	Sec      int64
	Distinct string // for distinct metrics: the user, counted once per series
}

// Counters are what the pipeline counts besides the metrics.
type Counters struct {
	Duplicates atomic.Int64
}

// PipelineTime is the time the live pipeline runs on: when Surge received the event. Every
// pipeline of Build's takes it as its event time. A sender's clock decides which seconds an
// event counts in, never when the pipeline's watermark moves.
func PipelineTime(e surge.BusinessEvent) int64 { return e.Received }

// tickType is the type of the record a tick is read into (DecodeBusEvents): it moves the
// pipeline's time and counts in nothing. No business event has it: Validate refuses it.
const tickType = "tick"

// Build adds the live metrics to a pipeline of business events, timed by PipelineTime: what each
// unique event adds to each series, for a Sink to total.
func Build(src stream.Stream[surge.BusinessEvent], counters *Counters) stream.Stream[Contribution] {
	unique := dedup(stream.Filter(src, func(e surge.BusinessEvent) bool { return e.Type != tickType }), counters)
	contribs := stream.FlatMap(unique, exploder())
	plain := stream.Filter(contribs, func(c Contribution) bool { return c.Distinct == "" })
	// Distinct users are counted per UTC day of event time, and forgotten a day after it ends:
	// a distinct metric's total is the sum of its daily counts.
	distinct := stream.Process(stream.KeyBy(stream.Filter(contribs, func(c Contribution) bool { return c.Distinct != "" }),
		func(c Contribution) seriesDay { return seriesDay{c.Key, c.Sec / daySeconds} }),
		stream.Processor[seriesDay, Contribution, hashSet, Contribution]{
			OnRecord: func(c *stream.Context[seriesDay, hashSet, Contribution], v Contribution) {
				seen := c.State()
				if seen.IDs == nil {
					seen.IDs = map[uint64]struct{}{}
					c.SetTimer((c.Key.Day + 2) * daySeconds * 1000)
				}
				n := len(seen.IDs)
				if seen.IDs[xxhash.Sum64String(v.Distinct)] = struct{}{}; len(seen.IDs) > n { // a new user
					v.Distinct = ""
					c.Emit(c.Time, v)
				}
			},
			OnTimer: func(c *stream.Context[seriesDay, hashSet, Contribution]) { c.Clear() },
		})
	viewers := onlineViewers(stream.Filter(unique, func(e surge.BusinessEvent) bool {
		return e.Type == surge.BizLiveEnter || e.Type == surge.BizLiveHeartbeat || e.Type == surge.BizLiveLeave
	}))
	return stream.Union(plain, distinct, viewers)
}

// seriesDay is a distinct metric's series on one UTC day.
type seriesDay struct {
	Series string
	Day    int64 // days since the Unix epoch
}

// hashSet holds the users a distinct series counted in a day, hashed. Two ids with one hash
// (about one chance in 10^9 for 200,000 ids) would count as one. The set holds no values: half
// the memory of a map to bool.
type hashSet struct{ IDs map[uint64]struct{} }

// GobEncode writes the ids as 8 bytes each: the distinct users are much of the live pipeline's
// checkpoint, and gob's encoding of a map is several times slower.
func (d hashSet) GobEncode() ([]byte, error) {
	out := make([]byte, 0, 8*len(d.IDs))
	for id := range d.IDs {
		out = binary.LittleEndian.AppendUint64(out, id)
	}
	return out, nil
}

// GobDecode reads what GobEncode wrote.
func (d *hashSet) GobDecode(data []byte) error {
	if len(data)%8 != 0 {
		return fmt.Errorf("a set of %d bytes is not a list of ids", len(data))
	}
	d.IDs = make(map[uint64]struct{}, len(data)/8)
	for i := 0; i < len(data); i += 8 {
		d.IDs[binary.LittleEndian.Uint64(data[i:])] = struct{}{}
	}
	return nil
}

// dedup drops copies of an event: an event whose id (in its sender's namespace) was counted
// less than DedupWindow ago, in the time Surge received them, whatever the copies' event times.
// The first copy counts, with its own time.
func dedup(src stream.Stream[surge.BusinessEvent], counters *Counters) stream.Stream[surge.BusinessEvent] {
	window := DedupWindow.Milliseconds()
	return stream.Process(stream.KeyBy(src, func(surge.BusinessEvent) struct{} { return struct{}{} }),
		stream.Processor[struct{}, surge.BusinessEvent, dedupState, surge.BusinessEvent]{
			OnRecord: func(c *stream.Context[struct{}, dedupState, surge.BusinessEvent], e surge.BusinessEvent) {
				st := c.State()
				if st.ids == nil {
					st.ids, st.arrived = map[uint64]struct{}{}, map[int64][]uint64{}
				}
				id, n := xxhash.Sum64String(e.ID), len(st.ids)
				if st.ids[id] = struct{}{}; len(st.ids) == n { // seen before: one probe of the set, which is past a core's cache
					counters.Duplicates.Add(1)
					return
				}
				bucket := c.Time / dedupBucketMs
				ids, ok := st.arrived[bucket]
				if !ok {
					c.SetTimer((bucket+1)*dedupBucketMs + window)
				}
				st.arrived[bucket] = append(ids, id)
				c.Emit(c.Time, e)
			},
			OnTimer: func(c *stream.Context[struct{}, dedupState, surge.BusinessEvent]) {
				st, ok := c.Lookup()
				if !ok {
					return
				}
				bucket := (c.Time-window)/dedupBucketMs - 1
				for _, id := range st.arrived[bucket] {
					delete(st.ids, id)
				}
				delete(st.arrived, bucket)
			},
		})
}

// dedupState is the ids of the events counted in the last DedupWindow, hashed, with the ids
// received in each tenth of a second, to forget them as the window passes. An event whose id
// hashes as one of the window's would be dropped as its copy: among the 18 million ids of a
// minute at 300,000 events a second, one chance in 10^12 per event, about one event a month at
// that rate. One set for the window is one probe per event, beyond a core's cache at that rate:
// the sets per tenth of a second of event time this once was stayed in cache, but could not
// recognise a copy sent with another time.
type dedupState struct {
	ids     map[uint64]struct{}
	arrived map[int64][]uint64 // by tenth of a second received
}

// GobEncode writes each tenth of a second, its number and count of ids, then its ids: 8 bytes
// each, as the ids are most of the live pipeline's checkpoint, and gob's encoding of a map is
// several times slower.
func (d dedupState) GobEncode() ([]byte, error) {
	out := make([]byte, 0, 8*len(d.ids)+16*len(d.arrived))
	for bucket, ids := range d.arrived {
		out = binary.LittleEndian.AppendUint64(out, uint64(bucket))
		out = binary.LittleEndian.AppendUint64(out, uint64(len(ids)))
		for _, id := range ids {
			out = binary.LittleEndian.AppendUint64(out, id)
		}
	}
	return out, nil
}

// GobDecode reads what GobEncode wrote.
func (d *dedupState) GobDecode(data []byte) error {
	d.ids, d.arrived = map[uint64]struct{}{}, map[int64][]uint64{}
	for len(data) > 0 {
		if len(data) < 16 {
			return fmt.Errorf("a dedup window's tenth of a second is cut short")
		}
		bucket, n := int64(binary.LittleEndian.Uint64(data)), binary.LittleEndian.Uint64(data[8:])
		data = data[16:]
		if _, ok := d.arrived[bucket]; ok || n > uint64(len(data)/8) {
			return fmt.Errorf("a dedup window's tenth of a second is given twice or cut short")
		}
		ids := make([]uint64, n)
		for i := range ids {
			ids[i] = binary.LittleEndian.Uint64(data[8*i:])
			d.ids[ids[i]] = struct{}{}
		}
		d.arrived[bucket] = ids
		data = data[8*n:]
	}
	return nil
}

// dimValue is an event's value of a dimension ("" when it has none).
func dimValue(e *surge.BusinessEvent, dim string) string {
	switch dim {
	case DimPlatform:
		return e.Platform
	case DimRoom:
		return e.Room
	case DimShop:
		return e.Shop
	case DimSKU:
		return e.SKU
	case DimSession:
		return e.Session
	}
	return ""
}

// keyCache remembers series keys by metric, dimension and value (the metric's index in the
// catalog and the dimension's in its list), and units_sold's by room and SKU, so that counting
// an event neither builds the same strings again nor hashes more than the values, and the sink
// finds each series by its key's identity (Sink.state). It is bounded: past maxCachedKeys it
// starts over.
type keyCache struct {
	byDim   [][]map[string]string
	roomSKU map[[2]string]string
	n       int
}

const maxCachedKeys = 1 << 16

func newKeyCache() *keyCache {
	c := &keyCache{byDim: make([][]map[string]string, len(catalog)), roomSKU: map[[2]string]string{}}
	for i, m := range catalog {
		c.byDim[i] = make([]map[string]string, len(m.Dimensions))
		for j := range m.Dimensions {
			c.byDim[i][j] = map[string]string{}
		}
	}
	return c
}

func (c *keyCache) key(metric, dim int, value string) string {
	byValue := c.byDim[metric][dim]
	if s, ok := byValue[value]; ok {
		return s
	}
	c.makeRoom()
	m := &catalog[metric]
	s := Series{Metric: m.Name, Dims: [][2]string{{m.Dimensions[dim], value}}}.Key()
	byValue[value] = s
	return s
}

// roomSKUKey is the key of units_sold in one room for one SKU.
func (c *keyCache) roomSKUKey(room, sku string) string {
	k := [2]string{room, sku}
	if s, ok := c.roomSKU[k]; ok {
		return s
	}
	c.makeRoom()
	s := Series{Metric: roomSKUMetric, Dims: [][2]string{{DimRoom, room}, {DimSKU, sku}}}.Key()
	c.roomSKU[k] = s
	return s
}

// makeRoom counts a key about to be added, first forgetting them all if the cache is full.
func (c *keyCache) makeRoom() {
	if c.n >= maxCachedKeys {
		for _, ms := range c.byDim {
			for _, m := range ms {
				clear(m)
			}
		}
		clear(c.roomSKU)
		c.n = 0
	}
	c.n++
}

// exploder turns an event into its contributions to every series it counts in.
func exploder() func(surge.BusinessEvent, func(Contribution)) {
	keys := newKeyCache()
	return func(e surge.BusinessEvent, emit func(Contribution)) {
		sec := e.Time / 1000
		ms := measure{e.Type, e.Units, e.Amount}
		for i := range catalog {
			m := &catalog[i]
			if m.value == nil {
				continue
			}
			v := m.value(ms)
			if v == 0 {
				continue
			}
			var user string
			if m.Kind == KindDistinct {
				user, v = e.User, 1
			}
			emit(Contribution{Key: m.Name, Delta: v, Sec: sec, Distinct: user})
			for j, d := range m.Dimensions {
				if value := dimValue(&e, d); value != "" {
					emit(Contribution{Key: keys.key(i, j, value), Delta: v, Sec: sec, Distinct: user})
				}
			}
			if m.Name == roomSKUMetric && e.Room != "" && e.SKU != "" {
				emit(Contribution{Key: keys.roomSKUKey(e.Room, e.SKU), Delta: v, Sec: sec})
			}
		}
	}
}

// viewer is one user's presence in one room.
type viewer struct {
	Online   bool
	Last     int64
	Platform string
}

// onlineViewers turns enter, heartbeat and leave events into ±1 on the online_viewers series.
func onlineViewers(s stream.Stream[surge.BusinessEvent]) stream.Stream[Contribution] {
	timeout := ViewerTimeout.Milliseconds()
	emit := func(c *stream.Context[string, viewer, Contribution], room string, st *viewer, delta int64) {
		for _, k := range []string{"online_viewers", "online_viewers.platform=" + st.Platform, "online_viewers.room=" + room} {
			c.Emit(c.Time, Contribution{Key: k, Delta: delta, Sec: c.Time / 1000})
		}
	}
	return stream.Process(stream.KeyBy(s, func(e surge.BusinessEvent) string { return e.Room + "|" + e.User }),
		stream.Processor[string, surge.BusinessEvent, viewer, Contribution]{
			OnRecord: func(c *stream.Context[string, viewer, Contribution], e surge.BusinessEvent) {
				st := c.State()
				if e.Type == surge.BizLiveLeave {
					if st.Online {
						emit(c, e.Room, st, -1)
					}
					c.Clear()
					return
				}
				st.Last = max(st.Last, c.Time) // received
				if !st.Online {
					st.Online, st.Platform = true, e.Platform
					emit(c, e.Room, st, 1)
				}
				c.SetTimer(st.Last + timeout)
			},
			OnTimer: func(c *stream.Context[string, viewer, Contribution]) {
				st, ok := c.Lookup() // a viewer who left has no state, and gets none back
				if ok && st.Online && c.Time >= st.Last+timeout {
					room, _, _ := strings.Cut(c.Key, "|")
					emit(c, room, st, -1)
					c.Clear()
				}
			},
		})
}

// DecodeBusEvents reads one message of the events log into the business events it carries:
// a batch of ingested events, or one of Surge's own order events. Other kinds carry none.
//
// Decoding is a large part of the live pipeline's work. A batch exactly as Surge's ingestion
// writes it is read in one pass, envelope and events. Any other message is read as a stream of
// tokens, so that a batch whose kind comes before its data is still parsed once, straight into
// the events.
//
// Each event is received at the message's time ("at"), which every message of events must have;
// a tick (Tick) carries only that time, read as a record that counts in nothing.
func DecodeBusEvents(data []byte) ([]surge.BusinessEvent, error) {
	if evs, ok := ingestedBatch(data); ok {
		return evs, nil
	}
	dec := jsontext.NewDecoder(bytes.NewBuffer(data))
	if tok, err := dec.ReadToken(); err != nil {
		return nil, err
	} else if tok.Kind() == 'n' { // null carries no events, as an empty object would
		if _, err := dec.ReadToken(); err != io.EOF {
			return nil, fmt.Errorf("a bus event is one JSON value")
		}
		return nil, nil
	} else if tok.Kind() != '{' {
		return nil, fmt.Errorf("a bus event is a JSON object, not %v", tok.Kind())
	}
	var kind, at, msgID string
	var evs []surge.BusinessEvent
	var raw jsontext.Value // data that came before the kind
	decoded := false
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		switch name.String() {
		case "kind":
			if err := jsonv2.UnmarshalDecode(dec, &kind); err != nil {
				return nil, err
			}
		case "at":
			if err := jsonv2.UnmarshalDecode(dec, &at); err != nil {
				return nil, err
			}
		case "id":
			if err := jsonv2.UnmarshalDecode(dec, &msgID); err != nil {
				return nil, err
			}
		case "data":
			if kind == EventsIngested {
				if err := jsonv2.UnmarshalDecode(dec, &evs); err != nil {
					return nil, err
				}
				decoded = true
				continue
			}
			v, err := dec.ReadValue()
			if err != nil {
				return nil, err
			}
			raw = bytes.Clone(v)
		default:
			if err := dec.SkipValue(); err != nil {
				return nil, err
			}
		}
	}
	if _, err := dec.ReadToken(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, fmt.Errorf("a bus event is one JSON object, with nothing after it")
	}
	switch kind {
	case EventsIngested, surge.EventOrdersCreated, surge.EventOrdersPaid, surge.EventOrderPaid, Tick, surge.EventRiskOutcomes:
	default:
		return nil, nil
	}
	received, err := receivedAt([]byte(at))
	if err != nil {
		return nil, err
	}
	switch kind {
	case EventsIngested:
		if !decoded {
			if raw == nil {
				return nil, fmt.Errorf("a batch of events without its data")
			}
			if err := jsonv2.Unmarshal(raw, &evs); err != nil {
				return nil, err
			}
		}
	case surge.EventOrdersCreated:
		evs, err = ordersAs(raw, func(o *surge.Order) surge.BusinessEvent { return fromOrder(o, surge.BizOrder, o.CreatedAt) })
	case surge.EventOrdersPaid:
		evs, err = paidEvents(raw)
	case surge.EventOrderPaid: // one order, as earlier releases sent it
		var o surge.Order
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, err
		}
		evs = []surge.BusinessEvent{paidEvent(&o)}
	case Tick:
		evs = []surge.BusinessEvent{{Type: tickType}}
	case surge.EventRiskOutcomes:
		evs, err = riskEvents(raw, msgID)
	}
	for i := range evs {
		evs[i].Received = received
	}
	return evs, err
}

// receivedAt reads a message's time ("at") as the milliseconds its events were received at.
func receivedAt(at []byte) (int64, error) {
	if len(at) == 0 {
		return 0, fmt.Errorf("a message of events without its time")
	}
	t, err := time.Parse(time.RFC3339Nano, string(at))
	if err != nil {
		return 0, fmt.Errorf("a message's time: %w", err)
	}
	return t.UnixMilli(), nil
}

// TickMessage is the events log message of a tick at now.
func TickMessage(now time.Time) (id string, data []byte) {
	id = "tick-" + strconv.FormatInt(now.UnixMilli(), 10)
	data = fmt.Appendf(nil, `{"id":%q,"kind":%q,"at":%q}`, id, Tick, now.UTC().Format(time.RFC3339Nano))
	return id, data
}

// ordersAs decodes a batch event's orders, each as the business event ev makes of it.
func ordersAs(raw []byte, ev func(*surge.Order) surge.BusinessEvent) ([]surge.BusinessEvent, error) {
	var orders []surge.Order
	if err := json.Unmarshal(raw, &orders); err != nil {
		return nil, err
	}
	out := make([]surge.BusinessEvent, len(orders))
	for i := range orders {
		out[i] = ev(&orders[i])
	}
	return out, nil
}

// ingestedBatch reads a message written by Ingester.message. It reports false for anything
// else, or for data it cannot read; the general reading then takes the message and says what is
// wrong.
func ingestedBatch(data []byte) ([]surge.BusinessEvent, bool) {
	_, at, events, ok := ingestedEnvelope(data)
	if !ok {
		return nil, false
	}
	received, err := receivedAt(at)
	if err != nil {
		return nil, false
	}
	evs, err := surge.UnmarshalBusinessEvents(events)
	for i := range evs {
		evs[i].Received = received
	}
	return evs, err == nil
}

// ingestedEnvelope splits a message written by Ingester.message,
// {"id":"…","kind":"events.ingested","at":"…","data":[…]}, with an id and a time of letters,
// digits and . : + -, into its id, its time and its events' JSON; false for any other message.
func ingestedEnvelope(data []byte) (id, at, events []byte, ok bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"id":"`))
	after, ok := plainField(rest, ok)
	id = rest[:len(rest)-len(after)]
	if ok {
		after, ok = bytes.CutPrefix(after, []byte(`","kind":"`+EventsIngested+`","at":"`))
	}
	rest = after
	if after, ok = plainField(after, ok); ok {
		at = rest[:len(rest)-len(after)]
		after, ok = bytes.CutPrefix(after, []byte(`","data":`))
	}
	if ok {
		after, ok = bytes.CutSuffix(after, []byte("}"))
	}
	if !ok {
		return nil, nil, nil, false
	}
	return id, at, after, true
}

// plainField skips the letters, digits and . : + - at the start of b, when ok.
func plainField(b []byte, ok bool) ([]byte, bool) {
	if !ok {
		return b, false
	}
	i := 0
	for i < len(b) && (b[i] >= '0' && b[i] <= '9' || b[i] >= 'a' && b[i] <= 'z' || b[i] >= 'A' && b[i] <= 'Z' ||
		b[i] == '.' || b[i] == ':' || b[i] == '+' || b[i] == '-') {
		i++
	}
	return b[i:], true
}

// paidEvent is the pay event of a paid order, at its payment's time: the same event, with the
// same id and time, however often the order's payment is sent.
// paidEvents decodes an orders.paid batch: a pay event per order, and a coupon_use event for
// each order that coupons took something off.
func paidEvents(raw []byte) ([]surge.BusinessEvent, error) {
	var orders []surge.Order
	if err := json.Unmarshal(raw, &orders); err != nil {
		return nil, err
	}
	out := make([]surge.BusinessEvent, 0, len(orders))
	for i := range orders {
		o := &orders[i]
		pay := paidEvent(o)
		out = append(out, pay)
		if p := o.Price; p != nil && p.CouponDiscount() > 0 && len(p.Coupons) > 0 {
			use := pay
			use.ID, use.Type, use.Units, use.Amount = surge.BizCouponUse+"-"+pay.Order, surge.BizCouponUse, int64(len(p.Coupons)), p.CouponDiscount()
			out = append(out, use)
		}
		// a checkout's activities (a flash-sale order's own price is the sale's, not a promotion's)
		if p := o.Price; p != nil && o.Checkout() && p.Discount-p.CouponDiscount() > 0 {
			use := pay
			use.ID, use.Type, use.Units, use.Amount = surge.BizPromoUse+"-"+pay.Order, surge.BizPromoUse, int64(len(p.Activities)), p.Discount-p.CouponDiscount()
			out = append(out, use)
		}
	}
	return out, nil
}

// riskEvents reads a gate's risk outcomes as risk_block, risk_challenge and risk_dry_run
// events of their session and second. An event's id is its gate's message's with its place in
// it: a copy of the message counts once.
func riskEvents(raw []byte, msgID string) ([]surge.BusinessEvent, error) {
	var list []surge.RiskOutcome
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	out := make([]surge.BusinessEvent, 0, len(list))
	for i, o := range list {
		typ := ""
		switch o.Action {
		case surge.ActionBlock:
			typ = surge.BizRiskBlock
		case surge.ActionChallenge:
			typ = surge.BizRiskChallenge
		case surge.ModeDryRun:
			typ = surge.BizRiskDryRun
		}
		if typ == "" || o.Count <= 0 || o.Session <= 0 {
			continue
		}
		out = append(out, surge.BusinessEvent{ID: msgID + "." + strconv.Itoa(i), Type: typ, Time: o.Second * 1000, Platform: "surge",
			Session: strconv.FormatInt(o.Session, 10), Units: min(o.Count, surge.MaxBizUnits)})
	}
	return out, nil
}

func paidEvent(o *surge.Order) surge.BusinessEvent {
	at := o.CreatedAt
	if o.PaidAt != nil {
		at = *o.PaidAt
	}
	return fromOrder(o, surge.BizPay, at)
}

// fromOrder is the business event of one of Surge's own orders.
func fromOrder(o *surge.Order, typ string, at time.Time) surge.BusinessEvent {
	id := strconv.FormatInt(o.ID, 10)
	return surge.BusinessEvent{ID: typ + "-" + id, Type: typ, Time: at.UnixMilli(), Platform: "surge",
		User: strconv.FormatInt(o.UserID, 10), Shop: strconv.FormatInt(o.MerchantID, 10), SKU: strconv.FormatInt(o.SKUID, 10),
		Session: strconv.FormatInt(o.SessionID, 10), Order: id, Units: o.Quantity, Amount: o.Amount.Amount}
}

// PipelineName names the live pipeline's checkpoint. Its version changes whenever the
// pipeline's operators or the encoding of their state do: a checkpoint of another version
// cannot be read back, and the new version starts from the oldest event the log holds (an hour),
// publishing totals recomputed from it.
const PipelineName = "live-metrics-v10"

// checkpointInterval is how often the live pipeline checkpoints: what a restart replays. A
// checkpoint encodes the whole state on the pipeline's goroutine (the dedup window's ids are
// most of it), so it is taken seldom enough not to hold up the counting.
const checkpointInterval = 10 * time.Second

// Runner keeps the live pipeline running on the events log, restarting it from its last
// checkpoint after a failure. Run it on one node: the published values serve every node.
type Runner struct {
	Log         stream.Log
	Checkpoints stream.Checkpoints
	Publisher   Publisher
	Subject     func(key string) string // where a series' snapshot is published
	// Local, if set, takes each round of snapshots as it is published (Sink.Mirror): this
	// node's board (Board.Feed).
	Local func([]Published)
	// Handoff, if set, carries the batches this node ingests over to the pipeline, read.
	Handoff *Handoff
	// Ticks, if set, writes the time to the events log every TickEvery (TickMessage), for as
	// long as Run runs.
	Ticks    Publisher
	Metrics  *stream.Metrics
	Counters *Counters
	Logger   *slog.Logger
}

// Run computes the live metrics until ctx ends.
func (r Runner) Run(ctx context.Context) {
	if r.Ticks != nil {
		var wg sync.WaitGroup
		wg.Go(func() { r.tick(ctx) })
		defer wg.Wait()
	}
	// A checkpoint that cannot be read back would stop every restart, and the dashboards with
	// them: the pipeline starts afresh from the log instead (its last hour), and says so.
	stream.Keep(ctx, "live metrics pipeline", r.Logger, r.runOnce)
}

// tick writes the time to the events log every TickEvery until ctx ends. A tick the log does not
// take is said, once until one is taken again: the next tick makes up for it.
func (r Runner) tick(ctx context.Context) {
	t := time.NewTicker(TickEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			id, data := TickMessage(time.Now()) // the time it is written: a tick that waited for a slow flush is not stale
			err := r.Ticks.PublishAsync(TickSubject, id, data)
			if err == nil {
				fctx, cancel := context.WithTimeout(ctx, TickEvery)
				err = r.Ticks.Flush(fctx)
				cancel()
			}
			if err != nil && !failing && ctx.Err() == nil {
				r.Logger.Warn("live metrics: the events log did not take the time; viewers time out only as events arrive until it does", "err", err)
			}
			failing = err != nil
		}
	}
}

func (r Runner) runOnce(ctx context.Context, fresh bool) error {
	p, src := stream.New(PipelineName, stream.Config{OutOfOrderness: OutOfOrderness, Metrics: r.Metrics, CheckpointInterval: checkpointInterval},
		PipelineTime)
	stream.To(Build(src, r.Counters), stream.Sink[Contribution](NewSink(r.Publisher, r.Subject).Mirror(r.Local)))
	decode := DecodeBusEvents
	if r.Handoff != nil {
		decode = r.Handoff.Decode
	}
	return p.RunLog(ctx, stream.LogRun[surge.BusinessEvent]{Log: r.Log, DecodeAll: decode, Checkpoints: r.Checkpoints, Fresh: fresh,
		TimeOnly: func(e surge.BusinessEvent) bool { return e.Type == tickType },
		Invalid: func(seq uint64, _ []byte, err error) {
			r.Logger.Warn("events log record skipped: not readable", "seq", seq, "err", err)
		},
		// Dashboards go on rather than stop, but the events lost are said loudly.
		OnGap: func(err error) bool {
			r.Logger.Error("live metrics miss events: the log dropped them before the pipeline read them", "err", err)
			return true
		}})
}
