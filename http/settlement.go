package http

import (
	"net/http"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/settlement"
)

func (s *Server) settlementRoutes() []route {
	st := s.deps.Settlement
	if st == nil {
		return nil
	}
	return []route{
		{method: "GET", path: "/v1/merchants/{id}/settlements/{day}", summary: "A shop's settlement of a day (YYYY-MM-DD, UTC): per order, goods paid and vouchers redeemed that day, less refunds of goods and the platform's fee; the totals are the sums of the lines (the shop, operators)",
			access: signedIn, out: settlement.Settlement{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return st.Day(r.Context(), a, id, r.PathValue("day")) })
			}},
	}
}
