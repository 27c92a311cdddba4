package http

import (
	"net/http"
	"time"

	"github.com/surgecommerce/surge"
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
