package purchase

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/batch"
	"github.com/surgecommerce/surge/shed"
)

// attempt is a purchase waiting in, or decided by, its item's queue.
type attempt struct {
	req  surge.ReserveRequest
	info *info
	held held // its coupons, locked to its order, and their price
	at   time.Time
	done chan struct{} // closed once res or err is set
	res  *Result
	err  error
}

// lane is one item's queue and the worker that serves it in arrival order: it decides batches
// with the stock engine and hands them to the node's recorder (recordAll), which stores their
// orders and answers them, so that the next batch's decision overlaps the last one's recording.
type lane struct {
	item       int64
	in         chan *attempt
	queued     atomic.Int64 // units waiting in the queue
	remaining  atomic.Int64 // units left, as the stock engine last said
	checkedMs  atomic.Int64 // when remaining was last read, unix ms
	emittedMs  int64        // when the last stock event went out (drain's own)
	endAt      time.Time    // the session's end: the lane retires after it
	admit      *shed.Delay  // lets in only the attempts the line can answer in time
	unanswered atomic.Int64 // attempts in the line, from the queue to their answer
}

// stockEventEveryMs spaces out an item's stock events while nothing changes.
const stockEventEveryMs = 1000

// remainingRefreshMs is how stale a lane's idea of the stock left may get: releases (expired
// or cancelled orders) show within this time.
const remainingRefreshMs = 100

// refresh re-reads the stock left when the lane's figure is older than remainingRefreshMs. One
// caller claims the refresh; the others go on with the figure they have.
func (s *Service) refresh(ctx context.Context, l *lane, force bool) {
	now := s.now().UnixMilli()
	last := l.checkedMs.Load()
	if !force && now-last < remainingRefreshMs || !l.checkedMs.CompareAndSwap(last, now) {
		return
	}
	if lv, err := s.stock.Levels(ctx, l.item); err == nil {
		l.remaining.Store(lv.Available)
	}
}

// lane returns an item's lane, starting its worker on first use.
func (s *Service) lane(in *info) *lane {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lanes[in.item.ID]
	if l != nil {
		return l
	}
	l = &lane{item: in.item.ID, in: make(chan *attempt, s.cfg.QueueDepth), endAt: in.session.EndAt, admit: s.cfg.admission()}
	l.remaining.Store(in.item.Allotted) // until the first refresh reads the engine
	s.lanes[in.item.ID] = l
	s.wg.Add(1)
	go s.drain(l) // stops when Close closes quit
	return l
}

// Lanes of sessions that ended are stopped: purchases are refused from the end of the window,
// so once laneGrace has passed no attempt can still be on its way to the queue.
const (
	laneCheckEvery = 30 * time.Second
	laneGrace      = time.Minute
)

// retire removes a lane whose session ended more than laneGrace ago, once its queue is empty.
func (s *Service) retire(l *lane) bool {
	if s.now().Before(l.endAt.Add(laneGrace)) || len(l.in) > 0 {
		return false
	}
	s.mu.Lock()
	delete(s.lanes, l.item)
	s.mu.Unlock()
	s.refuseQueued(l)
	return true
}

// decidedBatch is a batch the stock engine decided, with the orders to record before answering.
type decidedBatch struct {
	lane     *lane
	attempts []*attempt
	orders   []surge.Order
}

// decidedDepth bounds the decided batches of all items waiting to be recorded (and so
// recorded together).
const decidedDepth = 256

// recordAll is the node's recorder: it takes the decided batches of every item that are
// waiting, stores their orders on the bus in one message (or as few as MaxOrdersPerMessage
// allows), and then answers their attempts, until Close closes s.toRecord. A lane once recorded
// its own batches: ten items made ten messages where one does, each a synced write of the
// bus, and under a crowd at three times a node's capacity the order commands took a median
// of 55 ms and up to 2 s to store, past the 200 ms an attempt waits before it is queued.
func (s *Service) recordAll() {
	defer close(s.recorded)
	var waiting []*decidedBatch
	var orders []surge.Order
	for b := range s.toRecord {
		waiting = batch.Fill(append(waiting[:0], b), s.toRecord, decidedDepth)
		orders = orders[:0]
		for _, w := range waiting {
			orders = append(orders, w.orders...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := s.now()
		err := s.record(ctx, orders)
		s.metrics.recorded(s.now().Sub(start))
		cancel()
		s.answerAll(waiting, err)
	}
}

// answerAll answers recorded batches' attempts (with err, if recording failed), tells their
// lines' admissions how long each waited, and hands the answers of those whose shoppers were
// told "queued" to the sharer.
func (s *Service) answerAll(waiting []*decidedBatch, err error) {
	var queued []*attempt
	now := s.now()
	for _, w := range waiting {
		for _, t := range w.attempts {
			if err != nil && t.err == nil {
				t.res, t.err = nil, err
			}
			close(t.done)
			w.lane.unanswered.Add(-1)
			w.lane.admit.Observe(now, now.Sub(t.at))
			if now.Sub(t.at) >= s.cfg.AnswerWait { // its shopper was told "queued"
				queued = append(queued, t)
			}
		}
	}
	if len(queued) > 0 {
		select {
		case s.shares <- queued:
		default: // the sharer is behind: other nodes find these in the order store
			s.metrics.unshared.Add(float64(len(queued)))
		}
	}
}

// drain is a lane's worker: it takes what has arrived, up to MaxBatch, decides it in one call
// to the stock engine, and answers each attempt in order.
func (s *Service) drain(l *lane) {
	defer s.wg.Done()
	reqs := make([]surge.ReserveRequest, 0, MaxBatch)
	out := make([]surge.BatchResult, MaxBatch)
	idle := time.NewTicker(laneCheckEvery)
	defer idle.Stop()
	for {
		var taken []*attempt
		select {
		case t := <-l.in:
			taken = append(make([]*attempt, 0, 16), t)
		case <-s.quit:
			s.refuseQueued(l)
			return
		case <-idle.C:
			if s.retire(l) {
				return
			}
			continue
		}
		taken = batch.Fill(taken, l.in, MaxBatch)
		s.metrics.waited(s.now().Sub(taken[0].at))
		reqs = reqs[:0]
		for _, t := range taken {
			reqs = append(reqs, t.req)
			l.queued.Add(-t.req.Quantity)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := s.now()
		s.reserve(ctx, reqs, out[:len(reqs)])
		l.admit.Served(len(reqs), s.now().Sub(start))
		var orders []surge.Order
		for i, t := range taken {
			var o *surge.Order
			t.res, o, t.err = s.decided(ctx, t.info, t.req, out[i], t.held, true)
			if o != nil {
				orders = append(orders, *o)
			}
		}
		s.toRecord <- &decidedBatch{lane: l, attempts: taken, orders: orders}
		before := l.remaining.Load()
		s.refresh(ctx, l, false)
		if now := s.now().UnixMilli(); l.remaining.Load() != before || now-l.emittedMs >= stockEventEveryMs {
			l.emittedMs = now // stock events at most every stockEventEveryMs per item, plus each change seen
			s.emit(surge.EventStockChanged, StockChange{ItemID: l.item, Remaining: l.remaining.Load()})
		}
		cancel()
		s.metrics.batch(len(taken))
	}
}

// reserve decides a batch, in one call when the stock engine takes batches.
func (s *Service) reserve(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) {
	if b, ok := s.stock.(batcher); ok {
		if err := b.ReserveBatch(ctx, reqs, out); err != nil {
			for i := range out {
				out[i] = surge.BatchResult{Err: err}
			}
		}
		return
	}
	for i, r := range reqs {
		res, err := s.stock.Reserve(ctx, r)
		out[i] = surge.BatchResult{ReserveResult: res, Err: err}
	}
}

func (s *Service) refuseQueued(l *lane) {
	for {
		select {
		case t := <-l.in:
			t.err = surge.Errorf(surge.EUNAVAILABLE, "the node is shutting down; retry with the same request id")
			close(t.done)
			l.unanswered.Add(-1)
		default:
			return
		}
	}
}

// sharedPollEvery is how often a stream on another node looks for a shared answer.
const sharedPollEvery = 100 * time.Millisecond

// stored is an answer kept for any node to give a ticket.
type stored struct {
	UserID  int64   `json:"user_id"`
	Result  *Result `json:"result,omitempty"`
	Code    string  `json:"code,omitempty"`
	Message string  `json:"message,omitempty"`
}

// Bounds of sharing queued answers.
const (
	shareQueueDepth = 256  // batches of answers waiting for the sharer
	maxShareBatch   = 4096 // answers the sharer stores at once
	shareTimeout    = 5 * time.Second
)

// shareAnswers stores the answers of queued attempts where every node can read them, in
// batches, until Close. A lane once stored each answer itself and waited for the bus before
// recording its next batch: past capacity most attempts were queued, each queued answer
// slowed the lane, and more were queued (in a crowd at three times a node's capacity, 75,000
// of 88,000 attempts). The node that queued an attempt answers its ticket from memory; other
// nodes read the shared answer, or find the order in the store.
func (s *Service) shareAnswers() {
	defer s.wg.Done()
	var tickets []string
	var data [][]byte
	for {
		var list []*attempt
		select {
		case list = <-s.shares:
		case <-s.quit:
			return
		}
		list = batch.FillFlat(list, s.shares, maxShareBatch)
		tickets, data = tickets[:0], data[:0]
		for _, t := range list {
			st := stored{UserID: t.req.UserID, Result: t.res}
			if t.err != nil {
				st.Code, st.Message = surge.ErrorCode(t.err), surge.ErrorMessage(t.err)
			}
			b, err := json.Marshal(st)
			if err != nil {
				continue
			}
			tickets, data = append(tickets, ticketOf(t.req.ItemID, t.req.RequestID)), append(data, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), shareTimeout)
		err := s.bus.PutResults(ctx, tickets, data)
		cancel()
		if err != nil {
			s.metrics.unshared.Add(float64(len(tickets)))
			s.log.Warn("queued answers not shared; other nodes will find their orders only", "answers", len(tickets), "err", err)
		}
	}
}

// shared reads an answer another node stored; found is false while there is none.
func (s *Service) shared(ctx context.Context, a surge.Actor, ticket string) (*Result, bool, error) {
	b, ok, err := s.bus.GetResult(ctx, ticket)
	if err != nil || !ok {
		return nil, false, err
	}
	var st stored
	if err := json.Unmarshal(b, &st); err != nil || st.UserID != a.UserID {
		return nil, false, nil
	}
	if st.Code != "" {
		return nil, true, &surge.Error{Code: st.Code, Message: st.Message}
	}
	return st.Result, true, nil
}

// remember keeps a queued attempt for polling its ticket. The newest maxTickets are kept: a
// ring of their names says which to forget, so remembering is O(1).
func (s *Service) remember(ticket string, t *attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.ticketRing[s.ticketNext]; old != "" {
		delete(s.tickets, old)
	}
	s.ticketRing[s.ticketNext] = ticket
	s.ticketNext = (s.ticketNext + 1) % maxTickets
	s.tickets[ticket] = t
}

// Poll answers a ticket: the attempt's result if this node holds it, "queued" while it waits,
// or the order, looked up in the store, if another node decided it. Returns ENOTFOUND for a
// ticket nobody knows (or another user's).
func (s *Service) Poll(ctx context.Context, a surge.Actor, ticket string) (*Result, error) {
	t, err := s.attempt(a, ticket)
	if err != nil {
		return nil, err
	}
	if t != nil {
		select {
		case <-t.done:
			return t.res, t.err
		default:
			return &Result{Status: StatusQueued, Ticket: ticket}, nil
		}
	}
	if res, ok, err := s.shared(ctx, a, ticket); ok {
		return res, err
	}
	return s.fromStore(ctx, a, ticket)
}

// Wait blocks until a ticket is decided (or ctx ends) and returns its answer; for the stream
// of a queued attempt.
func (s *Service) Wait(ctx context.Context, a surge.Actor, ticket string) (*Result, error) {
	t, err := s.attempt(a, ticket)
	if err != nil {
		return nil, err
	}
	if t == nil { // another node queued it: wait for its answer to be shared
		for {
			if res, ok, err := s.shared(ctx, a, ticket); ok {
				return res, err
			}
			if res, err := s.fromStore(ctx, a, ticket); err == nil {
				return res, nil
			}
			select {
			case <-ctx.Done():
				return nil, surge.Errorf(surge.ENOTFOUND, "unknown ticket")
			case <-time.After(sharedPollEvery):
			}
		}
	}
	select {
	case <-t.done:
		return t.res, t.err
	case <-ctx.Done():
		return &Result{Status: StatusQueued, Ticket: ticket}, nil
	}
}

func (s *Service) attempt(a surge.Actor, ticket string) (*attempt, error) {
	if _, _, err := parseTicket(ticket); err != nil {
		return nil, err
	}
	s.mu.Lock()
	t := s.tickets[ticket]
	s.mu.Unlock()
	if t != nil && t.req.UserID != a.UserID {
		return nil, surge.Errorf(surge.ENOTFOUND, "unknown ticket")
	}
	return t, nil
}

func parseTicket(ticket string) (item int64, req string, err error) {
	itemStr, req, ok := strings.Cut(ticket, ".")
	item, perr := strconv.ParseInt(itemStr, 10, 64)
	if !ok || perr != nil || item <= 0 || validRequestID(req) != nil {
		return 0, "", surge.Errorf(surge.EINVALID, "malformed ticket")
	}
	return item, req, nil
}

func (s *Service) fromStore(ctx context.Context, a surge.Actor, ticket string) (*Result, error) {
	item, req, err := parseTicket(ticket)
	if err != nil {
		return nil, err
	}
	o, err := s.orders.OrderByRequest(ctx, item, a.UserID, req)
	if err != nil {
		return nil, surge.Errorf(surge.ENOTFOUND, "unknown ticket")
	}
	return &Result{Status: StatusSuccess, OrderID: o.ID, TxnID: o.TxnID, Ticket: ticket}, nil
}
