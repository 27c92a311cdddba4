package live

import (
	"context"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/ratelimit"
)

// logCapture keeps what ingestion appends to the events log.
type logCapture struct{ messages [][]byte }

func (c *logCapture) PublishAsync(subject, _ string, data []byte) error {
	if subject == IngestSubject {
		c.messages = append(c.messages, data)
	}
	return nil
}
func (*logCapture) Flush(context.Context) error { return nil }

// A batch this node ingests reaches its pipeline read, once, and as the log's bytes read it;
// other messages, and a batch taken already, are read from their bytes.
func TestHandoffCarriesIngestedBatches(t *testing.T) {
	h := NewHandoff(prometheus.NewRegistry())
	var log logCapture
	in := NewIngester(func() Publisher { return &log }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry()).HandOff(h)
	now := time.Now().UnixMilli()
	body := strings.Join([]string{
		`{"id":"a","type":"click","sku":"s1","time":` + strconv.FormatInt(now, 10) + `,"platform":"ios"}`,
		`{"id":"b","type":"pay","order":"o","sku":"s1","shop":"7","user":"42","units":1,"amount":5,"time":` + strconv.FormatInt(now+1, 10) + `}`,
		`{"id":"c","type":"nonsense"}`,
		`{"id":"d","type":"live_enter","room":"r1","user":"u","time":` + strconv.FormatInt(now+2, 10) + `}`,
	}, "\n")
	res, err := in.Ingest(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", strings.NewReader(body), false)
	if err != nil || res.Accepted != 3 || len(log.messages) != 1 {
		t.Fatalf("Ingest = %+v, %v, %d messages; want 3 events in 1 message", res, err, len(log.messages))
	}
	msg := log.messages[0]
	want, err := DecodeBusEvents(msg)
	if err != nil || len(want) != 3 {
		t.Fatalf("the message reads as %+v, %v", want, err)
	}
	id, ok := ingestedID(msg)
	if _, held := h.batches[id]; !ok || len(h.batches) != 1 || !held {
		t.Fatalf("message id %q (%v); the handoff holds %v", id, ok, slices.Collect(maps.Keys(h.batches)))
	}
	for i := range 2 { // first from the handoff, then from the bytes
		got, err := h.Decode(msg)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("read %d: %+v, %v; want %+v", i, got, err, want)
		}
		if len(h.batches) != 0 || h.events != 0 {
			t.Fatalf("read %d: the handoff still holds %d batches, %d events", i, len(h.batches), h.events)
		}
	}
	if taken, decoded := counted(t, h.taken), counted(t, h.decoded); taken != 1 || decoded != 1 {
		t.Fatalf("batches counted: %v taken, %v decoded; want 1 and 1", taken, decoded)
	}
	order := []byte(`{"id":"x","kind":"orders.created","at":"2026-01-01T00:00:00Z","data":[]}`)
	if _, ok := ingestedID(order); ok {
		t.Fatal("an order event read as an ingested batch")
	}
	if got, err := h.Decode(order); err != nil || len(got) != 0 {
		t.Fatalf("an order event without orders = %+v, %v", got, err)
	}
}

// counted is a counter's value.
func counted(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The handoff holds at most maxHandoffEvents events, refusing what comes past them, and
// remembers at most maxHandoffBatches ids, the oldest going first; an id taken leaves with the
// next batch put.
func TestHandoffBounds(t *testing.T) {
	one := []surge.BusinessEvent{{ID: "e"}}
	h := NewHandoff(prometheus.NewRegistry())
	for i := range maxHandoffBatches + 10 {
		h.put(strconv.Itoa(i), one)
	}
	if len(h.order) != maxHandoffBatches || h.events != maxHandoffBatches {
		t.Fatalf("%d ids, %d events held; want %d", len(h.order), h.events, maxHandoffBatches)
	}
	if _, ok := h.take("9"); ok {
		t.Fatal("the 10th oldest batch is still held")
	}
	if _, ok := h.take("10"); !ok {
		t.Fatal("the 11th oldest batch is gone")
	}

	h = NewHandoff(prometheus.NewRegistry())
	big := make([]surge.BusinessEvent, maxHandoffEvents/4+1)
	for i := range 4 {
		h.put(strconv.Itoa(i), big)
	}
	if h.events > maxHandoffEvents || len(h.order) != 3 {
		t.Fatalf("%d events in %d batches held; want at most %d", h.events, len(h.order), maxHandoffEvents)
	}
	if _, ok := h.take("3"); ok {
		t.Fatal("a batch past the bound was held")
	}
	if _, ok := h.take("0"); !ok {
		t.Fatal("the batch the pipeline reads next was dropped for a newer one")
	}
	h.put("4", big)
	if _, ok := h.take("4"); !ok {
		t.Fatal("a batch was refused once there was room again")
	}

	h = NewHandoff(prometheus.NewRegistry())
	now := time.UnixMilli(1_790_000_000_000)
	h.now = func() time.Time { return now }
	h.put("a", one)
	h.put("a", one) // a producer's retry: the same events
	if h.events != 1 || len(h.order) != 1 {
		t.Fatalf("a batch put twice: %d events, %d ids", h.events, len(h.order))
	}
	h.take("a")
	h.put("b", one)
	if len(h.order) != 1 || h.order[0].id != "b" || h.events != 1 {
		t.Fatalf("after taking a and putting b: ids %v, %d events", h.order, h.events)
	}
	h.put("c", one)
	h.take("c")
	now = now.Add(time.Second)
	h.put("c", one) // put again after it was taken: its first id is still behind b
	h.take("b")
	now = now.Add(maxHandoffAge - time.Second)
	h.put("d", one) // c's first id is too old and leaves; c, put a second later, stays
	if _, ok := h.take("c"); !ok || h.events != 1 {
		t.Fatalf("c, put again, was dropped with its first id; %d events held", h.events)
	}
}

// Batches never taken (a producer's retry of a batch taken already, which the log drops as a
// copy) leave after maxHandoffAge: they cannot keep the handoff full for good.
func TestHandoffDropsWhatIsNeverTaken(t *testing.T) {
	now := time.UnixMilli(1_790_000_000_000)
	h := NewHandoff(prometheus.NewRegistry())
	h.now = func() time.Time { return now }
	big := make([]surge.BusinessEvent, maxHandoffEvents/2)
	h.put("a", big)
	h.take("a")
	h.put("a", big) // the retry: never read
	h.put("b", big)
	h.put("c", big) // refused: full
	if _, ok := h.take("c"); ok {
		t.Fatal("a batch past the bound was held")
	}
	now = now.Add(maxHandoffAge)
	h.put("d", big)
	if _, ok := h.take("d"); !ok || h.events != 0 || len(h.batches) != 0 {
		t.Fatalf("after %s: d held %v; %d events in %d batches still held", maxHandoffAge, ok, h.events, len(h.batches))
	}
	h.put("e", big)
	if len(h.order) != 1 || h.order[0].id != "e" {
		t.Fatalf("ids remembered: %v", h.order)
	}
}

// A request split into several messages holds each message's events on their own: one message
// left in the handoff does not keep the whole request's events.
func TestHandoffHoldsEachMessageAlone(t *testing.T) {
	h := NewHandoff(prometheus.NewRegistry())
	var log logCapture
	in := NewIngester(func() Publisher { return &log }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry()).HandOff(h)
	var lines []string
	for i := range maxEventsPerMessage + 1 {
		lines = append(lines, `{"id":"`+strconv.Itoa(i)+`","type":"click","sku":"s1","time":`+strconv.FormatInt(time.Now().UnixMilli(), 10)+`}`)
	}
	if _, err := in.Ingest(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", strings.NewReader(strings.Join(lines, "\n")), false); err != nil || len(log.messages) != 2 {
		t.Fatalf("Ingest: %v, %d messages; want 2", err, len(log.messages))
	}
	var held [][]surge.BusinessEvent
	for _, msg := range log.messages {
		id, _ := ingestedID(msg)
		events, ok := h.take(id)
		if !ok {
			t.Fatalf("message %s not held", id)
		}
		held = append(held, events)
	}
	first, second := held[0], held[1]
	end := uintptr(unsafe.Pointer(unsafe.SliceData(first))) + uintptr(len(first))*unsafe.Sizeof(first[0])
	if len(first) != maxEventsPerMessage || len(second) != 1 || end == uintptr(unsafe.Pointer(unsafe.SliceData(second))) {
		t.Fatalf("held %d and %d events, in one array: %v", len(first), len(second), end == uintptr(unsafe.Pointer(unsafe.SliceData(second))))
	}
}

// A body of empty lines reserves room for no more events than its bytes could hold, and is
// refused: it holds no event.
func TestIngestReservesByBodySize(t *testing.T) {
	in := NewIngester(func() Publisher { return &logCapture{} }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	body := strings.Repeat("\n", MaxIngestLines-1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := in.Ingest(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", strings.NewReader(body), false)
	runtime.ReadMemStats(&after)
	if surge.ErrorCode(err) != surge.EINVALID || res.Accepted != 0 {
		t.Fatalf("Ingest = %+v, %v; want EINVALID", res, err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 2<<20 {
		t.Fatalf("a body of %d empty lines allocated %d bytes", len(body), got)
	}
}

// ingestedID is the id of a message written by Ingester.message; false for any other message.
func ingestedID(data []byte) (string, bool) {
	id, _, _, ok := ingestedEnvelope(data)
	return string(id), ok
}

// A batch sent again after its first publishing failed has the same message id and a later
// time; the events the handoff still holds from the first attempt are received at the time the
// log holds, as a replay reads them.
func TestHandoffTakesTheLogsTime(t *testing.T) {
	h := NewHandoff(prometheus.NewRegistry())
	in := NewIngester(func() Publisher { return &logCapture{} }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry()).HandOff(h)
	first := time.Now()
	line := `{"id":"a","type":"click","sku":"s1","time":` + strconv.FormatInt(first.UnixMilli(), 10) + `}`
	in.now = func() time.Time { return first }
	b, err := in.prepare(surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", []byte(line), false)
	if err != nil {
		t.Fatal(err)
	}
	h.put(b.messages[0].id, b.messages[0].events) // its publishing then failed
	in.now = func() time.Time { return first.Add(3 * time.Second) }
	again, err := in.prepare(surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", []byte(line), false)
	if err != nil || again.messages[0].id != b.messages[0].id {
		t.Fatalf("the batch sent again: %v, id %s; want the same id %s", err, again.messages[0].id, b.messages[0].id)
	}
	got, err := h.Decode(again.messages[0].data)
	if err != nil || len(got) != 1 || got[0].Received != first.Add(3*time.Second).UnixMilli() || counted(t, h.taken) != 1 {
		t.Fatalf("Decode = %+v, %v; want the held event received at the log's time %d", got, err, first.Add(3*time.Second).UnixMilli())
	}
}
