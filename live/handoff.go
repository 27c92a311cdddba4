package live

import (
	"bytes"
	"sync"

	"github.com/surgecommerce/surge"
)

// maxHandoffEvents bounds the events a Handoff holds: about a second of a sale's peak. While
// the pipeline is further behind than that, the batches ingested meanwhile are not held, and it
// reads them from the log's bytes, as it reads any other node's batches.
const maxHandoffEvents = 1 << 18

// maxHandoffBatches bounds the ids a Handoff remembers in order, taken or not: a batch put but
// never taken (its publishing failed) is dropped at the latest this many batches later.
const maxHandoffBatches = 4096

// Handoff carries the batches this node's ingestion writes to the events log over to this node's
// live pipeline, already read: the pipeline then takes a batch it finds here rather than
// decoding the message again, which was a twentieth of a counting node's CPU at 300,000 events a
// second. A batch is found by the message's id, which is the hash of its events (and their
// count), so the events found are the events the message carries (FuzzDecodeEvent checks that
// an event comes back from the log as it went in). A batch is taken once. When the handoff
// holds maxHandoffEvents, it keeps the batches the pipeline reads next and refuses new ones.
type Handoff struct {
	mu      sync.Mutex
	batches map[string][]surge.BusinessEvent // by message id
	order   []string                         // ids in the order put, oldest first
	events  int
}

// NewHandoff returns an empty handoff.
func NewHandoff() *Handoff {
	return &Handoff{batches: map[string][]surge.BusinessEvent{}}
}

// put offers the events of the message with this id. The caller gives the slice up.
func (h *Handoff) put(id string, events []surge.BusinessEvent) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.order) > 0 { // the ids taken leave from the front
		if _, waiting := h.batches[h.order[0]]; waiting && len(h.order) < maxHandoffBatches {
			break
		}
		h.dropOldest()
	}
	if _, ok := h.batches[id]; ok || h.events+len(events) > maxHandoffEvents {
		return // held already (a producer's retry), or the pipeline is far behind
	}
	h.order = append(h.order, id)
	h.batches[id] = events
	h.events += len(events)
}

// dropOldest forgets the oldest id, and its batch if it was not taken.
func (h *Handoff) dropOldest() {
	oldest := h.order[0]
	h.order[0] = ""
	h.order = h.order[1:]
	h.events -= len(h.batches[oldest]) // 0 once taken
	delete(h.batches, oldest)
}

// take returns, once, the events put for the message with this id.
func (h *Handoff) take(id string) ([]surge.BusinessEvent, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	events, ok := h.batches[id]
	if ok {
		delete(h.batches, id) // its id leaves order with the next put that finds it first
		h.events -= len(events)
	}
	return events, ok
}

// Decode reads one message of the events log, as DecodeBusEvents does, taking the events of a
// batch this node wrote from the handoff when they are still there.
func (h *Handoff) Decode(data []byte) ([]surge.BusinessEvent, error) {
	if id, ok := ingestedID(data); ok {
		if events, ok := h.take(id); ok {
			return events, nil
		}
	}
	return DecodeBusEvents(data)
}

// ingestedID is the id of a message written by Ingester.message, read from its head; false for
// any other message.
func ingestedID(data []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"id":"`))
	if !ok {
		return "", false
	}
	id, rest, ok := bytes.Cut(rest, []byte(`"`))
	if !ok || !bytes.HasPrefix(rest, []byte(`,"kind":"`+EventsIngested+`","at":"`)) {
		return "", false
	}
	return string(id), true
}
