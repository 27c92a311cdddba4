// Package loadgen replays a flash-sale crowd against a deployment and checks the invariants
// afterwards: open-model arrivals on a schedule (a spike when the sale opens), latency
// measured from each attempt's intended send time so that a stalled server cannot hide its
// queueing (coordinated omission corrected, as wrk2 does), Zipf item popularity, shoppers who
// poll a queued answer and pay (or abandon), and bots that hammer from a few addresses and a
// few devices (a farm of many accounts). Every shopper's app solves the proof of work risk
// control asks for; a run may enable a risk rule partway, to show what it stops.
package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
)

// Shopper is one member of the crowd: who it is and where it seems to come from.
type Shopper struct {
	UserID int64
	Token  string // access token
	IP     string // its address, sent as X-Forwarded-For
	Device string // its app's device id, sent as X-Device-Id ("": none)
	Coupon int64  // a coupon it claimed before the sale and buys with (0: none)
}

// CouponIssuer is a target that can hand shoppers coupons before the sale: one each, for the
// whole sale, returned in the order of the shoppers.
type CouponIssuer interface {
	GiveCoupons(ctx context.Context, shoppers []Shopper, workers int) ([]int64, error)
}

// Target is what the crowd buys from: Surge's API, or the reference build. Each method but
// Setup, Shoppers and Audit is one request.
type Target interface {
	// Setup creates (or reuses) the sale's items and returns their ids, hottest first, and
	// when the sale opens.
	Setup(ctx context.Context) (items []int64, opens time.Time, err error)
	// Shoppers provisions n synthetic shoppers.
	Shoppers(ctx context.Context, n int) ([]Shopper, error)
	// Page fetches an item's page for a shopper: the purchase token and what is left.
	Page(ctx context.Context, sh Shopper, item int64) (token string, remaining int64, err error)
	// Buy makes an attempt; an error is a refusal (with a domain code and perhaps a retry
	// hint) or a failure. A refusal by risk control is a *client.Error with the rule's Reason:
	// EFORBIDDEN, or ECHALLENGE with the Challenge to solve.
	Buy(ctx context.Context, sh Shopper, req purchase.Request) (*purchase.Result, error)
	// BuyWithProof makes the same attempt again (the same request id) with the proof of work
	// that solves the challenge Buy was answered with; it answers as Buy does.
	BuyWithProof(ctx context.Context, sh Shopper, req purchase.Request, proof string) (*purchase.Result, error)
	// Poll asks for a queued attempt's answer.
	Poll(ctx context.Context, sh Shopper, ticket string) (*purchase.Result, error)
	// Order reads one of the shopper's orders.
	Order(ctx context.Context, sh Shopper, orderID int64) (*surge.Order, error)
	// PayTicket asks for a payment ticket for the shopper's pending order.
	PayTicket(ctx context.Context, sh Shopper, orderID int64) (*order.PayTicket, error)
	// PayProvider takes a ticket to the payment provider's payment page.
	PayProvider(ctx context.Context, sh Shopper, tk *order.PayTicket) error
	// Audit checks the sale against the invariants.
	Audit(ctx context.Context) (*audit.Report, error)
	// Remaining reads the units left of all the sale's items, as the stock engine holds them
	// (for the stock chart; releases of expired orders show).
	Remaining(ctx context.Context) (int64, error)
	// EnableRule creates a risk rule as the target's operator and returns it as created.
	// Returns an error if the target has no risk control.
	EnableRule(ctx context.Context, rule surge.RiskRule) (*surge.RiskRule, error)
	// DisableRule switches off a rule EnableRule created, so that the next run starts without it.
	DisableRule(ctx context.Context, id int64) error
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
	BotDevices  int     // device ids the bots share: a farm of many accounts on a few devices
	PayShare    float64 // share of successful shoppers who pay; the rest abandon
	PayDelay    time.Duration
	CouponShare float64       // share of human shoppers who claim a coupon before the sale and buy with it
	MaxInFlight int           // attempts under way at once (bounded; late ones count their wait)
	PollEvery   time.Duration // a queued shopper's first poll; each next one waits twice as long, up to a second
	Seed        uint64
	Settle      time.Duration // how long the checker waits for the sale to settle
	PayTimeout  time.Duration // the session's: abandoned orders expire after it, before the check
	// RiskRule, when set, is the expression of a risk rule (CEL over the features, see
	// risk.FeatureNames) the crowd enables, enforcing, RiskAfter after the opening: its verdicts
	// are about RiskOn (default device) and do RiskAction (default block; a challenge asks for
	// RiskBits, default 16).
	RiskRule   string
	RiskOn     string
	RiskAction string
	RiskBits   int
	RiskAfter  time.Duration
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
	if c.BotDevices <= 0 {
		c.BotDevices = 4
	}
	c.RiskOn = cmp.Or(c.RiskOn, surge.SubjectDevice)
	c.RiskAction = cmp.Or(c.RiskAction, surge.ActionBlock)
	if c.RiskAction == surge.ActionChallenge && c.RiskBits == 0 {
		c.RiskBits = 16
	}
}

// Of the rule a run enables.
const (
	RuleName   = "loadgen"
	RuleReason = "LOADGEN_BOTS"
	ruleTTLSec = 600
)

// rule is the risk rule the run enables: enforcing, and forced, since a broad rule (one that
// holds for anyone's first attempt) is what a load test may mean to try.
func (c Config) rule() surge.RiskRule {
	r := surge.RiskRule{Name: RuleName, Expr: c.RiskRule, On: c.RiskOn, Action: c.RiskAction, TTLSec: ruleTTLSec,
		Reason: RuleReason, Priority: 0, Mode: surge.ModeEnforcing, Force: true}
	if r.Action == surge.ActionChallenge {
		r.Bits = c.RiskBits
	}
	return r
}

// String is the progress as one line.
func (p Progress) String() string {
	return fmt.Sprintf("%5.1fs  %6.0f/s  p50 %.2f ms  p99 %.2f ms  in flight %d  paid %d  %s",
		p.Elapsed.Seconds(), p.Rate, p.P50, p.P99, p.InFlight, p.Paid, outcomeList(p.Outcomes))
}

// Progress is a live view of the run.
type Progress struct {
	Elapsed  time.Duration
	Rate     float64 // attempts answered per second, over the last second
	Outcomes map[string]int64
	P50, P99 float64 // ms, of the attempts intended in the last full second
	InFlight int64
	Paid     int64
}

// Point is one second of the run, for the charts.
type Point struct {
	Second    int              `json:"second"`
	Attempts  int64            `json:"attempts"`
	Requests  int64            `json:"requests"` // of every kind, sent in that second
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
	Target         string  `json:"target"`
	Attempts       int64   `json:"attempts"` // answers to attempts, a refused shopper's return included
	AttemptsPerSec float64 `json:"attempts_per_sec"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	// SendLagP50Ms and SendLagP99Ms are how late the crowd itself sent its attempts: a crowd
	// short of CPU or of free shoppers (--in-flight) is late, and its lag is in the latency.
	SendLagP50Ms  float64          `json:"send_lag_p50_ms"`
	SendLagP99Ms  float64          `json:"send_lag_p99_ms"`
	BeforeSellout Phase            `json:"before_sellout"`
	AfterSellout  Phase            `json:"after_sellout"`
	Outcomes      map[string]int64 `json:"outcomes"`
	// Shed is how many attempts were refused for load (EUNAVAILABLE); each such shopper came
	// back after the refusal's hint, as a new attempt. ShedShare is their share of Attempts.
	Shed       int64   `json:"shed"`
	ShedShare  float64 `json:"shed_share"`
	ShedHinted int64   `json:"shed_hinted"` // of the shed, those whose answer said when to come back
	// Requests counts the requests the crowd sent, by kind (attempt, poll, order, pay_ticket,
	// provider_pay); RequestsPerSec is all of them over the crowd's whole time (CrowdSec).
	Requests       map[string]int64 `json:"requests"`
	RequestsPerSec float64          `json:"requests_per_sec"`
	// NodeRequests counts what the target's nodes answered over the crowd's time, by route,
	// the payment provider's callbacks included, and NodeRequestsPerSec all of it; nil when
	// the target does not tell (the reference).
	NodeRequests       map[string]float64 `json:"node_requests,omitempty"`
	NodeRequestsPerSec float64            `json:"node_requests_per_sec,omitempty"`
	Orders             int64              `json:"orders"`    // distinct acknowledged orders
	Paid               int64              `json:"paid"`      // orders the crowd paid
	Abandoned          int64              `json:"abandoned"` // orders left to expire
	// OrderVisibleP50Ms and OrderVisibleP99Ms are the time from "success" to the order page
	// showing the order; OrdersNotVisible counts those that did not show within 5 s.
	OrderVisibleP50Ms float64 `json:"order_visible_p50_ms"`
	OrderVisibleP99Ms float64 `json:"order_visible_p99_ms"`
	OrdersNotVisible  int64   `json:"orders_not_visible"`
	// PayErrors counts payments that failed for another reason than the order's expiry
	// (PayFailures has them by code); PayExpired those refused because the order expired.
	PayErrors   int64            `json:"pay_errors"`
	PayFailures map[string]int64 `json:"pay_failures,omitempty"`
	// PayFailureReasons is, for each code of PayFailures, what the first such failure said.
	PayFailureReasons map[string]string `json:"pay_failure_reasons,omitempty"`
	PayExpired        int64             `json:"pay_expired"`
	// BotSuccessesPerSec and ShopperSuccessesPerSec are the orders bots and human shoppers
	// made, by the second (from the opening) their attempt was sent; together they are Orders.
	BotSuccessesPerSec     []int64 `json:"bot_successes_per_sec"`
	ShopperSuccessesPerSec []int64 `json:"shopper_successes_per_sec"`
	// BotRiskRefused and ShopperRiskRefused count the attempts risk control refused
	// (EFORBIDDEN with a rule's reason); RiskReasons has them by reason.
	BotRiskRefused     int64            `json:"bot_risk_refused"`
	ShopperRiskRefused int64            `json:"shopper_risk_refused"`
	RiskReasons        map[string]int64 `json:"risk_reasons,omitempty"`
	// RiskRule is the rule the run enabled (Config.RiskRule) as created, or as asked for when
	// that failed; RiskRuleError says what failed (its creation, or switching it off after).
	RiskRule      *surge.RiskRule `json:"risk_rule,omitempty"`
	RiskRuleError string          `json:"risk_rule_error,omitempty"`
	// RiskRuleAtMs is when the rule's creation returned, from the opening. The successes after
	// the rule are those of attempts sent more than a second (ruleGrace) later, when every node
	// acts on it. All three are -1 when no rule was enabled.
	RiskRuleAtMs              float64 `json:"risk_rule_at_ms"`
	BotSuccessesAfterRule     int64   `json:"bot_successes_after_rule"`
	ShopperSuccessesAfterRule int64   `json:"shopper_successes_after_rule"`
	// ChallengesMet counts the answers that asked for a proof of work (a proof refused and
	// asked again counts again), ChallengesSolved those the shopper's app solved and sent
	// again; ChallengeSolveP50Ms is the median time an app spent solving one.
	ChallengesMet       int64   `json:"challenges_met"`
	ChallengesSolved    int64   `json:"challenges_solved"`
	ChallengeSolveP50Ms float64 `json:"challenge_solve_p50_ms"`
	// Items are the sale's items once it settled, by name where the target tells it.
	Items       []ItemResult   `json:"items,omitempty"`
	Invariants  []audit.Result `json:"invariants"`
	Passed      bool           `json:"passed"`
	Series      []Point        `json:"series"`
	DurationSec float64        `json:"duration_sec"` // until the last arrival was answered
	CrowdSec    float64        `json:"crowd_sec"`    // until the last winner was done

	acks    []ack    // the orders shoppers were told of
	samples []string // a few failures of the journey, for the verdicts' details
}

// ItemResult is one item of the sale once it settled.
type ItemResult struct {
	ItemID     int64             `json:"item_id,string"`
	Name       string            `json:"name"`
	Stock      surge.StockLevels `json:"stock"`
	PaidAmount int64             `json:"paid_amount"` // of its paid orders, in minor units
}

// itemNamer is a target that knows its items' names.
type itemNamer interface {
	ItemName(id int64) string
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
	if c.RiskRule != "" {
		rule := c.rule()
		if _, err := risk.Validate(&rule); err != nil { // before the sale, not seconds into it
			return nil, fmt.Errorf("the risk rule: %w", err)
		}
	}
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
	place(crowd, c, strconv.FormatInt(time.Now().UnixMilli(), 36))
	if err := giveCoupons(ctx, t, c, rng, crowd[:c.Shoppers], log); err != nil {
		return nil, err
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
	if res.RiskRuleAtMs >= 0 {
		log("risk rule %d enabled %.2fs after the opening; orders of attempts sent from %s later on: bots %d, shoppers %d",
			res.RiskRule.ID, res.RiskRuleAtMs/1000, ruleGrace, res.BotSuccessesAfterRule, res.ShopperSuccessesAfterRule)
	}
	if res.RiskRuleError != "" {
		log("the risk rule: %s", res.RiskRuleError)
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
	rep, passed := check(ctx, t, c.Settle, c.PayTimeout > 0)
	res.Invariants = append(rep.Results, verifyAcks(ctx, t, res.acks, c.MaxInFlight), res.readable(), res.payments())
	res.Items = itemResults(t, rep.Items)
	res.Passed = passed
	for _, r := range res.Invariants {
		if r.Status == audit.Fail {
			res.Passed = false
		}
	}
	return res, nil
}

// place gives each shopper where it seems to come from: a human its own address and device;
// the bots a few addresses and a few devices, shared. Device ids carry the run's tag, so that a
// run's devices have no history of earlier runs (a farm's verdicts, accounts seen).
func place(crowd []Shopper, c Config, run string) {
	for i := range crowd {
		if i < c.Shoppers {
			crowd[i].IP = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
			crowd[i].Device = fmt.Sprintf("app-%s-%d", run, i)
		} else {
			k := i - c.Shoppers
			crowd[i].IP = fmt.Sprintf("172.16.0.%d", 1+k%c.BotIPs)
			crowd[i].Device = fmt.Sprintf("farm-%s-%d", run, k%c.BotDevices)
		}
	}
}

// giveCoupons has a share of the shoppers claim a coupon, as shoppers do before a sale.
func giveCoupons(ctx context.Context, t Target, c Config, rng *rand.Rand, humans []Shopper, log func(format string, args ...any)) error {
	if c.CouponShare <= 0 {
		return nil
	}
	issuer, ok := t.(CouponIssuer)
	if !ok {
		return errors.New("this target hands out no coupons; run without --coupon-share")
	}
	var who []int
	for i := range humans {
		if rng.Float64() < c.CouponShare {
			who = append(who, i)
		}
	}
	if len(who) == 0 {
		return nil
	}
	log("giving %d shoppers a coupon", len(who))
	picked := make([]Shopper, len(who))
	for k, i := range who {
		picked[k] = humans[i]
	}
	ids, err := issuer.GiveCoupons(ctx, picked, c.MaxInFlight)
	if err != nil {
		return fmt.Errorf("giving shoppers coupons: %w", err)
	}
	for k, i := range who {
		humans[i].Coupon = ids[k]
	}
	return nil
}

// fetchTokens opens every arrival's item page first, as shoppers do before the sale opens; a
// bot reuses one token for all its attempts.
func fetchTokens(ctx context.Context, t Target, crowd []Shopper, plan []arrival, workers int) error {
	botTokens := map[[2]int64]string{}
	var mu sync.Mutex
	var first error
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers { // one connection each, kept for the sale: a shopper's app has its own open
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
	case code == surge.ECHALLENGE:
		return OutChallenged
	}
	return OutError
}

// requestCounter is a target that tells what its nodes have answered, by route.
type requestCounter interface {
	NodeRequests(ctx context.Context) (map[string]float64, error)
}

// replay sends the arrivals at their intended times, and follows each winner to its order
// page and its payment.
func replay(ctx context.Context, t Target, c Config, crowd []Shopper, plan []arrival) (*Result, error) {
	counter, counts := t.(requestCounter)
	var before map[string]float64
	if counts {
		var err error
		if before, err = counter.NodeRequests(ctx); err != nil {
			counts = false // a node that does not say: the crowd's own count stands alone
		}
	}
	r := newCrowdRun(ctx, t, c, crowd)
	defer func() { r.halt(); r.progress.Wait(); r.disableRule() }() // also when cancelled: nothing outlives the run
	r.progress.Add(2)
	go r.readStock()     // stops with halt
	go r.printProgress() // stops with halt
	if c.RiskRule != "" {
		r.progress.Add(1)
		go r.enableRule() // returns with halt, or once the rule is made
	}
	// MaxInFlight shoppers take the arrivals in turn. When every one is busy, an arrival waits,
	// and its wait counts in its latency. (A goroutine per attempt grew a new stack through the
	// HTTP client each time: 0.75 s of the 6.8 s its attempts spent in a profile of a crowd.)
	arrivals := make(chan arrival)
	var wg sync.WaitGroup
	for range c.MaxInFlight {
		wg.Go(func() {
			for a := range arrivals {
				r.attempt(a, r.start.Add(a.at), 0)
			}
		})
	}
	timer := time.NewTimer(time.Hour) // reset for each arrival that is early
	defer timer.Stop()
dispatch:
	for _, a := range plan {
		if d := time.Until(r.start.Add(a.at)); d > 0 {
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
	end := time.Since(r.start)
	r.followers.Wait() // winners reading and paying, refused shoppers coming back
	all := time.Since(r.start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.halt()
	r.progress.Wait()
	r.disableRule()
	res := r.result(end, all)
	if counts {
		if after, err := counter.NodeRequests(ctx); err == nil {
			res.NodeRequests = map[string]float64{}
			var total float64
			for route, n := range after {
				if d := n - before[route]; d > 0 {
					res.NodeRequests[route] = d
					total += d
				}
			}
			res.NodeRequestsPerSec = total / all.Seconds()
		}
	}
	return res, nil
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
				_, err := t.Order(ctx, acks[i].sh, acks[i].id)
				for try := 1; err != nil && try < orderLookupTries && ctx.Err() == nil; try++ {
					time.Sleep(time.Duration(try) * 200 * time.Millisecond) // a busy node
					_, err = t.Order(ctx, acks[i].sh, acks[i].id)
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

// The crowd's own checks, beside the audit's invariants.
const (
	// AcknowledgedOrders: every success the crowd was told of has its order, once the sale
	// has settled.
	AcknowledgedOrders = "3-acknowledged-orders-exist"
	// OrdersReadable: every winner read its order within 5 s of "success", and the p99 of that
	// time is at most a second (invariant 7, R-3.6).
	OrdersReadable = "7-orders-readable"
	// PaymentsSucceed: no payment failed but for its order's expiry (invariant 7).
	PaymentsSucceed = "7-payments-succeed"
)

// readable is the verdict on the winners' order pages.
func (r *Result) readable() audit.Result {
	v := audit.Result{Invariant: OrdersReadable, Status: audit.Pass, Checked: r.Orders, Violations: r.OrdersNotVisible}
	v.Details = append(v.Details, fmt.Sprintf("success to order readable: p50 %.1f ms, p99 %.1f ms", r.OrderVisibleP50Ms, r.OrderVisibleP99Ms))
	if r.OrdersNotVisible > 0 {
		v.Status = audit.Fail
		v.Details = append(v.Details, fmt.Sprintf("%d orders not readable within %s", r.OrdersNotVisible, orderVisibleWithin))
	}
	if r.OrderVisibleP99Ms > float64(visibleP99Within.Milliseconds()) {
		v.Status = audit.Fail
		v.Details = append(v.Details, fmt.Sprintf("p99 over %s", visibleP99Within))
	}
	if r.Orders == 0 {
		v.Status = audit.NA
	}
	v.Details = append(v.Details, r.failures("not readable")...)
	return v
}

// payments is the verdict on the payments.
func (r *Result) payments() audit.Result {
	v := audit.Result{Invariant: PaymentsSucceed, Status: audit.Pass, Checked: r.Paid + r.PayErrors + r.PayExpired, Violations: r.PayErrors}
	v.Details = append(v.Details, fmt.Sprintf("paid %d, refused after the order expired %d", r.Paid, r.PayExpired))
	if r.PayErrors > 0 {
		v.Status = audit.Fail
		v.Details = append(v.Details, fmt.Sprintf("%d payments failed (%s)", r.PayErrors, outcomeList(r.PayFailures)))
	}
	if v.Checked == 0 {
		v.Status = audit.NA
	}
	v.Details = append(v.Details, r.failures("payment of")...)
	return v
}

// failures returns the kept failure samples that contain what.
func (r *Result) failures(what string) []string {
	var out []string
	for _, s := range r.samples {
		if strings.Contains(s, what) && len(out) < maxSamplesKept {
			out = append(out, s)
		}
	}
	return out
}

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
func check(ctx context.Context, t Target, settle time.Duration, expired bool) (*audit.Report, bool) {
	deadline := time.Now().Add(settle)
	for {
		rep, err := t.Audit(ctx)
		if err == nil && rep.Passed && (!expired || pending(rep) == 0) {
			return rep, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return &audit.Report{Results: []audit.Result{{Invariant: "audit", Status: audit.Fail, Details: []string{err.Error()}}}}, false
			}
			return rep, false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// itemResults names the audit's items where the target can.
func itemResults(t Target, facts []audit.ItemFacts) []ItemResult {
	namer, _ := t.(itemNamer)
	out := make([]ItemResult, 0, len(facts))
	for _, f := range facts {
		it := ItemResult{ItemID: f.ItemID, Stock: f.Stock, Name: fmt.Sprintf("item %d", f.ItemID)}
		if namer != nil {
			if n := namer.ItemName(f.ItemID); n != "" {
				it.Name = n
			}
		}
		if f.Orders != nil {
			it.PaidAmount = f.Orders.PaidAmount
		}
		out = append(out, it)
	}
	return out
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
