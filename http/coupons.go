package http

import (
	"mime"
	"net/http"
	"strconv"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
)

// MaxGrantBodyBytes bounds a bulk grant's body: a million ids, as JSON strings or file lines.
const MaxGrantBodyBytes = 32 << 20

// CouponBatchList is a page of coupon batches.
type CouponBatchList struct {
	Items []*surge.CouponBatch `json:"items"`
}

// Wallet is a shopper's coupons.
type Wallet struct {
	Items []coupon.WalletCoupon `json:"items"`
}

// UsableCoupons are the coupons of a shopper's wallet a cart can use.
type UsableCoupons struct {
	Items []coupon.UsableCoupon `json:"items"`
}

func (s *Server) couponRoutes() []route {
	cs := s.deps.Coupons
	if cs == nil {
		return nil
	}
	var list []route
	if co := s.deps.Checkout; co != nil {
		list = append(list, route{method: "POST", path: "/v1/checkouts", summary: "Check out up to 50 lines of one shop's SKUs at catalog prices, with up to 10 coupons (shoppers; the request id makes a retry return the same order): ESOLDOUT when an SKU lacks the units",
			access: signedIn, in: checkout.Request{}, out: surge.Order{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in checkout.Request) (any, error) { return co.Checkout(r.Context(), a, in) })
			}})
	}
	return append(list, []route{
		{method: "POST", path: "/v1/coupon-batches", summary: "Create a coupon batch, as a draft (merchants for their shop, operators for any or the platform)",
			access: signedIn, in: coupon.BatchInput{}, out: surge.CouponBatch{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in coupon.BatchInput) (any, error) { return cs.CreateBatch(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/coupon-batches", summary: "Coupon batches, newest first (merchants: their own; operators: all, or ?merchant= one shop's, 0 the platform's)",
			access: signedIn, query: []string{"merchant", "state"}, out: CouponBatchList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				merchant := int64(-1)
				if v := r.URL.Query().Get("merchant"); v != "" {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil || n < 0 {
						return nil, surge.Errorf(surge.EINVALID, "merchant must be a shop id, or 0 for the platform")
					}
					merchant = n
				}
				list, err := cs.Batches(r.Context(), a, merchant, r.URL.Query().Get("state"))
				return CouponBatchList{Items: nonNil(list)}, err
			}},
		{method: "GET", path: "/v1/coupon-batches/{id}", summary: "A coupon batch and how many of its coupons are issued (a live one to anyone signed in)",
			access: signedIn, out: coupon.Batch{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return cs.Batch(r.Context(), a, id) })
			}},
		{method: "PATCH", path: "/v1/coupon-batches/{id}", summary: "Change a coupon batch: a draft freely; a live one its name, total (not below the issued) and a later claim_until",
			access: signedIn, in: coupon.BatchPatch{}, out: surge.CouponBatch{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in coupon.BatchPatch) (any, error) { return cs.UpdateBatch(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/coupon-batches/{id}/publish", summary: "Make a draft batch live: its coupons can be claimed within its claim window",
			access: signedIn, out: surge.CouponBatch{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return cs.Publish(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/coupon-batches/{id}/offline", summary: "Take a batch offline: no more claims; coupons claimed stay usable",
			access: signedIn, out: surge.CouponBatch{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return cs.Offline(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/coupon-batches/{id}/claims", summary: "Claim a coupon of a live batch (shoppers; the request id makes a retry return the same coupon): ESOLDOUT when all are issued, ELIMIT at the per-shopper limit",
			access: signedIn, in: coupon.ClaimRequest{}, out: surge.Coupon{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in coupon.ClaimRequest) (any, error) { return cs.Claim(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/coupon-batches/{id}/grants", summary: "Grant one coupon of a live batch to each of up to 1,000,000 users: JSON {request_id, users}, or a file (text/csv or text/plain, one user id a line) with ?request_id=; runs in the background, throttled",
			access: signedIn, query: []string{"request_id"}, out: surge.CouponGrant{}, status: 202, maxBody: MaxGrantBodyBytes,
			bodyTypes: []string{"application/json", "text/csv", "text/plain"},
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
						return withBody(r, func(in coupon.GrantInput) (any, error) { return cs.Grant(r.Context(), a, id, in) })
					}
					users, err := coupon.ReadUsers(r.Body)
					if err != nil {
						return nil, surge.JSONError(err) // a body past the limit is ETOOLARGE
					}
					return cs.Grant(r.Context(), a, id, coupon.GrantInput{RequestID: r.URL.Query().Get("request_id"), Users: users})
				})
			}},
		{method: "GET", path: "/v1/coupon-batches/{id}/grants/{grant}", summary: "A bulk grant and its progress: users gone through, granted, refused at the per-user limit, state",
			access: signedIn, out: surge.CouponGrant{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withID(r, "grant", func(g int64) (any, error) { return cs.GrantStatus(r.Context(), a, id, g) })
				})
			}},
		{method: "POST", path: "/v1/me/coupons/usable", summary: "The signed-in shopper's coupons and red envelopes a cart (up to 50 lines at catalog prices) can use now, each with what it takes off the cart alone, the most first",
			access: signedIn, in: coupon.Cart{}, out: UsableCoupons{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in coupon.Cart) (any, error) {
					list, err := cs.Usable(r.Context(), a, in)
					return UsableCoupons{Items: nonNil(list)}, err
				})
			}},
		{method: "GET", path: "/v1/me/coupons", summary: "The signed-in shopper's coupons, newest first, with what each takes off",
			access: signedIn, out: Wallet{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				list, err := cs.Wallet(r.Context(), a)
				return Wallet{Items: nonNil(list)}, err
			}},
	}...)
}
