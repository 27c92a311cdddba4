// Package shed decides when a line of work should turn arrivals away rather than let them wait
// under overload an answer "busy, come back in n ms" within a millisecond is worth
// more than a "yes" many seconds late, and the work refused costs the node nearly nothing.
//
// A Delay watches how long work waits from its arrival to its answer, and how much the line
// answers while it is busy. An arrival that finds more ahead of it than the line answers in
// MaxWait is turned away at once (Little's law: the wait is the work ahead over the pace). Past
// that bound, it follows CoDel
// (Nichols and Jacobson, "Controlling Queue Delay"): the shortest wait of an interval is the
// standing delay, the backlog that does not drain between bursts. While it stays above the
// target, the share of arrivals turned away rises each interval, a step for each multiple of
// the target it stands at (so that a line far behind sheds at once); once it is below half the
// target, the share falls a step. Additive steps settle the share where the line keeps up, as
// PIE steers a router's queue. Arrivals are turned away at the door, never taken from the
// line once in: a flash sale serves in arrival order, and the earliest keep their places.
package shed

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Bounds of a Delay.
const (
	// DefaultTarget is the standing delay above which a line turns arrivals away.
	DefaultTarget = 100 * time.Millisecond
	// Interval is how long a standing delay is watched before the share moves a step.
	Interval = 100 * time.Millisecond
	// DefaultMaxWait bounds the wait an arrival is let in to, by the work ahead of it and the
	// line's pace.
	DefaultMaxWait = 500 * time.Millisecond
	// MaxShare keeps a tenth of the arrivals let in whatever the load: a sale must go on
	// selling, and the waits of those let in are what says when the load has passed.
	MaxShare     = 0.9
	maxPermille  = 900
	stepPermille = 100
	// RetryStep is the retry hint at the first step; it grows a step with each step of the
	// share, to 2 s at the largest.
	RetryStep = 200 * time.Millisecond
)

// Delay is the admission of one line of work. Observe is called by the line's one server;
// Shed by any goroutine.
type Delay struct {
	target, maxWait time.Duration
	cold            int64        // the most let in while the pace is not yet measured
	permille        atomic.Int64 // the share turned away, in thousandths
	standing        atomic.Int64 // the last interval's shortest wait, ns
	lastNs          atomic.Int64 // when the last wait was observed, unix ns
	pace            atomic.Int64 // answers a second while busy (0: not yet measured)
	batchPace       atomic.Int64 // pieces a second as the server last served a batch (Served)

	// Observe's own.
	start, end time.Time
	shortest   time.Duration
	answered   int64
}

// New returns the admission of a line whose standing delay should stay under target, and
// whose arrivals should not wait longer than maxWait (the defaults if zero). Until the line's
// pace is measured, at most cold pieces of work are let in at once (no bound if zero): a line
// opening to a rush would otherwise take it all before it knows how fast it serves.
func New(target, maxWait time.Duration, cold int64) *Delay {
	if target <= 0 {
		target = DefaultTarget
	}
	if maxWait < target {
		maxWait = max(DefaultMaxWait, target)
	}
	return &Delay{target: target, maxWait: maxWait, cold: cold}
}

// Observe records that a piece of work answered at now had waited wait since it arrived.
func (d *Delay) Observe(now time.Time, wait time.Duration) {
	d.lastNs.Store(now.UnixNano())
	switch {
	case d.end.IsZero():
		d.start, d.end, d.shortest, d.answered = now, now.Add(Interval), wait, 1
		return
	case now.Before(d.end):
		d.shortest = min(d.shortest, wait)
		d.answered++
		return
	}
	d.standing.Store(int64(d.shortest))
	// The pace is measured only in an interval the line was busy throughout (its shortest wait
	// a quarter of the target or more): a quiet line answers what comes, not what it can, and
	// its pace would turn away the first burst after a lull.
	if el := now.Sub(d.start); d.shortest >= d.target/4 && el > 0 {
		pace := int64(float64(d.answered) / el.Seconds())
		if old := d.pace.Load(); old > 0 {
			pace = old + (pace-old)/4
		}
		d.pace.Store(pace)
	}
	p := d.permille.Load()
	switch {
	case d.shortest > d.target: // a step for each multiple of the target, up to five
		p = min(p+stepPermille*min(int64(d.shortest/d.target), 5), maxPermille)
	case d.shortest < d.target/2:
		p = max(p-stepPermille, 0)
	}
	d.permille.Store(p)
	d.start, d.end, d.shortest, d.answered = now, now.Add(Interval), wait, 1
}

// Served records that the line's server took took to serve a batch of n pieces. Until the
// pace is measured over a busy interval, this is the pace: a line opening to a rush knows how
// fast it serves from its first batch, not from a whole interval later.
func (d *Delay) Served(n int, took time.Duration) {
	if n > 0 && took > 0 {
		d.batchPace.Store(max(int64(float64(n)/took.Seconds()), 1))
	}
}

// Why an arrival was turned away.
const (
	WorkAhead = "work_ahead" // more work ahead of it than the line answers in MaxWait (or, before the pace is known, than the cold bound)
	Standing  = "standing"   // the share turned away for a standing delay
)

// Shed decides an arrival at now that finds ahead pieces of work in the line before it: a
// reason (WorkAhead or Standing) turns it away, with when to come back, spread by a fifth
// either way so that those turned away do not all return at once; "" lets it in. An arrival
// with nothing ahead is let in. The share for a standing delay applies only while the line
// answers: one that has answered nothing for two intervals measured a load that is gone (its
// work ahead still counts, by its pace: a slow line answers seldom).
func (d *Delay) Shed(now time.Time, ahead int64) (why string, retry time.Duration) {
	if ahead <= 0 {
		return "", 0 // nothing ahead: it is served at once
	}
	pace := d.pace.Load()
	if pace == 0 {
		pace = d.batchPace.Load()
	}
	switch {
	case pace == 0 && d.cold > 0 && ahead >= d.cold:
		return WorkAhead, spread(RetryStep)
	case pace > 0:
		if wait := time.Duration(float64(ahead) / float64(pace) * float64(time.Second)); wait > d.maxWait {
			return WorkAhead, spread(min(max(wait-d.maxWait, RetryStep), 10*RetryStep))
		}
	}
	if now.UnixNano()-d.lastNs.Load() > int64(2*Interval) {
		return "", 0 // no answer for a while: the standing delay measured is about a load that is gone
	}
	p := d.permille.Load()
	if p == 0 || rand.Int64N(1000) >= p {
		return "", 0
	}
	return Standing, spread(RetryStep * time.Duration(1+p/stepPermille))
}

// spread moves a retry hint by up to a fifth either way.
func spread(retry time.Duration) time.Duration {
	return retry + time.Duration(rand.Int64N(int64(retry)*2/5+1)) - retry/5
}

// Pace is how many answers a second the line gives while busy (0 until measured).
func (d *Delay) Pace() int64 { return d.pace.Load() }

// Share is the share of arrivals turned away, from 0 to MaxShare.
func (d *Delay) Share() float64 { return float64(d.permille.Load()) / 1000 }

// Standing is the last interval's shortest wait.
func (d *Delay) Standing() time.Duration { return time.Duration(d.standing.Load()) }
