package purchase

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// The attempts event written without reflection is byte for byte what the JSON library writes,
// whenever it does not hand the batch back to the library; and an ordinary batch is written
// without it.
func FuzzAttemptsEvent(f *testing.F) {
	f.Add("purchase.attempts:1:7", int64(42), int64(10000001), int64(1), "b17", "ESOLDOUT", "127.0.0.1", int64(1764680000), int64(123456789), int16(0), false, uint8(2))
	f.Add("x", int64(-1), int64(0), int64(-5), "r\"q", "success", "::1", int64(0), int64(0), int16(0), true, uint8(1))
	f.Add("id", int64(1), int64(2), int64(3), "<script>", "queued", "10.0.0.1", int64(-62135596800), int64(0), int16(480), false, uint8(3))
	f.Add("id", int64(1), int64(2), int64(3), "r", "ok", "\xff", int64(253402300800), int64(1), int16(0), true, uint8(0))
	f.Fuzz(func(t *testing.T, id string, item, user, qty int64, req, outcome, ip string, sec, nsec int64, offsetMin int16, test bool, n uint8) {
		at := time.Unix(sec, nsec).UTC()
		if offsetMin != 0 {
			at = at.In(time.FixedZone("", int(offsetMin)*60))
		}
		var batch []Attempt
		for i := range int(n % 4) {
			a := Attempt{ItemID: item + int64(i), UserID: user, Quantity: qty, RequestID: req, Outcome: outcome,
				IP: ip, At: at.Add(time.Duration(i) * time.Millisecond), Test: test != (i%2 == 1)}
			if i%2 == 1 { // what the risk pipeline reads, on some
				a.Device, a.Address, a.Account, a.Coupons = req+"d", ip, outcome, int(n)-i
			}
			batch = append(batch, a)
		}
		got, ok := appendAttemptsEvent(nil, id, at, batch)
		want, err := json.Marshal(surge.Event{ID: id, Kind: surge.EventPurchaseAttempts, At: at, Data: batch})
		if ok && (err != nil || !bytes.Equal(got, want)) {
			t.Fatalf("written as\n%s\nthe library writes\n%s (%v)", got, want, err)
		}
	})
}

func TestAttemptsEventTakesOrdinaryBatches(t *testing.T) {
	at := time.Date(2026, 11, 11, 0, 0, 1, 5000, time.UTC)
	batch := []Attempt{
		{ItemID: 42, UserID: 10000001, Quantity: 1, RequestID: "b17", Outcome: "ESOLDOUT", IP: "203.0.113.9", At: at},
		{ItemID: 42, UserID: 10000002, Quantity: 2, RequestID: "k-9_x.1", Outcome: "success", IP: "2001:db8::1", At: at, Test: true},
	}
	got, ok := appendAttemptsEvent(nil, "purchase.attempts:1764680000:3", at, batch)
	want, _ := json.Marshal(surge.Event{ID: "purchase.attempts:1764680000:3", Kind: surge.EventPurchaseAttempts, At: at, Data: batch})
	if !ok || !bytes.Equal(got, want) {
		t.Fatalf("appendAttemptsEvent = %v,\n%s\nwant\n%s", ok, got, want)
	}
	odd := []Attempt{{RequestID: "é<&>\x01\xff", Outcome: "EINVALID", IP: "10.0.0.1", At: at}}
	got, ok = appendAttemptsEvent(nil, "id", at, odd)
	want, _ = json.Marshal(surge.Event{ID: "id", Kind: surge.EventPurchaseAttempts, At: at, Data: odd})
	if !ok || !bytes.Equal(got, want) {
		t.Fatalf("a request id to escape: appendAttemptsEvent = %v,\n%s\nwant\n%s", ok, got, want)
	}
	if _, ok := appendAttemptsEvent(nil, "id", at.In(time.FixedZone("CST", 8*3600)), batch); ok {
		t.Fatal("a time outside UTC was written without the library")
	}
}

// emitted keeps the events a batcher sends; the rest of Publisher is not used here.
type emitted struct {
	Publisher
	mu     sync.Mutex
	events [][]byte
}

func (e *emitted) Emit(subject, msgID string, data []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, data)
	return nil
}

// The batcher sends what is queued in events of at most maxAttemptBatch, and what is left when
// the node closes.
func TestBatchAttemptsSendsEverythingInBoundedEvents(t *testing.T) {
	bus := &emitted{}
	s := &Service{bus: bus, now: time.Now, attempts: attemptQueue{full: make(chan struct{}, 1)}, quit: make(chan struct{}),
		metrics: NewMetrics(prometheus.NewRegistry())}
	const n = 2*maxAttemptBatch + 452
	for i := range n {
		s.attempts.add(Attempt{UserID: int64(i), RequestID: "r", Outcome: "ESOLDOUT", IP: "10.0.0.1", At: time.Now().UTC()})
	}
	s.wg.Add(1)
	go s.batchAttempts()
	s.Close()
	seen := 0
	for _, b := range bus.events {
		var e struct{ Data []Attempt }
		if err := json.Unmarshal(b, &e); err != nil || len(e.Data) == 0 || len(e.Data) > maxAttemptBatch {
			t.Fatalf("an event of %d attempts (%v); want 1 to %d", len(e.Data), err, maxAttemptBatch)
		}
		for _, a := range e.Data {
			if a.UserID != int64(seen) {
				t.Fatalf("attempt %d is user %d; want them in order", seen, a.UserID)
			}
			seen++
		}
	}
	if seen != n {
		t.Fatalf("%d attempts sent in %d events; want %d", seen, len(bus.events), n)
	}
}
