package stream

import (
	"container/heap"
	"encoding/gob"
	"fmt"
)

// timer is an event-time timer of one key; Seq orders timers at the same time by when they were
// set, so they run in the same order on every replay.
type timer[K comparable] struct {
	At  int64
	Seq uint64
	Key K
}

type timerHeap[K comparable] struct {
	t   []timer[K]
	seq uint64
}

func (h *timerHeap[K]) Len() int { return len(h.t) }
func (h *timerHeap[K]) Less(i, j int) bool {
	return h.t[i].At < h.t[j].At || (h.t[i].At == h.t[j].At && h.t[i].Seq < h.t[j].Seq)
}
func (h *timerHeap[K]) Swap(i, j int) { h.t[i], h.t[j] = h.t[j], h.t[i] }
func (h *timerHeap[K]) Push(x any)    { h.t = append(h.t, x.(timer[K])) }
func (h *timerHeap[K]) Pop() any {
	x := h.t[len(h.t)-1]
	h.t = h.t[:len(h.t)-1]
	return x
}

func (h *timerHeap[K]) add(at int64, k K) {
	h.seq++
	heap.Push(h, timer[K]{At: at, Seq: h.seq, Key: k})
}

// Processor handles a keyed stream record by record, with state and timers per key.
type Processor[K comparable, T, S, R any] struct {
	// OnRecord handles one record of c.Key.
	OnRecord func(c *Context[K, S, R], v T)
	// OnTimer runs when the watermark passes a timer set for c.Key; c.Time is the timer's time.
	OnTimer func(c *Context[K, S, R])
}

// Context gives a Processor the current key, its state and its timers.
type Context[K comparable, S, R any] struct {
	// Key is the key of the record or timer being handled.
	Key K
	// Time is the event time of the record, or the time of the timer.
	Time int64
	// Watermark is the operator's current watermark.
	Watermark int64
	state     map[K]*S
	timers    *timerHeap[K]
	timerSet  map[winKey[K]]struct{}
	out       *node[R]
	g         *graph
	st        *opStats
}

// State returns the key's state, creating it (S's zero value) on first use.
func (c *Context[K, S, R]) State() *S {
	p := c.state[c.Key]
	if p == nil {
		if !c.g.checkSize(len(c.state), c.st) {
			return new(S) // the task stops after this record
		}
		p = new(S)
		c.state[c.Key] = p
	}
	return p
}

// Lookup returns the key's state if it has any, without creating it.
func (c *Context[K, S, R]) Lookup() (*S, bool) {
	p, ok := c.state[c.Key]
	return p, ok
}

// Clear drops the key's state.
func (c *Context[K, S, R]) Clear() { delete(c.state, c.Key) }

// SetTimer asks for OnTimer once the watermark reaches at; setting the same time twice runs it
// once.
func (c *Context[K, S, R]) SetTimer(at int64) {
	id := winKey[K]{c.Key, at}
	if _, ok := c.timerSet[id]; ok {
		return
	}
	if !c.g.checkSize(len(c.timerSet), c.st) {
		return
	}
	c.timerSet[id] = struct{}{}
	c.timers.add(at, c.Key)
}

// Emit sends a result downstream with event time ts.
func (c *Context[K, S, R]) Emit(ts int64, r R) { c.out.emit(ts, r) }

type processOp[K comparable, T, S, R any] struct {
	key func(T) K
	p   Processor[K, T, S, R]
	c   Context[K, S, R]
	st  *opStats
}

// Process runs a Processor over a keyed stream.
func Process[K comparable, T, S, R any](in Keyed[K, T], p Processor[K, T, S, R]) Stream[R] {
	g := in.s.g
	o := &processOp[K, T, S, R]{key: in.key, p: p}
	out, st := derive[T, R](in.s, "process", o, func() int { return len(o.c.state) + len(o.c.timerSet) })
	o.st = st
	o.c = Context[K, S, R]{Watermark: MinWatermark, state: map[K]*S{}, timers: &timerHeap[K]{},
		timerSet: map[winKey[K]]struct{}{}, out: out.n, g: g, st: st}
	g.timed = append(g.timed, o)
	g.states = append(g.states, o)
	return out
}

func (o *processOp[K, T, S, R]) push(ts int64, v T) {
	o.st.in++
	o.c.Key, o.c.Time = o.key(v), ts
	o.p.OnRecord(&o.c, v)
}

func (o *processOp[K, T, S, R]) advance(wm int64) {
	o.c.Watermark = wm
	h := o.c.timers
	for len(h.t) > 0 && h.t[0].At <= wm {
		t := heap.Pop(h).(timer[K])
		delete(o.c.timerSet, winKey[K]{t.Key, t.At})
		if o.p.OnTimer != nil {
			o.c.Key, o.c.Time = t.Key, t.At
			o.p.OnTimer(&o.c)
		}
	}
}

// processHead leads a keyed state in a checkpoint: the timers (in this one message), and how
// many keys follow, in processChunk messages. One message for the whole state grew gob's buffer
// to tens of megabytes by doubling, copying it each time, on the pipeline's goroutine. A state
// that encodes itself (a gob.GobEncoder: a set of ids, a series) is usually a blob of its own,
// so such states go one key to a message; plain states, usually small (a viewer's last
// heartbeat), go chunkKeys to a message, which spares gob a message per key.
type processHead[K comparable] struct {
	Timers []timer[K]
	Seq    uint64
	WM     int64
	Keys   int
}

type processChunk[K comparable, S any] struct {
	Keys   []K
	States []S
}

const chunkKeys = 1024

// keysPerMessage is how many keys of states of type S a checkpoint message carries. *S has the
// methods of S too, so one check covers GobEncode on either receiver.
func keysPerMessage[S any]() int {
	if _, ok := any(new(S)).(gob.GobEncoder); ok {
		return 1
	}
	return chunkKeys
}

func (o *processOp[K, T, S, R]) snapshot(enc *gob.Encoder) error {
	if err := enc.Encode(&processHead[K]{Timers: o.c.timers.t, Seq: o.c.timers.seq, WM: o.c.Watermark, Keys: len(o.c.state)}); err != nil {
		return err
	}
	per := keysPerMessage[S]()
	c := processChunk[K, S]{Keys: make([]K, 0, min(per, len(o.c.state))), States: make([]S, 0, min(per, len(o.c.state)))}
	for k, p := range o.c.state {
		c.Keys, c.States = append(c.Keys, k), append(c.States, *p)
		if len(c.Keys) == per {
			if err := enc.Encode(&c); err != nil {
				return err
			}
			clear(c.States) // the states' own memory is not the next chunk's to keep alive
			c.Keys, c.States = c.Keys[:0], c.States[:0]
		}
	}
	if len(c.Keys) > 0 {
		return enc.Encode(&c)
	}
	return nil
}

func (o *processOp[K, T, S, R]) restore(dec *gob.Decoder) error {
	var h processHead[K]
	if err := dec.Decode(&h); err != nil {
		return err
	}
	if h.Keys < 0 {
		return fmt.Errorf("a keyed state of %d keys", h.Keys)
	}
	o.c.state = make(map[K]*S, min(h.Keys, maxPresizedKeys))
	for read := 0; read < h.Keys; {
		var c processChunk[K, S]
		if err := dec.Decode(&c); err != nil {
			return err
		}
		if len(c.Keys) == 0 || len(c.Keys) != len(c.States) || read+len(c.Keys) > h.Keys {
			return fmt.Errorf("a keyed state of %d keys has a chunk of %d keys and %d states after %d", h.Keys, len(c.Keys), len(c.States), read)
		}
		for i, k := range c.Keys {
			o.c.state[k] = &c.States[i]
		}
		read += len(c.Keys)
	}
	o.c.timers = &timerHeap[K]{t: h.Timers, seq: h.Seq}
	o.c.timerSet = make(map[winKey[K]]struct{}, len(h.Timers))
	for _, t := range h.Timers {
		o.c.timerSet[winKey[K]{t.Key, t.At}] = struct{}{}
	}
	o.c.Watermark = h.WM
	return nil
}

// maxPresizedKeys bounds the room a restore makes ahead for the keys a checkpoint announces:
// the count is the checkpoint's word, and the keys themselves must follow.
const maxPresizedKeys = 1 << 20
