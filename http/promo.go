package http

import (
	"net/http"
	"strconv"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/promo"
)

// ActivityList is a page of activities.
type ActivityList struct {
	Items []*surge.Activity `json:"items"`
}

// ActivityVersions is an activity's saved versions, oldest first.
type ActivityVersions struct {
	Items []surge.ActivityVersion `json:"items"`
}

func (s *Server) promoRoutes() []route {
	ps := s.deps.Promo
	if ps == nil {
		return nil
	}
	return []route{
		{method: "POST", path: "/v1/prices/quote", summary: "The best price of a cart of up to 200 lines (or one SKU) for the signed-in user: the best legal combination of live activities and the shopper's coupons and red envelopes (or exactly the coupons named), with a per-line breakdown; locks nothing",
			access: signedIn, in: promo.QuoteRequest{}, out: promo.Quote{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in promo.QuoteRequest) (any, error) { return ps.Quote(r.Context(), a, in) })
			}},
		{method: "POST", path: "/v1/activities", summary: "Create a promotion activity, as a draft (merchants for their shop, operators for any or the platform)",
			access: signedIn, in: promo.ActivityInput{}, out: surge.Activity{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in promo.ActivityInput) (any, error) { return ps.Create(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/activities", summary: "Activities, newest first (merchants: their own; operators: all, or ?merchant= one shop's, 0 the platform's)",
			access: signedIn, query: []string{"merchant", "state"}, out: ActivityList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				merchant := int64(-1)
				if v := r.URL.Query().Get("merchant"); v != "" {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil || n < 0 {
						return nil, surge.Errorf(surge.EINVALID, "merchant must be a shop id, or 0 for the platform")
					}
					merchant = n
				}
				list, err := ps.Activities(r.Context(), a, merchant, r.URL.Query().Get("state"))
				return ActivityList{Items: nonNil(list)}, err
			}},
		{method: "GET", path: "/v1/activities/{id}", summary: "An activity, and what orders hold of it by state (a live one to anyone signed in, without its counters)",
			access: signedIn, out: promo.ActivityView{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return ps.Activity(r.Context(), a, id) })
			}},
		{method: "GET", path: "/v1/activities/{id}/versions", summary: "An activity's saved versions, oldest first, and who saved each",
			access: signedIn, out: ActivityVersions{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					list, err := ps.Versions(r.Context(), a, id)
					return ActivityVersions{Items: nonNil(list)}, err
				})
			}},
		{method: "PATCH", path: "/v1/activities/{id}", summary: "Change a draft activity (a live one is frozen: ECONFLICT)",
			access: signedIn, in: promo.ActivityPatch{}, out: surge.Activity{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in promo.ActivityPatch) (any, error) { return ps.Update(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/activities/{id}/publish", summary: "Make a draft activity live: it prices carts within its window, on every node within a second; EINVALID for exclusions that make a cycle",
			access: signedIn, out: surge.Activity{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return ps.Publish(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/activities/{id}/offline", summary: "Take an activity offline: it prices nothing more; orders that hold it keep their price",
			access: signedIn, out: surge.Activity{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return ps.Offline(r.Context(), a, id) })
			}},
	}
}
