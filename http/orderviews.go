package http

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
)

func (s *Server) orderViewRoutes() []route {
	ov := s.deps.OrderViews
	if ov == nil {
		return s.storeOrderRoutes()
	}
	return []route{
		{method: "GET", path: "/v1/orders", summary: "The signed-in shopper's orders, newest first, a page at a time (next_cursor: the next page's cursor; a new order shows within a second)",
			access: signedIn, query: []string{"cursor", "limit"}, out: surge.OrderPage{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				n, err := pageLimit(r)
				if err != nil {
					return nil, err
				}
				return ov.Mine(r.Context(), a, r.URL.Query().Get("cursor"), int(n))
			}},
		{method: "GET", path: "/v1/merchant/orders", summary: "A shop's orders, newest first, by state (comma-separated or repeated) and creation time [from, to) in RFC 3339 (the merchant's own shop; staff name it with merchant)",
			access: signedIn, query: []string{"merchant", "state", "from", "to", "cursor", "limit"}, out: surge.OrderPage{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				q := r.URL.Query()
				merchant, err := queryInt(r, "merchant")
				if err != nil {
					return nil, err
				}
				n, err := pageLimit(r)
				if err != nil {
					return nil, err
				}
				f, err := orderFilter(q)
				if err != nil {
					return nil, err
				}
				return ov.Merchant(r.Context(), a, merchant, f, q.Get("cursor"), int(n))
			}},
		{method: "GET", path: "/v1/support/orders", summary: "Support's order search (staff): q is found in the shopper's phone or username, or starts the order id; created in [from, to) in RFC 3339",
			access: signedIn, query: []string{"q", "from", "to", "cursor", "limit"}, out: surge.OrderPage{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				n, err := pageLimit(r)
				if err != nil {
					return nil, err
				}
				q, err := orderSearch(r.URL.Query())
				if err != nil {
					return nil, err
				}
				return ov.Search(r.Context(), a, q, r.URL.Query().Get("cursor"), int(n))
			}},
	}
}

// storeOrderRoutes serve the shopper's orders from the order store, where no views are kept.
func (s *Server) storeOrderRoutes() []route {
	o := s.deps.Orders
	if o == nil {
		return nil
	}
	return []route{{method: "GET", path: "/v1/orders", summary: "The signed-in shopper's orders, newest first", access: signedIn,
		query: []string{"limit"}, out: OrderList{}, status: 200,
		handle: func(r *http.Request, a surge.Actor) (any, error) {
			n, err := queryInt(r, "limit")
			if err != nil {
				return nil, err
			}
			list, err := o.Mine(r.Context(), a, int(n))
			return OrderList{Items: nonNil(list)}, err
		}}}
}

// orderFilter reads a merchant's filter from a query: state (comma-separated, or repeated),
// from and to.
func orderFilter(q url.Values) (surge.OrderFilter, error) {
	var f surge.OrderFilter
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			if st = strings.TrimSpace(st); st != "" {
				f.States = append(f.States, surge.OrderState(st))
			}
		}
	}
	var err error
	if f.From, f.To, err = timeRange(q); err != nil {
		return f, err
	}
	return f, f.Validate()
}

// orderSearch reads support's search from a query: q, from and to.
func orderSearch(q url.Values) (surge.OrderSearch, error) {
	s := surge.OrderSearch{Text: q.Get("q")}
	var err error
	if s.From, s.To, err = timeRange(q); err != nil {
		return s, err
	}
	return s, s.Validate()
}

// timeRange reads from and to, RFC 3339 times, either absent.
func timeRange(q url.Values) (from, to time.Time, err error) {
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		if *p.t, err = time.Parse(time.RFC3339, v); err != nil {
			return from, to, surge.Errorf(surge.EINVALID, "query parameter %s must be an RFC 3339 time, as 2026-12-07T10:00:00Z", p.name)
		}
	}
	return from, to, nil
}

// pageLimit reads a page's limit: 0 (the default) when absent, EINVALID above MaxListLimit.
func pageLimit(r *http.Request) (int64, error) {
	n, err := queryInt(r, "limit")
	if err == nil && n > surge.MaxListLimit {
		err = surge.Errorf(surge.EINVALID, "limit must be at most %d", surge.MaxListLimit)
	}
	return n, err
}
