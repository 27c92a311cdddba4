// Package paysim is a simulated third-party payment provider, shipped so that the whole
// purchase journey can run and be tested without a real one. It takes a signed payment ticket,
// "charges" it, and calls the merchant back with signed notifications that can be made to
// arrive duplicated, late or out of order, as real providers' do.
package paysim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

// Bounds of the simulator.
const (
	MaxDuplicates = 5
	MaxDelay      = time.Minute
	// DefaultInFlight is how many payments the provider holds at once unless told otherwise: a
	// payment is in flight from its charge until the merchant acknowledged its last
	// notification. Past it, a payment is refused 503 with a hint of when to come back.
	DefaultInFlight = 65_536
	// Senders is how many notifications the provider sends at once, on as many kept-alive
	// connections: a real provider's delivery queue works through its backlog at the pace the
	// merchant answers, rather than with a connection per payment.
	Senders = 256
	// BusyRetryMs is that hint: a payment page tries again after it.
	BusyRetryMs     = 200
	callbackTimeout = 5 * time.Second
	callbackRetries = 200 // with backoff capped at maxBackoff: about 15 minutes
	maxBackoff      = 5 * time.Second
	maxRemembered   = 1 << 20 // transactions remembered as paid
	maxBodyBytes    = 16 << 10
)

// PayRequest is what the payment page posts: the ticket, and how the callbacks should behave.
type PayRequest struct {
	Ticket     string `json:"ticket"`
	Duplicates int    `json:"duplicates"`   // extra copies of the "paid" notification
	DelayMs    int64  `json:"delay_ms"`     // wait before calling back
	OutOfOrder bool   `json:"out_of_order"` // send "paid" before the earlier "processing"
}

// PayResponse acknowledges a payment.
type PayResponse struct {
	TxnID  string `json:"txn_id"`
	Status string `json:"status"`
}

// Provider is the simulated provider. Payments are charged at once and their notifications
// queued; Senders goroutines deliver them.
type Provider struct {
	key       []byte
	client    *http.Client
	log       *slog.Logger
	now       func() time.Time
	capacity  int64
	inFlight  atomic.Int64  // payments charged whose notifications are not all delivered
	queue     chan delivery // holds up to capacity: a charge is refused rather than queued past it
	timers    sync.Map      // id → *time.Timer of a delivery waiting out its delay, to stop on Close
	nextTimer atomic.Int64

	mu   sync.Mutex
	paid map[string]string // transactions charged → the Idempotency-Key of the charge ("" when none)
	wg   sync.WaitGroup
	quit chan struct{}
}

// IdempotencyKeyHeader marks a payment request that may be sent twice: a second charge of a
// transaction carrying the first one's key is answered as the first was, not refused, so a
// payment page whose connection broke before the answer can send the request again (Go's HTTP
// transport does so by itself for a request with this header).
const IdempotencyKeyHeader = "Idempotency-Key"

// maxIdempotencyKey bounds the key each remembered charge keeps.
const maxIdempotencyKey = 255

// delivery is one payment's notifications, to send in order.
type delivery struct {
	t   payment.Ticket
	req PayRequest
}

// New returns a provider that shares key with the merchant and holds at most inFlight
// payments at once (DefaultInFlight when not positive). Close stops it.
func New(key []byte, inFlight int, log *slog.Logger) *Provider {
	if inFlight <= 0 {
		inFlight = DefaultInFlight
	}
	// Callbacks keep their connections: with Go's default of two idle connections per host, a
	// burst of payments opened and closed a connection to the merchant for nearly every one.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = Senders, Senders
	p := &Provider{key: key, client: &http.Client{Timeout: callbackTimeout, Transport: tr}, log: log, now: time.Now,
		capacity: int64(inFlight), queue: make(chan delivery, inFlight), paid: make(map[string]string), quit: make(chan struct{})}
	for range Senders {
		p.wg.Add(1)
		go p.send() // stops on Close
	}
	return p
}

// Close stops the senders (notifications not yet acknowledged are dropped, as a provider's
// restart would lose an in-memory queue) and waits for them.
func (p *Provider) Close() {
	close(p.quit)
	p.timers.Range(func(_, t any) bool { t.(*time.Timer).Stop(); return true })
	p.wg.Wait()
}

// InFlight is how many payments are charged and not yet fully notified.
func (p *Provider) InFlight() int64 { return p.inFlight.Load() }

// send delivers queued payments' notifications until Close.
func (p *Provider) send() {
	defer p.wg.Done()
	for {
		select {
		case d := <-p.queue:
			p.notify(d.t, d.req)
			p.inFlight.Add(-1)
		case <-p.quit:
			return
		}
	}
}

// Handler serves POST /paysim/v1/pay.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /paysim/v1/pay", p.pay)
	return mux
}

func (p *Provider) pay(w http.ResponseWriter, r *http.Request) {
	var req PayRequest
	if err := surge.DecodeJSON(http.MaxBytesReader(w, r.Body, maxBodyBytes), &req); err != nil {
		answer(w, http.StatusBadRequest, err)
		return
	}
	if req.Duplicates < 0 || req.Duplicates > MaxDuplicates || req.DelayMs < 0 || time.Duration(req.DelayMs)*time.Millisecond > MaxDelay {
		answer(w, http.StatusBadRequest, surge.Errorf(surge.EINVALID, "duplicates 0-%d, delay_ms up to %d", MaxDuplicates, MaxDelay.Milliseconds()))
		return
	}
	key := r.Header.Get(IdempotencyKeyHeader)
	if len(key) > maxIdempotencyKey {
		answer(w, http.StatusBadRequest, surge.Errorf(surge.EINVALID, "%s is longer than %d bytes", IdempotencyKeyHeader, maxIdempotencyKey))
		return
	}
	t, err := payment.VerifyTicket(p.key, req.Ticket, p.now())
	if err != nil {
		answer(w, http.StatusForbidden, err)
		return
	}
	if p.inFlight.Add(1) > p.capacity {
		p.inFlight.Add(-1)
		w.Header().Set("Retry-After", "1")
		w.Header().Set(surge.RetryAfterMsHeader, strconv.Itoa(BusyRetryMs))
		answer(w, http.StatusServiceUnavailable, surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "too many payments in flight; retry in %d ms", BusyRetryMs), BusyRetryMs))
		return
	}
	p.mu.Lock()
	first, already := p.paid[t.TxnID]
	if !already {
		if len(p.paid) >= maxRemembered {
			clear(p.paid) // forgetting lets a very old ticket pay twice; tickets expire long before
		}
		p.paid[t.TxnID] = key
	}
	p.mu.Unlock()
	if already {
		p.inFlight.Add(-1)
		if key != "" && key == first { // the same request sent again (its connection broke): its answer again
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(PayResponse{TxnID: t.TxnID, Status: payment.StatusPaid})
			return
		}
		answer(w, http.StatusConflict, surge.Errorf(surge.ECONFLICT, "transaction %s is already paid", t.TxnID))
		return
	}
	d := delivery{t: t, req: req}
	if delay := time.Duration(req.DelayMs) * time.Millisecond; delay > 0 {
		id := p.nextTimer.Add(1)
		p.timers.Store(id, time.AfterFunc(delay, func() { p.timers.Delete(id); p.queue <- d })) // room is held: never blocks
	} else {
		p.queue <- d // room is held by inFlight: never blocks
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(PayResponse{TxnID: t.TxnID, Status: payment.StatusPaid})
}

// notify sends the notifications of one payment: "processing" then "paid" (or the other way
// round), plus duplicates of "paid", each retried until the merchant acknowledges it.
func (p *Provider) notify(t payment.Ticket, req PayRequest) {
	paidAt := p.now().UTC()
	mk := func(status, id string) payment.Notification {
		return payment.Notification{NotifyID: id, TxnID: t.TxnID, OrderID: t.OrderID, Amount: t.Amount, Status: status, PaidAt: paidAt}
	}
	list := []payment.Notification{mk(payment.StatusProcessing, t.TxnID+"-1"), mk(payment.StatusPaid, t.TxnID+"-2")}
	if req.OutOfOrder {
		list[0], list[1] = list[1], list[0]
	}
	for range req.Duplicates {
		list = append(list, mk(payment.StatusPaid, t.TxnID+"-2"))
	}
	for _, n := range list {
		p.deliver(t.NotifyURL, n)
	}
}

func (p *Provider) deliver(url string, n payment.Notification) {
	body, _ := json.Marshal(n)
	backoff := 50 * time.Millisecond
	for try := 0; try < callbackRetries; try++ {
		req, err := http.NewRequestWithContext(context.Background(), "POST", url, bytes.NewReader(body))
		if err != nil {
			p.log.Error("paysim: bad notify url", "url", url, "err", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(payment.SignatureHeader, payment.Sign(p.key, body, p.now()))
		resp, err := p.client.Do(req)
		wait := backoff
		if err == nil {
			io.Copy(io.Discard, resp.Body) // read to the end, so that the connection is kept
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return // delivered (a 4xx is the merchant's final word)
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
			if ms, _ := strconv.Atoi(resp.Header.Get(surge.RetryAfterMsHeader)); ms > 0 { // the merchant says when
				wait = min(time.Duration(ms)*time.Millisecond, maxBackoff)
			}
		}
		p.log.Warn("paysim: callback failed; retrying", "txn", n.TxnID, "try", try, "err", err)
		if !p.sleep(wait) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// sleep waits d unless the provider closes first.
func (p *Provider) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.quit:
		return false
	}
}

// ErrorBody is the provider's refusal.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says why: a domain error code and a message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func answer(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: surge.ErrorCode(err), Message: surge.ErrorMessage(err)}})
}
