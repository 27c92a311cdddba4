// Package paysim is a simulated third-party payment provider, shipped so that the whole
// purchase journey can run and be tested without a real one. It takes a signed payment ticket,
// "charges" it, and calls the merchant back with signed notifications that can be made to
// arrive duplicated, late or out of order, as real providers' do. It pays back signed refund
// requests, books every charge and refund in a daily ledger file (format in package payment)
// for the merchant to reconcile against, and can be told to get a payment wrong (the Fault
// values) so that reconciliation has something to find.
//
// Endpoints:
//
//	POST /paysim/v1/pay                 a payment page charges a ticket (PayRequest)
//	POST /paysim/v1/refunds             a signed payment.Refund; 202 RefundResponse
//	GET  /paysim/v1/ledger/{day}        a closed day's ledger file; 404 until it is closed
//	POST /paysim/v1/ledger/{day}/close  closes a day now, today included; DayTotals
//
// Ledger requests carry payment.LedgerRequestSignature in payment.SignatureHeader. Refusals are
// ErrorBody: 400 malformed, 401 bad signature, 403 bad ticket, 404 ENOTFOUND, 409 ECONFLICT,
// 422 EINVALID (a refund of more than is left, say), 503 EUNAVAILABLE with Retry-After-Ms.
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
	maxRemembered   = 1 << 20 // transactions and refunds remembered
	maxBodyBytes    = 16 << 10
)

// PayRequest is what the payment page posts: the ticket, and how the callbacks should behave.
type PayRequest struct {
	Ticket     string `json:"ticket"`
	Duplicates int    `json:"duplicates"`   // extra copies of the "paid" notification
	DelayMs    int64  `json:"delay_ms"`     // wait before calling back
	OutOfOrder bool   `json:"out_of_order"` // send "paid" before the earlier "processing"
	// Fault makes the provider get this payment wrong (one of the Fault* values; empty for
	// none), so that reconciliation can be tested against each kind of mistake.
	Fault string `json:"fault,omitempty"`
}

// Faults a payment can be told to suffer. A payment of an order cancelled meanwhile needs none:
// pay with delay_ms and cancel the order before the callback.
const (
	// FaultMissingCallback charges the ticket and books it in the ledger, but never sends a
	// notification: the merchant can learn of the payment only from the ledger.
	FaultMissingCallback = "missing_callback"
	// FaultWrongAmount charges one minor unit more than the ticket says; the ledger and the
	// notifications carry that wrong amount.
	FaultWrongAmount = "wrong_amount"
	// FaultDuplicateCharge charges the transaction twice: two ledger lines with two provider
	// ids, and a second "paid" notification (notify id <txn>-3) after the first (<txn>-2).
	// Both charges can be refunded.
	FaultDuplicateCharge = "duplicate_charge"
)

// PayResponse acknowledges a payment.
type PayResponse struct {
	TxnID  string `json:"txn_id"`
	Status string `json:"status"`
}

// RefundResponse acknowledges a refund: it is paid back, and its notification is on its way.
type RefundResponse struct {
	RefundID string `json:"refund_id"`
	Status   string `json:"status"` // "processing"
}

// Options configure a provider opened with Open.
type Options struct {
	// InFlight is how many payments and refunds it holds at once (DefaultInFlight when not
	// positive).
	InFlight int
	// LedgerDir is where the daily ledger files are written; no ledger is kept when empty.
	LedgerDir string
	// Now is its clock (time.Now when nil).
	Now func() time.Time
}

// Provider is the simulated provider. Payments and refunds are made at once, booked in the
// ledger, and their notifications queued; Senders goroutines deliver them.
type Provider struct {
	key       []byte
	client    *http.Client
	log       *slog.Logger
	now       func() time.Time
	capacity  int64
	inFlight  atomic.Int64  // payments and refunds made whose notifications are not all delivered
	queue     chan delivery // holds up to capacity: a charge is refused rather than queued past it
	timers    sync.Map      // id → *time.Timer of a delivery waiting out its delay, to stop on Close
	nextTimer atomic.Int64
	ledger    *ledgerFiles // nil when no ledger is kept
	idPrefix  string       // of this run's provider ids, so that they are unique across runs
	nextID    atomic.Int64

	// mu guards the memory of charges and refunds, and orders ledger lines as movements are
	// made; the ledger's own lock is taken inside it.
	mu      sync.Mutex
	paid    map[string]charge         // transactions charged
	refunds map[string]payment.Refund // refunds paid back, by refund id
	wg      sync.WaitGroup
	quit    chan struct{}
}

// charge is what the provider remembers of a charged transaction.
type charge struct {
	key      string      // the Idempotency-Key of the charge ("" when none)
	orderID  int64       // the ticket's order
	amount   surge.Money // taken in all (twice the charge for a duplicate charge)
	refunded int64       // paid back so far, in amount's minor units
}

// IdempotencyKeyHeader marks a payment request that may be sent twice: a second charge of a
// transaction carrying the first one's key is answered as the first was, not refused, so a
// payment page whose connection broke before the answer can send the request again (Go's HTTP
// transport does so by itself for a request with this header).
const IdempotencyKeyHeader = "Idempotency-Key"

// maxIdempotencyKey bounds the key each remembered charge keeps.
const maxIdempotencyKey = 255

// delivery is the notifications of one payment or refund, to send in order.
type delivery struct {
	url  string
	list []payment.Notification
}

// New returns a provider that shares key with the merchant, holds at most inFlight payments at
// once (DefaultInFlight when not positive) and keeps no ledger. Close stops it.
func New(key []byte, inFlight int, log *slog.Logger) *Provider {
	p, err := Open(key, Options{InFlight: inFlight}, log)
	if err != nil {
		panic(err) // only a ledger directory can fail
	}
	return p
}

// Open returns a provider that shares key with the merchant, configured by o. Close stops it.
// It fails only when the ledger directory cannot be set up.
func Open(key []byte, o Options, log *slog.Logger) (*Provider, error) {
	if o.InFlight <= 0 {
		o.InFlight = DefaultInFlight
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// Callbacks keep their connections: with Go's default of two idle connections per host, a
	// burst of payments opened and closed a connection to the merchant for nearly every one.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = Senders, Senders
	p := &Provider{key: key, client: &http.Client{Timeout: callbackTimeout, Transport: tr}, log: log, now: o.Now,
		capacity: int64(o.InFlight), queue: make(chan delivery, o.InFlight), paid: make(map[string]charge),
		refunds: make(map[string]payment.Refund), quit: make(chan struct{}),
		idPrefix: "p" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"}
	if o.LedgerDir != "" {
		l, err := openLedgerFiles(o.LedgerDir, o.Now, log)
		if err != nil {
			return nil, fmt.Errorf("payment simulator ledger in %s: %w", o.LedgerDir, err)
		}
		p.ledger = l
	}
	for range Senders {
		p.wg.Add(1)
		go p.send() // stops on Close
	}
	return p, nil
}

// Close stops the senders (notifications not yet acknowledged are dropped, as a provider's
// restart would lose an in-memory queue), waits for them, and closes the ledger's open day.
func (p *Provider) Close() {
	close(p.quit)
	p.timers.Range(func(_, t any) bool { t.(*time.Timer).Stop(); return true })
	p.wg.Wait()
	if p.ledger != nil {
		if err := p.ledger.close(); err != nil {
			p.log.Error("paysim: closing the ledger failed", "err", err)
		}
	}
}

// InFlight is how many payments and refunds are made and not yet fully notified.
func (p *Provider) InFlight() int64 { return p.inFlight.Load() }

// CloseDay closes the ledger's day (YYYY-MM-DD), today included, and returns what its file
// states: the file is renamed <day>.csv with its trailer, and movements still to come that day
// go to the next day's file. A day closed already is answered from its file; a day without
// movements gets a file without lines. Returns EINVALID for a malformed day or one not begun,
// ENOTFOUND when the provider keeps no ledger.
func (p *Provider) CloseDay(day string) (payment.LedgerTotals, error) {
	if p.ledger == nil {
		return payment.LedgerTotals{}, surge.Errorf(surge.ENOTFOUND, "the payment simulator keeps no ledger")
	}
	return p.ledger.closeDay(day, p.now())
}

// send delivers queued notifications until Close.
func (p *Provider) send() {
	defer p.wg.Done()
	for {
		select {
		case d := <-p.queue:
			for _, n := range d.list {
				p.deliver(d.url, n)
			}
			p.inFlight.Add(-1)
		case <-p.quit:
			return
		}
	}
}

// Handler serves the provider's endpoints (see the package doc).
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /paysim/v1/pay", p.pay)
	mux.HandleFunc("POST /paysim/v1/refunds", p.refund)
	mux.HandleFunc("GET /paysim/v1/ledger/{day}", p.getLedger)
	mux.HandleFunc("POST /paysim/v1/ledger/{day}/close", p.closeLedger)
	return mux
}

// reserve takes room for one delivery, or answers 503 with a hint of when to come back.
func (p *Provider) reserve(w http.ResponseWriter) bool {
	if p.inFlight.Add(1) <= p.capacity {
		return true
	}
	p.inFlight.Add(-1)
	w.Header().Set("Retry-After", "1")
	w.Header().Set(surge.RetryAfterMsHeader, strconv.Itoa(BusyRetryMs))
	answer(w, http.StatusServiceUnavailable, surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "too many payments in flight; retry in %d ms", BusyRetryMs), BusyRetryMs))
	return false
}

// enqueue hands a delivery whose room is reserved to the senders, after delay.
func (p *Provider) enqueue(d delivery, delay time.Duration) {
	if delay > 0 {
		id := p.nextTimer.Add(1)
		p.timers.Store(id, time.AfterFunc(delay, func() { p.timers.Delete(id); p.queue <- d })) // room is held: never blocks
		return
	}
	p.queue <- d // room is held by inFlight: never blocks
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
	switch req.Fault {
	case "", FaultMissingCallback, FaultWrongAmount, FaultDuplicateCharge:
	default:
		answer(w, http.StatusBadRequest, surge.Errorf(surge.EINVALID, "fault must be empty, %s, %s or %s", FaultMissingCallback, FaultWrongAmount, FaultDuplicateCharge))
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
	notify := req.Fault != FaultMissingCallback
	if notify && !p.reserve(w) {
		return
	}
	d, fresh, err := p.charge(t, req, key)
	if notify && (err != nil || !fresh) {
		p.inFlight.Add(-1)
	}
	if err != nil {
		answer(w, errorStatus(err), err)
		return
	}
	if notify && fresh {
		p.enqueue(d, time.Duration(req.DelayMs)*time.Millisecond)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(PayResponse{TxnID: t.TxnID, Status: payment.StatusPaid})
}

// charge takes the ticket's money (as the request's fault has it), books it in the ledger and
// returns the notifications to send; fresh is false for the same request charged before (its
// Idempotency-Key), which is answered as it was. Returns ECONFLICT when another request charged
// the transaction.
func (p *Provider) charge(t payment.Ticket, req PayRequest, key string) (d delivery, fresh bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if first, already := p.paid[t.TxnID]; already {
		if key != "" && key == first.key { // the same request sent again (its connection broke)
			return d, false, nil
		}
		return d, false, surge.Errorf(surge.ECONFLICT, "transaction %s is already paid", t.TxnID)
	}
	at := p.now().UTC()
	amount, charges := t.Amount, int64(1)
	switch req.Fault {
	case FaultWrongAmount:
		amount.Amount++
	case FaultDuplicateCharge:
		charges = 2
	}
	for range charges {
		if err := p.book(payment.LedgerEntry{Type: payment.LedgerTypePayment, TxnID: t.TxnID, OrderID: t.OrderID, Amount: amount, At: at}); err != nil {
			return d, false, err
		}
	}
	p.remember()
	p.paid[t.TxnID] = charge{key: key, orderID: t.OrderID, amount: surge.Money{Amount: amount.Amount * charges, Currency: amount.Currency}}
	mk := func(status, id string) payment.Notification {
		return payment.Notification{NotifyID: id, TxnID: t.TxnID, OrderID: t.OrderID, Amount: amount, Status: status, PaidAt: at}
	}
	list := []payment.Notification{mk(payment.StatusProcessing, t.TxnID+"-1"), mk(payment.StatusPaid, t.TxnID+"-2")}
	if req.OutOfOrder {
		list[0], list[1] = list[1], list[0]
	}
	for range req.Duplicates {
		list = append(list, mk(payment.StatusPaid, t.TxnID+"-2"))
	}
	if charges == 2 {
		list = append(list, mk(payment.StatusPaid, t.TxnID+"-3"))
	}
	return delivery{url: t.NotifyURL, list: list}, true, nil
}

// book writes a movement to the ledger, when one is kept, under a new provider id. Callers hold
// p.mu. A failed write refuses the movement: a provider whose books fail takes no money.
func (p *Provider) book(e payment.LedgerEntry) error {
	if p.ledger == nil {
		return nil
	}
	e.ProviderID = p.idPrefix + strconv.FormatInt(p.nextID.Add(1), 10)
	if err := p.ledger.append(e); err != nil {
		p.log.Error("paysim: ledger write failed; movement refused", "txn", e.TxnID, "type", e.Type, "err", err)
		return fmt.Errorf("ledger: %w", err)
	}
	return nil
}

// remember makes room for one more remembered transaction or refund. Callers hold p.mu.
func (p *Provider) remember() {
	if len(p.paid)+len(p.refunds) >= maxRemembered {
		// Forgetting lets a very old ticket pay twice and makes its refunds unknown; tickets
		// expire long before.
		clear(p.paid)
		clear(p.refunds)
	}
}

func (p *Provider) refund(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, payment.MaxNotificationBytes))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, surge.Errorf(surge.ETOOLARGE, "refund request over %d bytes", payment.MaxNotificationBytes))
		return
	}
	rf, err := payment.DecodeRefund(p.key, body, r.Header.Get(payment.SignatureHeader), p.now())
	if err != nil {
		status := errorStatus(err)
		if status == http.StatusUnprocessableEntity {
			status = http.StatusBadRequest // a malformed request, not a refund the transaction refuses
		}
		answer(w, status, err)
		return
	}
	if !p.reserve(w) {
		return
	}
	d, fresh, err := p.payBack(rf)
	if err != nil || !fresh {
		p.inFlight.Add(-1)
	}
	if err != nil {
		answer(w, errorStatus(err), err)
		return
	}
	if fresh {
		p.enqueue(d, 0)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(RefundResponse{RefundID: rf.RefundID, Status: payment.StatusProcessing})
}

// payBack pays a refund back once per refund id, books it in the ledger and returns its
// notification; fresh is false for the same refund paid before, which is answered as it was.
// Returns ENOTFOUND for a transaction not charged here, ECONFLICT for a refund id used for
// another refund, EINVALID for a refund of another order or currency than the transaction's, or
// of more than is left of it.
func (p *Provider) payBack(rf payment.Refund) (d delivery, fresh bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, seen := p.refunds[rf.RefundID]; seen {
		if prev == rf {
			return d, false, nil
		}
		return d, false, surge.Errorf(surge.ECONFLICT, "refund id %s was used for another refund", rf.RefundID)
	}
	c, ok := p.paid[rf.TxnID]
	switch {
	case !ok:
		return d, false, surge.Errorf(surge.ENOTFOUND, "transaction %s was not charged here", rf.TxnID)
	case c.orderID != rf.OrderID:
		return d, false, surge.Errorf(surge.EINVALID, "transaction %s is of order %d, not %d", rf.TxnID, c.orderID, rf.OrderID)
	case c.amount.Currency != rf.Amount.Currency:
		return d, false, surge.Errorf(surge.EINVALID, "transaction %s was charged in %s, not %s", rf.TxnID, c.amount.Currency, rf.Amount.Currency)
	case rf.Amount.Amount > c.amount.Amount-c.refunded:
		return d, false, surge.Errorf(surge.EINVALID, "a refund of %d is more than the %d left of transaction %s (charged %d, refunded %d)",
			rf.Amount.Amount, c.amount.Amount-c.refunded, rf.TxnID, c.amount.Amount, c.refunded)
	}
	at := p.now().UTC()
	if err := p.book(payment.LedgerEntry{Type: payment.LedgerTypeRefund, TxnID: rf.TxnID, OrderID: rf.OrderID, RefundID: rf.RefundID, Amount: rf.Amount, At: at}); err != nil {
		return d, false, err
	}
	p.remember()
	c.refunded += rf.Amount.Amount
	p.paid[rf.TxnID], p.refunds[rf.RefundID] = c, rf
	n := payment.Notification{NotifyID: rf.RefundID + "-refunded", TxnID: rf.TxnID, OrderID: rf.OrderID, Amount: rf.Amount,
		Status: payment.StatusRefunded, RefundID: rf.RefundID, PaidAt: at}
	return delivery{url: rf.NotifyURL, list: []payment.Notification{n}}, true, nil
}

// ledgerRequest checks a ledger request's signature, its day and that a ledger is kept, and
// answers w when not.
func (p *Provider) ledgerRequest(w http.ResponseWriter, r *http.Request) bool {
	if _, err := payment.ParseLedgerDay(r.PathValue("day")); err != nil {
		answer(w, http.StatusBadRequest, err)
		return false
	}
	if err := payment.VerifyLedgerRequest(p.key, r.Method, r.URL.Path, r.Header.Get(payment.SignatureHeader), p.now()); err != nil {
		answer(w, http.StatusUnauthorized, err)
		return false
	}
	if p.ledger == nil {
		answer(w, http.StatusNotFound, surge.Errorf(surge.ENOTFOUND, "the payment simulator keeps no ledger"))
		return false
	}
	return true
}

func (p *Provider) getLedger(w http.ResponseWriter, r *http.Request) {
	if !p.ledgerRequest(w, r) {
		return
	}
	day := r.PathValue("day")
	f, err := p.ledger.openClosed(day)
	if err != nil {
		answer(w, errorStatus(err), err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		answer(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	http.ServeContent(w, r, day+closedSuffix, st.ModTime(), f)
}

// DayTotals answers a day's close: what its ledger file states.
type DayTotals struct {
	Day string `json:"day"`
	payment.LedgerTotals
}

func (p *Provider) closeLedger(w http.ResponseWriter, r *http.Request) {
	if !p.ledgerRequest(w, r) {
		return
	}
	day := r.PathValue("day")
	t, err := p.CloseDay(day)
	if err != nil {
		if surge.ErrorCode(err) == surge.EINTERNAL {
			p.log.Error("paysim: closing a ledger day failed", "day", day, "err", err)
		}
		answer(w, errorStatus(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(DayTotals{Day: day, LedgerTotals: t})
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

// errorStatus is the HTTP status of a refusal.
func errorStatus(err error) int {
	switch surge.ErrorCode(err) {
	case surge.EINVALID:
		return http.StatusUnprocessableEntity
	case surge.ENOTFOUND:
		return http.StatusNotFound
	case surge.ECONFLICT:
		return http.StatusConflict
	case surge.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case surge.EFORBIDDEN:
		return http.StatusForbidden
	case surge.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

func answer(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: surge.ErrorCode(err), Message: surge.ErrorMessage(err)}})
}
