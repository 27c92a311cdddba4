package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/client"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/redis"
)

// Reference is the flash sale as it is commonly built, for comparison: an HTTP handler that,
// per request, checks the access token, runs one Redis Lua decrement and inserts the order
// into the SQL database synchronously before answering; and takes payments the usual way: a
// signed ticket for the payment page, and a callback that updates the order in SQL (its state
// and the payment's record, in one transaction) synchronously and confirms the stock in Redis.
// No queue, no gate, no batching. It serves the same routes and answers as Surge, with the
// same simulated payment provider, so the same crowd runs against it.
type Reference struct {
	Stock  *redis.Plain
	Orders surge.OrderStore
	IDs    func() (int64, error)
	Items  int
	Units  int64
	Limit  int64
	// PayTimeout is how long an order waits for its payment; nothing expires it (the crowd's
	// payers pay within it), it only bounds the payment ticket.
	PayTimeout time.Duration

	secret []byte
	payKey []byte
	srv    *http.Server
	sim    *paysim.Provider
	api    *client.Client
	items  []int64
	nextID atomic.Int64
}

// Start serves the reference on a loopback port, with an HTTP client for inFlight attempts.
func (r *Reference) Start(inFlight int) error {
	r.secret = []byte(fmt.Sprintf("reference-%d-secret-of-thirty-two-bytes", time.Now().UnixNano()))
	r.payKey = []byte(fmt.Sprintf("reference-%d-payment-key", time.Now().UnixNano()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	r.sim = paysim.New(r.payKey, 0, quiet)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/items/{id}", r.page)
	mux.HandleFunc("POST /v1/purchases", r.buy)
	mux.HandleFunc("GET /v1/orders/{id}", r.order)
	mux.HandleFunc("POST /v1/orders/{id}/pay", r.ticket)
	mux.HandleFunc("POST /v1/payments/callback", r.callback)
	mux.Handle("/paysim/", r.sim.Handler())
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go r.srv.Serve(ln) // stopped by Close
	r.api = client.New("http://" + ln.Addr().String()).WithHTTP(crowdHTTP(inFlight))
	return nil
}

// URL is where the reference serves.
func (r *Reference) URL() string { return r.api.BaseURL() }

// Close stops the server and the provider's callbacks.
func (r *Reference) Close() error {
	err := r.srv.Close()
	r.sim.Close()
	return err
}

// shopperOrder reads the signed-in shopper's order named in the path.
func (r *Reference) shopperOrder(w http.ResponseWriter, req *http.Request) (*surge.Order, bool) {
	user, ok := r.user(req)
	if !ok {
		refFail(w, 401, surge.EUNAUTHORIZED, "access token is not valid")
		return nil, false
	}
	id, _ := strconv.ParseInt(req.PathValue("id"), 10, 64)
	o, err := r.Orders.OrderByID(req.Context(), id)
	if err != nil || o.UserID != user {
		refFail(w, 404, surge.ENOTFOUND, "order not found")
		return nil, false
	}
	return o, true
}

func (r *Reference) order(w http.ResponseWriter, req *http.Request) {
	if o, ok := r.shopperOrder(w, req); ok {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(o)
	}
}

func (r *Reference) ticket(w http.ResponseWriter, req *http.Request) {
	o, ok := r.shopperOrder(w, req)
	if !ok {
		return
	}
	if o.State != surge.OrderPendingPayment {
		refFail(w, 409, surge.ECONFLICT, "only a pending order can be paid")
		return
	}
	t, err := payment.SignTicket(r.payKey, payment.Ticket{TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount, ExpiresAt: o.ExpiresAt,
		NotifyURL: r.URL() + "/v1/payments/callback"})
	if err != nil {
		refFail(w, 500, surge.EINTERNAL, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(order.PayTicket{PayURL: r.URL() + "/paysim/v1/pay", Ticket: t, TxnID: o.TxnID})
}

// callback applies a notification in one synchronous SQL transaction and, for a payment of
// the order, confirms its units in Redis (once per order) before answering.
func (r *Reference) callback(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, payment.MaxNotificationBytes))
	if err != nil {
		refFail(w, 400, surge.EINVALID, "unreadable body")
		return
	}
	n, err := payment.Decode(r.payKey, body, req.Header.Get(payment.SignatureHeader), time.Now())
	if err != nil {
		refFail(w, surgehttp.Status(surge.ErrorCode(err)), surge.ErrorCode(err), surge.ErrorMessage(err))
		return
	}
	p := &surge.Payment{NotifyID: n.NotifyID, TxnID: n.TxnID, OrderID: n.OrderID, Amount: n.Amount, Status: n.Status,
		PaidAt: n.PaidAt.UTC(), ReceivedAt: time.Now().UTC()}
	orders, err := r.Orders.ApplyPayments(req.Context(), []*surge.Payment{p})
	switch {
	case err != nil:
		refFail(w, 503, surge.EUNAVAILABLE, err.Error())
		return
	case orders[0] == nil:
		refFail(w, 404, surge.ENOTFOUND, "order not found")
		return
	}
	// A duplicate confirms too: the first one's confirmation may have failed after its commit.
	if p.Outcome == surge.PaymentApplied || p.Outcome == surge.PaymentDuplicate {
		if err := r.Stock.Confirm(req.Context(), orders[0].ItemID, orders[0].ID, orders[0].Quantity); err != nil {
			refFail(w, 503, surge.EUNAVAILABLE, err.Error()) // the provider sends it again: a duplicate then
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"outcome": p.Outcome})
}

func refFail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(surgehttp.ErrorBody{Error: surgehttp.ErrorDetail{Code: code, Message: msg}})
}

func (r *Reference) user(req *http.Request) (int64, bool) {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return 0, false
	}
	var c jwt.RegisteredClaims
	if _, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return r.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err != nil {
		return 0, false
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	return id, err == nil
}

func (r *Reference) page(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.user(req); !ok {
		refFail(w, 401, surge.EUNAUTHORIZED, "access token is not valid")
		return
	}
	id, _ := strconv.ParseInt(req.PathValue("id"), 10, 64)
	left, err := r.Stock.Left(req.Context(), id)
	if err != nil {
		refFail(w, 503, surge.EUNAVAILABLE, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(purchase.Detail{Item: &surge.SessionItem{ID: id}, Remaining: left})
}

func (r *Reference) buy(w http.ResponseWriter, req *http.Request) {
	user, ok := r.user(req)
	if !ok {
		refFail(w, 401, surge.EUNAUTHORIZED, "access token is not valid")
		return
	}
	var in purchase.Request
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil || in.Quantity < 1 {
		refFail(w, 400, surge.EINVALID, "bad request")
		return
	}
	ctx := req.Context()
	out, err := r.Stock.Buy(ctx, in.ItemID, user, in.Quantity, r.Limit)
	switch {
	case err != nil:
		refFail(w, 503, surge.EUNAVAILABLE, err.Error())
		return
	case out == surge.SoldOut:
		refFail(w, 409, surge.ESOLDOUT, "sold out")
		return
	case out == surge.LimitReached:
		refFail(w, 409, surge.ELIMIT, "limit reached")
		return
	}
	id, err := r.IDs()
	if err == nil {
		now := time.Now().UTC()
		_, err = r.Orders.CreateOrder(ctx, &surge.Order{ID: id, TxnID: "R" + strconv.FormatInt(id, 10), RequestID: in.RequestID,
			UserID: user, SessionID: 1, ItemID: in.ItemID, SKUID: 1, MerchantID: 1, Quantity: in.Quantity,
			Amount: surge.Money{Amount: 100 * in.Quantity, Currency: "CNY"}, State: surge.OrderPendingPayment,
			CreatedAt: now, ExpiresAt: now.Add(max(r.PayTimeout, time.Minute))})
	}
	if err != nil {
		r.Stock.Undo(context.WithoutCancel(ctx), in.ItemID, user, in.Quantity)
		refFail(w, 503, surge.EUNAVAILABLE, "order not written")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(purchase.Result{Status: purchase.StatusSuccess, OrderID: id})
}

// Setup implements Target: items 1..Items with Units each, open at once.
func (r *Reference) Setup(ctx context.Context) ([]int64, time.Time, error) {
	base := time.Now().UnixMilli() % 1_000_000_000 * 1000 // item ids of their own, per run
	r.items = nil
	for i := range r.Items {
		id := base + int64(i) + 1
		if err := r.Stock.Load(ctx, id, r.Units); err != nil {
			return nil, time.Time{}, err
		}
		r.items = append(r.items, id)
	}
	return r.items, time.Now(), nil
}

// Shoppers implements Target: tokens the reference signs itself.
func (r *Reference) Shoppers(ctx context.Context, n int) ([]Shopper, error) {
	out := make([]Shopper, n)
	for i := range out {
		id := 1_000_000_000 + r.nextID.Add(1)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: strconv.FormatInt(id, 10),
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}).SignedString(r.secret)
		if err != nil {
			return nil, err
		}
		out[i] = Shopper{UserID: id, Token: tok}
	}
	return out, nil
}

// Page implements Target.
func (r *Reference) Page(ctx context.Context, sh Shopper, item int64) (string, int64, error) {
	d, err := r.api.As(sh.Token).Item(ctx, item)
	if err != nil {
		return "", 0, err
	}
	return "", d.Remaining, nil
}

// Buy implements Target. It posts the attempt without client.Purchase's Idempotency-Key: the
// reference deduplicates nothing, so the transport must not send an attempt twice.
func (r *Reference) Buy(ctx context.Context, sh Shopper, req purchase.Request) (*purchase.Result, error) {
	var res purchase.Result
	if err := r.api.As(sh.Token).Do(ctx, "POST", "/v1/purchases", req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// BuyWithProof implements Target: the reference never challenges.
func (r *Reference) BuyWithProof(context.Context, Shopper, purchase.Request, string) (*purchase.Result, error) {
	return nil, errors.New("the reference does not challenge")
}

// EnableRule implements Target: the reference has no risk control.
func (r *Reference) EnableRule(context.Context, surge.RiskRule) (*surge.RiskRule, error) {
	return nil, ErrNoRiskControl
}

// DisableRule implements Target: the reference has no risk control.
func (r *Reference) DisableRule(context.Context, int64) error { return ErrNoRiskControl }

// ErrNoRiskControl is the reference's answer to a risk rule.
var ErrNoRiskControl = errors.New("the reference build has no risk control")

// Poll implements Target: the reference never queues.
func (r *Reference) Poll(context.Context, Shopper, string) (*purchase.Result, error) {
	return nil, errors.New("the reference does not queue")
}

// Order implements Target.
func (r *Reference) Order(ctx context.Context, sh Shopper, id int64) (*surge.Order, error) {
	return r.api.As(sh.Token).Order(ctx, id)
}

// PayTicket implements Target.
func (r *Reference) PayTicket(ctx context.Context, sh Shopper, id int64) (*order.PayTicket, error) {
	return r.api.As(sh.Token).PayTicket(ctx, id)
}

// PayProvider implements Target.
func (r *Reference) PayProvider(ctx context.Context, sh Shopper, tk *order.PayTicket) error {
	_, err := r.api.As(sh.Token).Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket})
	return err
}

// Audit implements Target: the same invariants, over what Redis and the database hold. A
// decrement is a sale, so nothing is ever reserved; the units confirmed paid in Redis must be
// those of the paid orders.
func (r *Reference) Audit(ctx context.Context) (*audit.Report, error) {
	var facts []audit.ItemFacts
	confirmed := audit.Result{Invariant: ReferencePaidUnits, Status: audit.Pass}
	for _, id := range r.items {
		left, err := r.Stock.Left(ctx, id)
		if err != nil {
			return nil, err
		}
		o, err := r.Orders.AuditItem(ctx, id, r.Limit)
		if err != nil {
			return nil, err
		}
		facts = append(facts, audit.ItemFacts{ItemID: id, Allotted: r.Units, PerUserLimit: r.Limit, Orders: o,
			Stock: surge.StockLevels{Allotted: r.Units, Available: left, Sold: r.Units - left}})
		paid, err := r.Stock.Paid(ctx, id)
		if err != nil {
			return nil, err
		}
		confirmed.Checked++
		if want := o.Units[surge.OrderPaid]; paid != want {
			confirmed.Status, confirmed.Violations = audit.Fail, confirmed.Violations+1
			confirmed.Details = append(confirmed.Details, fmt.Sprintf("item %d: %d units confirmed paid, %d in paid orders", id, paid, want))
		}
	}
	rep := audit.Check(0, facts, nil, nil)
	rep.Results = append(rep.Results, confirmed)
	rep.Passed = rep.Passed && confirmed.Status != audit.Fail
	return rep, nil
}

// ReferencePaidUnits is the reference's own check: the units its callbacks confirmed in Redis
// are those of its paid orders.
const ReferencePaidUnits = "reference-paid-units-confirmed"

// Remaining implements Target.
func (r *Reference) Remaining(ctx context.Context) (int64, error) {
	var left int64
	for _, id := range r.items {
		n, err := r.Stock.Left(ctx, id)
		if err != nil {
			return 0, err
		}
		left += n
	}
	return left, nil
}
