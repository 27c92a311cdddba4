package live

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// maxHandoffEvents bounds the events a Handoff holds: about a second of a sale's peak. While
// the pipeline is further behind than that, the batches ingested meanwhile are not held, and it
// reads them from the log's bytes, as it reads any other node's batches.
const maxHandoffEvents = 1 << 18

// maxHandoffBatches bounds the ids a Handoff remembers in order, taken or not.
const maxHandoffBatches = 4096

// maxHandoffAge is how long a Handoff holds a batch. One never taken (its publishing failed, or
// it was a producer's retry that the log dropped as a copy) is dropped this long after it was
// put, with the next put, so that it cannot keep out the batches after it.
const maxHandoffAge = 5 * time.Second

// Handoff carries the batches this node's ingestion writes to the events log over to this node's
// live pipeline, already read: the pipeline then takes a batch it finds here rather than
// decoding the message again, which was a twentieth of a counting node's CPU at 300,000 events a
// second. A batch is found by the message's id, which is the hash of its events (and their
// count), so the events found are the events the message carries (FuzzDecodeEvent checks that
// an event comes back from the log as it went in). A batch is taken once. When the handoff
// holds maxHandoffEvents, it keeps the batches put first, which the pipeline reads next, and
// refuses new ones.
type Handoff struct {
	mu      sync.Mutex
	now     func() time.Time
	batches map[string]heldBatch // by message id
	order   []handoffID          // in the order put, oldest first
	events  int
	puts    int64              // batches held so far
	taken   prometheus.Counter // batches read from here
	decoded prometheus.Counter // ingested batches read from the log's bytes
}

type heldBatch struct {
	events []surge.BusinessEvent
	put    int64 // the put's number
}

type handoffID struct {
	id  string
	put int64 // the put's number
	at  time.Time
}

// NewHandoff returns an empty handoff, and registers its metric: the ingested batches the
// pipeline took from it against those it decoded, which says whether it earns its memory.
func NewHandoff(reg prometheus.Registerer) *Handoff {
	read := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_live_handoff_batches_total",
		Help: "Ingested batches the live pipeline read: taken already read from this node's handoff, or decoded from the log (other nodes' batches, replays, batches not held)."},
		[]string{"how"})
	reg.MustRegister(read)
	return &Handoff{now: time.Now, batches: map[string]heldBatch{}, taken: read.WithLabelValues("taken"), decoded: read.WithLabelValues("decoded")}
}

// put offers the events of the message with this id. The caller gives the slice up.
func (h *Handoff) put(id string, events []surge.BusinessEvent) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for len(h.order) > 0 { // the ids taken, too many or too old leave from the front
		oldest := h.order[0]
		b, waiting := h.batches[oldest.id]
		waiting = waiting && b.put == oldest.put // not taken, nor taken and put again since
		if waiting && len(h.order) < maxHandoffBatches && now.Sub(oldest.at) < maxHandoffAge {
			break
		}
		h.order[0] = handoffID{}
		h.order = h.order[1:]
		if waiting {
			h.events -= len(b.events)
			delete(h.batches, oldest.id)
		}
	}
	if _, ok := h.batches[id]; ok || h.events+len(events) > maxHandoffEvents {
		return // held already (a producer's retry), or the pipeline is far behind
	}
	h.puts++
	h.order = append(h.order, handoffID{id, h.puts, now})
	h.batches[id] = heldBatch{events, h.puts}
	h.events += len(events)
}

// take returns, once, the events put for the message with this id.
func (h *Handoff) take(id string) ([]surge.BusinessEvent, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.batches[id]
	if ok {
		delete(h.batches, id) // its id leaves order with a later put
		h.events -= len(b.events)
	}
	return b.events, ok
}

// Decode reads one message of the events log, as DecodeBusEvents does, taking the events of a
// batch this node wrote from the handoff when they are still there.
//
// The events taken are received at the message's time, as its bytes say: a batch whose first
// publishing failed and was sent again has the same id and another time, and a replay of the
// log reads that time.
func (h *Handoff) Decode(data []byte) ([]surge.BusinessEvent, error) {
	if id, at, _, ok := ingestedEnvelope(data); ok {
		if received, err := receivedAt(at); err == nil {
			if events, ok := h.take(string(id)); ok {
				h.taken.Inc()
				for i := range events {
					events[i].Received = received
				}
				return events, nil
			}
		}
		h.decoded.Inc()
	}
	return DecodeBusEvents(data)
}
