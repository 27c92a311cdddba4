package reconcile

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
)

// Auditor checks a sale session against the invariants (package audit).
type Auditor interface {
	Session(ctx context.Context, id int64) (*audit.Report, error)
}

// AuditDrift is the stock drift of the sale sessions open during [from, to): each session's
// audit, its stock balance and its releases of cancelled orders. A cancelled order whose stock
// was not released is repaired by settling it (release); a balance that does not hold needs a
// person.
func AuditDrift(sessions surge.SessionStore, auditor Auditor) func(ctx context.Context, from, to time.Time) ([]Finding, error) {
	return func(ctx context.Context, from, to time.Time) ([]Finding, error) {
		list, err := sessions.ListSessions(ctx, surge.SessionFilter{EndAfter: from, Published: true, Limit: surge.MaxListLimit})
		if err != nil {
			return nil, err
		}
		var out []Finding
		for _, se := range list {
			if !se.StartAt.Before(to) {
				continue
			}
			rep, err := auditor.Session(ctx, se.ID)
			if err != nil {
				return nil, err
			}
			for _, r := range rep.Results {
				if r.Status != audit.Fail || (r.Invariant != audit.StockBalance && r.Invariant != audit.ReleasedOnce) {
					continue
				}
				f := Finding{ID: FindStockDrift + ":" + strconv.FormatInt(se.ID, 10) + ":" + r.Invariant, Kind: FindStockDrift,
					Detail: fmt.Sprintf("session %d, %s: %d items: %s", se.ID, r.Invariant, r.Violations, strings.Join(r.Details, "; ")),
					Action: ActionEscalate} // units, not money: no amount
				if r.Invariant == audit.ReleasedOnce {
					f.Action = ActionRelease
				}
				out = append(out, f)
			}
		}
		return out, nil
	}
}
