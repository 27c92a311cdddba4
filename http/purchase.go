package http

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
)

// maxStreamWait bounds how long a result stream stays open.
const maxStreamWait = 60 * time.Second

// PurchaseAnswer is a purchase's success answer; its status code says which.
type PurchaseAnswer struct{ *purchase.Result }

// HTTPStatus is 201 for an order, 202 for a queued attempt.
func (p PurchaseAnswer) HTTPStatus() int {
	if p.Status == purchase.StatusQueued {
		return http.StatusAccepted
	}
	return http.StatusCreated
}

// OrderList is a page of orders.
type OrderList struct {
	Items []*surge.Order `json:"items"`
}

// RefundList is an order's refunds.
type RefundList struct {
	Items []*surge.Refund `json:"items"`
}

// BlockList is the active blocks.
type BlockList struct {
	Items []surge.Block `json:"items"`
}

// Headers a shopper's app sends with a purchase: its device id, which risk control counts
// attempts by, and a solved challenge when an attempt was answered ECHALLENGE.
const (
	DeviceHeader = "X-Device-Id"
	ProofHeader  = "X-Surge-Proof"
)

// CallbackAnswer acknowledges a payment notification.
type CallbackAnswer struct {
	Outcome string `json:"outcome"`
}

func (s *Server) purchaseRoutes() []route {
	p, o, bl := s.deps.Purchase, s.deps.Orders, s.deps.Blacklist
	if p == nil {
		return nil
	}
	return []route{
		{method: "GET", path: "/v1/items/{id}", summary: "An item on sale: remaining stock and a purchase token", access: signedIn,
			out: purchase.Detail{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return p.Detail(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/purchases", summary: "Buy now: 201 with the order, 202 queued with a ticket, or a refusal (ESOLDOUT, ELIMIT, ERATELIMIT, EFORBIDDEN, ECONFLICT, EUNAVAILABLE)",
			access: signedIn, in: purchase.Request{}, out: purchase.Result{}, status: 201, also: []int{202},
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in purchase.Request) (any, error) {
					from := purchase.Origin{IP: s.clientIP(r), Device: r.Header.Get(DeviceHeader), Proof: r.Header.Get(ProofHeader)}
					res, err := p.Purchase(r.Context(), a, from, in)
					if err != nil {
						return nil, err
					}
					return PurchaseAnswer{res}, nil
				})
			}},
		{method: "GET", path: "/v1/purchases/{ticket}", summary: "The answer to a queued purchase", access: signedIn,
			out: purchase.Result{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return p.Poll(r.Context(), a, r.PathValue("ticket"))
			}},
		{method: "GET", path: "/v1/purchases/{ticket}/events", summary: "Server-sent event stream that delivers a queued purchase's answer",
			access: signedIn, out: purchase.Result{}, status: 200,
			stream: func(w http.ResponseWriter, r *http.Request, a surge.Actor) error {
				ctx, cancel := contextWithTimeout(r, maxStreamWait)
				defer cancel()
				res, err := p.Wait(ctx, a, r.PathValue("ticket"))
				if code := surge.ErrorCode(err); code == surge.ENOTFOUND || code == surge.EINVALID {
					return err // no stream for a ticket that is not there
				}
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusOK)
				var data []byte
				if err != nil {
					data, _ = json.Marshal(ErrorBody{Error: ErrorDetail{Code: surge.ErrorCode(err), Message: surge.ErrorMessage(err), RequestID: RequestID(r.Context())}})
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
				} else {
					data, _ = json.Marshal(res)
					fmt.Fprintf(w, "event: result\ndata: %s\n\n", data)
				}
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
				return nil
			}},
		{method: "GET", path: "/v1/orders/{id}", summary: "An order (its shopper, its merchant, staff)", access: signedIn,
			out: surge.Order{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return o.Get(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/orders/{id}/pay", summary: "A signed payment ticket for the shopper's pending order", access: signedIn,
			out: order.PayTicket{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return o.Ticket(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/orders/{id}/cancel", summary: "Cancel the shopper's pending order; its stock returns to the sale", access: signedIn,
			out: surge.Order{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return o.Cancel(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/orders/{id}/refunds", summary: "Refund a paid or consumed order through the payment provider, whole (no lines) or units of lines (operators, and the shop that sold): 202 with the refund, requested until the provider's callback; the same request_id again is the same refund",
			access: signedIn, in: order.RefundInput{}, out: surge.Refund{}, status: 202,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in order.RefundInput) (any, error) { return o.Refund(r.Context(), a, id, in) })
				})
			}},
		{method: "GET", path: "/v1/orders/{id}/refunds", summary: "An order's refunds, oldest first (its shopper, its merchant, staff)", access: signedIn,
			out: RefundList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					list, err := o.Refunds(r.Context(), a, id)
					return RefundList{Items: nonNil(list)}, err
				})
			}},
		{method: "POST", path: "/v1/orders/{id}/review", summary: "The shopper's review of their consumed order, which becomes reviewed", access: signedIn,
			in: order.ReviewInput{}, out: surge.Order{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in order.ReviewInput) (any, error) { return o.Review(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/payments/callback", summary: "Payment provider notification, signed in the " + payment.SignatureHeader + " header",
			maxBody: payment.MaxNotificationBytes, out: CallbackAnswer{}, status: 200,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					return nil, surge.JSONError(err)
				}
				n, err := payment.Decode(s.deps.PaymentKey, body, r.Header.Get(payment.SignatureHeader), time.Now())
				if err != nil {
					return nil, err
				}
				handle := o.HandlePayment
				if n.Status == payment.StatusRefunded {
					handle = o.HandleRefunded
				}
				outcome, err := handle(r.Context(), n)
				if err != nil {
					return nil, err
				}
				return CallbackAnswer{Outcome: outcome}, nil
			}},
		{method: "POST", path: "/v1/blacklist", summary: "Block a user from buying (operators)", access: signedIn,
			in: risk.BlockInput{}, out: surge.Block{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in risk.BlockInput) (any, error) { return bl.Block(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/blacklist", summary: "Active blocks (operators)", access: signedIn, out: BlockList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				list, err := bl.List(r.Context(), a)
				return BlockList{Items: nonNil(list)}, err
			}},
		{method: "DELETE", path: "/v1/blacklist/{user}", summary: "Lift a block (operators)", access: signedIn, status: 204,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "user", func(id int64) (any, error) { return nil, bl.Unblock(r.Context(), a, id) })
			}},
		{method: "GET", path: "/v1/sessions/{id}/audit", summary: "Check a session against the invariants: stock balance, limits, one order per reservation, release once (operators)",
			access: signedIn, out: audit.Report{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return s.deps.Audit.SessionFor(r.Context(), a, id) })
			}},
	}
}
