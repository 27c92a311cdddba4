package http

import (
	"net/http"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/reconcile"
)

// MismatchList is the real-time reconciliation's mismatches.
type MismatchList struct {
	Items []surge.Mismatch `json:"items"`
}

func (s *Server) reconcileRoutes() []route {
	rc := s.deps.Reconcile
	if rc == nil {
		return nil
	}
	return []route{
		{method: "POST", path: "/v1/reconcile/days/{day}/run", summary: "Reconcile a day (YYYY-MM-DD, UTC) against the payment provider's ledger file, store its report and return it (operators): count and amount mismatches, missing callbacks, paid-but-cancelled, refunds due, stock drift",
			access: signedIn, out: reconcile.Report{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return rc.RunDay(r.Context(), a, r.PathValue("day"))
			}},
		{method: "GET", path: "/v1/reconcile/days/{day}", summary: "A reconciled day's report, each finding with its repair once made (operators)",
			access: signedIn, out: reconcile.Report{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return rc.Report(r.Context(), a, r.PathValue("day"))
			}},
		{method: "GET", path: "/v1/reconcile/days/{day}/page", summary: "A reconciled day's report as a page (operators)",
			access: signedIn, status: 200, produces: "text/html",
			stream: func(w http.ResponseWriter, r *http.Request, a surge.Actor) error {
				rep, err := rc.Report(r.Context(), a, r.PathValue("day"))
				if err != nil {
					return err
				}
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				return rep.WriteHTML(w)
			}},
		{method: "POST", path: "/v1/reconcile/days/{day}/findings/{finding}/repair", summary: "Make the repair a finding calls for (re-drive the callback, refund, release), once and audited (operators): ECONFLICT when it was made already, EINVALID when the finding needs a person",
			access: signedIn, out: surge.Repair{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return rc.Repair(r.Context(), a, r.PathValue("day"), r.PathValue("finding"))
			}},
		{method: "GET", path: "/v1/reconcile/mismatches", summary: "Mismatches the real-time reconciliation raised between orders, payments, stock movements and refunds, newest first (operators); since RFC 3339, the last 24 hours by default",
			access: signedIn, query: []string{"since", "kind", "limit"}, out: MismatchList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				since, err := queryTime(r, "since")
				if err != nil {
					return nil, err
				}
				n, err := queryInt(r, "limit")
				if err != nil {
					return nil, err
				}
				list, err := rc.Mismatches(r.Context(), a, since, r.URL.Query().Get("kind"), int(n))
				return MismatchList{Items: nonNil(list)}, err
			}},
	}
}

// queryTime reads an optional RFC 3339 time from the query.
func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, surge.Errorf(surge.EINVALID, "query parameter %s must be an RFC 3339 time", name)
	}
	return t, nil
}
