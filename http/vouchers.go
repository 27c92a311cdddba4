package http

import (
	"net/http"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/voucher"
)

// VoucherList is an order's vouchers.
type VoucherList struct {
	Items []surge.Voucher `json:"items"`
}

func (s *Server) voucherRoutes() []route {
	v := s.deps.Vouchers
	if v == nil {
		return nil
	}
	return []route{
		{method: "POST", path: "/v1/vouchers/redeem", summary: "Redeem a voucher code at the merchant's till, typed or scanned, exactly once (the merchant whose shop sold it): EINVALID mistyped, ENOTFOUND unknown, EFORBIDDEN another shop's, ECONFLICT redeemed already or refunded",
			access: signedIn, in: voucher.RedeemInput{}, out: voucher.Redeemed{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in voucher.RedeemInput) (any, error) { return v.Redeem(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/orders/{id}/vouchers", summary: "An order's voucher codes (its shopper, its merchant, staff)", access: signedIn,
			out: VoucherList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					list, err := v.ForOrder(r.Context(), a, id)
					return VoucherList{Items: nonNil(list)}, err
				})
			}},
	}
}
