package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/stream"
)

// Events makes a seeded mix of every type over a few platforms, rooms, shops and SKUs, with
// copies of some events and arrival out of order within a second.
func events(seed uint64, n int) []surge.BusinessEvent {
	r := rand.New(rand.NewPCG(seed, 0))
	types := surge.BizTypes()
	var out []surge.BusinessEvent
	base := int64(1_790_000_000_000)
	for i := range n {
		e := surge.BusinessEvent{ID: fmt.Sprint("e", i), Type: types[r.IntN(len(types))], Time: base + int64(i)*7,
			Platform: []string{"ios", "android", "web"}[r.IntN(3)], User: fmt.Sprint("u", r.IntN(50)),
			Room: fmt.Sprint("r", r.IntN(3)), Shop: fmt.Sprint(1 + r.IntN(4)), SKU: fmt.Sprint("s", r.IntN(20)),
			Session: "7", Order: fmt.Sprint("o", i), Units: 1 + r.Int64N(3), Amount: 1 + r.Int64N(10_000), Status: "shipped"}
		if e.Type == surge.BizLiveEnter || e.Type == surge.BizLiveLeave || e.Type == surge.BizLiveHeartbeat {
			e.Type = surge.BizLike // viewers are checked end to end, where the stream does not end
		}
		if err := e.Validate(); err != nil {
			panic(err)
		}
		e.Received = e.Time // received as it happened; a copy with it
		out = append(out, e)
		if r.IntN(10) == 0 {
			out = append(out, e) // a copy: counted once
		}
	}
	for i := 0; i+1 < len(out); i += 2 { // out of order
		if r.IntN(2) == 0 {
			out[i], out[i+1] = out[i+1], out[i]
		}
	}
	return out
}

// A copy is dropped while its id is remembered, whatever its event time: for a minute of the
// time Surge receives events after the tenth of a second the first copy was received in, once
// the watermark (5 s behind) has passed it. Then a copy counts again, and is remembered anew.
func TestDedupWindow(t *testing.T) {
	base := int64(1_790_000_000_050)
	var evs []surge.BusinessEvent
	click := func(at, received int64) {
		evs = append(evs, surge.BusinessEvent{ID: "a", Type: surge.BizClick, Time: at, Received: received, Platform: "ios", SKU: "s1", User: "u1"})
	}
	click(base, base)
	for s := int64(1); s <= 90; s++ {
		evs = append(evs, surge.BusinessEvent{ID: fmt.Sprint("like", s), Type: surge.BizLike, Time: base + s*1000, Received: base + s*1000,
			Platform: "ios", Room: "r1", User: "u2"})
		switch s {
		case 10:
			click(base-30_000, base+s*1000) // the same id, another time, in a later batch: a copy
		case 50:
			click(base+7_000, base+s*1000) // and another
		case 64:
			click(base, base+s*1000) // within the minute and the watermark's 5 s: still a copy
		case 70:
			click(base, base+s*1000) // the watermark passed a minute after the first: counted again
		case 80:
			click(base+1, base+s*1000) // a copy of that one
		}
	}
	sink, counters := countAll(t, evs)
	if got, dup := sink.Total("clicks"), counters.Duplicates.Load(); got != 2 || dup != 4 {
		t.Errorf("clicks = %d with %d copies dropped; want 2 and 4 (the copies within the minute dropped whatever their time, the one after it counted)", got, dup)
	}
}

// countAll runs the live pipeline over evs to their end, returning its sink and counters.
func countAll(t *testing.T, evs []surge.BusinessEvent) (*live.Sink, *live.Counters) {
	t.Helper()
	p, src := stream.New("live", stream.Config{OutOfOrderness: live.OutOfOrderness}, live.PipelineTime)
	counters := &live.Counters{}
	sink := live.NewSink(publisherFunc(func(string, []byte) {}), func(key string) string { return key })
	stream.To(live.Build(src, counters), stream.Sink[live.Contribution](sink))
	if err := p.RunSlice(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return sink, counters
}

// batch computes the expected totals of some series straight from the unique events.
func batch(evs []surge.BusinessEvent) map[string]int64 {
	seen := map[string]bool{}
	want := map[string]int64{}
	payers := map[string]map[string]bool{}
	for _, e := range evs {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		for _, scope := range []string{"", ".room=" + e.Room, ".shop=" + e.Shop, ".sku=" + e.SKU, ".platform=" + e.Platform, ".session=" + e.Session} {
			switch e.Type {
			case surge.BizPay:
				want["gmv"+scope] += e.Amount
				want["payments"+scope]++
				want["units_sold"+scope] += e.Units
				if payers[scope] == nil {
					payers[scope] = map[string]bool{}
				}
				payers[scope][e.User] = true
			case surge.BizRefund:
				want["gmv"+scope] -= e.Amount
				want["refunds"+scope] += e.Amount
			case surge.BizOrder:
				want["orders"+scope]++
			case surge.BizClick:
				want["clicks"+scope]++
			case surge.BizLike:
				if scope == "" || scope[:5] == ".room" || scope[:5] == ".plat" {
					want["likes"+scope]++
				}
			}
		}
		if e.Type == surge.BizPay {
			want["units_sold.room="+e.Room+".sku="+e.SKU] += e.Units
		}
	}
	for scope, users := range payers {
		want["paying_users"+scope] = int64(len(users))
	}
	return want
}

func TestPipelineMatchesBatch(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	evs := events(seed, 20_000)
	sink, counters := countAll(t, evs)
	want := batch(evs)
	for k, w := range want {
		if got := sink.Total(k); got != w {
			t.Errorf("%s = %d; the batch computation has %d", k, got, w)
		}
	}
	if len(want) < 100 {
		t.Errorf("only %d series checked", len(want))
	}
	if counters.Duplicates.Load() == 0 {
		t.Error("no copies were dropped")
	}
}

func TestSnapshotSeries(t *testing.T) {
	p, src := stream.New("snap", stream.Config{}, func(e surge.BusinessEvent) int64 { return e.Time })
	board := live.NewBoard()
	sink := live.NewSink(publisherFunc(board.Apply), func(key string) string { return key })
	stream.To(live.Build(src, &live.Counters{}), stream.Sink[live.Contribution](sink))
	base := int64(1_790_000_000_000)
	pay := func(id string, at, amount int64) surge.BusinessEvent {
		return surge.BusinessEvent{ID: id, Type: surge.BizPay, Time: at, Platform: "web", User: "u1", Shop: "1", SKU: "s", Order: id, Units: 1, Amount: amount}
	}
	if err := p.RunSlice(context.Background(), []surge.BusinessEvent{pay("a", base, 100), pay("b", base+1500, 50), pay("c", base+1600, 25), pay("d", base+3000, 5)}); err != nil {
		t.Fatal(err)
	}
	last := board.Get("gmv")
	if last.Value != 180 || len(last.Series) != live.SeriesSeconds {
		t.Fatalf("gmv = %d with %d seconds; want 180 with %d", last.Value, len(last.Series), live.SeriesSeconds)
	}
	tail := last.Series[len(last.Series)-4:]
	want := []int64{100, 75, 0, 5}
	for i, p := range tail {
		if p.Value != want[i] || p.Second != base/1000+int64(i) {
			t.Errorf("second %d = %+v; want %d at %d", i, p, want[i], base/1000+int64(i))
		}
	}
}

// A mirrored sink hands over each snapshot it publishes, as published: a board fed from it
// holds what a board fed from the bucket would.
func TestSinkMirrorsWhatItPublishes(t *testing.T) {
	published, mirrored := map[string][]byte{}, map[string][]byte{}
	p, src := stream.New("mirror", stream.Config{OutOfOrderness: live.OutOfOrderness}, func(e surge.BusinessEvent) int64 { return e.Time })
	sink := live.NewSink(publisherFunc(func(subject string, data []byte) { published[subject] = bytes.Clone(data) }), func(key string) string { return "values." + key }).
		Mirror(func(round []live.Published) {
			for _, v := range round {
				mirrored["values."+v.Key] = bytes.Clone(v.Value)
			}
		})
	stream.To(live.Build(src, &live.Counters{}), stream.Sink[live.Contribution](sink))
	if err := p.RunSlice(context.Background(), events(1, 2000)); err != nil {
		t.Fatal(err)
	}
	if len(published) < 50 || !maps.EqualFunc(published, mirrored, bytes.Equal) {
		t.Errorf("%d series published, %d mirrored; want the same values, and many", len(published), len(mirrored))
	}
}

// A fed board applies the rounds in the order they came, off the caller's goroutine; once its
// context ends, feeding it no longer waits.
func TestBoardFeedAppliesRoundsInOrder(t *testing.T) {
	base := int64(1_790_000_000_000)
	round := func(evs ...surge.BusinessEvent) []live.Published { // what a sink publishes for them
		var out []live.Published
		p, src := stream.New("feed", stream.Config{}, func(e surge.BusinessEvent) int64 { return e.Time })
		sink := live.NewSink(publisherFunc(func(subject string, data []byte) {
			out = append(out, live.Published{Key: subject, Value: bytes.Clone(data)})
		}),
			func(key string) string { return key })
		stream.To(live.Build(src, &live.Counters{}), stream.Sink[live.Contribution](sink))
		if err := p.RunSlice(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		return out
	}
	pay := func(id string, amount int64) surge.BusinessEvent {
		return surge.BusinessEvent{ID: id, Type: surge.BizPay, Time: base, Platform: "web", User: "u1", Shop: "1", SKU: "s", Order: id, Units: 1, Amount: amount}
	}
	first, second := round(pay("a", 100)), round(pay("a", 100), pay("b", 50))
	last := round(surge.BusinessEvent{ID: "s", Type: surge.BizShare, Time: base, Room: "end", User: "u1"})
	ctx, cancel := context.WithCancel(context.Background())
	board := live.NewBoard()
	feed := board.Feed(ctx)
	feed(first)
	feed(second)
	feed(last)
	deadline := time.Now().Add(10 * time.Second)
	for board.Value("shares.room=end") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the last round fed was never applied")
		}
		time.Sleep(time.Millisecond)
	}
	if got := board.Value("gmv"); got != 150 {
		t.Errorf("gmv after two rounds = %d; want 150, the later round's", got)
	}
	cancel()
	for range 100 { // far more than the queue holds: none of these may wait
		feed(first)
	}
}

type publisherFunc func(subject string, data []byte)

func (f publisherFunc) PublishAsync(subject, _ string, data []byte) error {
	f(subject, data)
	return nil
}
func (publisherFunc) Flush(context.Context) error { return nil }

func TestDecodeEventRules(t *testing.T) {
	shopper := surge.Actor{UserID: 42, Role: surge.RoleShopper}
	merchant := surge.Actor{UserID: 7, Role: surge.RoleMerchant}
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	const ts = `"time":1790000000000`
	for _, tc := range []struct {
		name string
		line string
		as   surge.Actor
		code string
	}{
		{"click from an app", `{"id":"a","type":"click","sku":"s1",` + ts + `}`, shopper, ""},
		{"pay from an app", `{"id":"a","type":"pay","order":"o","sku":"s","shop":"7","user":"42","units":1,"amount":5,` + ts + `}`, shopper, surge.EFORBIDDEN},
		{"another user's click", `{"id":"a","type":"click","sku":"s1","user":"43",` + ts + `}`, shopper, surge.EFORBIDDEN},
		{"merchant's own shop", `{"id":"a","type":"refund","order":"o","shop":"7","amount":5,` + ts + `}`, merchant, ""},
		{"merchant, other shop", `{"id":"a","type":"refund","order":"o","shop":"8","amount":5,` + ts + `}`, merchant, surge.EFORBIDDEN},
		{"unknown type", `{"id":"a","type":"teleport",` + ts + `}`, staff, surge.EINVALID},
		{"unknown field", `{"id":"a","type":"click","sku":"s","colour":"red",` + ts + `}`, staff, surge.EINVALID},
		{"seconds, not milliseconds", `{"id":"a","type":"click","sku":"s","time":1790000000}`, staff, surge.EINVALID},
		{"far in the future", `{"id":"a","type":"click","sku":"s","time":1790001000000}`, staff, surge.ECLOCK},
		{"11 s ahead", `{"id":"a","type":"click","sku":"s","time":1790000011000}`, staff, surge.ECLOCK},
		{"10 s ahead", `{"id":"a","type":"click","sku":"s","time":1790000010000}`, staff, ""},
		{"a day old", `{"id":"a","type":"click","sku":"s","time":1789913600000}`, staff, ""},
		{"a day and a millisecond old", `{"id":"a","type":"click","sku":"s","time":1789913599999}`, staff, surge.ECLOCK},
		{"a pay without amount", `{"id":"a","type":"pay","order":"o","sku":"s","shop":"7","user":"42","units":1,` + ts + `}`, staff, surge.EINVALID},
		{"a pay of nothing", `{"id":"a","type":"pay","order":"o","sku":"s","shop":"7","user":"42","units":1,"amount":0,` + ts + `}`, staff, surge.EINVALID},
		{"an order without amount", `{"id":"a","type":"order","order":"o","sku":"s","shop":"7","user":"42","units":1,` + ts + `}`, staff, surge.EINVALID},
		{"a refund without amount", `{"id":"a","type":"refund","order":"o","shop":"7",` + ts + `}`, staff, surge.EINVALID},
		{"a session from a merchant", `{"id":"a","type":"refund","order":"o","shop":"7","session":"5","amount":5,` + ts + `}`, merchant, surge.EFORBIDDEN},
		{"a like from an app, user filled in", `{"id":"a","type":"like","room":"r1",` + ts + `}`, shopper, ""},
		{"missing sku", `{"id":"a","type":"click",` + ts + `}`, staff, surge.EINVALID},
		{"negative amount", `{"id":"a","type":"refund","order":"o","shop":"7","amount":-5,` + ts + `}`, staff, surge.EINVALID},
		{"room with a dot", `{"id":"a","type":"like","room":"r.1","user":"u",` + ts + `}`, staff, surge.EINVALID},
		{"two events on a line", `{"id":"a","type":"click","sku":"s",` + ts + `} {}`, staff, surge.EINVALID},
		{"not json", `click s1`, staff, surge.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := live.DecodeEvent([]byte(tc.line), tc.as, time.UnixMilli(1790000000000))
			if code := surge.ErrorCode(err); code != tc.code && !(tc.code == "" && err == nil) {
				t.Errorf("DecodeEvent(%s) = %v; want code %q", tc.line, err, tc.code)
			}
			if strings.Contains(tc.name, "amount") && !strings.Contains(surge.ErrorMessage(err), "needs amount") {
				t.Errorf("DecodeEvent(%s) = %v; want the message to name the amount", tc.line, err)
			}
			if err == nil && e.Received != 1790000000000 {
				t.Errorf("an event decoded at 1790000000000 was received at %d", e.Received)
			}
			if err == nil && tc.as.Role == surge.RoleShopper && e.User != strconv.FormatInt(tc.as.UserID, 10) {
				t.Errorf("an app's event kept user %q; want its own user", e.User)
			}
			if err == nil && !tc.as.Role.Staff() && e.ID == "a" {
				t.Errorf("a %s's event id %q is not in its namespace", tc.as.Role, e.ID)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"id":"a","type":"pay","order":"o","sku":"s","shop":"7","user":"42","units":1,"amount":5,"time":1790000000000}`))
	f.Add([]byte(`{"id":"a","type":"live_enter","room":"r1","user":"u","time":1790000000000}`))
	f.Add([]byte(`{"id":"\u0000","type":"click"}`))
	f.Add([]byte(`[]`))
	f.Add(fmt.Appendf(nil, `{"id":"now","type":"like","room":"r1","user":"u","time":%d}`, time.Now().UnixMilli()))
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	var logged [][]byte // what ingestion appends to the events log
	in := live.NewIngester(func() live.Publisher {
		return publisherFunc(func(subject string, data []byte) {
			if subject == live.IngestSubject {
				logged = append(logged, data)
			}
		})
	}, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := live.DecodeEvent(line, staff, time.UnixMilli(1790000000000))
		if err != nil {
			if code := surge.ErrorCode(err); code != surge.EINVALID && code != surge.ECLOCK {
				t.Fatalf("DecodeEvent(%q) = %v; want EINVALID or ECLOCK", line, err)
			}
			return
		}
		// An accepted event makes valid series keys and survives the trip through the log.
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted %q, which then fails validation: %v", line, err)
		}
		for _, v := range []string{e.Platform, e.Room, e.Shop, e.SKU, e.Session} {
			if v != "" {
				if _, ok := live.ParseKey("gmv.room=" + v); !ok {
					t.Fatalf("accepted dimension %q makes an unreadable series key", v)
				}
			}
		}
		before := time.Now()
		if e.Time > before.Add(live.MaxClockAhead-time.Second).UnixMilli() || e.Time < before.Add(-live.MaxEventAge+time.Minute).UnixMilli() ||
			bytes.ContainsAny(line, "\n\r") {
			return // ingestion judges the time by the clock, and reads a body line by line
		}
		logged = logged[:0]
		if res, err := in.Ingest(context.Background(), staff, "fuzz", bytes.NewReader(line), false); err != nil || res.Accepted != 1 || len(logged) != 1 {
			t.Fatalf("ingesting %q = %+v, %v, %d log records; want it appended once", line, res, err, len(logged))
		}
		after := time.Now()
		back, err := live.DecodeBusEvents(logged[0])
		if len(back) == 1 && (back[0].Received < before.UnixMilli() || back[0].Received > after.UnixMilli()) {
			t.Fatalf("%q came back from the log received at %d, not while it was ingested (%d to %d)", line, back[0].Received, before.UnixMilli(), after.UnixMilli())
		}
		if len(back) == 1 {
			e.Received = back[0].Received
		}
		if err != nil || len(back) != 1 || back[0] != e {
			t.Fatalf("%q came back from the log as %+v (%v); want %+v", line, back, err, e)
		}
	})
}

// FuzzDecodeBusEvents: a message of the events log is read in one pass; whatever the plain
// reading (the envelope, then its data) accepts, it accepts and reads the same, and nothing
// makes it panic.
func FuzzDecodeBusEvents(f *testing.F) {
	at := time.UnixMilli(1_790_000_000_000).UTC()
	batch, _ := jsonv2.Marshal(events(3, 5))
	for _, e := range []surge.Event{{ID: "a", Kind: live.EventsIngested, At: at, Data: jsontext.Value(batch)},
		{ID: "b", Kind: surge.EventOrdersCreated, At: at, Data: []surge.Order{{ID: 7, UserID: 3, SKUID: 2, Quantity: 1, CreatedAt: at}}},
		{ID: "c", Kind: surge.EventOrderPaid, At: at, Data: surge.Order{ID: 7, UserID: 3, PaidAt: &at}},
		{ID: "e", Kind: surge.EventOrdersPaid, At: at, Data: []surge.Order{{ID: 7, UserID: 3, PaidAt: &at}, {ID: 8, UserID: 4, CreatedAt: at}}},
		{ID: "f", Kind: surge.EventOrdersPaid, At: at, Data: []surge.Order{{ID: 9, UserID: 3, PaidAt: &at, Price: &surge.PriceBreakdown{
			Currency: "CNY", List: 100, Discount: 30, Payable: 70, Coupons: []surge.CouponTaken{{Coupon: 5, Amount: 30}}}}}},
		{ID: "d", Kind: "stock.changed", At: at, Data: map[string]int{"left": 3}}} {
		msg, err := jsonv2.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	f.Add([]byte(`{"data":[{"id":"x","type":"click","time":1}],"kind":"events.ingested"}`)) // data first
	f.Add([]byte(`{"kind":"events.ingested"}`))
	f.Add([]byte(`{"data":[{"id":"x","type":"click","time":1}],"at":"2026-12-07T10:00:00.123456789Z","kind":"events.ingested"}`))
	f.Add([]byte(`{"data":[],"at":"2026-12-07T10:00:00+01:00","kind":"orders.paid"}`))
	f.Add([]byte(`{"id":"tick-1","kind":"live.tick","at":"2026-12-07T10:00:00.5Z"}`))
	f.Add([]byte(`{"id":"tick-1","kind":"live.tick","at":"yesterday"}`))
	f.Add([]byte(`{"id":"tick-1","kind":"live.tick"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"kind":"events.ingested","data":[]} {}`))
	f.Add([]byte(`{"kind":"events.ingested","kind":"orders.created","data":[]}`))
	f.Add([]byte(`{"id":"a","kind":"events.ingested","at":"x","data":[]},"y":1}`)) // as ingestion writes it, then more
	f.Add([]byte(`{"id":"a","kind":"events.ingested","at":"x","data":[],"y":1}`))
	f.Add([]byte(`{"id":"a","kind":"events.ingested","at":"x","data":[{"id":"x","id":"y"}]}`))
	f.Add([]byte(`{"id":"a","kind":"events.ingested","at":"x","data":[{"id":"x\u0041","time":1.5}] }`))
	f.Add([]byte(`{"kind":"events.ingested","id":5,"data":[{"id":"x"}]}`)) // an id the pipeline does not read
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, err := live.DecodeBusEvents(msg)
		want, orders, wantErr := decodeInTwoPasses(msg)
		if wantErr != nil {
			if err == nil && len(got) > 0 {
				t.Fatalf("DecodeBusEvents(%q) = %v; the envelope then its data give %v", msg, got, wantErr)
			}
			return
		}
		same := err == nil && len(got) == len(want)
		for i := 0; same && i < len(got); i++ {
			if orders { // its event's fields are fromOrder's; the order id must match
				same = got[i].Order == want[i].Order && got[i].Received == want[i].Received
			} else {
				same = got[i] == want[i]
			}
		}
		if !same {
			t.Fatalf("DecodeBusEvents(%q) = %v, %v; the envelope then its data give %v", msg, got, err, want)
		}
	})
}

// decodeInTwoPasses reads a bus message the plain way: the envelope, then its data. Like the
// pipeline, it reads only the kind and the data. orders says the events stand for Surge's own
// orders, and hold only their ids.
func decodeInTwoPasses(msg []byte) (evs []surge.BusinessEvent, orders bool, err error) {
	var env struct {
		Kind string         `json:"kind"`
		At   string         `json:"at"`
		Data jsontext.Value `json:"data"`
	}
	if err := jsonv2.Unmarshal(msg, &env); err != nil {
		return nil, false, err
	}
	var received int64
	switch env.Kind {
	case live.EventsIngested, live.Tick, surge.EventOrdersCreated, surge.EventOrdersPaid, surge.EventOrderPaid:
		at, err := time.Parse(time.RFC3339Nano, env.At) // every message of events is received at its time
		if err != nil {
			return nil, false, err
		}
		received = at.UnixMilli()
	}
	switch env.Kind {
	case live.Tick: // a record of the time alone
		return []surge.BusinessEvent{{Type: "tick", Received: received}}, false, nil
	case live.EventsIngested:
		err := jsonv2.Unmarshal(env.Data, &evs)
		for i := range evs {
			evs[i].Received = received
		}
		return evs, false, err
	case surge.EventOrdersCreated, surge.EventOrdersPaid, surge.EventOrderPaid:
		var list []surge.Order
		if env.Kind == surge.EventOrderPaid {
			var o surge.Order
			if err := json.Unmarshal(env.Data, &o); err != nil {
				return nil, true, err
			}
			list = append(list, o)
		} else if err := json.Unmarshal(env.Data, &list); err != nil {
			return nil, true, err
		}
		// The events' other fields are DecodeBusEvents' business (fromOrder): an order is
		// compared by its id. A paid order that coupons took something off has a second event.
		var out []surge.BusinessEvent
		for i := range list {
			e := surge.BusinessEvent{Order: strconv.FormatInt(list[i].ID, 10), Received: received}
			out = append(out, e)
			if p := list[i].Price; env.Kind == surge.EventOrdersPaid && p != nil && p.Discount > 0 && len(p.Coupons) > 0 {
				out = append(out, e)
			}
		}
		return out, true, nil
	}
	return nil, false, nil
}

// The sink's totals survive a checkpoint: encoded, decoded, the same snapshots.
func TestSinkStateRoundTrip(t *testing.T) {
	board := live.NewBoard()
	sink := live.NewSink(publisherFunc(board.Apply), func(key string) string { return key })
	for i, c := range []live.Contribution{{Key: "gmv", Delta: 100, Sec: 1_790_000_000}, {Key: "gmv", Delta: -5, Sec: 1_790_000_003},
		{Key: "likes.room=r1", Delta: 1, Sec: 1_790_000_001}} {
		if err := sink.Write(uint64(i+1), 0, c); err != nil {
			t.Fatal(err)
		}
	}
	data, err := sink.SnapshotState()
	if err != nil {
		t.Fatal(err)
	}
	again := live.NewSink(publisherFunc(func(string, []byte) {}), func(key string) string { return key })
	if err := again.RestoreState(data); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"gmv", "likes.room=r1"} {
		if again.Total(k) != sink.Total(k) || again.Total(k) == 0 {
			t.Errorf("%s after restore = %d; want %d", k, again.Total(k), sink.Total(k))
		}
	}
	if err := again.RestoreState([]byte("not gob")); err == nil {
		t.Error("a corrupt state was restored")
	}
	// Restored in place (a pipeline restarting from its checkpoint), a sink counts on the series
	// it restored, not on the ones it held before, even for the very same key strings.
	gmv := sink.Total("gmv")
	if err := sink.Write(4, 0, live.Contribution{Key: "gmv", Delta: 7, Sec: 1_790_000_004}); err != nil {
		t.Fatal(err)
	}
	if err := sink.RestoreState(data); err != nil {
		t.Fatal(err)
	}
	if err := sink.Write(5, 0, live.Contribution{Key: "gmv", Delta: 1, Sec: 1_790_000_005}); err != nil {
		t.Fatal(err)
	}
	if got := sink.Total("gmv"); got != gmv+1 {
		t.Errorf("gmv after a restore in place and one more = %d; want %d", got, gmv+1)
	}
}

// An app past its quota of events a minute is told to come back later; staff have no quota.
func TestIngestQuota(t *testing.T) {
	in := live.NewIngester(func() live.Publisher { return publisherFunc(func(string, []byte) {}) }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	now := time.Now().UnixMilli()
	batch := func(from, n int) *bytes.Reader {
		var b bytes.Buffer
		for i := range n {
			fmt.Fprintf(&b, `{"id":"q%d","type":"click","sku":"s","time":%d}`+"\n", from+i, now)
		}
		return bytes.NewReader(b.Bytes())
	}
	app := surge.Actor{UserID: 42, Role: surge.RoleShopper}
	if _, err := in.Ingest(context.Background(), app, "r1", batch(0, live.MaxAppEventsPerMinute), false); err != nil {
		t.Fatalf("a batch within the quota: %v", err)
	}
	if _, err := in.Ingest(context.Background(), app, "r2", batch(live.MaxAppEventsPerMinute, 1), false); surge.ErrorCode(err) != surge.ERATELIMIT {
		t.Fatalf("one event past the quota = %v; want ERATELIMIT", err)
	}
	// A batch refused for the quota leaves nothing behind, not even its bad lines' dead letters:
	// the app sends it again later, whole.
	past := false
	in = live.NewIngester(func() live.Publisher {
		return publisherFunc(func(subject string, _ []byte) {
			if past {
				t.Errorf("a batch past the quota published to %s", subject)
			}
		})
	}, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	if _, err := in.Ingest(context.Background(), app, "r0", batch(0, live.MaxAppEventsPerMinute), false); err != nil {
		t.Fatal(err)
	}
	past = true
	bad := io.MultiReader(batch(live.MaxAppEventsPerMinute, 1), strings.NewReader("not json\n"))
	if _, err := in.Ingest(context.Background(), app, "r2", bad, false); surge.ErrorCode(err) != surge.ERATELIMIT {
		t.Fatalf("one event and a bad line past the quota = %v; want ERATELIMIT", err)
	}
	past = false
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	if _, err := in.Ingest(context.Background(), staff, "r3", batch(0, live.MaxAppEventsPerMinute+1), false); err != nil {
		t.Fatalf("staff past an app's quota: %v", err)
	}
}

func TestScreenTickets(t *testing.T) {
	now := time.Unix(1_790_000_000, 0)
	clock := func() time.Time { return now }
	tk := live.NewTickets([]byte("0123456789abcdef0123456789abcdef"), clock)
	staff := surge.Actor{UserID: 3, Role: surge.RoleOperator}
	issued, err := tk.Issue(staff, "hall1")
	if err != nil {
		t.Fatal(err)
	}
	a, room, err := tk.Check(issued.Ticket)
	if err != nil || a != staff || room != "hall1" {
		t.Fatalf("Check(issued) = %+v, %q, %v; want %+v for hall1", a, room, err, staff)
	}
	if _, err := tk.Issue(surge.Actor{UserID: 4, Role: surge.RoleShopper}, "hall1"); surge.ErrorCode(err) != surge.EFORBIDDEN {
		t.Errorf("a shopper's ticket: %v; want EFORBIDDEN", err)
	}
	other := live.NewTickets([]byte("another key, another deployment.."), clock)
	tampered := []byte(issued.Ticket)
	tampered[3] ^= 1
	for name, bad := range map[string]string{"tampered": string(tampered), "another key": func() string {
		t2, _ := other.Issue(staff, "hall1")
		return t2.Ticket
	}(), "empty": "", "no signature": "abc"} {
		if _, _, err := tk.Check(bad); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
			t.Errorf("Check(%s) = %v; want EUNAUTHORIZED", name, err)
		}
	}
	now = now.Add(live.TicketTTL + time.Second)
	if _, _, err := tk.Check(issued.Ticket); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
		t.Errorf("Check(expired) = %v; want EUNAUTHORIZED", err)
	}
}

func FuzzTicketCheck(f *testing.F) {
	tk := live.NewTickets([]byte("0123456789abcdef0123456789abcdef"), func() time.Time { return time.Unix(1_790_000_000, 0) })
	good, _ := tk.Issue(surge.Actor{UserID: 3, Role: surge.RoleAdmin}, "r1")
	f.Add(good.Ticket)
	f.Add("djEuMy5hZG1pbi5yMS4x.AAAA")
	f.Add("..")
	f.Fuzz(func(t *testing.T, ticket string) {
		a, room, err := tk.Check(ticket)
		if err != nil {
			if surge.ErrorCode(err) != surge.EUNAUTHORIZED {
				t.Fatalf("Check(%q) = %v; want EUNAUTHORIZED", ticket, err)
			}
			return
		}
		if ticket != good.Ticket { // only a ticket signed with the key passes
			t.Fatalf("Check(%q) accepted %+v for %q", ticket, a, room)
		}
	})
}

// BenchmarkPipeline measures the live metrics' computation alone: events in memory, through
// dedup, the contributions and the sink's totals (publishing to nowhere).
func BenchmarkPipeline(b *testing.B) { benchmarkPipeline(b, events(1, 200_000)) }

func benchmarkPipeline(b *testing.B, evs []surge.BusinessEvent) {
	for b.Loop() {
		p, src := stream.New("bench", stream.Config{OutOfOrderness: live.OutOfOrderness}, live.PipelineTime)
		sink := live.NewSink(publisherFunc(func(string, []byte) {}), func(key string) string { return key })
		stream.To(live.Build(src, &live.Counters{}), stream.Sink[live.Contribution](sink))
		if err := p.RunSlice(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(evs)*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPipelineAtVolume is BenchmarkPipeline at a big sale's density: 300 events to the
// millisecond of event time (300,000 a second, so each second's ids and each series' seconds
// are as many as a node counting that rate holds), over 50 rooms, 1,000 items and 100,000
// users, in the mix surge bench live posts.
func BenchmarkPipelineAtVolume(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	base := int64(1_790_000_000_000)
	evs := make([]surge.BusinessEvent, 1_500_000)
	for i := range evs {
		room, sku := r.IntN(50), r.IntN(1000)
		e := surge.BusinessEvent{ID: "b" + strconv.Itoa(i), Time: base + int64(i)/300, Received: base + int64(i)/300, Platform: "ios",
			Room: "r" + strconv.Itoa(room), SKU: "s" + strconv.Itoa(sku), User: "u" + strconv.Itoa(r.IntN(100_000))}
		switch k := r.IntN(100); {
		case k < 40:
			e.Type = surge.BizExposure
		case k < 60:
			e.Type = surge.BizClick
		case k < 85:
			e.Type, e.SKU = surge.BizLike, ""
		default:
			e.Type, e.Shop, e.Order, e.Units, e.Amount = surge.BizOrder, strconv.Itoa(sku%20+1), "o"+strconv.Itoa(i), 1, 9900
			if k >= 92 {
				e.Type = surge.BizPay
			}
		}
		evs[i] = e
	}
	benchmarkPipeline(b, evs)
}

// A batch past the bounds, or a body that is not what it says, is refused whole with a clear
// code; nothing of it reaches the log.
func TestIngestRefusesBadBodies(t *testing.T) {
	published := 0
	in := live.NewIngester(func() live.Publisher { return publisherFunc(func(string, []byte) { published++ }) }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	line := fmt.Sprintf(`{"id":"x","type":"click","sku":"s","time":%d}`+"\n", time.Now().UnixMilli())
	for _, c := range []struct {
		name string
		body []byte
		gzip bool
		code string
	}{
		{"too many lines", bytes.Repeat([]byte(line), live.MaxIngestLines+1), false, surge.ETOOLARGE},
		{"a line too long", append(bytes.Repeat([]byte("x"), live.MaxLineBytes+1), '\n'), false, surge.ETOOLARGE},
		{"not gzip", []byte(line), true, surge.EINVALID},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := in.Ingest(context.Background(), staff, "r", bytes.NewReader(c.body), c.gzip); surge.ErrorCode(err) != c.code {
				t.Errorf("Ingest = %v; want %s", err, c.code)
			}
		})
	}
	// The server's own bound on a request's body is a batch too large, not a bad one.
	capped := http.MaxBytesReader(nil, io.NopCloser(strings.NewReader(line+line)), int64(len(line)))
	if _, err := in.Ingest(context.Background(), staff, "r", capped, false); surge.ErrorCode(err) != surge.ETOOLARGE {
		t.Errorf("Ingest of a body past the server's bound = %v; want ETOOLARGE", err)
	}
	if published != 0 {
		t.Errorf("%d messages reached the log from refused batches", published)
	}
}

// A gauge's series holds its level at the end of each second, back from the current level.
func TestGaugeSeriesAreLevels(t *testing.T) {
	p, src := stream.New("gauge", stream.Config{}, func(e surge.BusinessEvent) int64 { return e.Time })
	board := live.NewBoard()
	sink := live.NewSink(publisherFunc(board.Apply), func(key string) string { return key })
	stream.To(live.Build(src, &live.Counters{}), stream.Sink[live.Contribution](sink))
	base := int64(1_790_000_000_000)
	ev := func(id, typ, user string, at int64) surge.BusinessEvent {
		return surge.BusinessEvent{ID: id, Type: typ, Time: at, Platform: "web", Room: "r1", User: user}
	}
	// Second 0: a and b enter; second 1: c enters; second 2: a leaves. The input then ends, and
	// b and c time out: only the levels before that are checked.
	in := []surge.BusinessEvent{ev("1", surge.BizLiveEnter, "a", base), ev("2", surge.BizLiveEnter, "b", base+10),
		ev("3", surge.BizLiveEnter, "c", base+1000), ev("4", surge.BizLiveLeave, "a", base+2000)}
	if err := p.RunSlice(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	series := board.Get("online_viewers.room=r1").Series
	levels := map[int64]int64{}
	for _, pt := range series {
		levels[pt.Second-base/1000] = pt.Value
	}
	for sec, want := range map[int64]int64{0: 2, 1: 3, 2: 2} {
		if levels[sec] != want {
			t.Errorf("online viewers at second %d = %d; want %d (series %v)", sec, levels[sec], want, series[len(series)-5:])
		}
	}
}

// BenchmarkDecode: what ingestion spends reading a line and a whole batch of 1,000 lines, and
// the pipeline reading a batch of 1,000 events back from the log, per event.
func BenchmarkDecode(b *testing.B) {
	line := []byte(`{"id":"b42","type":"pay","time":1790000000000,"platform":"ios","room":"r7","shop":"3","sku":"s512","user":"u9041","order":"o42","units":1,"amount":9900}`)
	staff := surge.Actor{UserID: 1, Role: surge.RoleAdmin}
	now := time.UnixMilli(1_790_000_000_000)
	b.Run("line", func(b *testing.B) {
		for b.Loop() {
			if _, err := live.DecodeEvent(line, staff, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	evs := events(1, 1000)
	data, err := json.Marshal(evs)
	if err != nil {
		b.Fatal(err)
	}
	msg, err := json.Marshal(surge.Event{ID: "x", Kind: live.EventsIngested, At: now, Data: json.RawMessage(data)})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ingest", func(b *testing.B) { // a batch of 1,000 lines, read, checked and written for the log
		var body bytes.Buffer
		for _, e := range evs {
			line, err := json.Marshal(e)
			if err != nil {
				b.Fatal(err)
			}
			body.Write(append(line, '\n'))
		}
		in := live.NewIngester(func() live.Publisher { return publisherFunc(func(string, []byte) {}) }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
		for b.Loop() {
			if res, err := in.Ingest(context.Background(), staff, "r", bytes.NewReader(body.Bytes()), false); err != nil || res.Rejected > 0 {
				b.Fatal(res, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
	})
	b.Run("batch", func(b *testing.B) {
		for b.Loop() {
			if got, err := live.DecodeBusEvents(msg); err != nil || len(got) != len(evs) {
				b.Fatal(len(got), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
	})
}

// An event goes to the log with the fields it was given and no others: a click carries no
// units or amount, and reads back the same.
func TestIngestWritesOnlyTheFieldsGiven(t *testing.T) {
	var msgs [][]byte
	in := live.NewIngester(func() live.Publisher {
		return publisherFunc(func(_ string, b []byte) { msgs = append(msgs, bytes.Clone(b)) })
	}, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	at := time.Now().UnixMilli()
	line := fmt.Sprintf(`{"id":"c1","type":"click","sku":"s","time":%d}`+"\n", at)
	if _, err := in.Ingest(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", strings.NewReader(line), false); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages published; want 1", len(msgs))
	}
	for _, name := range []string{`"units"`, `"amount"`, `"user"`, `"order"`} {
		if bytes.Contains(msgs[0], []byte(name)) {
			t.Errorf("the logged batch names %s, which the line did not: %s", name, msgs[0])
		}
	}
	// The envelope is written by hand around the events: it must be what marshalling the
	// surge.Event gives.
	var env struct {
		ID   string         `json:"id"`
		Kind string         `json:"kind"`
		At   time.Time      `json:"at"`
		Data jsontext.Value `json:"data"`
	}
	if err := jsonv2.Unmarshal(msgs[0], &env); err != nil {
		t.Fatalf("the logged message is not one JSON bus event: %v\n%s", err, msgs[0])
	}
	again, err := jsonv2.Marshal(surge.Event{ID: env.ID, Kind: env.Kind, At: env.At, Data: env.Data})
	if err != nil || !bytes.Equal(again, msgs[0]) || env.Kind != live.EventsIngested || env.At.IsZero() || env.ID == "" {
		t.Errorf("the logged message\n%s\nis not the JSON of its bus event\n%s (%v)", msgs[0], again, err)
	}
	evs, err := live.DecodeBusEvents(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := surge.BusinessEvent{ID: "c1", Type: surge.BizClick, Time: at, SKU: "s"}
	if len(evs) != 1 || evs[0].ID != want.ID || evs[0].Type != want.Type || evs[0].Time != want.Time || evs[0].SKU != want.SKU || evs[0].Units != 0 || evs[0].Amount != 0 {
		t.Errorf("read back %+v; want %+v", evs, want)
	}
}

// blockedBody is a sender that sent part of its body and then stalls until released.
type blockedBody struct {
	sent    []byte
	stalled chan struct{} // closed once it stalls
	release chan struct{}
}

func (b *blockedBody) Read(p []byte) (int, error) {
	if len(b.sent) > 0 {
		n := copy(p, b.sent)
		b.sent = b.sent[n:]
		return n, nil
	}
	close(b.stalled)
	<-b.release
	return 0, io.EOF
}

// A sender that stalls in the middle of its body holds no slot: with a single slot, another
// sender's batch is read, written and acknowledged meanwhile.
func TestIngestDoesNotWaitForAStalledSender(t *testing.T) {
	in := live.NewIngester(func() live.Publisher { return publisherFunc(func(string, []byte) {}) }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	line := func(id string) string {
		return fmt.Sprintf(`{"id":"%s","type":"click","sku":"s","time":%d}`+"\n", id, time.Now().UnixMilli())
	}
	stalled := &blockedBody{sent: []byte(line("a")), stalled: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { // ends once the body is released
		_, err := in.Ingest(context.Background(), staff, "slow", stalled, false)
		done <- err
	}()
	<-stalled.stalled
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := in.Ingest(ctx, staff, "quick", strings.NewReader(line("b")), false)
	if err != nil || res.Accepted != 1 {
		t.Errorf("a batch beside a stalled sender = %+v, %v; want it accepted", res, err)
	}
	close(stalled.release)
	if err := <-done; err != nil {
		t.Errorf("the stalled sender's batch, once sent = %v; want it accepted", err)
	}
}

// oneBatchLog is a log of one record, a batch of ingested events.
type oneBatchLog struct{ data []byte }

func (l oneBatchLog) Open(_ context.Context, after uint64) (stream.Reader, error) {
	return &oneBatchReader{data: l.data, done: after >= 1}, nil
}

type oneBatchReader struct {
	data []byte
	done bool
}

func (r *oneBatchReader) Next(wait time.Duration) (uint64, []byte, bool, error) {
	if r.done {
		time.Sleep(wait)
		return 0, nil, false, nil
	}
	r.done = true
	return 1, r.data, true, nil
}
func (r *oneBatchReader) Pending() uint64 {
	if r.done {
		return 0
	}
	return 1
}
func (r *oneBatchReader) Close() {}

// garbledCheckpoints holds a checkpoint no pipeline can read, until one is saved over it.
type garbledCheckpoints struct {
	mu    sync.Mutex
	saved []byte
}

func (g *garbledCheckpoints) Load(context.Context, string) ([]byte, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.saved == nil {
		return []byte("not a checkpoint"), true, nil
	}
	return g.saved, true, nil
}

func (g *garbledCheckpoints) Save(_ context.Context, _ string, data []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.saved = bytes.Clone(data)
	return nil
}

// A checkpoint the pipeline cannot read back (damaged, or of another format) does not stop
// the live metrics: the runner recomputes them from the log.
func TestRunnerRecomputesPastAnUnreadableCheckpoint(t *testing.T) {
	now := time.Now().UnixMilli()
	batch, err := json.Marshal(map[string]any{"id": "b1", "kind": live.EventsIngested, "at": time.UnixMilli(now).UTC(), "data": []surge.BusinessEvent{
		{ID: "c1", Type: surge.BizClick, Time: now, Platform: "ios", SKU: "s1", User: "u1"},
		{ID: "c2", Type: surge.BizClick, Time: now, Platform: "ios", SKU: "s1", User: "u2"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	board := live.NewBoard()
	done := make(chan struct{})
	go func() { // stops with cancel
		defer close(done)
		live.Runner{Log: oneBatchLog{batch}, Checkpoints: &garbledCheckpoints{}, Publisher: publisherFunc(func(string, []byte) {}),
			Subject: func(key string) string { return key }, Local: board.Feed(ctx), Counters: &live.Counters{},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}.Run(ctx)
	}()
	for ctx.Err() == nil {
		if board.Get("clicks").Value == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got := board.Get("clicks").Value; got != 2 {
		t.Fatalf("clicks after a garbled checkpoint = %d; want 2", got)
	}
}

// The pipeline runs on the time Surge received the events, and ticks move it when no event
// comes: a viewer who sends nothing more goes offline a minute after their last heartbeat was
// received, whatever the times their events carry, and with nothing but ticks in the log after.
func TestTicksTimeViewersOut(t *testing.T) {
	received := time.UnixMilli(1_790_000_000_000).UTC()
	message := func(at time.Time, evs ...surge.BusinessEvent) []byte {
		data, err := json.Marshal(evs)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := json.Marshal(surge.Event{ID: "m", Kind: live.EventsIngested, At: at, Data: json.RawMessage(data)})
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	tick := func(at time.Time) []byte {
		_, msg := live.TickMessage(at)
		return msg
	}
	// A viewer whose clock is ten minutes slow enters; another, whose clock is right, likes a
	// second later. Then only ticks.
	slow := surge.BusinessEvent{ID: "v", Type: surge.BizLiveEnter, Time: received.Add(-10 * time.Minute).UnixMilli(), Platform: "ios", Room: "r1", User: "u1"}
	like := surge.BusinessEvent{ID: "l", Type: surge.BizLike, Time: received.Add(time.Second).UnixMilli(), Platform: "ios", Room: "r1", User: "u2"}
	log := []struct {
		msg    []byte
		online int64 // online viewers once the message is counted
	}{
		{message(received, slow), 1},
		{message(received.Add(time.Second), like), 1},
		{tick(received.Add(30 * time.Second)), 1},
		{tick(received.Add(64 * time.Second)), 1}, // the watermark is 5 s behind: not yet a minute
		{tick(received.Add(66 * time.Second)), 0},
	}
	p, src := stream.New("ticks", stream.Config{OutOfOrderness: live.OutOfOrderness}, live.PipelineTime)
	sink := live.NewSink(publisherFunc(func(string, []byte) {}), func(key string) string { return key })
	stream.To(live.Build(src, &live.Counters{}), stream.Sink[live.Contribution](sink))
	i := 0
	records := func(yield func(surge.BusinessEvent) bool) {
		for ; i < len(log); i++ {
			evs, err := live.DecodeBusEvents(log[i].msg)
			if err != nil || len(evs) != 1 {
				t.Fatalf("message %d reads as %+v, %v", i, evs, err)
			}
			if !yield(evs[0]) {
				return
			}
			if got := sink.Total("online_viewers"); got != log[i].online { // counted once the next is asked for
				t.Errorf("after message %d, online viewers = %d; want %d", i, got, log[i].online)
			}
		}
	}
	if err := p.RunSeq(context.Background(), records); err != nil {
		t.Fatal(err)
	}
	if got := sink.Total("likes"); got != 1 {
		t.Errorf("likes = %d; a tick counts in nothing", got)
	}
}

// The runner writes the time to the events log every TickEvery while it runs.
func TestRunnerTicks(t *testing.T) {
	var mu sync.Mutex
	var ticks [][]byte
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // stops with cancel
		defer close(done)
		live.Runner{Log: oneBatchLog{}, Checkpoints: &garbledCheckpoints{}, Publisher: publisherFunc(func(string, []byte) {}),
			Subject: func(key string) string { return key }, Counters: &live.Counters{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ticks: publisherFunc(func(subject string, data []byte) {
				if subject == live.TickSubject {
					mu.Lock()
					ticks = append(ticks, bytes.Clone(data))
					mu.Unlock()
				}
			})}.Run(ctx)
	}()
	start := time.Now()
	time.Sleep(live.TickEvery + live.TickEvery/2)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(ticks) == 0 {
		t.Fatalf("no tick written in %s", live.TickEvery+live.TickEvery/2)
	}
	evs, err := live.DecodeBusEvents(ticks[0])
	if err != nil || len(evs) != 1 || evs[0].Received < start.UnixMilli() || evs[0].Received > time.Now().UnixMilli() {
		t.Errorf("a tick reads as %+v, %v; want one record at the time it was written", evs, err)
	}
}

// The README's table of event types is the one the schema makes: what ingestion enforces is what
// the documentation says.
func TestREADMEListsEveryEventType(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- event types: made by live.EventTypesTable -->\n")
	table, _, ok2 := strings.Cut(rest, "<!-- end of event types -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no table of event types between its markers")
	}
	if want := live.EventTypesTable(); table != want {
		t.Errorf("README.md's table of event types:\n%s\nthe schema makes:\n%s", table, want)
	}
	for _, typ := range surge.BizTypes() {
		if !strings.Contains(table, "| `"+typ+"` |") || len(surge.BizRequired(typ)) < 4 {
			t.Errorf("event type %s is not in the table, or requires nothing of its own", typ)
		}
	}
}

// A paid order that coupons took something off counts in the coupon metrics too: one coupon_use
// event beside its pay event, with how many coupons and what they took off.
func TestPaidOrdersCountTheirCoupons(t *testing.T) {
	at := time.UnixMilli(1_790_000_000_000).UTC()
	price := &surge.PriceBreakdown{Currency: "CNY", List: 1000, Discount: 350, Payable: 650,
		Coupons: []surge.CouponTaken{{Coupon: 5, Amount: 300}, {Coupon: 6, Amount: 50}}}
	msg, err := jsonv2.Marshal(surge.Event{ID: "p", Kind: surge.EventOrdersPaid, At: at, Data: []surge.Order{
		{ID: 9, UserID: 3, SKUID: 2, MerchantID: 4, SessionID: 8, Quantity: 1, Amount: surge.Money{Amount: 650, Currency: "CNY"}, PaidAt: &at, Price: price},
		{ID: 10, UserID: 3, SKUID: 2, MerchantID: 4, SessionID: 8, Quantity: 1, Amount: surge.Money{Amount: 1000, Currency: "CNY"}, PaidAt: &at}}})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := live.DecodeBusEvents(msg)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if len(evs) != 3 || types[0] != surge.BizPay || types[1] != surge.BizCouponUse || types[2] != surge.BizPay {
		t.Fatalf("events %v; want pay, coupon_use, pay", types)
	}
	if u := evs[1]; u.Units != 2 || u.Amount != 350 || u.Order != "9" || u.Session != "8" || u.Shop != "4" || u.ID != "coupon_use-9" {
		t.Fatalf("coupon_use event %+v; want 2 coupons, 350 off, order 9 of session 8, shop 4", u)
	}
	if err := evs[1].Validate(); err != nil {
		t.Fatalf("the coupon_use event breaks its own schema: %v", err)
	}
}

// A paid checkout that promotion activities took something off counts in the promotion metrics:
// one promo_use event beside its pay event (and its coupon_use), with how many activities and
// what they took off; a flash-sale order's own price (its item, an activity) is not counted.
func TestPaidCheckoutsCountTheirActivities(t *testing.T) {
	at := time.UnixMilli(1_790_000_000_000).UTC()
	price := &surge.PriceBreakdown{Currency: "CNY", List: 10000, Discount: 2300, Payable: 7700,
		Coupons:    []surge.CouponTaken{{Coupon: 5, Amount: 300}},
		Activities: []surge.ActivityTaken{{Activity: 7, Amount: 1500}, {Activity: 8, Amount: 500}}}
	sale := &surge.PriceBreakdown{Currency: "CNY", List: 10000, Discount: 9000, Payable: 1000,
		Activities: []surge.ActivityTaken{{Activity: 12, Amount: 9000}}}
	msg, err := jsonv2.Marshal(surge.Event{ID: "p", Kind: surge.EventOrdersPaid, At: at, Data: []surge.Order{
		{ID: 9, UserID: 3, MerchantID: 4, Quantity: 2, Amount: surge.Money{Amount: 7700, Currency: "CNY"}, PaidAt: &at, Price: price,
			Lines: []surge.OrderLine{{SKUID: 2, Quantity: 2, Unit: 5000}}},
		{ID: 10, UserID: 3, SKUID: 2, ItemID: 12, MerchantID: 4, SessionID: 8, Quantity: 1, Amount: surge.Money{Amount: 1000, Currency: "CNY"}, PaidAt: &at, Price: sale}}})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := live.DecodeBusEvents(msg)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if len(evs) != 4 || types[0] != surge.BizPay || types[1] != surge.BizCouponUse || types[2] != surge.BizPromoUse || types[3] != surge.BizPay {
		t.Fatalf("events %v; want pay, coupon_use, promo_use, pay", types)
	}
	if u := evs[2]; u.Units != 2 || u.Amount != 2000 || u.Order != "9" || u.ID != "promo_use-9" {
		t.Fatalf("promo_use event %+v; want 2 activities, 2000 off, order 9", u)
	}
	if u := evs[1]; u.Amount != 300 {
		t.Fatalf("coupon_use event %+v; want the coupon's 300 alone", u)
	}
}
