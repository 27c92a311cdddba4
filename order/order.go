// Package order turns reservations into orders and follows them to paid or cancelled: it writes
// orders from the durable command stream, takes payment notifications, expires unpaid orders,
// and makes sure the stock engine confirms or releases every settled order's reservation
// exactly once.
package order

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/promo"
	"github.com/surgecommerce/surge/snowflake"
)

// Bounds of the order service.
const (
	sweepEvery  = 500 * time.Millisecond // how often due orders and unsettled stock are swept
	sweepBatch  = 500                    // orders one sweep handles
	orphanEvery = 30 * time.Second       // how often open reservations are checked for orders
	// OrphanAfter is how old a reservation without an order must be before the sweep makes
	// its order: far longer than recording an order takes, even behind a slow bus.
	OrphanAfter = time.Minute
)

// Publisher sends events to the bus: Emit without waiting for the bus to store them;
// PublishAll sends messages (data[i] under ids[i], a dedup id) together and returns once the
// bus stored them all, or the first refusal.
type Publisher interface {
	Emit(subject, msgID string, data []byte) error
	PublishAll(ctx context.Context, subject string, ids []string, data [][]byte) error
}

// Config holds the order service's settings and the parts it shares with the purchase path.
type Config struct {
	PaymentKey []byte        // shared with the payment provider
	PaymentURL string        // where the payment page takes tickets
	NotifyURL  string        // where the provider calls back
	TicketTTL  time.Duration // life of a payment ticket
	// Worker is this node's snowflake worker id: an order whose id carries another is asked
	// of that node (Peers) while the store does not have it.
	Worker int64
	// Pending holds the orders this node acknowledged (the purchase path adds them); Peers
	// reaches the other nodes' (nil on a single node).
	Pending *Pending
	Peers   Peers
	// Registry takes the service's metrics; nil keeps them unregistered.
	Registry prometheus.Registerer
	// Coupons uses and returns the coupons on orders; nil when orders carry none.
	Coupons Coupons
	// Activities follows the promotion activities of checkouts once settled; nil when orders
	// carry none.
	Activities Activities
	// Refunds keeps refunds (the order store's database); RefundURL is where the payment
	// provider takes them. Without them refunds are refused.
	Refunds   surge.RefundStore
	RefundURL string
	// Vouchers issues the vouchers of paid voucher products; nil when none are sold.
	Vouchers Vouchers
	// Client makes the calls to the payment provider (refunds); nil for one with a timeout.
	Client *http.Client
}

// Vouchers issues the vouchers of paid orders (package voucher), each order's once, and
// reports for each whether that is done; a failure is retried by the sweep.
type Vouchers interface {
	IssueAll(ctx context.Context, orders []*surge.Order) []bool
}

// Activities follows what orders hold of promotion activities (package promo), once the store
// settled it with the order (surge.OrderStore.SettleCheckout): a paid order's rebates, and the
// events. An error is retried by the sweep.
type Activities interface {
	Settled(ctx context.Context, o *surge.Order) error
}

// Coupons follows the coupons on orders (package coupon): each step idempotent.
type Coupons interface {
	// UseAll marks paid orders' coupons used, in one write; refusals[i] is ECONFLICT for an
	// order whose coupons are not on it.
	UseAll(ctx context.Context, orders []*surge.Order) (refusals []error, err error)
	// ReturnAll gives cancelled orders' coupons back, in one write.
	ReturnAll(ctx context.Context, orders []*surge.Order) error
	// Locked prices an order with the coupons locked to it; nil if there are none.
	Locked(ctx context.Context, user, order int64, currency string, lines []coupon.Line) (*surge.PriceBreakdown, error)
	// SweepLocks returns coupons locked to orders never made.
	SweepLocks(ctx context.Context) (int, error)
}

// Service is the order service.
type Service struct {
	store    surge.OrderStore
	sessions surge.SessionStore
	stock    surge.StockEngine
	bus      Publisher
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	pending  *Pending
	peers    Peers
	payments chan *payJob // to the payment applier (Run)
	metrics  *metrics

	boot    int64        // when the service started, in its batch events' ids
	batches atomic.Int64 // batch events sent

	reads       chan *readJob // to the order readers (Run)
	reading     atomic.Bool   // the readers run
	readersDone chan struct{} // closed once the readers stopped
	stopReaders sync.Once
}

// New returns an order service; Run applies its payments and sweeps. now may be nil for the
// wall clock.
func New(store surge.OrderStore, sessions surge.SessionStore, stock surge.StockEngine, bus Publisher, cfg Config,
	log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, sessions: sessions, stock: stock, bus: bus, cfg: cfg, log: log, now: now,
		pending: cfg.Pending, peers: cfg.Peers, payments: make(chan *payJob, paymentQueueDepth), metrics: newMetrics(cfg.Registry),
		reads: make(chan *readJob, readQueueDepth), readersDone: make(chan struct{}), boot: time.Now().UnixNano()}
}

// Command asks for orders to be created for reservations that hold: one message per batch of
// a purchase queue, so that one durable write covers the whole batch.
type Command struct {
	Orders []surge.Order `json:"orders"`
}

// HandleCreate writes the orders of the commands that are waiting, maxOrdersPerWrite to a
// transaction. Idempotent: a repeated command finds its orders there. An error makes the bus
// deliver the commands again.
func (s *Service) HandleCreate(ctx context.Context, commands [][]byte) error {
	var orders []surge.Order
	for _, data := range commands {
		var c Command
		if err := json.Unmarshal(data, &c); err != nil {
			s.log.Error("dropping an undecodable order command", "err", err)
			continue // redelivery cannot fix it
		}
		orders = append(orders, c.Orders...)
	}
	for len(orders) > 0 { // a transaction at a time, so that payments get the writer in between
		n := min(len(orders), maxOrdersPerWrite)
		if err := s.write(ctx, orders[:n]); err != nil {
			return err
		}
		orders = orders[n:]
	}
	return nil
}

// maxOrdersPerWrite bounds one transaction of the order writer. On SQLite, the one writer's
// slot goes round between transactions: a sale's first second of orders written at once held
// it for seconds, and every payment callback waited behind it.
const maxOrdersPerWrite = 500

// emitCreated sends one event for the orders a write created: one bus write per batch, not per
// order, at purchase rate.
func (s *Service) emitCreated(ctx context.Context, orders []surge.Order, created []bool) {
	var fresh []surge.Order
	for i, c := range created {
		if c {
			fresh = append(fresh, orders[i])
		}
	}
	for len(fresh) > 0 { // in pieces that fit a bus message
		n := min(len(fresh), surge.MaxOrdersPerMessage)
		s.emit(ctx, surge.EventOrdersCreated, strconv.FormatInt(fresh[0].ID, 10)+"+"+strconv.Itoa(n), fresh[:n])
		fresh = fresh[n:]
	}
}

// emit sends an event without waiting on the bus: a slow bus must not hold up orders or the
// stock they return. A failure is logged, never fatal to the order.
func (s *Service) emit(ctx context.Context, kind, key string, data any) {
	surge.TellBus(ctx, s.bus, s.log, kind, key, s.now(), data)
}

// Get returns an order its shopper, its merchant or staff may see (ENOTFOUND otherwise): from
// the moment its shopper is told "success", before the order writer stores it.
func (s *Service) Get(ctx context.Context, a surge.Actor, id int64) (*surge.Order, error) {
	o, err := s.orderByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if !a.Role.Staff() && o.UserID != a.UserID && (a.Role != surge.RoleMerchant || o.MerchantID != a.UserID) {
		return nil, surge.Errorf(surge.ENOTFOUND, "order not found")
	}
	return o, nil
}

// Mine lists the actor's own orders, newest first.
func (s *Service) Mine(ctx context.Context, a surge.Actor, limit int) ([]*surge.Order, error) {
	return s.store.OrdersByUser(ctx, a.UserID, limit)
}

// PayTicket is what a shopper takes to the payment page.
type PayTicket struct {
	PayURL string `json:"pay_url"`
	Ticket string `json:"ticket"`
	TxnID  string `json:"txn_id"`
}

// Ticket issues a signed payment ticket for the shopper's own pending order, from the moment
// the shopper is told "success".
func (s *Service) Ticket(ctx context.Context, a surge.Actor, id int64) (*PayTicket, error) {
	o, err := s.orderByID(ctx, id)
	if err != nil || o.UserID != a.UserID {
		return nil, surge.Errorf(surge.ENOTFOUND, "order not found")
	}
	if o.State != surge.OrderPendingPayment {
		return nil, surge.Errorf(surge.ECONFLICT, "the order is %s; only a pending order can be paid", o.State)
	}
	exp := s.now().Add(s.cfg.TicketTTL)
	if o.ExpiresAt.Before(exp) {
		exp = o.ExpiresAt
	}
	t, err := payment.SignTicket(s.cfg.PaymentKey, payment.Ticket{TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount,
		ExpiresAt: exp.UTC(), NotifyURL: s.cfg.NotifyURL})
	if err != nil {
		return nil, err
	}
	return &PayTicket{PayURL: s.cfg.PaymentURL, Ticket: t, TxnID: o.TxnID}, nil
}

// Cancel lets a shopper cancel their own pending order; its stock returns to the sale.
func (s *Service) Cancel(ctx context.Context, a surge.Actor, id int64) (*surge.Order, error) {
	o, err := s.stored(ctx, id)
	if err != nil || o.UserID != a.UserID {
		return nil, surge.Errorf(surge.ENOTFOUND, "order not found")
	}
	o, err = s.store.Transition(ctx, id, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelUser, s.now())
	if err != nil {
		return o, err
	}
	s.settle(ctx, o)
	s.emit(ctx, surge.EventOrderCancelled, strconv.FormatInt(o.ID, 10), o)
	return o, nil
}

// settle confirms (paid) or releases (cancelled) an order's reservation and records that it
// did. A failure is left for the sweep, which retries until the stock engine answers.
func (s *Service) settle(ctx context.Context, o *surge.Order) {
	s.settleAll(ctx, []*surge.Order{o})
}

// settleStock has the stock engine confirm (paid) or release (cancelled) an order's
// reservation, and reports whether that is done. Done includes a reservation the engine does
// not have, which nothing will ever settle.
func (s *Service) settleStock(ctx context.Context, o *surge.Order) bool {
	var err error
	switch {
	case o.Checkout() && (o.State == surge.OrderPaid || o.State == surge.OrderCancelled): // its units came from the SKUs' stock
		err = s.store.SettleCheckout(ctx, o.ID)
		if err == nil && o.State == surge.OrderCancelled {
			s.emit(ctx, surge.EventStockChanged, "release:"+strconv.FormatInt(o.ID, 10), o)
		}
		if err == nil && s.cfg.Activities != nil {
			err = s.cfg.Activities.Settled(ctx, o)
		}
		if err != nil {
			s.log.WarnContext(ctx, "checkout stock not yet settled; the sweep will retry", "order", o.ID, "err", err)
		}
		return err == nil
	}
	switch o.State {
	case surge.OrderPaid:
		err = s.stock.Confirm(ctx, o.ItemID, o.RequestID)
	case surge.OrderCancelled:
		err = s.stock.Release(ctx, o.ItemID, o.RequestID)
		if err == nil {
			s.emit(ctx, surge.EventStockChanged, "release:"+strconv.FormatInt(o.ID, 10), o)
		}
	default:
		return false
	}
	if surge.ErrorCode(err) == surge.ENOTFOUND { // no reservation to settle: nothing will ever be
		s.log.ErrorContext(ctx, "order without a reservation", "order", o.ID, "item", o.ItemID)
		err = nil
	}
	if err != nil {
		s.log.WarnContext(ctx, "stock not yet settled; the sweep will retry", "order", o.ID, "err", err)
		return false
	}
	return true
}

// settleCoupons uses (paid) or returns (cancelled) the coupons of orders, one write for each,
// and reports for each order whether that is done. A paid order's coupon that is not on it
// (which the audit then reports) is logged and left: no retry will put it there.
func (s *Service) settleCoupons(ctx context.Context, list []*surge.Order) []bool {
	done := make([]bool, len(list))
	var paid, cancelled []int
	for i, o := range list {
		switch {
		case s.cfg.Coupons == nil || o.Price == nil || len(o.Price.Coupons) == 0:
			done[i] = true
		case o.State == surge.OrderPaid:
			paid = append(paid, i)
		case o.State == surge.OrderCancelled:
			cancelled = append(cancelled, i)
		default:
			done[i] = true
		}
	}
	pick := func(idx []int) []*surge.Order {
		out := make([]*surge.Order, len(idx))
		for k, i := range idx {
			out[k] = list[i]
		}
		return out
	}
	if len(paid) > 0 {
		refusals, err := s.cfg.Coupons.UseAll(ctx, pick(paid))
		if err != nil {
			s.log.WarnContext(ctx, "coupons not yet used; the sweep will retry", "orders", len(paid), "err", err)
		}
		for k, i := range paid {
			if err == nil && refusals[k] != nil {
				s.log.ErrorContext(ctx, "a paid order's coupons are not on it", "order", list[i].ID, "err", refusals[k])
			}
			done[i] = err == nil
		}
	}
	if len(cancelled) > 0 {
		err := s.cfg.Coupons.ReturnAll(ctx, pick(cancelled))
		if err != nil {
			s.log.WarnContext(ctx, "coupons not yet returned; the sweep will retry", "orders", len(cancelled), "err", err)
		}
		for _, i := range cancelled {
			done[i] = err == nil
		}
	}
	return done
}

// settleAll settles many orders, sweepWorkers at a time on the stock engine (each a round trip,
// which the engine writes together), and then records in one write those it settled. A failure
// is left for the next sweep.
//
// A paid order is settled only once its orders.paid event is stored on the bus as well: the
// live GMV counts that event, and the sweep retries until both are done. A payment whose answer
// was lost (its transaction committed while the provider gave up on the callback) thus still
// reaches the live metrics (see publishPaid).
func (s *Service) settleAll(ctx context.Context, list []*surge.Order) {
	done := s.settleCoupons(ctx, list)
	if s.cfg.Vouchers != nil {
		for i, ok := range s.cfg.Vouchers.IssueAll(ctx, list) {
			done[i] = done[i] && ok
		}
	}
	var g errgroup.Group
	g.SetLimit(sweepWorkers)
	for i, o := range list {
		g.Go(func() error { done[i] = s.settleStock(ctx, o) && done[i]; return nil })
	}
	g.Wait()
	if err := s.publishPaid(ctx, list, done); err != nil {
		s.log.WarnContext(ctx, "paid orders' event not stored; the sweep will retry", "err", err)
		for i, o := range list {
			done[i] = done[i] && o.State != surge.OrderPaid
		}
	}
	ids := make([]int64, 0, len(list))
	moves := make([]surge.StockMove, 0, len(list))
	for i, o := range list {
		if done[i] {
			ids = append(ids, o.ID)
			op := surge.StockRelease
			if o.State.PaidOrLater() {
				op = surge.StockConfirm
			}
			moves = append(moves, surge.StockMove{TxnID: o.TxnID, OrderID: o.ID, Op: op, Units: o.Quantity})
		}
	}
	if err := s.store.MarkStockSettled(ctx, ids...); err != nil {
		s.log.WarnContext(ctx, "stock not yet settled; the sweep will retry", "orders", len(ids), "err", err)
		return
	}
	if len(moves) > 0 { // for the reconciliation: the stock movements, apart from the orders
		s.emitBatch(ctx, surge.EventStockSettled, moves)
	}
	for i, o := range list {
		o.StockSettled = done[i]
	}
}

// publishPaid stores the orders.paid events of the paid orders of list whose stock is settled
// (done), in messages of up to MaxOrdersPerMessage: one write to the bus for a batch, where an
// event per order cost the embedded bus a synced write each, thousands a second in a big sale.
// A message's id names its first order and its length: a batch sent again as it was is stored
// once; a retry that batches differently stores orders again, and the live metrics count each
// order once by its event id.
func (s *Service) publishPaid(ctx context.Context, list []*surge.Order, done []bool) error {
	var paid []*surge.Order
	for i, o := range list {
		if done[i] && o.State == surge.OrderPaid {
			paid = append(paid, o)
		}
	}
	var ids []string
	var data [][]byte
	for len(paid) > 0 {
		n := min(len(paid), surge.MaxOrdersPerMessage)
		e := surge.Event{ID: surge.EventOrdersPaid + ":" + strconv.FormatInt(paid[0].ID, 10) + "+" + strconv.Itoa(n),
			Kind: surge.EventOrdersPaid, At: s.now().UTC(), Data: paid[:n]}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		ids, data = append(ids, e.ID), append(data, b)
		paid = paid[n:]
	}
	if len(data) == 0 {
		return nil
	}
	return s.bus.PublishAll(ctx, "surge.events."+surge.EventOrdersPaid, ids, data)
}

// sweepWorkers bounds the orders one sweep settles at once. Each costs a round trip to the
// stock engine; one at a time, a sale's worth of abandoned orders took minutes to expire on
// Redis.
const sweepWorkers = 16

// Sweep runs one pass: expire orders whose payment time ran out, then settle the stock of
// every paid or cancelled order not yet settled. It returns how many orders it expired.
//
// The due orders are cancelled in one transaction and marked settled in one more: one
// transaction per order, each synced to disk, made a sale's burst of abandoned orders take
// over half a millisecond apiece on the embedded shape.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	expired, err := s.store.ExpireDue(ctx, s.now().UTC(), sweepBatch)
	if err != nil {
		return 0, err
	}
	s.settleAll(ctx, expired)
	for _, o := range expired {
		s.emit(ctx, surge.EventOrderExpired, strconv.FormatInt(o.ID, 10), o)
	}
	unsettled, err := s.store.UnsettledStock(ctx, sweepBatch)
	if err != nil {
		return len(expired), err
	}
	s.settleAll(ctx, unsettled)
	return len(expired), nil
}

// SweepAll sweeps until a pass finds less than a full batch due, so that a sale's worth of
// orders expiring together is worked off at once rather than one batch per tick. It returns
// how many orders it expired.
func (s *Service) SweepAll(ctx context.Context) (int, error) {
	total := 0
	for range maxSweepPasses {
		n, err := s.Sweep(ctx)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
	return total, nil // the rest on the next tick, after the orphan sweep has had its turn
}

// maxSweepPasses bounds one SweepAll (10,000 orders), so other sweeps keep their turn.
const maxSweepPasses = 20

// Run applies payment notifications and sweeps until ctx ends; HandlePayment needs it running.
func (s *Service) Run(ctx context.Context) {
	applied, read, resent := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() { defer close(applied); s.applyPayments(ctx) }() // stops with ctx
	go func() { defer close(read); s.runReaders(ctx) }()       // stops with ctx
	go func() { defer close(resent); s.RunResends(ctx) }()     // stops with ctx
	defer func() { <-applied; <-read; <-resent }()
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	lastOrphans := s.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.SweepAll(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.WarnContext(ctx, "order sweep failed", "err", err)
			}
			if s.now().Sub(lastOrphans) >= orphanEvery {
				lastOrphans = s.now()
				if _, err := s.SweepOrphans(ctx); err != nil && !errors.Is(err, context.Canceled) {
					s.log.WarnContext(ctx, "orphan sweep failed", "err", err)
				}
				if s.cfg.Coupons != nil {
					if _, err := s.cfg.Coupons.SweepLocks(ctx); err != nil && !errors.Is(err, context.Canceled) {
						s.log.WarnContext(ctx, "coupon lock sweep failed", "err", err)
					}
				}
			}
		}
	}
}

// SweepOrphans gives an order to every open reservation that has gone OrphanAfter without one:
// a reservation whose order command never got out (the bus refused it, or the node died in
// between) and whose shopper never retried. The order then lives like any other: it can be
// paid, and unpaid it expires and its stock returns. It returns how many orders it made.
func (s *Service) SweepOrphans(ctx context.Context) (int, error) {
	now := s.now().UTC()
	list, err := s.sessions.ListSessions(ctx, surge.SessionFilter{EndAfter: now.Add(-surge.MaxPayTimeout), Published: true,
		Limit: surge.MaxListLimit})
	if err != nil {
		return 0, err
	}
	made := 0
	for _, se := range list {
		for _, it := range se.Items {
			n, err := s.orphans(ctx, se, it, now)
			made += n
			if err != nil {
				return made, err
			}
		}
	}
	return made, nil
}

func (s *Service) orphans(ctx context.Context, se *surge.Session, it *surge.SessionItem, now time.Time) (int, error) {
	open, err := s.stock.OpenReservations(ctx, it.ID)
	if surge.ErrorCode(err) == surge.ENOTFOUND {
		return 0, nil // not loaded into this stock engine
	}
	if err != nil {
		return 0, err
	}
	var orders []surge.Order
	for _, r := range open {
		if r.OrderID <= 0 || now.Sub(snowflake.Time(r.OrderID)) < OrphanAfter {
			continue
		}
		if _, err := s.store.OrderByID(ctx, r.OrderID); surge.ErrorCode(err) != surge.ENOTFOUND {
			if err != nil {
				return 0, err
			}
			continue
		}
		sale := promo.SalePrice(it, r.Quantity) // the item is the order's one activity
		amount := surge.Money{Amount: sale.Amount(), Currency: it.SalePrice.Currency}
		var price *surge.PriceBreakdown
		if s.cfg.Coupons != nil { // the coupons its request locked, priced as they were
			if price, err = s.cfg.Coupons.Locked(ctx, r.UserID, r.OrderID, it.SalePrice.Currency, []coupon.Line{sale.Line}); err != nil {
				// Left for the next sweep: one order's coupons must not hold up the others'.
				s.log.WarnContext(ctx, "a reservation's coupons could not be priced; its order waits", "order", r.OrderID, "err", err)
				continue
			}
			if price != nil {
				sale.Annotate(price)
				amount.Amount = price.Payable
			}
		}
		orders = append(orders, surge.Order{ID: r.OrderID, TxnID: payment.TxnID(r.OrderID), RequestID: r.RequestID,
			UserID: r.UserID, SessionID: se.ID, ItemID: it.ID, SKUID: it.SKUID, MerchantID: it.MerchantID, Quantity: r.Quantity,
			Amount: amount, Price: price,
			State: surge.OrderPendingPayment, CreatedAt: snowflake.Time(r.OrderID), ExpiresAt: now.Add(se.PayTimeout())})
	}
	if len(orders) == 0 {
		return 0, nil
	}
	created, err := s.store.CreateOrders(ctx, orders)
	if err != nil {
		return 0, err
	}
	n := 0
	for i, c := range created {
		if c {
			n++
			s.log.WarnContext(ctx, "a reservation without an order got one", "order", orders[i].ID, "item", it.ID)
		}
	}
	s.emitCreated(ctx, orders, created)
	return n, nil
}
