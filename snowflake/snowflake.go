// Package snowflake generates unique, time-ordered 63-bit ids: 41 bits of milliseconds since
// Epoch, 10 bits of worker id, 12 bits of sequence within the millisecond.
package snowflake

import (
	"sync"
	"time"

	"github.com/surgecommerce/surge"
)

// Layout of an id.
const (
	WorkerBits   = 10
	SequenceBits = 12
	MaxWorker    = 1<<WorkerBits - 1
	maxSequence  = 1<<SequenceBits - 1

	// MaxBackwardWait is how far the clock may step back before Next fails rather than waits.
	MaxBackwardWait = 2 * time.Second
)

// Epoch is the zero of the id clock: 2026-01-01T00:00:00Z. 41 bits of milliseconds from it last
// until 2095.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Generator hands out ids for one worker. It is safe for concurrent use.
type Generator struct {
	worker int64
	now    func() time.Time
	sleep  func(time.Duration)

	mu     sync.Mutex
	lastMs int64 // milliseconds since Epoch of the last id handed out
	seq    int64
}

// New returns a generator for a worker id in [0, MaxWorker] that reads the wall clock.
func New(worker int64) (*Generator, error) {
	return NewWithClock(worker, time.Now, time.Sleep)
}

// NewWithClock is New with an injected clock and sleep, for tests of clock steps.
func NewWithClock(worker int64, now func() time.Time, sleep func(time.Duration)) (*Generator, error) {
	if worker < 0 || worker > MaxWorker {
		return nil, surge.Errorf(surge.EINVALID, "worker id must be between 0 and %d", MaxWorker)
	}
	return &Generator{worker: worker, now: now, sleep: sleep, lastMs: -1}, nil
}

// Next returns a new id, larger than every id this generator returned before. When the clock
// has stepped back it waits for it to catch up, up to MaxBackwardWait; past that it returns
// ECLOCK and hands out nothing, so an id is never repeated.
func (g *Generator) Next() (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms, err := g.waitFor(func(ms int64) bool { return ms >= g.lastMs })
	if err != nil {
		return 0, err
	}
	seq := int64(0)
	if ms == g.lastMs {
		seq = (g.seq + 1) & maxSequence
		if seq == 0 { // this millisecond is used up: wait for the next
			if ms, err = g.waitFor(func(ms int64) bool { return ms > g.lastMs }); err != nil {
				return 0, err // nothing was handed out, so nothing is remembered
			}
		}
	}
	if ms >= 1<<41 {
		return 0, surge.Errorf(surge.ECLOCK, "the id clock ran past its 41 bits")
	}
	g.lastMs, g.seq = ms, seq
	return ms<<(WorkerBits+SequenceBits) | g.worker<<SequenceBits | seq, nil
}

// waitFor reads the clock until ok accepts it, sleeping while the clock is behind.
func (g *Generator) waitFor(ok func(ms int64) bool) (int64, error) {
	var waited time.Duration
	for {
		t := g.now()
		if t.Before(Epoch) {
			return 0, surge.Errorf(surge.ECLOCK, "the clock reads %s, before the id epoch", t.UTC())
		}
		ms := t.Sub(Epoch).Milliseconds()
		if ok(ms) {
			return ms, nil
		}
		behind := time.Duration(g.lastMs-ms)*time.Millisecond + time.Millisecond/10
		if behind < 0 {
			behind = time.Millisecond / 10
		}
		if waited+behind > MaxBackwardWait {
			return 0, surge.Errorf(surge.ECLOCK, "the clock stepped back %s; refusing to issue ids", behind)
		}
		g.sleep(behind)
		waited += behind
	}
}

// Time returns the moment an id was made, to the millisecond.
func Time(id int64) time.Time {
	return Epoch.Add(time.Duration(id>>(WorkerBits+SequenceBits)) * time.Millisecond)
}

// Worker returns the worker id that made an id.
func Worker(id int64) int64 { return id >> SequenceBits & MaxWorker }
