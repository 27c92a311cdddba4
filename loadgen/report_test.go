package loadgen

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
)

// The live line and the summary name every outcome in order, with the figures people read.
func TestProgressAndSummary(t *testing.T) {
	p := Progress{Elapsed: 2500 * time.Millisecond, Rate: 1200, Outcomes: map[string]int64{OutSuccess: 7, OutSoldOut: 3},
		P50: 1.5, P99: 9.25, InFlight: 4, Paid: 2}
	if got, want := p.String(), "  2.5s    1200/s  p50 1.50 ms  p99 9.25 ms  in flight 4  paid 2  sold_out 3, success 7"; got != want {
		t.Fatalf("progress = %q; want %q", got, want)
	}
	var b bytes.Buffer
	res := &Result{Target: "t", Attempts: 10, Outcomes: p.Outcomes, Passed: false, Shed: 2, ShedShare: 0.2,
		Requests: map[string]int64{KindAttempt: 10, KindOrder: 7}, RequestsPerSec: 8.5, CrowdSec: 2, Orders: 7,
		OrderVisibleP50Ms: 3, OrderVisibleP99Ms: 1200, Paid: 4, PayErrors: 1, PayFailures: map[string]int64{"EINTERNAL": 1},
		PayFailureReasons: map[string]string{"EINTERNAL": "the order store did not answer"},
		Items:             []ItemResult{{ItemID: 7, Name: "West Lake Longjing tea 250 g", Stock: surge.StockLevels{Allotted: 10, Sold: 4, Reserved: 1, Available: 5}, PaidAmount: 39600}},
		Invariants:        []audit.Result{{Invariant: audit.StockBalance, Status: audit.Fail, Checked: 1, Violations: 1, Details: []string{"oversold"}}}}
	res.Invariants = append(res.Invariants, res.readable(), res.payments())
	Summary(&b, res)
	for _, want := range []string{"10 attempts", "sold_out 3, success 7", "FAIL 1-stock-balance", "(oversold)", "FAILED",
		"shed: 2 attempts (20.0%) refused for load, 0 with a retry hint", "requests: 8/s of every kind over 2.0s (attempt 10, order 7)", "p99 1200.0 ms",
		"FAIL 7-orders-readable", "p99 over 1s", "FAIL 7-payments-succeed", "1 payments failed (EINTERNAL 1)", "EINTERNAL × 1: the order store did not answer",
		"West Lake Longjing tea 250 g", "allotted     10, sold      4, reserved     1, left      5, paid 396.00"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteHTML(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<td>West Lake Longjing tea 250 g</td><td>10</td><td>4</td><td>1</td><td>5</td><td>396.00</td>",
		"EINTERNAL × 1: the order store did not answer", `class="FAIL">FAILED`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
}

// The phases are split by when the answers came: a crowd that arrived all at once and was
// answered over two seconds served 100 attempts a second before the sell-out, 50 after.
func TestPhasesSplitByAnswerTime(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	r := newRecorder(start)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	for i := range 100 { // all meant to start at once, answered in the first second
		r.record(start, at(10*i), OutSuccess)
	}
	for i := range 50 { // sold out from 1 s on
		r.record(start, at(1000+20*i), OutSoldOut)
	}
	before, after := r.phases(2 * time.Second)
	if before.Attempts != 100 || before.AttemptsPerSec != 100 || after.Attempts != 50 || after.AttemptsPerSec != 50 {
		t.Fatalf("before %+v, after %+v; want 100 at 100/s and 50 at 50/s", before, after)
	}
	if before.P99Ms != 990 || after.P50Ms != 1500 {
		t.Fatalf("before p99 %v, after p50 %v; want 990 and 1500", before.P99Ms, after.P50Ms)
	}
}
