// Package shed decides when a queue should turn work away rather than let it wait:
// under overload an answer "busy, come back in n ms" within a millisecond is worth more than
// a "yes" many seconds late, and the work refused costs the node nearly nothing.
//
// A Gate watches one queue. It measures how long work waited before it was served (the
// sojourn time) and how long serving a piece takes, and refuses an arrival whose expected wait
// (the work ahead of it times the service time) is past what the queue allows. What it allows
// follows CoDel (Nichols and Jacobson, "Controlling Queue Delay"): a queue whose shortest wait
// has stayed above Target for a whole Interval has a standing backlog, and from then until a
// wait below Target is seen again, it lets in only what can be served within Target; otherwise
// within MaxWait. Arrivals are turned away at the door, never dropped from the head of the
// line: a flash sale serves in arrival order, and the earliest arrivals keep their places.
package shed

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Defaults of a Gate.
const (
	DefaultTarget   = 50 * time.Millisecond
	DefaultInterval = 200 * time.Millisecond
	DefaultMaxWait  = 500 * time.Millisecond
	// MinRetry and MaxRetry bound the retry hint given with a refusal.
	MinRetry = 50 * time.Millisecond
	MaxRetry = 2 * time.Second
	// ewmaShift weighs each new service time at 1/8 (as TCP's smoothed round-trip time does).
	ewmaShift = 3
)

// Config bounds a queue's waits.
type Config struct {
	Target   time.Duration // the standing delay above which the queue is overloaded
	Interval time.Duration // how long the delay must stay above Target to count
	MaxWait  time.Duration // no arrival is let in to wait longer than this, overloaded or not
}

func (c *Config) defaults() {
	if c.Target <= 0 {
		c.Target = DefaultTarget
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.MaxWait < c.Target {
		c.MaxWait = max(DefaultMaxWait, c.Target)
	}
}

// Gate is the admission of one queue. Admit may be called from any goroutine; Taken from the
// queue's one server.
type Gate struct {
	cfg        Config
	perItemNs  atomic.Int64 // smoothed time to serve one piece of work while backlogged
	overloaded atomic.Bool

	// Taken's own.
	aboveUntil time.Time // when the wait, above Target since, makes overload
	lastTake   time.Time
	lastN      int
	lastLeft   bool // work was left waiting after the last take
}

// New returns a gate with cfg's bounds (the defaults for zero values).
func New(cfg Config) *Gate {
	cfg.defaults()
	return &Gate{cfg: cfg}
}

// Taken records that the server took n pieces of work from the queue at now, the oldest of
// them having waited waited, and left left waiting. The service time is measured while the
// queue is backlogged (work was left at the last take, so the server came straight back): from
// one take to the next, the server did nothing but serve the last batch. Measured in a quiet
// queue, the fixed cost of a batch of one would be taken for the cost of each piece of a full
// one, and the opening rush of a sale refused for a wait it would never have had.
func (g *Gate) Taken(now time.Time, waited time.Duration, n, left int) {
	if g.lastLeft && g.lastN > 0 {
		per := int64(now.Sub(g.lastTake)) / int64(g.lastN)
		if old := g.perItemNs.Load(); old == 0 {
			g.perItemNs.Store(per)
		} else {
			g.perItemNs.Store(old + (per-old)>>ewmaShift)
		}
	}
	g.lastTake, g.lastN, g.lastLeft = now, n, left > 0
	switch {
	case waited < g.cfg.Target: // the queue drained to below Target: no standing backlog
		g.aboveUntil = time.Time{}
		g.overloaded.Store(false)
	case g.aboveUntil.IsZero():
		g.aboveUntil = now.Add(g.cfg.Interval)
	case !now.Before(g.aboveUntil):
		g.overloaded.Store(true)
	}
}

// Admit decides an arrival that finds ahead pieces of work waiting. When it refuses, retry is
// when to come back: the time the work ahead takes to drain to what the queue allows, within
// [MinRetry, MaxRetry], spread by a fifth either way so that the refused do not all return at
// once.
func (g *Gate) Admit(ahead int) (ok bool, retry time.Duration) {
	wait := time.Duration(int64(ahead) * g.perItemNs.Load())
	allowed := g.cfg.MaxWait
	if g.overloaded.Load() {
		allowed = g.cfg.Target
	}
	if wait <= allowed {
		return true, 0
	}
	retry = min(max(wait-allowed, MinRetry), MaxRetry)
	return false, retry + time.Duration(rand.Int64N(int64(retry)*2/5+1)) - retry/5
}

// Overloaded reports whether the queue has a standing backlog.
func (g *Gate) Overloaded() bool { return g.overloaded.Load() }

// Wait is the expected wait of an arrival that finds ahead pieces of work waiting.
func (g *Gate) Wait(ahead int) time.Duration { return time.Duration(int64(ahead) * g.perItemNs.Load()) }
