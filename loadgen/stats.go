package loadgen

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Outcomes of an attempt, as a shopper finally hears them.
const (
	OutSuccess     = "success"
	OutSoldOut     = "sold_out"
	OutLimit       = "limit"
	OutRateLimited = "rate_limited"
	OutRejected    = "rejected"    // blocked, bad token, not on sale
	OutUnavailable = "unavailable" // shed, queue full, a backend briefly down
	OutChallenged  = "challenged"  // a proof of work asked for that the app did not solve in time
	OutError       = "error"       // transport errors and anything unexpected
)

// maxSamples bounds the latencies kept for percentiles; past it, a reservoir keeps a fair
// sample of them.
const maxSamples = 1 << 21

// recorder gathers what the crowd saw, per second and in all.
type recorder struct {
	start time.Time

	mu        sync.Mutex
	outcomes  map[string]int64
	all       []float64 // latencies in ms, from the intended send time
	before    []float64 // latencies of attempts answered before the first sold-out answer
	after     []float64 // and from it on
	nBefore   int64     // how many were answered before it (the samples above are bounded)
	nAfter    int64
	seen      int64
	soldOutAt time.Duration // first sold-out answer, from start; 0 while none
	seconds   []*second
	lag       []float64 // ms from an attempt's intended time to its sending
	nLag      int64

	// By side (sideShopper, sideBot): when each attempt that made an order was sent, from the
	// start (one entry per order, as the crowd keeps each order for its check), and the
	// attempts risk control refused.
	made        [2][]time.Duration
	riskRefused [2]int64
	reasons     map[string]int64 // refusals by risk control, by the rule's reason
	challenges  int64
	solved      int64
	solves      []float64 // ms an app spent solving a challenge
}

// Sides of the crowd, as the risk figures split it.
const (
	sideShopper = 0
	sideBot     = 1
)

func sideOf(bot bool) int {
	if bot {
		return sideBot
	}
	return sideShopper
}

type second struct {
	attempts int64
	requests int64
	outcomes map[string]int64
	lat      []float64
	inFlight int64
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, outcomes: map[string]int64{}, reasons: map[string]int64{}}
}

func (r *recorder) secondAt(at time.Time) *second {
	i := max(int(at.Sub(r.start)/time.Second), 0)
	for len(r.seconds) <= i {
		r.seconds = append(r.seconds, &second{outcomes: map[string]int64{}})
	}
	return r.seconds[i]
}

// sent notes that an attempt intended at intended went out at at: the crowd's own lag, which
// counts in the latency too (a crowd that cannot keep up shows it here).
func (r *recorder) sent(intended, at time.Time) {
	ms := float64(at.Sub(intended).Microseconds()) / 1000
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nLag++
	r.lag = keep(r.lag, r.nLag, ms)
}

// keep adds v to a reservoir of at most maxSamples values that has been offered n, v included:
// past the bound, each value offered stays with equal chance.
func keep(s []float64, n int64, v float64) []float64 {
	if len(s) < maxSamples {
		return append(s, v)
	}
	if j := rand.Int64N(n); j < maxSamples {
		s[j] = v
	}
	return s
}

// request notes a request of any kind sent at at.
func (r *recorder) request(at time.Time) {
	r.mu.Lock()
	r.secondAt(at).requests++
	r.mu.Unlock()
}

// record notes an attempt intended at intended and answered at done with outcome.
func (r *recorder) record(intended, done time.Time, outcome string) {
	ms := float64(done.Sub(intended).Microseconds()) / 1000
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[outcome]++
	if outcome == OutSoldOut && r.soldOutAt == 0 {
		r.soldOutAt = max(done.Sub(r.start), time.Nanosecond)
	}
	s := r.secondAt(intended)
	s.attempts++
	s.outcomes[outcome]++
	if len(s.lat) < maxSamples/64 {
		s.lat = append(s.lat, ms)
	}
	r.seen++
	r.all = keep(r.all, r.seen, ms)
	// By when the answer came, not when the attempt was meant to start: under a backlog the
	// arrivals run ahead of the answers, and the phases are about what the target served.
	if r.soldOutAt == 0 || done.Sub(r.start) < r.soldOutAt {
		r.nBefore++
		if len(r.before) < maxSamples {
			r.before = append(r.before, ms)
		}
	} else {
		r.nAfter++
		if len(r.after) < maxSamples {
			r.after = append(r.after, ms)
		}
	}
}

// orderMade notes an order made by an attempt sent at sent, by a bot or a human shopper.
func (r *recorder) orderMade(bot bool, sent time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made[sideOf(bot)] = append(r.made[sideOf(bot)], sent.Sub(r.start))
}

// riskRefusal notes an attempt risk control refused, for reason.
func (r *recorder) riskRefusal(bot bool, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.riskRefused[sideOf(bot)]++
	r.reasons[reason]++
}

// challenged notes an answer that asked for a proof of work.
func (r *recorder) challenged() {
	r.mu.Lock()
	r.challenges++
	r.mu.Unlock()
}

// solvedIn notes a challenge solved in d.
func (r *recorder) solvedIn(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.solved++
	r.solves = keep(r.solves, r.solved, float64(d.Microseconds())/1000)
}

// successCurves counts each side's orders by the second their attempt was sent, over at least
// secs seconds.
func (r *recorder) successCurves(secs int) [2][]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, made := range r.made {
		for _, at := range made {
			secs = max(secs, int(at/time.Second)+1)
		}
	}
	var out [2][]int64
	for side, made := range r.made {
		out[side] = make([]int64, secs)
		for _, at := range made {
			out[side][max(int(at/time.Second), 0)]++
		}
	}
	return out
}

// successesAfter counts each side's orders whose attempt was sent after from (from the start).
func (r *recorder) successesAfter(from time.Duration) [2]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [2]int64
	for side, made := range r.made {
		for _, at := range made {
			if at > from {
				out[side]++
			}
		}
	}
	return out
}

// phases splits the run that ended at end (from the start) at the first sold-out answer: the
// answers per second and the latencies of each side.
func (r *recorder) phases(end time.Duration) (before, after Phase) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := r.soldOutAt
	if cut == 0 || cut > end {
		cut = end
	}
	return phase(r.nBefore, r.before, cut), phase(r.nAfter, r.after, end-cut)
}

func phase(n int64, ms []float64, d time.Duration) Phase {
	p := Phase{Attempts: int(n)}
	if d > 0 {
		p.AttemptsPerSec = float64(n) / d.Seconds()
	}
	p.P50Ms, p.P99Ms = Percentiles(ms)
	return p
}

// Percentiles returns the median and 99th percentile of ms (0, 0 when empty); ms is left as it
// was.
func Percentiles(ms []float64) (p50, p99 float64) {
	if len(ms) == 0 {
		return 0, 0
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}
