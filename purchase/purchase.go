// Package purchase is the flash-sale purchase path: the gate (cheapest checks first), a bounded
// queue per item served in arrival order, the reservation, and the durable order command, all
// answered within milliseconds.
package purchase

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/batch"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/promo"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/shed"
)

// Bounds and defaults of the purchase path.
const (
	MaxBatch          = 256    // reservations a lane hands the stock engine at once
	DefaultQueueDepth = 8192   // attempts waiting per item
	DefaultInFlight   = 20_000 // attempts in the whole node before it sheds load
	DefaultAnswerWait = 200 * time.Millisecond
	DefaultMaxWait    = shed.DefaultMaxWait // the longest an attempt is let in to wait for its answer
	DefaultTokenTTL   = 10 * time.Minute
	maxCachedItems    = 100_000
	maxSeen           = 1 << 20     // (shopper, item) figures remembered for monotone display
	missingItemTTL    = time.Second // how long an item not on sale is believed to stay so
	publishTimeout    = time.Second // an unreachable bus refuses a purchase this fast
	maxTickets        = 1 << 18     // queued attempts remembered for polling
	returnQueueDepth  = 1 << 14     // refused attempts whose coupons wait to go back
	maxUnlockBatch    = 512         // refused attempts whose coupons go back in one write
)

// Config tunes the gate.
type Config struct {
	TokenKey   []byte
	TokenTTL   time.Duration
	UserRate   rate.Limit // purchase attempts per second per user
	UserBurst  int
	IPRate     rate.Limit // per client IP
	IPBurst    int
	InFlight   int           // load shedding threshold
	QueueDepth int           // per item
	AnswerWait time.Duration // how long an attempt waits before it is answered "queued"
	// MaxWait is the longest an attempt is let into an item's line to wait for its answer, by
	// the work ahead of it and the line's measured pace; while the line's shortest wait stands
	// above a fifth of it, a rising share of attempts is turned away (see package shed).
	MaxWait time.Duration
	// Coupons prices orders with the coupons shoppers name and puts the coupons on them; nil
	// refuses purchases with coupons.
	Coupons Coupons
	// Risk screens attempts against risk control's verdicts (package risk); nil screens none.
	Risk Screener
}

// Screener checks an attempt against risk control's verdicts: nil lets it through, an error
// (a *surge.RiskRefusal) refuses it or asks for a proof of work.
type Screener interface {
	Screen(a risk.Attempt) error
}

// Origin is where an attempt comes from, as the gate sees it: the client's IP, the device id the
// app sends (header X-Device-Id) and a solved challenge, if risk control asked for one (header
// X-Surge-Proof).
type Origin struct {
	IP, Device, Proof string
}

// Coupons prices orders with shoppers' coupons and puts them on the orders (package coupon).
type Coupons interface {
	// Lock prices the order with the coupons and locks them to it, all or none; a retried
	// request (same key) gets the order its coupons were first locked to.
	Lock(ctx context.Context, ref coupon.OrderRef, key, currency string, lines []coupon.Line, ids []int64) (int64, *surge.PriceBreakdown, error)
	// Locked prices an order with the coupons locked to it; nil if there are none.
	Locked(ctx context.Context, user, order int64, currency string, lines []coupon.Line) (*surge.PriceBreakdown, error)
	// Unlock gives back the coupons attempts (by[i], the order id attempt i drew) locked to
	// orders they did not make, unless a retry of a request has locked them since; one write.
	Unlock(ctx context.Context, refs []coupon.OrderRef, by []int64) error
}

// held is what an attempt with coupons holds: their price, and the order id it drew (by), under
// which it locked them.
type held struct {
	price *surge.PriceBreakdown
	by    int64
}

func (c *Config) defaults() {
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.UserRate <= 0 {
		c.UserRate, c.UserBurst = 2, 5
	}
	if c.IPRate <= 0 {
		c.IPRate, c.IPBurst = 200, 400
	}
	if c.InFlight <= 0 {
		c.InFlight = DefaultInFlight
	}
	if c.QueueDepth <= 0 {
		c.QueueDepth = DefaultQueueDepth
	}
	if c.AnswerWait <= 0 {
		c.AnswerWait = DefaultAnswerWait
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
}

// admission is the admission of an item's line: until its pace is measured, a batch's worth.
func (c *Config) admission() *shed.Delay { return shed.New(c.MaxWait/5, c.MaxWait, MaxBatch) }

// Retry hints of refusals for load that the queues' pace does not give.
const (
	inFlightRetry  = 100 * time.Millisecond
	queueFullRetry = 200 * time.Millisecond
)

// Publisher stores a message durably on the bus, or (Emit) sends an event without waiting; and
// keeps the answers of queued purchases where every node can read them.
type Publisher interface {
	Publish(ctx context.Context, subject, msgID string, data []byte) error
	Emit(subject, msgID string, data []byte) error
	// PutResults stores answers (data[i] under tickets[i]) together, returning once all are
	// stored or one failed.
	PutResults(ctx context.Context, tickets []string, data [][]byte) error
	GetResult(ctx context.Context, ticket string) ([]byte, bool, error)
}

// Blacklist answers whether a user is blocked.
type Blacklist interface {
	Blocked(user int64) bool
}

// batcher is a stock engine that takes many reservations per call.
type batcher interface {
	ReserveBatch(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) error
}

// Request is a purchase attempt.
type Request struct {
	ItemID    int64  `json:"item_id,string"`
	Quantity  int64  `json:"quantity"`
	RequestID string `json:"request_id"`
	Token     string `json:"token"`
	// Coupons are the shopper's coupons to take off the order's price (up to 10): locked to the
	// order when it is made, all or none, used when it is paid, returned if it is not.
	Coupons surge.IDList `json:"coupon_ids,omitempty"`
	// Address and Account name the shipping address and the payment account the shopper chose
	// (ids of the app's own, up to 64 letters, digits, '-', '_', '.' or ':'), if it sends them:
	// risk control counts orders per address and account.
	Address string `json:"address_id,omitempty"`
	Account string `json:"pay_account,omitempty"`
}

// ReadPlain reads a request body in the plain form clients send (see surge.ReadPlainObject) in
// one pass: each field named once and exactly, item_id a string of digits. It reports false for
// anything else, which the JSON decoder then reads from a zero Request, so every answer is the
// decoder's: a fast path for the hottest body in a sale, not a second dialect
// (FuzzRequestReadPlain holds it to that).
func (r *Request) ReadPlain(body []byte) bool {
	var seen uint8
	return surge.ReadPlainObject(body, func(name []byte, v surge.PlainValue) bool {
		var bit uint8
		switch string(name) {
		case "item_id":
			var ok bool
			if r.ItemID, ok = v.QuotedWhole(); !ok {
				return false
			}
			bit = 1
		case "quantity":
			if v.Kind != '0' {
				return false
			}
			r.Quantity, bit = v.Num, 2
		case "request_id":
			if v.Kind != '"' {
				return false
			}
			r.RequestID, bit = string(v.Str), 4
		case "token":
			if v.Kind != '"' {
				return false
			}
			r.Token, bit = string(v.Str), 8
		default:
			return false
		}
		if seen&bit != 0 {
			return false // named twice: the decoder's rule applies
		}
		seen |= bit
		return true
	})
}

// Statuses of an answer. Refusals are errors with codes: ESOLDOUT, ELIMIT, ERATELIMIT,
// EFORBIDDEN (blocked, bad token), ECONFLICT (not on sale now), EUNAVAILABLE (overloaded).
const (
	StatusSuccess = "success"
	StatusQueued  = "queued"
)

// Result is the answer to a purchase: an order, or a ticket to poll.
type Result struct {
	Status  string `json:"status"`
	OrderID int64  `json:"order_id,string,omitempty"`
	TxnID   string `json:"txn_id,omitempty"`
	Ticket  string `json:"ticket"`
	Held    int64  `json:"held,omitempty"`
}

// Detail is an item's page: the item, what is left, and the token to buy it with.
type Detail struct {
	Item           *surge.SessionItem `json:"item"`
	SessionStatus  string             `json:"session_status"`
	StartAt        time.Time          `json:"start_at"`
	EndAt          time.Time          `json:"end_at"`
	Remaining      int64              `json:"remaining"`
	Token          string             `json:"token"`
	TokenExpiresAt time.Time          `json:"token_expires_at"`
}

// Service is the purchase path of one node.
type Service struct {
	cfg       Config
	sessions  surge.SessionStore
	stock     surge.StockEngine
	orders    surge.OrderStore
	pending   *order.Pending // the orders this node acknowledged, until the order writer stores them
	bus       Publisher
	blacklist Blacklist
	ids       func() (int64, error)
	log       *slog.Logger
	now       func() time.Time
	tokens    tokens
	users     *limiter
	ips       *limiter
	inFlight  atomic.Int64
	metrics   *metrics
	events    atomic.Int64       // numbers this node's events
	started   int64              // unix ms when the node started, to make event ids unique
	attempts  attemptQueue       // to the event batcher
	lookups   chan *lookup       // to the lookup batcher; nil when the engine looks up one at a time
	shares    chan []*attempt    // queued attempts' answers, to the sharer
	toRecord  chan *decidedBatch // every lane's decided batches, to the recorder
	returns   chan unlock        // refused attempts whose coupons go back, to the returner
	recorded  chan struct{}      // closed when the recorder has stopped

	loading    singleflight.Group
	mu         sync.Mutex
	items      map[int64]*info // published items, which never change
	lanes      map[int64]*lane
	tickets    map[string]*attempt // recent queued attempts, for polling
	ticketRing []string            // their names, oldest forgotten first
	ticketNext int
	seen       map[[2]int64]int64 // (shopper, item) → stock left last shown

	quit chan struct{}
	wg   sync.WaitGroup // lane workers
}

type info struct {
	item         *surge.SessionItem // nil: not on sale
	session      *surge.Session
	missingUntil time.Time // for an item not on sale: when to ask the database again
}

// New returns the purchase path. Close stops its lane workers. pending (nil for none) gets the
// orders the node acknowledges, so that they can be read and paid at once.
func New(cfg Config, sessions surge.SessionStore, stock surge.StockEngine, orders surge.OrderStore, pending *order.Pending,
	bus Publisher, blacklist Blacklist, ids func() (int64, error), m *metrics, log *slog.Logger, now func() time.Time) *Service {
	cfg.defaults()
	if now == nil {
		now = time.Now
	}
	s := &Service{cfg: cfg, sessions: sessions, stock: stock, orders: orders, pending: pending, bus: bus, blacklist: blacklist, ids: ids,
		log: log, now: now, tokens: tokens{key: cfg.TokenKey, ttl: cfg.TokenTTL}, metrics: m,
		users: newLimiter(cfg.UserRate, cfg.UserBurst), ips: newLimiter(cfg.IPRate, cfg.IPBurst),
		items: make(map[int64]*info), lanes: make(map[int64]*lane), tickets: make(map[string]*attempt),
		ticketRing: make([]string, maxTickets), seen: make(map[[2]int64]int64),
		quit: make(chan struct{}), started: now().UnixMilli(), attempts: attemptQueue{full: make(chan struct{}, 1)}}
	s.shares = make(chan []*attempt, shareQueueDepth)
	s.toRecord, s.recorded = make(chan *decidedBatch, decidedDepth), make(chan struct{})
	if cfg.Coupons != nil {
		s.returns = make(chan unlock, returnQueueDepth)
		s.wg.Add(1)
		go s.returnAll() // stops on Close
	}
	s.wg.Add(2)
	go s.batchAttempts() // stops on Close
	go s.shareAnswers()  // stops on Close
	go s.recordAll()     // stops once Close closes s.toRecord
	if b, ok := stock.(lookupBatcher); ok {
		s.lookups = make(chan *lookup, lookupQueueDepth)
		s.wg.Add(1)
		go s.lookUp(b) // stops on Close
	}
	return s
}

// Close stops the lane workers; attempts still queued are answered EUNAVAILABLE, and those
// decided are recorded and answered.
func (s *Service) Close() {
	close(s.quit)
	s.wg.Wait()
	if s.toRecord != nil {
		close(s.toRecord)
		<-s.recorded
	}
}

// item returns a published item from the node's cache. When a sale opens and everyone asks
// at once, one request per item goes to the database (the others wait for it); an id that is
// not on sale is remembered as such for a moment, so made-up ids cannot hammer the database.
func (s *Service) item(ctx context.Context, id int64) (*info, error) {
	now := s.now()
	s.mu.Lock()
	in := s.items[id]
	s.mu.Unlock()
	switch {
	case in != nil && in.item != nil:
		return in, nil
	case in != nil && now.Before(in.missingUntil):
		return nil, surge.Errorf(surge.ENOTFOUND, "item %d is not on sale", id)
	}
	v, err, _ := s.loading.Do(strconv.FormatInt(id, 10), func() (any, error) {
		it, se, err := s.sessions.ItemByID(ctx, id)
		in := &info{item: it, session: se}
		switch {
		case surge.ErrorCode(err) == surge.ENOTFOUND || err == nil && se.PublishedAt == nil:
			in = &info{missingUntil: s.now().Add(missingItemTTL)}
		case err != nil:
			return nil, err
		}
		s.mu.Lock()
		if len(s.items) >= maxCachedItems {
			clear(s.items)
		}
		s.items[id] = in
		s.mu.Unlock()
		return in, nil
	})
	if err != nil {
		return nil, err
	}
	if in = v.(*info); in.item == nil {
		return nil, surge.Errorf(surge.ENOTFOUND, "item %d is not on sale", id)
	}
	return in, nil
}

// Detail returns an item's page with a fresh purchase token for the actor.
func (s *Service) Detail(ctx context.Context, a surge.Actor, id int64) (*Detail, error) {
	in, err := s.item(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.now()
	status := in.session.StatusAt(now)
	var remaining int64
	if status == surge.SessionEnded { // no lane for a sale that is over: ask the engine
		lv, err := s.stock.Levels(ctx, id)
		if err != nil {
			return nil, err
		}
		remaining = lv.Available
	} else {
		l := s.lane(in)
		s.refresh(ctx, l, false)
		remaining = l.remaining.Load()
	}
	tok, exp := s.tokens.issue(a.UserID, id, now)
	return &Detail{Item: in.item, SessionStatus: status, StartAt: in.session.StartAt, EndAt: in.session.EndAt,
		Remaining: s.shown(a.UserID, id, max(remaining, 0)), Token: tok, TokenExpiresAt: exp.UTC()}, nil
}

// shown keeps the stock left that one shopper sees from going up between two looks at an
// item's page on this node: figures from different moments (a cache refresh, a release) must
// not make the count jump back and forth in a shopper's hand. It never limits a purchase.
func (s *Service) shown(user, item, remaining int64) int64 {
	key := [2]int64{user, item}
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.seen[key]; ok && last < remaining {
		return last
	}
	if len(s.seen) >= maxSeen {
		clear(s.seen) // forgetting lets a figure rise once, never fall below the truth
	}
	s.seen[key] = remaining
	return remaining
}

// ticketOf names an attempt for polling.
func ticketOf(item int64, requestID string) string {
	return strconv.FormatInt(item, 10) + "." + requestID
}

// validRequestID keeps request ids usable inside a ticket and a URL.
func validRequestID(id string) error {
	if err := surge.ValidateRequestID(id); err != nil {
		return err
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return surge.Errorf(surge.EINVALID, "request_id may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// Purchase runs an attempt through the gate, cheapest checks first, then the item's queue.
func (s *Service) Purchase(ctx context.Context, a surge.Actor, from Origin, req Request) (*Result, error) {
	res, err := s.purchase(ctx, a, from, req)
	outcome := s.metrics.outcome(res, err)
	at := Attempt{ItemID: req.ItemID, UserID: a.UserID, Quantity: req.Quantity, RequestID: req.RequestID,
		Outcome: outcome, IP: from.IP, At: s.now().UTC(), Test: a.Test}
	if outcome != surge.EINVALID { // what failed its checks is not written as the shopper sent it
		at.Device, at.Address, at.Account, at.Coupons = from.Device, req.Address, req.Account, len(req.Coupons)
	}
	if !s.attempts.add(at) {
		s.metrics.droppedEvents.Inc() // the event batcher is behind: count, never block a purchase
	}
	return res, err
}

// Event batching: attempts are sent as one purchase.attempts event per batch, so that a sale's
// worth of attempts costs the bus a few writes a second rather than one per attempt.
const (
	maxAttemptBatch   = 1024
	attemptQueueDepth = 1 << 16
	attemptFlushEvery = 20 * time.Millisecond
)

// attemptQueue holds the attempts the batcher has not taken yet, at most attemptQueueDepth.
// Adding one takes a short lock and wakes nobody until a batch is full: a channel woke the
// batcher for every attempt, a scheduler round trip on each tap of "buy now".
type attemptQueue struct {
	mu      sync.Mutex
	pending []Attempt
	full    chan struct{} // holds a token once pending reaches maxAttemptBatch
}

// add queues a, or reports false when the queue is at its bound.
func (q *attemptQueue) add(a Attempt) bool {
	q.mu.Lock()
	if len(q.pending) >= attemptQueueDepth {
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, a)
	n := len(q.pending)
	q.mu.Unlock()
	if n == maxAttemptBatch {
		select {
		case q.full <- struct{}{}:
		default: // the batcher has been told already
		}
	}
	return true
}

// take swaps the queued attempts for spare, an empty list the caller is done with.
func (q *attemptQueue) take(spare []Attempt) []Attempt {
	q.mu.Lock()
	defer q.mu.Unlock()
	got := q.pending
	q.pending = spare[:0]
	return got
}

// batchAttempts sends the queued attempts, in events of at most maxAttemptBatch, every
// attemptFlushEvery or as soon as a batch is full, until Close.
func (s *Service) batchAttempts() {
	defer s.wg.Done()
	t := time.NewTicker(attemptFlushEvery)
	defer t.Stop()
	var spare []Attempt
	flush := func() {
		got := s.attempts.take(spare)
		for rest := got; len(rest) > 0; {
			n := min(len(rest), maxAttemptBatch)
			s.emitAttempts(rest[:n])
			rest = rest[n:]
		}
		clear(got) // the strings they hold are not the next batch's to keep
		spare = got
	}
	for {
		select {
		case <-s.attempts.full:
			flush()
		case <-t.C:
			flush()
		case <-s.quit:
			flush()
			return
		}
	}
}

// Attempt is the data of a purchase.attempt event.
type Attempt struct {
	ItemID    int64     `json:"item_id,string"`
	UserID    int64     `json:"user_id,string"`
	Quantity  int64     `json:"quantity"`
	RequestID string    `json:"request_id"`
	Outcome   string    `json:"outcome"` // success, queued, or the refusal's code
	IP        string    `json:"ip"`
	Device    string    `json:"device,omitempty"`
	Address   string    `json:"address,omitempty"`
	Account   string    `json:"account,omitempty"`
	Coupons   int       `json:"coupons,omitempty"` // how many the attempt named
	At        time.Time `json:"at"`
	Test      bool      `json:"test,omitempty"` // a load test's shopper: analytics leave it out
}

// StockChange is the data of a stock.changed event: what a queue's batch left.
type StockChange struct {
	ItemID    int64 `json:"item_id,string"`
	Remaining int64 `json:"remaining"`
}

// emit sends an analytics event; one that cannot be sent is counted, never retried here.
func (s *Service) emit(kind string, data any) {
	e := surge.Event{ID: s.eventID(kind), Kind: kind, At: s.now().UTC(), Data: data}
	b, err := json.Marshal(e)
	s.send(kind, e.ID, b, err)
}

// eventID names the node's next event of a kind.
func (s *Service) eventID(kind string) string {
	return fmt.Sprintf("%s:%d:%d", kind, s.started, s.events.Add(1))
}

// send hands an encoded event to the bus; one that failed to encode or to go is counted.
func (s *Service) send(kind, id string, b []byte, err error) {
	if err == nil {
		err = s.bus.Emit("surge.events."+kind, id, b)
	}
	if err != nil {
		s.metrics.droppedEvents.Inc()
	}
}

func (s *Service) purchase(ctx context.Context, a surge.Actor, from Origin, req Request) (*Result, error) {
	if req.ItemID <= 0 {
		return nil, surge.Errorf(surge.EINVALID, "item_id is required")
	}
	if req.Quantity <= 0 || req.Quantity > surge.MaxPerUserLimit {
		return nil, surge.Errorf(surge.EINVALID, "quantity must be between 1 and %d", surge.MaxPerUserLimit)
	}
	if err := validRequestID(req.RequestID); err != nil {
		return nil, err
	}
	if len(req.Coupons) > surge.MaxCouponsPerOrder {
		return nil, surge.Errorf(surge.EINVALID, "an order takes at most %d coupons, not %d", surge.MaxCouponsPerOrder, len(req.Coupons))
	}
	if err := validOrigin(from, req); err != nil {
		return nil, err
	}
	in, err := s.item(ctx, req.ItemID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	switch in.session.StatusAt(now) {
	case surge.SessionUpcoming:
		return nil, surge.Errorf(surge.ECONFLICT, "the sale has not started")
	case surge.SessionEnded:
		return nil, surge.Errorf(surge.ECONFLICT, "the sale has ended")
	}
	if req.Quantity > in.item.PerUserLimit {
		return nil, surge.Errorf(surge.ELIMIT, "at most %d per shopper", in.item.PerUserLimit)
	}
	l := s.lane(in)
	s.refresh(ctx, l, false)
	rr := surge.ReserveRequest{ItemID: req.ItemID, UserID: a.UserID, Quantity: req.Quantity, RequestID: req.RequestID}
	if l.remaining.Load() <= 0 {
		return s.soldOut(ctx, in, rr, held{}) // no queue, no gate: nothing is decided here
	}
	if s.blacklist.Blocked(a.UserID) {
		return nil, surge.Errorf(surge.EFORBIDDEN, "rejected: blocked by risk control")
	}
	if s.cfg.Risk != nil {
		if err := s.cfg.Risk.Screen(risk.Attempt{User: a.UserID, Device: from.Device, IP: from.IP, Proof: from.Proof,
			Item: req.ItemID, Session: in.session.ID, RequestID: req.RequestID}); err != nil {
			return nil, err
		}
	}
	if !s.users.allow("u"+strconv.FormatInt(a.UserID, 10)) || !s.ips.allow(from.IP) {
		return nil, surge.Errorf(surge.ERATELIMIT, "too many attempts; slow down")
	}
	if n := s.inFlight.Add(1); n > int64(s.cfg.InFlight) {
		s.inFlight.Add(-1)
		s.metrics.shed("in_flight")
		return nil, surge.RetryAfter(errBusy, inFlightRetry.Milliseconds())
	}
	defer s.inFlight.Add(-1)
	if err := s.tokens.verify(req.Token, a.UserID, req.ItemID, now); err != nil {
		return nil, err
	}
	var h held
	if len(req.Coupons) > 0 {
		if l.queued.Load()+rr.Quantity > l.remaining.Load() {
			return s.soldOut(ctx, in, rr, h) // as enqueue would answer: no coupon locked for nothing
		}
		if rr.OrderID, h, err = s.lockCoupons(ctx, in, rr, req.Coupons); err != nil {
			return nil, err
		}
	}
	return s.enqueue(ctx, l, in, rr, h)
}

// validOrigin checks what an attempt's app says of itself.
func validOrigin(from Origin, req Request) error {
	for _, f := range []struct{ name, v string }{{"X-Device-Id", from.Device}, {"address_id", req.Address}, {"pay_account", req.Account}} {
		if f.v == "" {
			continue
		}
		if err := surge.ValidDeviceID(f.v); err != nil {
			return surge.Errorf(surge.EINVALID, "%s: %s", f.name, surge.ErrorMessage(err))
		}
	}
	if len(from.Proof) > 256 {
		return surge.Errorf(surge.EINVALID, "X-Surge-Proof is at most 256 bytes")
	}
	return nil
}

// line is the one line of a flash-sale order, for pricing with coupons: at the SKU's list
// price, less what the item's sale price takes off (package promo).
func line(in *info, rr surge.ReserveRequest) []coupon.Line {
	return []coupon.Line{promo.SalePrice(in.item, rr.Quantity).Line}
}

// couponKey names a purchase request for its coupons: a retry has the same.
func couponKey(rr surge.ReserveRequest) string {
	return strconv.FormatInt(rr.ItemID, 10) + "/" + rr.RequestID
}

// lockCoupons prices an attempt with its coupons and locks them to the order it would make,
// before its reservation: it returns that order's id (a retried request's first one) and what
// the attempt holds.
func (s *Service) lockCoupons(ctx context.Context, in *info, rr surge.ReserveRequest, ids []int64) (int64, held, error) {
	if s.cfg.Coupons == nil {
		return 0, held{}, surge.Errorf(surge.EINVALID, "this sale takes no coupons")
	}
	id, err := s.ids()
	if err != nil {
		return 0, held{}, err
	}
	ref := coupon.OrderRef{Order: id, User: rr.UserID, Session: in.session.ID, Merchant: in.item.MerchantID}
	sale := promo.SalePrice(in.item, rr.Quantity)
	order, price, err := s.cfg.Coupons.Lock(ctx, ref, couponKey(rr), in.item.SalePrice.Currency, []coupon.Line{sale.Line}, ids)
	sale.Annotate(price)
	return order, held{price: price, by: id}, err
}

// giveBack gives back, in the background, the coupons an attempt locked (price is not nil) and
// did not use: it was refused, or it was a retry answered with its first order. When the queue
// of returns is full, the coupon sweep returns them later.
//
// An attempt whose coupons were on an earlier attempt's order (a retry: rr.OrderID is not the
// id it drew) gives nothing back: the earlier attempt may have reserved, and its order lists
// them. The coupon sweep returns them if that order is never made.
func (s *Service) giveBack(h held, rr surge.ReserveRequest, in *info) {
	if h.price == nil || rr.OrderID != h.by {
		return
	}
	select {
	case s.returns <- unlock{coupon.OrderRef{Order: rr.OrderID, User: rr.UserID, Session: in.session.ID, Merchant: in.item.MerchantID}, h.by}:
	default:
		s.metrics.droppedReturns.Inc()
	}
}

// unlock is a refused attempt's coupons to give back.
type unlock struct {
	ref coupon.OrderRef
	by  int64
}

// returnAll gives back the coupons of attempts refused, until Close.
func (s *Service) returnAll() {
	defer s.wg.Done()
	var refs []coupon.OrderRef
	var by []int64
	for {
		var got []unlock
		select {
		case u := <-s.returns:
			got = batch.Fill(append(make([]unlock, 0, 16), u), s.returns, maxUnlockBatch)
		case <-s.quit:
			return
		}
		refs, by = refs[:0], by[:0]
		for _, u := range got {
			refs, by = append(refs, u.ref), append(by, u.by)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.cfg.Coupons.Unlock(ctx, refs, by); err != nil {
			s.log.Warn("coupons of refused purchases not returned; the coupon sweep will", "orders", len(refs), "err", err)
		}
		cancel()
	}
}

// soldOut answers an attempt on an item with nothing left: "sold out", unless the attempt is a
// retry of one that did reserve, which gets its first answer (and its order recorded again, in
// case the first recording was lost). It only reads; stock that comes back goes through the gate.
func (s *Service) soldOut(ctx context.Context, in *info, rr surge.ReserveRequest, h held) (*Result, error) {
	res, found, err := s.reservation(ctx, rr)
	if err != nil {
		return nil, err // its coupons, if it locked any, stay locked until the sweep finds no order
	}
	if !found {
		s.giveBack(h, rr, in)
		return nil, errSoldOut
	}
	return s.finish(ctx, in, rr, surge.BatchResult{ReserveResult: res}, h)
}

// errSoldOut is the answer most shoppers of a sale get; it is never changed, so all share one.
var errSoldOut = surge.Errorf(surge.ESOLDOUT, "sold out")

// errBusy is the refusal of an attempt the node would make wait too long; each refusal is a
// copy with its own retry hint.
var errBusy = surge.Errorf(surge.EUNAVAILABLE, "the sale is busier than this node can serve now; retry after the hint")

// enqueue puts an attempt in its item's queue and waits briefly for the answer.
// An attempt with coupons comes with them locked to its order (rr.OrderID) and priced; refused
// before the line, it gives them back.
func (s *Service) enqueue(ctx context.Context, l *lane, in *info, rr surge.ReserveRequest, h held) (*Result, error) {
	if l.queued.Load()+rr.Quantity > l.remaining.Load() {
		return s.soldOut(ctx, in, rr, h) // more are already waiting than the stock left can serve
	}
	if why, retry := l.admit.Shed(s.now(), l.unanswered.Load()); why != "" { // it would wait past what the line allows
		s.metrics.shed(why)
		s.giveBack(h, rr, in)
		return nil, surge.RetryAfter(errBusy, max(retry.Milliseconds(), 1))
	}
	if rr.OrderID == 0 {
		id, err := s.ids()
		if err != nil {
			return nil, err
		}
		rr.OrderID = id
	}
	t := &attempt{req: rr, info: in, held: h, done: make(chan struct{}), at: s.now()}
	ticket := ticketOf(rr.ItemID, rr.RequestID)
	select {
	case l.in <- t:
		l.queued.Add(rr.Quantity)
		l.unanswered.Add(1)
	default:
		s.metrics.shed("queue_full")
		s.giveBack(h, rr, in)
		return nil, surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "the queue for this item is full; retry"), queueFullRetry.Milliseconds())
	}
	s.remember(ticket, t)
	timer := time.NewTimer(s.cfg.AnswerWait)
	defer timer.Stop()
	select {
	case <-t.done:
		return t.res, t.err
	case <-timer.C:
	case <-ctx.Done():
	}
	select {
	case <-t.done: // decided just now: an answer beats a ticket
		return t.res, t.err
	default:
	}
	// From here the lane will store the answer where every node can read it (see share).
	return &Result{Status: StatusQueued, Ticket: ticket}, nil
}

// decided turns the stock engine's decision into an answer and, for a reservation, the order
// to record. The answer may be given only once the order is recorded (see record). price is the
// attempt's, when it locked coupons to its order (rr.OrderID).
// inLine says the decision is made in the item's line, whose every moment each attempt waits for.
func (s *Service) decided(ctx context.Context, in *info, rr surge.ReserveRequest, d surge.BatchResult, h held, inLine bool) (*Result, *surge.Order, error) {
	if d.Err != nil { // its coupons, if any, stay locked until the sweep finds no order was made
		return nil, nil, d.Err
	}
	switch d.Outcome {
	case surge.SoldOut:
		s.giveBack(h, rr, in)
		return nil, nil, errSoldOut
	case surge.LimitReached:
		s.giveBack(h, rr, in)
		return nil, nil, surge.Errorf(surge.ELIMIT, "you already hold %d of the %d allowed", d.Held, in.item.PerUserLimit)
	}
	orderID := d.OrderID
	if orderID == 0 { // reserved before orders were attached: name it now, idempotently
		orderID = rr.OrderID
	}
	if orderID != rr.OrderID && s.cfg.Coupons != nil && (h.price != nil || !inLine) {
		// A retry answered with its first reservation: its order's price is its first
		// request's, with the coupons locked to it then. In an item's line only a retry that
		// named coupons asks: a read per replayed attempt held up the whole line. A retry that
		// leaves out the coupons its first attempt named is answered at its own price, and
		// the order writer keeps the first attempt's order.
		s.giveBack(h, rr, in)
		var err error
		if h.price, err = s.cfg.Coupons.Locked(ctx, rr.UserID, orderID, in.item.SalePrice.Currency, line(in, rr)); err != nil {
			return nil, nil, surge.Errorf(surge.EUNAVAILABLE, "the order's price could not be read; retry with the same request id")
		}
		promo.SalePrice(in.item, rr.Quantity).Annotate(h.price)
	}
	amount := promo.SalePrice(in.item, rr.Quantity).Amount() // the sale price: the item is the order's one activity
	if h.price != nil {
		amount = h.price.Payable
	}
	now := s.now().UTC()
	o := &surge.Order{ID: orderID, TxnID: payment.TxnID(orderID), RequestID: rr.RequestID, UserID: rr.UserID,
		SessionID: in.session.ID, ItemID: rr.ItemID, SKUID: in.item.SKUID, MerchantID: in.item.MerchantID,
		Quantity: rr.Quantity, State: surge.OrderPendingPayment, CreatedAt: now, ExpiresAt: now.Add(in.session.PayTimeout()),
		Amount: surge.Money{Amount: amount, Currency: in.item.SalePrice.Currency}, Price: h.price}
	return &Result{Status: StatusSuccess, OrderID: orderID, TxnID: o.TxnID, Ticket: ticketOf(rr.ItemID, rr.RequestID), Held: d.Held}, o, nil
}

// record stores the order commands of reservations durably on the bus, in one message: a
// shopper hears "success" only after this. If the bus is down the answer is an error, and a
// retry (same request id) finds the reservation and records its order again.
func (s *Service) record(ctx context.Context, orders []surge.Order) error {
	for len(orders) > surge.MaxOrdersPerMessage { // in pieces that fit a bus message
		if err := s.record(ctx, orders[:surge.MaxOrdersPerMessage]); err != nil {
			return err
		}
		orders = orders[surge.MaxOrdersPerMessage:]
	}
	if len(orders) == 0 {
		return nil
	}
	b, err := json.Marshal(order.Command{Orders: orders})
	if err != nil {
		return err
	}
	// Each message gets an id of its own: one made from the orders it carries would let a later
	// message (a retry's order next to new ones) be dropped as a duplicate. Orders are written
	// idempotently, so a repeated order does no harm.
	msgID, err := s.ids()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := s.bus.Publish(pctx, "surge.orders.create", "orders:"+strconv.FormatInt(msgID, 10), b); err != nil {
		return surge.Errorf(surge.EUNAVAILABLE, "the order could not be recorded yet; retry with the same request id")
	}
	if s.pending != nil {
		s.pending.Add(orders) // readable and payable from the answer on, before the order writer stores them
	}
	return nil
}

// finish decides one attempt and records its order.
func (s *Service) finish(ctx context.Context, in *info, rr surge.ReserveRequest, d surge.BatchResult, h held) (*Result, error) {
	res, o, err := s.decided(ctx, in, rr, d, h, false)
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, []surge.Order{*o}); err != nil {
		return nil, err
	}
	return res, nil
}
