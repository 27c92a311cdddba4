package live

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
	h := NewHandoff()
	var log logCapture
	in := NewIngester(func() Publisher { return &log }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry()).HandOff(h)
	body := strings.Join([]string{
		`{"id":"a","type":"click","sku":"s1","time":1790000000000,"platform":"ios"}`,
		`{"id":"b","type":"pay","order":"o","sku":"s1","shop":"7","user":"42","units":1,"amount":5,"time":1790000000001}`,
		`{"id":"c","type":"nonsense"}`,
		`{"id":"d","type":"live_enter","room":"r1","user":"u","time":1790000000002}`,
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
	if !ok || len(h.batches) != 1 || h.batches[id] == nil {
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
	order := []byte(`{"id":"x","kind":"orders.created","at":"2026-01-01T00:00:00Z","data":[]}`)
	if _, ok := ingestedID(order); ok {
		t.Fatal("an order event read as an ingested batch")
	}
	if got, err := h.Decode(order); err != nil || len(got) != 0 {
		t.Fatalf("an order event without orders = %+v, %v", got, err)
	}
}

// The handoff holds at most maxHandoffEvents events, refusing what comes past them, and
// remembers at most maxHandoffBatches ids, the oldest going first; an id taken leaves with the
// next batch put.
func TestHandoffBounds(t *testing.T) {
	one := []surge.BusinessEvent{{ID: "e"}}
	h := NewHandoff()
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

	h = NewHandoff()
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

	h = NewHandoff()
	h.put("a", one)
	h.put("a", one) // a producer's retry: the same events
	if h.events != 1 || len(h.order) != 1 {
		t.Fatalf("a batch put twice: %d events, %d ids", h.events, len(h.order))
	}
	h.take("a")
	h.put("b", one)
	if !slices.Equal(h.order, []string{"b"}) || h.events != 1 {
		t.Fatalf("after taking a and putting b: ids %v, %d events", h.order, h.events)
	}
}
