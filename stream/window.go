package stream

import (
	"cmp"
	"container/heap"
	"encoding/gob"
	"fmt"
	"slices"
	"time"
)

// Windows assigns records to event-time windows.
type Windows struct {
	size, slide, gap int64 // milliseconds; gap > 0 means session windows
}

// Tumbling windows of one size, back to back.
func Tumbling(size time.Duration) Windows {
	return Windows{size: size.Milliseconds(), slide: size.Milliseconds()}
}

// Sliding windows of size, one starting every slide.
func Sliding(size, slide time.Duration) Windows {
	return Windows{size: size.Milliseconds(), slide: slide.Milliseconds()}
}

// Session windows per key: records closer than gap to each other fall in one window.
func Session(gap time.Duration) Windows { return Windows{gap: gap.Milliseconds()} }

func (w Windows) validate() error {
	switch {
	case w.gap > 0:
		return nil
	case w.size <= 0 || w.slide <= 0:
		return fmt.Errorf("stream: window size %dms and slide %dms must be positive", w.size, w.slide)
	case w.size%w.slide != 0:
		return fmt.Errorf("stream: window size %dms is not a multiple of the slide %dms", w.size, w.slide)
	}
	return nil
}

// lastStart is the start of the last window containing ts.
func (w Windows) lastStart(ts int64) int64 {
	r := ts % w.slide
	if r < 0 {
		r += w.slide
	}
	return ts - r
}

// Aggregator folds records into a window's accumulator, starting from A's zero value.
type Aggregator[T, A any] struct {
	Add func(acc A, v T) A
	// Merge combines two accumulators; session windows need it when a record joins two sessions.
	Merge func(a, b A) A
}

// Aggregate folds each key's records per window and emits result(key, window, acc) when the
// watermark passes the window's end, with event time End-1. A record arriving within the
// allowed lateness fires its window again with the updated accumulator, so a sink that upserts
// by key and window ends with the complete result. The second stream holds the late records.
func Aggregate[K comparable, T, A, R any](in Keyed[K, T], w Windows, agg Aggregator[T, A], result func(K, Window, A) R) (Stream[R], Stream[T]) {
	g := in.s.g
	if err := w.validate(); err != nil {
		panic(err) // a pipeline definition error, found when the pipeline is built
	}
	if w.gap > 0 {
		if agg.Merge == nil {
			panic("stream: session windows need Aggregator.Merge")
		}
		return sessionAggregate(in, w, agg, result)
	}
	o := &windowOp[K, T, A, R]{g: g, key: in.key, w: w, agg: agg, result: result, acc: map[winKey[K]]*A{}, wm: MinWatermark}
	out, st := derive[T, R](in.s, "window", o, func() int { return len(o.acc) })
	o.out, o.st = out.n, st
	o.late = &node[T]{st: st}
	g.timed = append(g.timed, o)
	g.states = append(g.states, o)
	return out, Stream[T]{g: g, n: o.late}
}

type winKey[K comparable] struct {
	Key K
	End int64
}

// bucket lists the keys with state in the windows ending at End, in the order they appeared,
// so that firing is deterministic.
type bucket[K comparable] struct {
	End   int64
	Keys  []K
	Fired bool
}

type windowOp[K comparable, T, A, R any] struct {
	g       *graph
	key     func(T) K
	w       Windows
	agg     Aggregator[T, A]
	result  func(K, Window, A) R
	acc     map[winKey[K]]*A
	buckets []bucket[K] // by End
	wm      int64
	out     *node[R]
	late    *node[T]
	st      *opStats
}

func (o *windowOp[K, T, A, R]) push(ts int64, v T) {
	o.st.in++
	k := o.key(v)
	onTime := false
	for start := o.w.lastStart(ts); start > ts-o.w.size; start -= o.w.slide {
		end := start + o.w.size
		if end-1+o.g.lateness <= o.wm {
			continue // this window's state is gone
		}
		onTime = true
		wk := winKey[K]{k, end}
		p := o.acc[wk]
		b := o.bucketFor(end)
		if p == nil {
			if !o.g.checkSize(len(o.acc), o.st) {
				return
			}
			p = new(A)
			o.acc[wk] = p
			o.buckets[b].Keys = append(o.buckets[b].Keys, k)
		}
		*p = o.agg.Add(*p, v)
		if o.buckets[b].Fired { // a late record within the allowed lateness
			o.out.emit(end-1, o.result(k, Window{start, end}, *p))
		}
	}
	if !onTime {
		o.st.late++
		o.late.emit(ts, v)
	}
}

// bucketFor finds or inserts the bucket of windows ending at end; records mostly fall in the
// newest windows, so the search starts from the back.
func (o *windowOp[K, T, A, R]) bucketFor(end int64) int {
	i := len(o.buckets)
	for i > 0 && o.buckets[i-1].End > end {
		i--
	}
	if i > 0 && o.buckets[i-1].End == end {
		return i - 1
	}
	o.buckets = slices.Insert(o.buckets, i, bucket[K]{End: end, Fired: end-1 <= o.wm})
	return i
}

func (o *windowOp[K, T, A, R]) advance(wm int64) {
	o.wm = wm
	drop := 0
	for i := range o.buckets {
		b := &o.buckets[i]
		if b.End-1 > wm {
			break
		}
		if !b.Fired {
			b.Fired = true
			for _, k := range b.Keys {
				o.out.emit(b.End-1, o.result(k, Window{b.End - o.w.size, b.End}, *o.acc[winKey[K]{k, b.End}]))
			}
		}
		if b.End-1+o.g.lateness <= wm && drop == i {
			for _, k := range b.Keys {
				delete(o.acc, winKey[K]{k, b.End})
			}
			drop = i + 1
		}
	}
	if drop > 0 {
		o.buckets = slices.Delete(o.buckets, 0, drop)
	}
}

type windowState[K comparable, A any] struct {
	Buckets []bucket[K]
	Acc     []A // in bucket and key order
	WM      int64
}

func (o *windowOp[K, T, A, R]) snapshot(enc *gob.Encoder) error {
	s := windowState[K, A]{Buckets: o.buckets, WM: o.wm}
	for _, b := range o.buckets {
		for _, k := range b.Keys {
			s.Acc = append(s.Acc, *o.acc[winKey[K]{k, b.End}])
		}
	}
	return enc.Encode(&s)
}

func (o *windowOp[K, T, A, R]) restore(dec *gob.Decoder) error {
	var s windowState[K, A]
	if err := dec.Decode(&s); err != nil {
		return err
	}
	o.buckets, o.wm, o.acc = s.Buckets, s.WM, make(map[winKey[K]]*A, len(s.Acc))
	i := 0
	for _, b := range s.Buckets {
		for _, k := range b.Keys {
			a := s.Acc[i]
			o.acc[winKey[K]{k, b.End}] = &a
			i++
		}
	}
	return nil
}

// sessionOp keeps each key's open sessions and a timer per session end.
type sessionOp[K comparable, T, A, R any] struct {
	g        *graph
	key      func(T) K
	gap      int64
	agg      Aggregator[T, A]
	result   func(K, Window, A) R
	sessions map[K][]session[A]
	timers   timerHeap[K]
	wm       int64
	out      *node[R]
	late     *node[T]
	st       *opStats
}

type session[A any] struct {
	Start, End int64
	Acc        A
	Fired      bool
}

func sessionAggregate[K comparable, T, A, R any](in Keyed[K, T], w Windows, agg Aggregator[T, A], result func(K, Window, A) R) (Stream[R], Stream[T]) {
	g := in.s.g
	o := &sessionOp[K, T, A, R]{g: g, key: in.key, gap: w.gap, agg: agg, result: result, sessions: map[K][]session[A]{}, wm: MinWatermark}
	out, st := derive[T, R](in.s, "session", o, func() int { return len(o.sessions) })
	o.out, o.st = out.n, st
	o.late = &node[T]{st: st}
	g.timed = append(g.timed, o)
	g.states = append(g.states, o)
	return out, Stream[T]{g: g, n: o.late}
}

func (o *sessionOp[K, T, A, R]) push(ts int64, v T) {
	o.st.in++
	if o.wm != MinWatermark && ts+o.gap-1+o.g.lateness <= o.wm {
		o.st.late++
		o.late.emit(ts, v)
		return
	}
	k := o.key(v)
	ss, ok := o.sessions[k]
	if !ok && !o.g.checkSize(len(o.sessions), o.st) {
		return
	}
	merged := session[A]{Start: ts, End: ts + o.gap}
	merged.Acc = o.agg.Add(merged.Acc, v)
	keep := ss[:0]
	for _, s := range ss {
		if s.Start < merged.End && merged.Start < s.End {
			merged.Start, merged.End = min(merged.Start, s.Start), max(merged.End, s.End)
			merged.Acc = o.agg.Merge(s.Acc, merged.Acc)
			continue
		}
		keep = append(keep, s)
	}
	i, _ := slices.BinarySearchFunc(keep, merged.Start, func(s session[A], start int64) int { return cmp.Compare(s.Start, start) })
	ss = slices.Insert(keep, i, merged)
	o.sessions[k] = ss
	if merged.End-1 <= o.wm { // grew a fired session within the allowed lateness
		ss[i].Fired = true
		o.out.emit(merged.End-1, o.result(k, Window{merged.Start, merged.End}, merged.Acc))
		o.timers.add(merged.End-1+o.g.lateness, k)
		return
	}
	o.timers.add(merged.End-1, k)
}

func (o *sessionOp[K, T, A, R]) advance(wm int64) {
	o.wm = wm
	for len(o.timers.t) > 0 && o.timers.t[0].At <= wm {
		k := heap.Pop(&o.timers).(timer[K]).Key
		ss := o.sessions[k]
		keep := ss[:0]
		for _, s := range ss {
			if s.End-1 <= wm && !s.Fired {
				s.Fired = true
				o.out.emit(s.End-1, o.result(k, Window{s.Start, s.End}, s.Acc))
				if o.g.lateness > 0 {
					o.timers.add(s.End-1+o.g.lateness, k)
				}
			}
			if !(s.Fired && s.End-1+o.g.lateness <= wm) {
				keep = append(keep, s)
			}
		}
		if len(keep) == 0 {
			delete(o.sessions, k)
		} else {
			o.sessions[k] = keep
		}
	}
}

type sessionState[K comparable, A any] struct {
	Keys     []K
	Sessions [][]session[A]
	Timers   []timer[K]
	Seq      uint64
	WM       int64
}

func (o *sessionOp[K, T, A, R]) snapshot(enc *gob.Encoder) error {
	s := sessionState[K, A]{Timers: o.timers.t, Seq: o.timers.seq, WM: o.wm}
	for k, ss := range o.sessions {
		s.Keys = append(s.Keys, k)
		s.Sessions = append(s.Sessions, ss)
	}
	return enc.Encode(&s)
}

func (o *sessionOp[K, T, A, R]) restore(dec *gob.Decoder) error {
	var s sessionState[K, A]
	if err := dec.Decode(&s); err != nil {
		return err
	}
	o.sessions = make(map[K][]session[A], len(s.Keys))
	for i, k := range s.Keys {
		o.sessions[k] = s.Sessions[i]
	}
	o.timers = timerHeap[K]{t: s.Timers, seq: s.Seq}
	o.wm = s.WM
	return nil
}
