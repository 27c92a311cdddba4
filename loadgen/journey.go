package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/client"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
)

// Kinds of request the crowd sends, counted apart: the target serves all of them.
const (
	KindAttempt     = "attempt"      // POST /v1/purchases
	KindPoll        = "poll"         // a queued attempt's answer
	KindOrder       = "order"        // the order page after "success"
	KindPayTicket   = "pay_ticket"   // POST /v1/orders/{id}/pay
	KindProviderPay = "provider_pay" // the payment provider's payment page
)

var kinds = []string{KindAttempt, KindPoll, KindOrder, KindPayTicket, KindProviderPay}

// Bounds of a shopper's patience.
const (
	// orderVisibleWithin is how long a winner's order may take to show before the run fails
	// (R-3.6 asks for a second; visibleP99Within is the bound on the p99).
	orderVisibleWithin = 5 * time.Second
	visibleP99Within   = time.Second
	// payRetryFor is how long a payer keeps trying a payment that is refused for load.
	payRetryFor = 10 * time.Second
	// maxShedRetries bounds how often a shopper refused for load comes back: a person taps
	// "try again" a few times, then leaves.
	maxShedRetries = 3
	// retryWithoutHint is how long a shopper waits after a refusal for load that says nothing.
	retryWithoutHint = 200 * time.Millisecond
	// orderReadEvery is how often the order page is read again while the order does not show.
	orderReadEvery = 50 * time.Millisecond
	// expirySlack allows for the target's clock: a payment refused less than this before the
	// order's expiry (by the crowd's clock) is put down to the expiry.
	expirySlack    = time.Second
	maxSamplesKept = 3
	// maxProofs bounds how often an app solves a challenge for one attempt: once, and once
	// more should its proof come too late (a seed lasts risk.ProofTTL).
	maxProofs = 2
	// solveWithin bounds an app's time on one proof of work (28 bits, the most a rule asks,
	// is minutes of hashing); past it the attempt ends challenged.
	solveWithin = 30 * time.Second
	// ruleGrace is how long after its creation a rule is given to act on every node (the gates
	// have its verdicts within a second): attempts sent later count as after the rule.
	ruleGrace = time.Second
	// ruleOffWithin bounds switching the run's rule off once the crowd is done.
	ruleOffWithin = 10 * time.Second
)

// crowdRun is the state of one replay: what the shoppers do and what they saw.
type crowdRun struct {
	ctx   context.Context
	t     Target
	c     Config
	crowd []Shopper
	start time.Time
	rec   *recorder

	inFlight                      atomic.Int64
	orders, paid, abandoned, shed atomic.Int64
	shedHinted                    atomic.Int64
	payErrors, payExpired, unseen atomic.Int64
	requests                      [5]atomic.Int64 // by kind, in the order of kinds
	followers                     sync.WaitGroup  // winners' journeys and refused shoppers' returns
	seen                          sync.Map        // order ids acknowledged, to count them once

	mu          sync.Mutex
	payRng      *rand.Rand
	payFailures map[string]int64
	payReasons  map[string]string // the first message of each code of payFailures
	visible     []float64         // ms from "success" to the order readable
	samples     []string          // a few of the failures, to look into
	remaining   map[int]int64
	// The run's risk rule (Config.RiskRule): as created (or asked for), when its creation
	// returned, and its id until it is switched off.
	rule     *surge.RiskRule
	ruleMade bool
	ruleAt   time.Duration
	ruleID   int64
	ruleErr  []string

	stop     chan struct{}
	stopOnce sync.Once
	progress sync.WaitGroup
}

func newCrowdRun(ctx context.Context, t Target, c Config, crowd []Shopper) *crowdRun {
	start := time.Now()
	return &crowdRun{ctx: ctx, t: t, c: c, crowd: crowd, start: start, rec: newRecorder(start),
		payRng: rand.New(rand.NewPCG(c.Seed+1, c.Seed+2)), payFailures: map[string]int64{}, payReasons: map[string]string{}, remaining: map[int]int64{},
		stop: make(chan struct{})}
}

func (r *crowdRun) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

// count notes a request of a kind.
func (r *crowdRun) count(kind string) {
	r.requests[slices.Index(kinds, kind)].Add(1)
	r.rec.request(time.Now())
}

// sleep waits d, or until the run is cancelled.
func (r *crowdRun) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.ctx.Done():
	}
}

// attempt is one try of a shopper's purchase, meant to start at intended: its latency runs
// from then to the final answer. A queued shopper polls on its own, backing off as apps do, so
// that a slow sale is not buried under its own polls, and its shopper slot (--in-flight) takes
// the next arrival meanwhile: a crowd whose slots sat in poll back-offs fell behind its own
// schedule by seconds and measured that as the target's latency.
func (r *crowdRun) attempt(a arrival, intended time.Time, try int) {
	r.inFlight.Add(1)
	sh := r.crowd[a.who]
	req := purchase.Request{ItemID: a.item, Quantity: 1, RequestID: fmt.Sprintf("lg%d-%d", a.who, a.at), Token: a.token}
	if sh.Coupon > 0 {
		req.Coupons = surge.IDList{sh.Coupon}
	}
	sent := time.Now()
	r.rec.sent(intended, sent)
	res, err := r.t.Buy(r.ctx, sh, req)
	r.count(KindAttempt)
	res, err = r.prove(sh, req, res, err)
	if err == nil && res.Status == purchase.StatusQueued {
		r.followers.Go(func() {
			res, err := r.poll(sh, res)
			r.answered(a, intended, sent, try, res, err)
		})
		return
	}
	r.answered(a, intended, sent, try, res, err)
}

// prove answers a challenge as a shopper's app does: it solves the proof of work and sends the
// same attempt again with it, at most maxProofs times. An attempt not challenged, or whose
// challenge was not solved, keeps the answer it had.
func (r *crowdRun) prove(sh Shopper, req purchase.Request, res *purchase.Result, err error) (*purchase.Result, error) {
	for range maxProofs {
		_, ch := riskOf(err)
		if ch == nil {
			return res, err
		}
		r.rec.challenged()
		began := time.Now()
		ctx, cancel := context.WithTimeout(r.ctx, solveWithin)
		proof, serr := risk.Solve(ctx, ch.Seed, ch.Bits)
		cancel()
		if serr != nil {
			return res, err
		}
		r.rec.solvedIn(time.Since(began))
		res, err = r.t.BuyWithProof(r.ctx, sh, req, proof)
		r.count(KindAttempt)
	}
	if _, ch := riskOf(err); ch != nil {
		r.rec.challenged() // asked once more: the attempt ends challenged
	}
	return res, err
}

// riskOf reads a refusal by risk control: the rule's reason, and for ECHALLENGE the proof of
// work asked for; "" and nil for any other answer.
func riskOf(err error) (reason string, ch *surgehttp.Challenge) {
	var ce *client.Error
	if !errors.As(err, &ce) {
		return "", nil
	}
	switch ce.Code {
	case surge.EFORBIDDEN:
		return ce.Reason, nil
	case surge.ECHALLENGE:
		return ce.Reason, ce.Challenge
	}
	return "", nil
}

// poll asks for a queued attempt's answer until it is final, for up to 30 s.
func (r *crowdRun) poll(sh Shopper, res *purchase.Result) (*purchase.Result, error) {
	var err error
	wait := r.c.PollEvery
	for deadline := time.Now().Add(30 * time.Second); err == nil && res.Status == purchase.StatusQueued && time.Now().Before(deadline); {
		r.sleep(wait)
		wait = min(2*wait, time.Second)
		res, err = r.t.Poll(r.ctx, sh, res.Ticket)
		r.count(KindPoll)
	}
	return res, err
}

// answered records an attempt's final answer and follows it: a shopper refused for load comes
// back when the refusal says (Retry-After-Ms), as a new attempt meant for then; a winner goes
// on to its order page and perhaps pays.
func (r *crowdRun) answered(a arrival, intended, sent time.Time, try int, res *purchase.Result, err error) {
	defer r.inFlight.Add(-1)
	answered := time.Now()
	outcome := outcomeOf(res, err)
	r.rec.record(intended, answered, outcome)
	sh := r.crowd[a.who]
	switch outcome {
	case OutUnavailable:
		r.shed.Add(1)
		hint := time.Duration(surge.RetryAfterMs(err)) * time.Millisecond
		if hint > 0 {
			r.shedHinted.Add(1)
		} else {
			hint = retryWithoutHint
		}
		if try+1 < maxShedRetries && r.ctx.Err() == nil {
			due := answered.Add(hint)
			r.followers.Go(func() {
				r.sleep(time.Until(due))
				if r.ctx.Err() == nil {
					r.attempt(a, due, try+1)
				}
			})
		}
	case OutRejected:
		if reason, _ := riskOf(err); reason != "" {
			r.rec.riskRefusal(a.bot, reason)
		}
	case OutSuccess:
		if _, dup := r.seen.LoadOrStore(res.OrderID, sh); dup {
			return
		}
		r.orders.Add(1)
		r.rec.orderMade(a.bot, sent)
		r.followers.Go(func() { r.winner(a, sh, res.OrderID, answered) })
	}
}

// winner follows a shopper told "success": the order page at once, then, for a share of them,
// the payment after PayDelay; the rest abandon the order, which expires.
func (r *crowdRun) winner(a arrival, sh Shopper, id int64, ackAt time.Time) {
	o := r.readOrder(sh, id, ackAt)
	if a.bot || !r.payNow() {
		r.abandoned.Add(1)
		return
	}
	r.sleep(time.Until(ackAt.Add(r.c.PayDelay)))
	err := r.pay(sh, id)
	switch {
	case err == nil:
		r.paid.Add(1)
	case o != nil && !time.Now().Before(o.ExpiresAt.Add(-expirySlack)):
		r.payExpired.Add(1) // the order expired first: not the target's failure
	default:
		r.payErrors.Add(1)
		r.mu.Lock()
		code := surge.ErrorCode(err)
		if r.payFailures[code]++; r.payFailures[code] == 1 {
			r.payReasons[code] = cmp.Or(surge.ErrorMessage(err), err.Error())
		}
		r.mu.Unlock()
		r.sample(fmt.Sprintf("payment of order %d of shopper %d: %v", id, sh.UserID, err))
	}
}

func (r *crowdRun) payNow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.payRng.Float64() < r.c.PayShare
}

// readOrder reads a winner's order until it shows, for up to orderVisibleWithin after the
// answer, and notes how long it took; nil if it never showed.
func (r *crowdRun) readOrder(sh Shopper, id int64, ackAt time.Time) *surge.Order {
	deadline := ackAt.Add(orderVisibleWithin)
	for {
		o, err := r.t.Order(r.ctx, sh, id)
		r.count(KindOrder)
		if err == nil {
			ms := float64(time.Since(ackAt).Microseconds()) / 1000
			r.mu.Lock()
			r.visible = append(r.visible, ms)
			r.mu.Unlock()
			return o
		}
		wait := orderReadEvery
		if hint := time.Duration(surge.RetryAfterMs(err)) * time.Millisecond; hint > 0 {
			wait = hint
		}
		if time.Now().Add(wait).After(deadline) || r.ctx.Err() != nil {
			r.unseen.Add(1)
			r.sample(fmt.Sprintf("order %d of shopper %d not readable %s after success: %v", id, sh.UserID, orderVisibleWithin, err))
			return nil
		}
		r.sleep(wait)
	}
}

// pay asks for a payment ticket and takes it to the provider, each tried again while refused
// for load, after the refusal's hint, for up to payRetryFor.
func (r *crowdRun) pay(sh Shopper, id int64) error {
	deadline := time.Now().Add(payRetryFor)
	tk, err := r.t.PayTicket(r.ctx, sh, id)
	r.count(KindPayTicket)
	for r.busy(err, deadline) {
		tk, err = r.t.PayTicket(r.ctx, sh, id)
		r.count(KindPayTicket)
	}
	if err != nil {
		return err
	}
	err = r.t.PayProvider(r.ctx, sh, tk)
	r.count(KindProviderPay)
	for r.busy(err, deadline) {
		err = r.t.PayProvider(r.ctx, sh, tk)
		r.count(KindProviderPay)
	}
	return err
}

// busy reports whether err is a refusal for load worth trying again before deadline, after
// waiting as long as it asks.
func (r *crowdRun) busy(err error, deadline time.Time) bool {
	if surge.ErrorCode(err) != surge.EUNAVAILABLE || r.ctx.Err() != nil {
		return false
	}
	wait := time.Duration(surge.RetryAfterMs(err)) * time.Millisecond
	if wait <= 0 {
		wait = retryWithoutHint
	}
	if time.Now().Add(wait).After(deadline) {
		return false
	}
	r.sleep(wait)
	return true
}

func (r *crowdRun) sample(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < maxSamplesKept*2 {
		r.samples = append(r.samples, s)
	}
}

// readStock reads the units left once a second, for the stock chart: a read at a time (a slow
// read can take longer than a second).
func (r *crowdRun) readStock() {
	defer r.progress.Done()
	for {
		at := int(time.Since(r.start) / time.Second)
		if left, err := r.t.Remaining(r.ctx); err == nil {
			r.mu.Lock()
			r.remaining[at] = left
			r.mu.Unlock()
		}
		select {
		case <-r.stop:
			return
		case <-time.After(time.Until(r.start.Add(time.Duration(at+1) * time.Second))):
		}
	}
}

// enableRule creates the run's risk rule RiskAfter after the opening, as an operator would in
// the middle of a sale, and notes when the creation returned; a crowd done before then
// enables none.
func (r *crowdRun) enableRule() {
	defer r.progress.Done()
	timer := time.NewTimer(time.Until(r.start.Add(r.c.RiskAfter)))
	defer timer.Stop()
	asked := r.c.rule()
	select {
	case <-timer.C:
	case <-r.stop:
		r.noteRule(&asked, fmt.Sprintf("not enabled: the crowd was done before %s after the opening", r.c.RiskAfter))
		return
	case <-r.ctx.Done():
		return
	}
	made, err := r.t.EnableRule(r.ctx, asked)
	at := time.Since(r.start)
	if err != nil {
		r.noteRule(&asked, fmt.Sprintf("creating it %.2fs after the opening: %v", at.Seconds(), err))
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rule, r.ruleMade, r.ruleAt, r.ruleID = made, true, at, made.ID
}

func (r *crowdRun) noteRule(rule *surge.RiskRule, problem string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rule == nil {
		r.rule = rule
	}
	r.ruleErr = append(r.ruleErr, problem)
}

// disableRule switches the run's rule off, once: the crowd is done (or cancelled), and the
// next run should start without it. Verdicts it made last their TTL; the crowd's devices are
// the run's own, but its addresses are not.
func (r *crowdRun) disableRule() {
	r.mu.Lock()
	id := r.ruleID
	r.ruleID = 0
	r.mu.Unlock()
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), ruleOffWithin)
	defer cancel()
	if err := r.t.DisableRule(ctx, id); err != nil {
		r.noteRule(nil, fmt.Sprintf("switching rule %d off after the run: %v", id, err))
	}
}

// riskResult fills in the risk figures: the success curves, the refusals, the challenges, and
// what the run's rule changed.
func (r *crowdRun) riskResult(res *Result) {
	rec := r.rec
	curves := rec.successCurves(len(rec.seconds))
	res.ShopperSuccessesPerSec, res.BotSuccessesPerSec = curves[sideShopper], curves[sideBot]
	rec.mu.Lock()
	res.ShopperRiskRefused, res.BotRiskRefused = rec.riskRefused[sideShopper], rec.riskRefused[sideBot]
	if len(rec.reasons) > 0 {
		res.RiskReasons = maps.Clone(rec.reasons)
	}
	res.ChallengesMet, res.ChallengesSolved = rec.challenges, rec.solved
	res.ChallengeSolveP50Ms, _ = Percentiles(rec.solves)
	rec.mu.Unlock()
	r.mu.Lock() // not while holding rec.mu: the two are never held together
	res.RiskRule, res.RiskRuleError = r.rule, strings.Join(r.ruleErr, "; ")
	made, at := r.ruleMade, r.ruleAt
	r.mu.Unlock()
	res.RiskRuleAtMs, res.ShopperSuccessesAfterRule, res.BotSuccessesAfterRule = -1, -1, -1
	if made {
		after := rec.successesAfter(at + ruleGrace)
		res.RiskRuleAtMs = float64(at.Microseconds()) / 1000
		res.ShopperSuccessesAfterRule, res.BotSuccessesAfterRule = after[sideShopper], after[sideBot]
	}
}

// printProgress reports the run once a second.
func (r *crowdRun) printProgress() {
	defer r.progress.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastDone int64
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		r.rec.mu.Lock()
		done := r.rec.seen
		out := maps.Clone(r.rec.outcomes)
		var last []float64 // the second just ended: what the live figures are about
		if i := int(time.Since(r.start)/time.Second) - 1; i >= 0 && i < len(r.rec.seconds) {
			last = slices.Clone(r.rec.seconds[i].lat)
		}
		r.rec.mu.Unlock()
		if r.c.Progress != nil {
			p50, p99 := Percentiles(last)
			r.c.Progress(Progress{Elapsed: time.Since(r.start), Rate: float64(done - lastDone), Outcomes: out, P50: p50, P99: p99,
				InFlight: r.inFlight.Load(), Paid: r.paid.Load()})
		}
		lastDone = done
	}
}

// result gathers the run's figures: end is when the last arrival was answered, all when the
// last winner was done.
func (r *crowdRun) result(end, all time.Duration) *Result {
	rec := r.rec
	res := &Result{Outcomes: rec.outcomes, Orders: r.orders.Load(), Paid: r.paid.Load(), Abandoned: r.abandoned.Load(),
		PayErrors: r.payErrors.Load(), PayExpired: r.payExpired.Load(), PayFailures: r.payFailures, PayFailureReasons: r.payReasons, Shed: r.shed.Load(), ShedHinted: r.shedHinted.Load(),
		OrdersNotVisible: r.unseen.Load(), DurationSec: end.Seconds(), CrowdSec: all.Seconds(), Attempts: rec.seen,
		Requests: map[string]int64{}, samples: r.samples}
	res.AttemptsPerSec = float64(rec.seen) / end.Seconds()
	if rec.seen > 0 {
		res.ShedShare = float64(res.Shed) / float64(rec.seen)
	}
	var total int64
	for i, k := range kinds {
		res.Requests[k] = r.requests[i].Load()
		total += res.Requests[k]
	}
	res.RequestsPerSec = float64(total) / all.Seconds()
	res.P50Ms, res.P99Ms = Percentiles(rec.all)
	res.OrderVisibleP50Ms, res.OrderVisibleP99Ms = Percentiles(r.visible)
	res.SendLagP50Ms, res.SendLagP99Ms = Percentiles(rec.lag)
	res.BeforeSellout, res.AfterSellout = rec.phases(end)
	for i, s := range rec.seconds {
		p50, p99 := Percentiles(s.lat)
		pt := Point{Second: i, Attempts: s.attempts, Requests: s.requests, P50Ms: p50, P99Ms: p99, Outcomes: s.outcomes, Remaining: -1}
		if left, ok := r.remaining[i]; ok {
			pt.Remaining = left
		}
		res.Series = append(res.Series, pt)
	}
	r.riskResult(res)
	r.seen.Range(func(k, v any) bool {
		res.acks = append(res.acks, ack{k.(int64), v.(Shopper)})
		return true
	})
	return res
}
