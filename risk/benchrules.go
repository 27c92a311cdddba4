package risk

import (
	"fmt"
	"strings"

	"github.com/surgecommerce/surge"
)

// benchShapes are the shapes of rules operators write: thresholds on one feature, ratios, and two
// or three features together. %d is the rule's threshold.
var benchShapes = []string{
	"attempts_10s.device > %d",
	"accounts_1h.device > %d",
	"attempts_1m.ip > %d * 10 || accounts_1h.ip > %d",
	"orders_1h.address > %d && accounts_1h.address > 3",
	"attempts_10s.user > %d && orders_10s.user == 0",
	"coupons_1h.device > %d",
	"refunds_1h.user > %d",
	"attempts_1h.network > %d * 100 && accounts_1h.network > 50",
	"orders_1m.account > %d",
	"self_orders_1h.user > %d",
}

// BenchRules are n enforcing block rules of the shapes operators write, with thresholds from 20
// up, none of which holds for a shopper trying a few times: what the benchmarks measure the cost
// of rules with.
func BenchRules(n int) []*surge.RiskRule {
	out := make([]*surge.RiskRule, 0, n)
	for i := range n {
		shape := benchShapes[i%len(benchShapes)]
		args := make([]any, strings.Count(shape, "%d"))
		for j := range args {
			args[j] = 20 + i
		}
		out = append(out, &surge.RiskRule{ID: int64(i + 1), Version: 1, Name: fmt.Sprintf("bench %d", i+1), Expr: fmt.Sprintf(shape, args...),
			On: []string{surge.SubjectDevice, surge.SubjectUser, surge.SubjectIP, surge.SubjectNetwork}[i%4], Action: surge.ActionBlock,
			TTLSec: 600, Reason: "BENCH", Mode: surge.ModeEnforcing})
	}
	return out
}
