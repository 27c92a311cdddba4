package loadgen

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge/audit"
)

// The live line and the summary name every outcome in order, with the figures people read.
func TestProgressAndSummary(t *testing.T) {
	p := Progress{Elapsed: 2500 * time.Millisecond, Rate: 1200, Outcomes: map[string]int64{OutSuccess: 7, OutSoldOut: 3},
		P50: 1.5, P99: 9.25, InFlight: 4}
	if got, want := p.String(), "  2.5s    1200/s  p50 1.50 ms  p99 9.25 ms  in flight 4  sold_out 3, success 7"; got != want {
		t.Fatalf("progress = %q; want %q", got, want)
	}
	var b bytes.Buffer
	Summary(&b, &Result{Target: "t", Attempts: 10, Outcomes: p.Outcomes, Passed: false,
		Invariants: []audit.Result{{Invariant: audit.StockBalance, Status: audit.Fail, Checked: 1, Violations: 1, Details: []string{"oversold"}}}})
	for _, want := range []string{"10 attempts", "sold_out 3, success 7", "FAIL 1-stock-balance", "(oversold)", "FAILED"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
