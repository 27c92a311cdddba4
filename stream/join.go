package stream

import (
	"container/heap"
	"encoding/gob"
	"time"
)

// stamped is a buffered record with its event time.
type stamped[T any] struct {
	TS int64
	V  T
}

// IntervalJoin pairs each left record l with every right record r of the same key whose event
// time lies in [l.time+lower, l.time+upper], in either arrival order, and emits join(key, l, r)
// with the later of the two times. Records are buffered only while a match is still possible.
// Records older than the watermark on arrival are late: counted and sent to the second (left) or
// third (right) stream.
func IntervalJoin[K comparable, L, R, O any](left Keyed[K, L], right Keyed[K, R], lower, upper time.Duration, join func(K, L, R) O) (Stream[O], Stream[L], Stream[R]) {
	g := left.s.g
	o := &joinOp[K, L, R, O]{g: g, lower: lower.Milliseconds(), upper: upper.Milliseconds(), join: join,
		left: map[K][]stamped[L]{}, right: map[K][]stamped[R]{}, wm: MinWatermark}
	st := g.stat("join", func() int { return o.size })
	o.st = st
	o.out, o.lateL, o.lateR = &node[O]{st: st}, &node[L]{st: st}, &node[R]{st: st}
	left.s.n.outs = append(left.s.n.outs, joinLeft[K, L, R, O]{o, left.key})
	right.s.n.outs = append(right.s.n.outs, joinRight[K, L, R, O]{o, right.key})
	g.timed = append(g.timed, o)
	g.states = append(g.states, o)
	return Stream[O]{g: g, n: o.out}, Stream[L]{g: g, n: o.lateL}, Stream[R]{g: g, n: o.lateR}
}

type joinOp[K comparable, L, R, O any] struct {
	g            *graph
	lower, upper int64
	join         func(K, L, R) O
	left         map[K][]stamped[L]
	right        map[K][]stamped[R]
	size         int // buffered records on both sides
	cleanup      timerHeap[K]
	wm           int64
	out          *node[O]
	lateL        *node[L]
	lateR        *node[R]
	st           *opStats
}

type joinLeft[K comparable, L, R, O any] struct {
	o   *joinOp[K, L, R, O]
	key func(L) K
}

func (j joinLeft[K, L, R, O]) push(ts int64, l L) {
	o := j.o
	o.st.in++
	if ts <= o.wm {
		o.st.late++
		o.lateL.emit(ts, l)
		return
	}
	k := j.key(l)
	for _, r := range o.right[k] {
		if r.TS >= ts+o.lower && r.TS <= ts+o.upper {
			o.out.emit(max(ts, r.TS), o.join(k, l, r.V))
		}
	}
	if !o.g.checkSize(o.size, o.st) {
		return
	}
	o.left[k] = append(o.left[k], stamped[L]{ts, l})
	o.size++
	o.cleanup.add(ts+o.upper, k) // no right record at or after the watermark can match it later
}

type joinRight[K comparable, L, R, O any] struct {
	o   *joinOp[K, L, R, O]
	key func(R) K
}

func (j joinRight[K, L, R, O]) push(ts int64, r R) {
	o := j.o
	o.st.in++
	if ts <= o.wm {
		o.st.late++
		o.lateR.emit(ts, r)
		return
	}
	k := j.key(r)
	for _, l := range o.left[k] {
		if ts >= l.TS+o.lower && ts <= l.TS+o.upper {
			o.out.emit(max(ts, l.TS), o.join(k, l.V, r))
		}
	}
	if !o.g.checkSize(o.size, o.st) {
		return
	}
	o.right[k] = append(o.right[k], stamped[R]{ts, r})
	o.size++
	o.cleanup.add(ts-o.lower, k)
}

// advance drops buffered records that no future on-time record can match: a future record has
// an event time after the watermark.
func (o *joinOp[K, L, R, O]) advance(wm int64) {
	o.wm = wm
	for len(o.cleanup.t) > 0 && o.cleanup.t[0].At <= wm {
		k := heap.Pop(&o.cleanup).(timer[K]).Key
		if ls, ok := o.left[k]; ok {
			keep := ls[:0]
			for _, l := range ls {
				if l.TS+o.upper > wm {
					keep = append(keep, l)
				}
			}
			o.size -= len(ls) - len(keep)
			setOrDelete(o.left, k, keep)
		}
		if rs, ok := o.right[k]; ok {
			keep := rs[:0]
			for _, r := range rs {
				if r.TS-o.lower > wm {
					keep = append(keep, r)
				}
			}
			o.size -= len(rs) - len(keep)
			setOrDelete(o.right, k, keep)
		}
	}
}

func setOrDelete[K comparable, V any](m map[K][]V, k K, v []V) {
	if len(v) == 0 {
		delete(m, k)
		return
	}
	m[k] = v
}

type joinState[K comparable, L, R any] struct {
	LeftKeys  []K
	Left      [][]stamped[L]
	RightKeys []K
	Right     [][]stamped[R]
	Timers    []timer[K]
	Seq       uint64
	WM        int64
}

func (o *joinOp[K, L, R, O]) snapshot(enc *gob.Encoder) error {
	s := joinState[K, L, R]{Timers: o.cleanup.t, Seq: o.cleanup.seq, WM: o.wm}
	for k, v := range o.left {
		s.LeftKeys, s.Left = append(s.LeftKeys, k), append(s.Left, v)
	}
	for k, v := range o.right {
		s.RightKeys, s.Right = append(s.RightKeys, k), append(s.Right, v)
	}
	return enc.Encode(&s)
}

func (o *joinOp[K, L, R, O]) restore(dec *gob.Decoder) error {
	var s joinState[K, L, R]
	if err := dec.Decode(&s); err != nil {
		return err
	}
	o.left, o.right, o.size = map[K][]stamped[L]{}, map[K][]stamped[R]{}, 0
	for i, k := range s.LeftKeys {
		o.left[k] = s.Left[i]
		o.size += len(s.Left[i])
	}
	for i, k := range s.RightKeys {
		o.right[k] = s.Right[i]
		o.size += len(s.Right[i])
	}
	o.cleanup = timerHeap[K]{t: s.Timers, seq: s.Seq}
	o.wm = s.WM
	return nil
}

// JoinTable enriches each record of a stream with the current row of its key in a table, kept
// from the table stream's records (the newest record of a key is its row). join gets ok=false
// when the key has no row yet and returns whether to emit; the result keeps the record's time.
// Rows and records are matched in the order the source delivers them.
func JoinTable[K comparable, T, V, O any](s Keyed[K, T], table Keyed[K, V], join func(k K, v T, row V, ok bool) (O, bool)) Stream[O] {
	g := s.s.g
	o := &tableOp[K, T, V, O]{g: g, join: join, rows: map[K]V{}}
	st := g.stat("tablejoin", func() int { return len(o.rows) })
	o.st, o.out = st, &node[O]{st: st}
	s.s.n.outs = append(s.s.n.outs, tableProbe[K, T, V, O]{o, s.key})
	table.s.n.outs = append(table.s.n.outs, tableUpsert[K, T, V, O]{o, table.key})
	g.states = append(g.states, o)
	return Stream[O]{g: g, n: o.out}
}

type tableOp[K comparable, T, V, O any] struct {
	g    *graph
	join func(K, T, V, bool) (O, bool)
	rows map[K]V
	out  *node[O]
	st   *opStats
}

type tableProbe[K comparable, T, V, O any] struct {
	o   *tableOp[K, T, V, O]
	key func(T) K
}

func (p tableProbe[K, T, V, O]) push(ts int64, v T) {
	p.o.st.in++
	k := p.key(v)
	row, ok := p.o.rows[k]
	if out, emit := p.o.join(k, v, row, ok); emit {
		p.o.out.emit(ts, out)
	}
}

type tableUpsert[K comparable, T, V, O any] struct {
	o   *tableOp[K, T, V, O]
	key func(V) K
}

func (u tableUpsert[K, T, V, O]) push(_ int64, row V) {
	u.o.st.in++
	k := u.key(row)
	if _, ok := u.o.rows[k]; !ok && !u.o.g.checkSize(len(u.o.rows), u.o.st) {
		return
	}
	u.o.rows[k] = row
}

type tableState[K comparable, V any] struct {
	Keys []K
	Rows []V
}

func (o *tableOp[K, T, V, O]) snapshot(enc *gob.Encoder) error {
	var s tableState[K, V]
	for k, v := range o.rows {
		s.Keys, s.Rows = append(s.Keys, k), append(s.Rows, v)
	}
	return enc.Encode(&s)
}

func (o *tableOp[K, T, V, O]) restore(dec *gob.Decoder) error {
	var s tableState[K, V]
	if err := dec.Decode(&s); err != nil {
		return err
	}
	o.rows = make(map[K]V, len(s.Keys))
	for i, k := range s.Keys {
		o.rows[k] = s.Rows[i]
	}
	return nil
}
