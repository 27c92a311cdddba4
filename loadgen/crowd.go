// Package loadgen replays a flash-sale crowd against a deployment and checks the invariants
// afterwards: open-model arrivals on a schedule (a spike when the sale opens), latency
// measured from each attempt's intended send time so that a stalled server cannot hide its
// queueing (coordinated omission corrected, as wrk2 does), Zipf item popularity, shoppers who
// poll a queued answer and pay (or abandon), and bots that hammer from a few addresses.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/purchase"
)

// Shopper is one member of the crowd: who it is and where it seems to come from.
type Shopper struct {
	UserID int64
	Token  string // access token
	IP     string // its address, sent as X-Forwarded-For
}

// Target is what the crowd buys from: Surge's API, or the reference build.
type Target interface {
	// Setup creates (or reuses) the sale's items and returns their ids, hottest first, and
	// when the sale opens.
	Setup(ctx context.Context) (items []int64, opens time.Time, err error)
	// Shoppers provisions n synthetic shoppers.
	Shoppers(ctx context.Context, n int) ([]Shopper, error)
	// Page fetches an item's page for a shopper: the purchase token and what is left.
	Page(ctx context.Context, sh Shopper, item int64) (token string, remaining int64, err error)
	// Buy makes an attempt; an error is a refusal (with a domain code) or a failure.
	Buy(ctx context.Context, sh Shopper, req purchase.Request) (*purchase.Result, error)
	// Poll asks for a queued attempt's answer.
	Poll(ctx context.Context, sh Shopper, ticket string) (*purchase.Result, error)
	// Pay pays an order; false when the target has no payment to exercise.
	Pay(ctx context.Context, sh Shopper, orderID int64) (bool, error)
	// Order reports whether a shopper's acknowledged order exists.
	Order(ctx context.Context, sh Shopper, orderID int64) error
	// Audit checks the sale against the invariants.
	Audit(ctx context.Context) (*audit.Report, error)
	// Remaining reads the units left of all the sale's items, as the stock engine holds them
	// (for the stock chart; releases of expired orders show).
	Remaining(ctx context.Context) (int64, error)
}

// Config shapes the crowd.
type Config struct {
	Shoppers    int           // distinct human shoppers; each arrives once
	Duration    time.Duration // how long arrivals go on
	Rate        float64       // arrivals per second after the spike
	Spike       float64       // arrival rate multiplier while the sale opens
	SpikeFor    time.Duration
	Zipf        float64 // item popularity skew (s > 1); 0 for uniform
	BotShare    float64 // share of arrivals that are bots
	Bots        int     // bot accounts
	BotIPs      int     // addresses the bots come from
	PayShare    float64 // share of successful shoppers who pay; the rest abandon
	PayDelay    time.Duration
	MaxInFlight int           // attempts under way at once (bounded; late ones count their wait)
	PollEvery   time.Duration // a queued shopper's first poll; each next one waits twice as long, up to a second
	Seed        uint64
	Settle      time.Duration // how long the checker waits for the sale to settle
	PayTimeout  time.Duration // the session's: abandoned orders expire after it, before the check
	// Progress, when set, is called about every second while the crowd runs.
	Progress func(Progress)
}

func (c *Config) defaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.PollEvery <= 0 {
		c.PollEvery = 50 * time.Millisecond
	}
	if c.Spike < 1 {
		c.Spike = 1
	}
	if c.BotIPs <= 0 {
		c.BotIPs = 1
	}
	if c.Settle <= 0 {
		c.Settle = time.Minute
	}
}

// String is the progress as one line.
func (p Progress) String() string {
	return fmt.Sprintf("%5.1fs  %6.0f/s  p50 %.2f ms  p99 %.2f ms  in flight %d  %s",
		p.Elapsed.Seconds(), p.Rate, p.P50, p.P99, p.InFlight, outcomeList(p.Outcomes))
}

// Progress is a live view of the run.
type Progress struct {
	Elapsed  time.Duration
	Rate     float64 // attempts answered per second, over the last second
	Outcomes map[string]int64
	P50, P99 float64 // ms, of the attempts intended in the last full second
	InFlight int64
}

// Point is one second of the run, for the charts.
type Point struct {
	Second    int              `json:"second"`
	Attempts  int64            `json:"attempts"`
	P50Ms     float64          `json:"p50_ms"`
	P99Ms     float64          `json:"p99_ms"`
	Outcomes  map[string]int64 `json:"outcomes"`
	Remaining int64            `json:"remaining"` // units left of all items; -1 when unread
}

// Phase is the figures of part of the run.
type Phase struct {
	Attempts       int     `json:"attempts"`
	AttemptsPerSec float64 `json:"attempts_per_sec"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
}

// Result is a run's report.
type Result struct {
	Target         string           `json:"target"`
	Attempts       int64            `json:"attempts"`
	AttemptsPerSec float64          `json:"attempts_per_sec"`
	P50Ms          float64          `json:"p50_ms"`
	P99Ms          float64          `json:"p99_ms"`
	BeforeSellout  Phase            `json:"before_sellout"`
	AfterSellout   Phase            `json:"after_sellout"`
	Outcomes       map[string]int64 `json:"outcomes"`
	Orders         int64            `json:"orders"`    // distinct acknowledged orders
	Paid           int64            `json:"paid"`      // orders the crowd paid
	Abandoned      int64            `json:"abandoned"` // orders left to expire
	PayErrors      int64            `json:"pay_errors"`
	PayFailures    map[string]int64 `json:"pay_failures,omitempty"` // payment errors by code (ECONFLICT: the order expired first)
	Invariants     []audit.Result   `json:"invariants"`
	Passed         bool             `json:"passed"`
	Series         []Point          `json:"series"`
	DurationSec    float64          `json:"duration_sec"`

	acks []ack // the orders shoppers were told of
}

// arrival is one scheduled attempt.
type arrival struct {
	at    time.Duration // intended time, from the start
	who   int           // index into the shoppers
	bot   bool
	item  int64
	token string
}

// schedule lays out the arrivals of an open model: a Poisson process whose rate is
// Rate*Spike for SpikeFor, then Rate, for Duration. Human shoppers arrive once each, in turn,
// until they run out; bots arrive as often as their share says.
func schedule(c Config, rng *rand.Rand, humans, bots int) []arrival {
	var out []arrival
	next := 0
	for t := time.Duration(0); ; {
		rate := c.Rate
		if t < c.SpikeFor {
			rate *= c.Spike
		}
		if rate <= 0 {
			break
		}
		t += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if t >= c.Duration {
			break
		}
		if bots > 0 && rng.Float64() < c.BotShare {
			out = append(out, arrival{at: t, who: humans + rng.IntN(bots), bot: true})
			continue
		}
		if next >= humans {
			continue // every human has come: only bots keep arriving
		}
		out = append(out, arrival{at: t, who: next})
		next++
	}
	return out
}

// zipf picks item indexes with popularity ∝ 1/(i+1)^s.
type zipf struct{ cdf []float64 }

func newZipf(n int, s float64) zipf {
	z := zipf{cdf: make([]float64, n)}
	sum := 0.0
	for i := range n {
		sum += 1 / math.Pow(float64(i+1), s)
		z.cdf[i] = sum
	}
	for i := range z.cdf {
		z.cdf[i] /= sum
	}
	return z
}

func (z zipf) pick(rng *rand.Rand) int {
	u := rng.Float64()
	for i, c := range z.cdf {
		if u <= c {
			return i
		}
	}
	return len(z.cdf) - 1
}

// Run sets up the sale, provisions the crowd, fetches every shopper's purchase token, replays
// the arrivals, lets payments happen and abandoned orders expire, and checks the invariants.
func Run(ctx context.Context, t Target, c Config, log func(format string, args ...any)) (*Result, error) {
	c.defaults()
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
	items, opens, err := t.Setup(ctx)
	if err != nil {
		return nil, fmt.Errorf("setting up the sale: %w", err)
	}
	if len(items) == 0 {
		return nil, errors.New("the sale has no items")
	}
	bots := 0
	if c.BotShare > 0 {
		bots = max(c.Bots, 1)
	}
	log("provisioning %d shoppers and %d bots", c.Shoppers, bots)
	crowd, err := t.Shoppers(ctx, c.Shoppers+bots)
	if err != nil {
		return nil, fmt.Errorf("provisioning shoppers: %w", err)
	}
	for i := range crowd {
		if i < c.Shoppers {
			crowd[i].IP = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		} else {
			crowd[i].IP = fmt.Sprintf("172.16.0.%d", 1+(i-c.Shoppers)%c.BotIPs)
		}
	}
	plan := schedule(c, rng, c.Shoppers, bots)
	z := newZipf(len(items), c.Zipf)
	for i := range plan {
		if plan[i].bot {
			plan[i].item = items[0] // bots go for the hottest item
		} else {
			plan[i].item = items[z.pick(rng)]
		}
	}
	log("fetching purchase tokens for %d arrivals", len(plan))
	if err := fetchTokens(ctx, t, crowd, plan, c.MaxInFlight); err != nil {
		return nil, err
	}
	if d := time.Until(opens); d > 0 {
		log("the sale opens in %s", d.Round(time.Millisecond))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	log("replaying %d arrivals over %s", len(plan), c.Duration)
	res, err := replay(ctx, t, c, crowd, plan)
	if err != nil {
		return nil, err
	}
	if res.Abandoned > 0 && c.PayTimeout > 0 {
		log("waiting %s for %d abandoned orders to expire", c.PayTimeout, res.Abandoned)
		select {
		case <-time.After(c.PayTimeout):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	log("checking the invariants (waiting up to %s for the sale to settle)", c.Settle)
	inv, passed := check(ctx, t, c.Settle, c.PayTimeout > 0)
	res.Invariants = append(inv, verifyAcks(ctx, t, res.acks, c.MaxInFlight))
	res.Passed = passed
	for _, r := range res.Invariants {
		if r.Status == audit.Fail {
			res.Passed = false
		}
	}
	return res, nil
}

// fetchTokens opens every arrival's item page first, as shoppers do before the sale opens; a
// bot reuses one token for all its attempts.
func fetchTokens(ctx context.Context, t Target, crowd []Shopper, plan []arrival, workers int) error {
	botTokens := map[[2]int64]string{}
	var mu sync.Mutex
	var first error
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, 64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(plan) {
					return
				}
				a := &plan[i]
				key := [2]int64{int64(a.who), a.item}
				if a.bot {
					mu.Lock()
					tok, ok := botTokens[key]
					mu.Unlock()
					if ok {
						a.token = tok
						continue
					}
				}
				tok, _, err := t.Page(ctx, crowd[a.who], a.item)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("item page for shopper %d: %w", crowd[a.who].UserID, err)
					}
					mu.Unlock()
					return
				}
				a.token = tok
				if a.bot {
					mu.Lock()
					botTokens[key] = tok
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// outcomeOf names what a shopper finally heard.
func outcomeOf(res *purchase.Result, err error) string {
	switch code := surge.ErrorCode(err); {
	case err == nil && res != nil && res.Status == purchase.StatusSuccess:
		return OutSuccess
	case err == nil:
		return OutError
	case code == surge.ESOLDOUT:
		return OutSoldOut
	case code == surge.ELIMIT:
		return OutLimit
	case code == surge.ERATELIMIT:
		return OutRateLimited
	case code == surge.EFORBIDDEN || code == surge.ECONFLICT || code == surge.ENOTFOUND:
		return OutRejected
	case code == surge.EUNAVAILABLE:
		return OutUnavailable
	}
	return OutError
}

// replay sends the arrivals at their intended times.
func replay(ctx context.Context, t Target, c Config, crowd []Shopper, plan []arrival) (*Result, error) {
	start := time.Now()
	rec := newRecorder(start)
	var inFlight atomic.Int64
	var orders, paid, abandoned, payErrors atomic.Int64
	var wg, payers sync.WaitGroup
	payRng := rand.New(rand.NewPCG(c.Seed+1, c.Seed+2))
	var payMu sync.Mutex
	payNow := func() bool {
		payMu.Lock()
		defer payMu.Unlock()
		return payRng.Float64() < c.PayShare
	}
	seen := sync.Map{} // order ids acknowledged, to count them once
	payFailures := map[string]int64{}

	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	remaining := map[int]int64{} // second → units left, as last read in it
	var progressWG sync.WaitGroup
	defer func() { halt(); progressWG.Wait() }() // also when cancelled: nothing outlives the run
	progressWG.Add(2)
	go func() { // the stock chart: a read at a time (a slow read can take longer than a second)
		defer progressWG.Done()
		for {
			at := int(time.Since(start) / time.Second)
			if left, err := t.Remaining(ctx); err == nil {
				rec.mu.Lock()
				remaining[at] = left
				rec.mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(at+1) * time.Second))):
			}
		}
	}()
	go func() { // the live progress, once a second
		defer progressWG.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lastDone int64
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rec.mu.Lock()
			done := rec.seen
			out := maps.Clone(rec.outcomes)
			var last []float64 // the second just ended: what the live figures are about
			if i := int(time.Since(start)/time.Second) - 1; i >= 0 && i < len(rec.seconds) {
				last = slices.Clone(rec.seconds[i].lat)
			}
			rec.mu.Unlock()
			if c.Progress != nil {
				p50, p99 := Percentiles(last)
				c.Progress(Progress{Elapsed: time.Since(start), Rate: float64(done - lastDone), Outcomes: out, P50: p50, P99: p99, InFlight: inFlight.Load()})
			}
			lastDone = done
		}
	}()

	attempt := func(a arrival) {
		intended := start.Add(a.at)
		sh := crowd[a.who]
		req := purchase.Request{ItemID: a.item, Quantity: 1, RequestID: fmt.Sprintf("lg%d-%d", a.who, a.at), Token: a.token}
		res, err := t.Buy(ctx, sh, req)
		// A queued shopper polls, backing off as apps do, so that a slow sale is not
		// buried under its own polls. Its latency runs to the final answer.
		wait := c.PollEvery
		for deadline := time.Now().Add(30 * time.Second); err == nil && res.Status == purchase.StatusQueued && time.Now().Before(deadline); {
			time.Sleep(wait)
			wait = min(2*wait, time.Second)
			res, err = t.Poll(ctx, sh, res.Ticket)
		}
		outcome := outcomeOf(res, err)
		rec.record(intended, time.Now(), outcome)
		if outcome != OutSuccess {
			return
		}
		if _, dup := seen.LoadOrStore(res.OrderID, sh); dup {
			return
		}
		orders.Add(1)
		if a.bot || !payNow() {
			abandoned.Add(1)
			return
		}
		payers.Add(1)
		go func() {
			defer payers.Done()
			time.Sleep(c.PayDelay)
			ok, err := t.Pay(ctx, sh, res.OrderID)
			switch {
			case err != nil:
				payErrors.Add(1)
				payMu.Lock()
				payFailures[surge.ErrorCode(err)]++
				payMu.Unlock()
			case ok:
				paid.Add(1)
			default:
				abandoned.Add(1) // the target takes no payments
			}
		}()
	}

	// MaxInFlight shoppers take the arrivals in turn. When every one is busy, an arrival waits,
	// and its wait counts in its latency. (A goroutine per attempt grew a new stack through the
	// HTTP client each time: 0.75 s of the 6.8 s its attempts spent in a profile of a crowd.)
	arrivals := make(chan arrival)
	for range c.MaxInFlight {
		wg.Go(func() {
			for a := range arrivals {
				inFlight.Add(1)
				attempt(a)
				inFlight.Add(-1)
			}
		})
	}
	timer := time.NewTimer(time.Hour) // reset for each arrival that is early
	defer timer.Stop()
dispatch:
	for _, a := range plan {
		if d := time.Until(start.Add(a.at)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break dispatch
			}
		}
		select {
		case arrivals <- a:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(arrivals)
	wg.Wait()
	end := time.Since(start)
	payers.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	halt()
	progressWG.Wait()

	r := &Result{Outcomes: rec.outcomes, Orders: orders.Load(), Paid: paid.Load(), Abandoned: abandoned.Load(),
		PayErrors: payErrors.Load(), PayFailures: payFailures, DurationSec: end.Seconds(), Attempts: rec.seen}
	r.AttemptsPerSec = float64(rec.seen) / end.Seconds()
	r.P50Ms, r.P99Ms = Percentiles(rec.all)
	r.BeforeSellout, r.AfterSellout = rec.phases(end)
	for i, s := range rec.seconds {
		p50, p99 := Percentiles(s.lat)
		pt := Point{Second: i, Attempts: s.attempts, P50Ms: p50, P99Ms: p99, Outcomes: s.outcomes, Remaining: -1}
		if left, ok := remaining[i]; ok {
			pt.Remaining = left
		}
		r.Series = append(r.Series, pt)
	}
	seen.Range(func(k, v any) bool {
		r.acks = append(r.acks, ack{k.(int64), v.(Shopper)})
		return true
	})
	return r, nil
}

// ack is an order a shopper was told of.
type ack struct {
	id int64
	sh Shopper
}

// verifyAcks looks up every acknowledged order as its shopper: the crowd's own view of
// invariant 3, run once the sale has settled (orders are written asynchronously).
func verifyAcks(ctx context.Context, t Target, acks []ack, workers int) audit.Result {
	var lost, unchecked atomic.Int64
	var next atomic.Int64
	var sampleMu sync.Mutex
	var samples []string // a few of the failures, to look into
	var lookups sync.WaitGroup
	for range min(workers, 32) {
		lookups.Add(1)
		go func() {
			defer lookups.Done()
			for i := int(next.Add(1) - 1); i < len(acks); i = int(next.Add(1) - 1) {
				err := t.Order(ctx, acks[i].sh, acks[i].id)
				for try := 1; err != nil && try < orderLookupTries && ctx.Err() == nil; try++ {
					time.Sleep(time.Duration(try) * 200 * time.Millisecond) // a busy node
					err = t.Order(ctx, acks[i].sh, acks[i].id)
				}
				var n int64
				switch {
				case err == nil:
					continue
				case surge.ErrorCode(err) == surge.ENOTFOUND:
					n = lost.Add(1)
				default:
					n = unchecked.Add(1)
				}
				if n <= 3 {
					sampleMu.Lock()
					samples = append(samples, fmt.Sprintf("order %d of shopper %d: %v", acks[i].id, acks[i].sh.UserID, err))
					sampleMu.Unlock()
				}
			}
		}()
	}
	lookups.Wait()
	res := acknowledged(int64(len(acks)), lost.Load(), unchecked.Load())
	res.Details = append(res.Details, samples...)
	return res
}

// orderLookupTries is how often the crowd asks for an acknowledged order before calling it lost.
const orderLookupTries = 5

// AcknowledgedOrders is the crowd's own check: every success it was told of has its order.
const AcknowledgedOrders = "3-acknowledged-orders-exist"

func acknowledged(orders, lost, unchecked int64) audit.Result {
	r := audit.Result{Invariant: AcknowledgedOrders, Status: audit.Pass, Checked: orders, Violations: lost + unchecked}
	if lost > 0 {
		r.Details = append(r.Details, fmt.Sprintf("%d acknowledged orders not found", lost))
	}
	if unchecked > 0 {
		r.Details = append(r.Details, fmt.Sprintf("%d acknowledged orders could not be looked up", unchecked))
	}
	if r.Violations > 0 {
		r.Status = audit.Fail
	}
	return r
}

// check asks for the audit until it passes or settle runs out (orders are written, payments
// applied and abandoned orders expired asynchronously), and returns its last verdicts. With
// expired, it also waits for no order to be pending payment: every abandoned one has expired
// and given its stock back, which is what invariant 4 is about.
func check(ctx context.Context, t Target, settle time.Duration, expired bool) ([]audit.Result, bool) {
	deadline := time.Now().Add(settle)
	for {
		rep, err := t.Audit(ctx)
		if err == nil && rep.Passed && (!expired || pending(rep) == 0) {
			return rep.Results, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return []audit.Result{{Invariant: "audit", Status: audit.Fail, Details: []string{err.Error()}}}, false
			}
			return rep.Results, false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func pending(r *audit.Report) int64 {
	var n int64
	for _, it := range r.Items {
		if it.Orders != nil {
			n += it.Orders.Orders[surge.OrderPendingPayment]
		}
	}
	return n
}

// ErrFailed is returned (wrapped) when an invariant failed.
var ErrFailed = errors.New("invariants failed")
