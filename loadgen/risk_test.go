package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/client"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
)

// riskShop sells without end and plays risk control: with challenge, it asks each shopper's
// first attempt for a proof of work; once its rule is enabled, it blocks every device of the
// bots' farm.
type riskShop struct {
	challenge bool
	bits      int

	nextOrder atomic.Int64
	enabled   atomic.Bool
	mu        sync.Mutex
	seeds     map[string]string // request id → the seed it was challenged with
	asked     map[int64]bool    // shoppers challenged
	proven    map[string]bool   // request ids that came back with a good proof
	badProofs []string
	rule      *surge.RiskRule
	disabled  []int64
}

func newRiskShop() *riskShop {
	return &riskShop{seeds: map[string]string{}, asked: map[int64]bool{}, proven: map[string]bool{}}
}

func (s *riskShop) Setup(context.Context) ([]int64, time.Time, error) {
	return []int64{1}, time.Now(), nil
}
func (s *riskShop) Shoppers(_ context.Context, n int) ([]Shopper, error) {
	out := make([]Shopper, n)
	for i := range out {
		out[i] = Shopper{UserID: int64(i + 1)}
	}
	return out, nil
}
func (s *riskShop) Page(context.Context, Shopper, int64) (string, int64, error) { return "t", 1, nil }
func (s *riskShop) Buy(_ context.Context, sh Shopper, req purchase.Request) (*purchase.Result, error) {
	if s.enabled.Load() && strings.HasPrefix(sh.Device, "farm-") {
		return nil, &client.Error{Status: 403, Code: surge.EFORBIDDEN, Message: "rejected by risk control", Reason: RuleReason}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.challenge && !s.asked[sh.UserID] {
		s.asked[sh.UserID] = true
		seed := "seed-" + req.RequestID
		s.seeds[req.RequestID] = seed
		return nil, &client.Error{Status: 428, Code: surge.ECHALLENGE, Message: "prove it", Reason: "TEST_CHALLENGE",
			Challenge: &surgehttp.Challenge{Seed: seed, Bits: s.bits}}
	}
	return s.sold(), nil
}
func (s *riskShop) BuyWithProof(_ context.Context, _ Shopper, req purchase.Request, proof string) (*purchase.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seed, ok := s.seeds[req.RequestID]
	if !ok || !strings.HasPrefix(proof, seed+":") || risk.LeadingZeros(proof) < s.bits {
		s.badProofs = append(s.badProofs, fmt.Sprintf("%s: %q", req.RequestID, proof))
		return nil, &client.Error{Status: 403, Code: surge.EFORBIDDEN, Message: "bad proof"}
	}
	s.proven[req.RequestID] = true
	return s.sold(), nil
}
func (s *riskShop) sold() *purchase.Result {
	return &purchase.Result{Status: purchase.StatusSuccess, OrderID: s.nextOrder.Add(1)}
}
func (s *riskShop) Poll(context.Context, Shopper, string) (*purchase.Result, error) {
	return nil, errors.New("never queued")
}
func (s *riskShop) Order(_ context.Context, sh Shopper, id int64) (*surge.Order, error) {
	return &surge.Order{ID: id, UserID: sh.UserID, ExpiresAt: time.Now().Add(time.Minute)}, nil
}
func (s *riskShop) PayTicket(context.Context, Shopper, int64) (*order.PayTicket, error) {
	return nil, errors.New("nobody pays")
}
func (s *riskShop) PayProvider(context.Context, Shopper, *order.PayTicket) error {
	return errors.New("nobody pays")
}
func (s *riskShop) Audit(context.Context) (*audit.Report, error) {
	return audit.Check(0, nil, nil, nil), nil
}
func (s *riskShop) Remaining(context.Context) (int64, error) { return 1, nil }
func (s *riskShop) EnableRule(_ context.Context, rule surge.RiskRule) (*surge.RiskRule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rule.ID, rule.Version = 42, 1
	s.rule = &rule
	s.enabled.Store(true) // before the call returns, as on a node that acts at once
	return &rule, nil
}
func (s *riskShop) DisableRule(_ context.Context, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disabled = append(s.disabled, id)
	return nil
}

// Every human shopper has a device of its own; the bots share BotDevices devices, a farm.
func TestPlaceGivesBotsAFarmOfDevices(t *testing.T) {
	c := Config{Shoppers: 50, BotIPs: 3, BotDevices: 4}
	crowd := make([]Shopper, 50+30)
	place(crowd, c, "r1")
	humans, farm := map[string]bool{}, map[string]int{}
	for i, sh := range crowd {
		if err := surge.ValidDeviceID(sh.Device); err != nil {
			t.Fatalf("shopper %d's device %q: %v", i, sh.Device, err)
		}
		if i < c.Shoppers {
			if humans[sh.Device] || !strings.HasPrefix(sh.Device, "app-") {
				t.Fatalf("human %d has device %q; want an app- device of its own", i, sh.Device)
			}
			humans[sh.Device] = true
			continue
		}
		if !strings.HasPrefix(sh.Device, "farm-") {
			t.Fatalf("bot %d has device %q; want a farm- device", i, sh.Device)
		}
		farm[sh.Device]++
	}
	if len(farm) != 4 {
		t.Fatalf("the bots use %d devices (%v); want 4", len(farm), farm)
	}
	for d, n := range farm {
		if n < 7 {
			t.Errorf("farm device %s has %d accounts; want the 30 bots spread over the 4", d, n)
		}
	}
	again := make([]Shopper, len(crowd))
	place(again, c, "r2")
	if again[0].Device == crowd[0].Device || again[len(again)-1].Device == crowd[len(crowd)-1].Device {
		t.Fatalf("two runs share devices %q and %q; want each run's own", again[0].Device, again[len(again)-1].Device)
	}
}

// The curves count each side's orders by the second their attempt was sent, and the successes
// after the rule are those of attempts sent more than ruleGrace after it.
func TestSuccessesAfterRule(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	rec := newRecorder(start)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	for _, o := range []struct {
		bot bool
		ms  int
	}{{true, 100}, {true, 900}, {false, 950}, {true, 2400}, {true, 3500}, {true, 3501}, {false, 3600}, {false, 4200}, {true, 5999}} {
		rec.orderMade(o.bot, at(o.ms))
	}
	curves := rec.successCurves(3)
	if got, want := fmt.Sprint(curves[sideBot]), "[2 0 1 2 0 1]"; got != want {
		t.Errorf("bot curve = %s; want %s", got, want)
	}
	if got, want := fmt.Sprint(curves[sideShopper]), "[1 0 0 1 1 0]"; got != want {
		t.Errorf("shopper curve = %s; want %s", got, want)
	}
	ruleAt := 2500 * time.Millisecond // attempts sent after 3.5 s count
	if after := rec.successesAfter(ruleAt + ruleGrace); after[sideBot] != 2 || after[sideShopper] != 2 {
		t.Errorf("after the rule: bots %d, shoppers %d; want 2 and 2", after[sideBot], after[sideShopper])
	}

	r := &crowdRun{rec: rec, rule: &surge.RiskRule{ID: 1}, ruleMade: true, ruleAt: ruleAt}
	var res Result
	r.riskResult(&res)
	if res.RiskRuleAtMs != 2500 || res.BotSuccessesAfterRule != 2 || res.ShopperSuccessesAfterRule != 2 {
		t.Errorf("result: rule at %v ms, after it bots %d, shoppers %d; want 2500, 2, 2", res.RiskRuleAtMs,
			res.BotSuccessesAfterRule, res.ShopperSuccessesAfterRule)
	}
	var none Result
	(&crowdRun{rec: newRecorder(start)}).riskResult(&none)
	if none.RiskRuleAtMs != -1 || none.BotSuccessesAfterRule != -1 || none.ShopperSuccessesAfterRule != -1 || none.RiskRule != nil {
		t.Errorf("without a rule: at %v, bots %d, shoppers %d, rule %v; want -1 each and none", none.RiskRuleAtMs,
			none.BotSuccessesAfterRule, none.ShopperSuccessesAfterRule, none.RiskRule)
	}
}

// A run with a rule enables it partway, as asked, switches it off when done, and reports what
// it stopped: the farm's bots refused from then on, the shoppers still buying.
func TestRunEnablesTheRiskRule(t *testing.T) {
	shop := newRiskShop()
	c := Config{Shoppers: 900, Duration: 3 * time.Second, Rate: 300, BotShare: 0.5, Bots: 12, BotDevices: 3,
		MaxInFlight: 16, Seed: 5, Settle: time.Second, RiskRule: "accounts_1h.device > 3", RiskAfter: 300 * time.Millisecond}
	res, err := Run(context.Background(), shop, c, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	want := surge.RiskRule{ID: 42, Version: 1, Name: RuleName, Expr: c.RiskRule, On: surge.SubjectDevice, Action: surge.ActionBlock,
		TTLSec: 600, Reason: RuleReason, Mode: surge.ModeEnforcing, Force: true}
	if shop.rule == nil || *shop.rule != want || res.RiskRule == nil || *res.RiskRule != want {
		t.Fatalf("rule asked for %+v, reported %+v; want %+v", shop.rule, res.RiskRule, want)
	}
	if fmt.Sprint(shop.disabled) != "[42]" || res.RiskRuleError != "" {
		t.Fatalf("rules switched off %v (error %q); want [42]", shop.disabled, res.RiskRuleError)
	}
	if res.RiskRuleAtMs < 300 || res.RiskRuleAtMs > 1000 {
		t.Fatalf("risk_rule_at_ms = %v; want the rule made soon after 300 ms", res.RiskRuleAtMs)
	}
	bots, shoppers := sum(res.BotSuccessesPerSec), sum(res.ShopperSuccessesPerSec)
	if bots == 0 || shoppers == 0 || bots+shoppers != res.Orders {
		t.Fatalf("orders by bots %d and shoppers %d; want both, summing to the %d orders", bots, shoppers, res.Orders)
	}
	if res.BotSuccessesAfterRule != 0 || res.ShopperSuccessesAfterRule == 0 || res.ShopperSuccessesAfterRule > shoppers {
		t.Fatalf("after the rule: bots %d, shoppers %d (of %d); want the bots stopped, the shoppers buying",
			res.BotSuccessesAfterRule, res.ShopperSuccessesAfterRule, shoppers)
	}
	if res.BotRiskRefused == 0 || res.ShopperRiskRefused != 0 || res.RiskReasons[RuleReason] != res.BotRiskRefused {
		t.Fatalf("refused by risk control: bots %d, shoppers %d, by reason %v", res.BotRiskRefused, res.ShopperRiskRefused, res.RiskReasons)
	}
}

// A challenged attempt is solved by the shopper's app, bot or human, and sent again, the same
// request with the proof, once.
func TestChallengeSolvedAndSentAgain(t *testing.T) {
	shop := newRiskShop()
	shop.challenge, shop.bits = true, 8
	c := Config{Shoppers: 60, Duration: 400 * time.Millisecond, Rate: 300, BotShare: 0.3, Bots: 5, MaxInFlight: 16, Seed: 9, Settle: time.Second}
	res, err := Run(context.Background(), shop, c, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	shop.mu.Lock()
	defer shop.mu.Unlock()
	if len(shop.badProofs) > 0 {
		t.Fatalf("bad proofs: %v", shop.badProofs)
	}
	n := int64(len(shop.asked))
	if n == 0 || res.ChallengesMet != n || res.ChallengesSolved != n || int64(len(shop.proven)) != n {
		t.Fatalf("%d shoppers challenged, %d proofs taken; met %d, solved %d; want each challenge met, solved and proven once",
			n, len(shop.proven), res.ChallengesMet, res.ChallengesSolved)
	}
	if res.Outcomes[OutSuccess] != res.Attempts || res.Outcomes[OutChallenged] != 0 {
		t.Fatalf("outcomes %v of %d attempts; want every attempt a success", res.Outcomes, res.Attempts)
	}
	if res.Requests[KindAttempt] != res.Attempts+n {
		t.Fatalf("%d attempt requests for %d attempts and %d proofs; want one each", res.Requests[KindAttempt], res.Attempts, n)
	}
	if res.ChallengeSolveP50Ms < 0 {
		t.Fatalf("challenge_solve_p50_ms = %v", res.ChallengeSolveP50Ms)
	}
}

// Both of the API's transports send the shopper's device with an attempt and a proof with its
// retry, and read risk control's reason and challenge from the error envelope.
func TestAPISendsDeviceAndProof(t *testing.T) {
	type seen struct{ device, proof string }
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Header.Get(surgehttp.DeviceHeader), r.Header.Get(surgehttp.ProofHeader)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusPreconditionRequired)
		json.NewEncoder(w).Encode(surgehttp.ErrorBody{Error: surgehttp.ErrorDetail{Code: surge.ECHALLENGE, Message: "prove it",
			Reason: "FARM", Challenge: &surgehttp.Challenge{Seed: "s1", Bits: 4}}})
	}))
	defer srv.Close()
	sh := Shopper{UserID: 7, Token: "tok", IP: "10.0.0.7", Device: "app-x-7"}
	req := purchase.Request{ItemID: 1, Quantity: 1, RequestID: "lg7-1", Token: "t"}
	for _, transport := range []string{"fasthttp", "net/http"} {
		api := NewAPI([]string{srv.URL}, 4)
		if transport == "net/http" {
			api.fast = nil
		} else if api.fastFor(sh) == nil {
			t.Fatal("no fasthttp client for an http:// target")
		}
		mu.Lock()
		got = nil
		mu.Unlock()
		_, err := api.Buy(context.Background(), sh, req)
		reason, ch := riskOf(err)
		if reason != "FARM" || ch == nil || *ch != (surgehttp.Challenge{Seed: "s1", Bits: 4}) || outcomeOf(nil, err) != OutChallenged {
			t.Fatalf("%s: Buy = %v; want ECHALLENGE with reason FARM and the challenge s1/4 (read %q, %+v)", transport, err, reason, ch)
		}
		if _, err := api.BuyWithProof(context.Background(), sh, req, "s1:abc"); surge.ErrorCode(err) != surge.ECHALLENGE {
			t.Fatalf("%s: BuyWithProof = %v", transport, err)
		}
		mu.Lock()
		if want := []seen{{"app-x-7", ""}, {"app-x-7", "s1:abc"}}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: the server saw (device, proof) %v; want %v", transport, got, want)
		}
		mu.Unlock()
	}
}

func sum(vs []int64) int64 {
	var n int64
	for _, v := range vs {
		n += v
	}
	return n
}

// The summary and the HTML report show the two curves and what the rule changed.
func TestReportShowsTheRule(t *testing.T) {
	res := &Result{Target: "t", BotSuccessesPerSec: []int64{3, 5, 0, 0}, ShopperSuccessesPerSec: []int64{10, 12, 9, 4},
		BotRiskRefused: 40, RiskReasons: map[string]int64{RuleReason: 40}, ChallengesMet: 6, ChallengesSolved: 5, ChallengeSolveP50Ms: 12.5,
		RiskRule:     &surge.RiskRule{ID: 42, Expr: "accounts_1h.device > 3", On: surge.SubjectDevice, Action: surge.ActionBlock},
		RiskRuleAtMs: 1500, BotSuccessesAfterRule: 0, ShopperSuccessesAfterRule: 13}
	var b strings.Builder
	Summary(&b, res)
	for _, want := range []string{"    bots      3 5 0 0\n", "    shoppers  10 12 9 4\n", "refused by risk control: bots 40, shoppers 0 (LOADGEN_BOTS 40)",
		"challenges: 6 met, 5 solved, solving p50 12.5 ms",
		`risk rule "accounts_1h.device > 3": block by device, enabled at 1.50 s; orders of attempts sent after 2.50 s: bots 0, shoppers 13`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteHTML(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Orders made per second by bots and shoppers", `points="0.0,150.0 213.3,116.7 426.7,200.0 640.0,200.0"`,
		"rule enabled", "orders of attempts sent more than 1 s later: bots 0, shoppers 13"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	if got := curve(make([]int64, maxCurveSecs+5)); !strings.HasSuffix(got, fmt.Sprintf("0 … (%d s in all)", maxCurveSecs+5)) {
		t.Errorf("a long curve ends %q; want it cut at %d seconds", got[len(got)-30:], maxCurveSecs)
	}
}
