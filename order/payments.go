package order

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/batch"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/snowflake"
)

// Bounds of the payment applier.
const (
	// maxPaymentBatch is how many notifications one transaction applies.
	maxPaymentBatch = 256
	// paymentQueueDepth bounds the notifications waiting for the applier; past it a callback is
	// answered 503 and the provider sends it again later.
	paymentQueueDepth = 8192
	// applyTimeout bounds one batch's transaction, and settleTimeout its stock and events.
	applyTimeout  = 10 * time.Second
	settleTimeout = 30 * time.Second
	// unknownOrderRetryMs is the retry hint for a notification about an order that is not
	// written anywhere yet; queueFullRetryMs for one that found the applier's queue full.
	unknownOrderRetryMs = 500
	queueFullRetryMs    = 200
)

// payJob is one notification waiting for the applier, and then its result.
type payJob struct {
	p     surge.Payment
	done  chan struct{} // closed once order or err is set
	order *surge.Order  // as it stands after the notification; nil for an unknown order
	err   error
}

// HandlePayment applies a verified notification. Notifications may come duplicated, late or out
// of order: each is recorded once, a payment pays its order at most once, and a payment that
// loses the race against expiry is kept as a refund to make, never dropped. The notifications
// arriving together are applied in one transaction (the applier, Run). It returns the outcome;
// ENOTFOUND for an unknown order, EUNAVAILABLE (the provider retries) for an order too recent
// to be known yet or when the applier is full, EINVALID for a notification whose transaction
// or amount is not the order's.
func (s *Service) HandlePayment(ctx context.Context, n payment.Notification) (string, error) {
	j, err := s.apply(ctx, n)
	if err != nil {
		return "", err
	}
	if j.order == nil { // not in the store: perhaps acknowledged and not written yet
		if _, err := s.stored(ctx, n.OrderID); err == nil {
			j, err = s.apply(ctx, n)
			if err != nil {
				return "", err
			}
		}
	}
	if j.order == nil {
		err := s.unknownOrder(n.OrderID)
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			s.emit(ctx, surge.EventPaymentUnmatched, n.NotifyID, j.p)
		}
		return "", err
	}
	if j.p.Outcome == surge.PaymentMismatch {
		return j.p.Outcome, surge.Errorf(surge.EINVALID, "the notification's transaction or amount is not the order's")
	}
	return j.p.Outcome, nil
}

// unknownOrder is the answer for a notification about an order nobody has: ENOTFOUND, unless
// the order's id is recent enough for its order to be on its way (the provider is told to
// retry, rather than to give up on a payment taken).
func (s *Service) unknownOrder(id int64) error {
	if id > 0 && s.now().Sub(snowflake.Time(id)) < OrphanAfter+PendingFor {
		return surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "order %d is not recorded yet; retry", id), unknownOrderRetryMs)
	}
	return surge.Errorf(surge.ENOTFOUND, "order not found")
}

// apply hands a notification to the applier and waits for its result.
func (s *Service) apply(ctx context.Context, n payment.Notification) (*payJob, error) {
	j := &payJob{done: make(chan struct{}), p: surge.Payment{NotifyID: n.NotifyID, TxnID: n.TxnID, OrderID: n.OrderID,
		Amount: n.Amount, Status: n.Status, PaidAt: n.PaidAt.UTC(), ReceivedAt: s.now().UTC()}}
	select {
	case s.payments <- j:
	default:
		s.metrics.paymentsRefused.Inc()
		return nil, surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "too many payment notifications at once; retry"), queueFullRetryMs)
	}
	select {
	case <-j.done:
		return j, j.err
	case <-ctx.Done():
		// It may still be applied; a notification sent again is recorded once.
		return nil, surge.Errorf(surge.EUNAVAILABLE, "the notification was not applied in time; retry")
	}
}

// applyPayments is the applier: it takes the notifications waiting, up to maxPaymentBatch,
// applies them in one transaction and answers them, until ctx ends; the orders they paid go to
// the settler (settlePaid), so that the next batch does not wait for the stock engine, the bus
// or another write. Those waiting at the end are answered EUNAVAILABLE: the provider sends them
// again.
func (s *Service) applyPayments(ctx context.Context) {
	paid := make(chan []*surge.Order, settleQueueDepth)
	settled := make(chan struct{})
	go func() { defer close(settled); s.settlePaid(ctx, paid) }() // ends when paid closes
	defer func() { close(paid); <-settled }()
	jobs := make([]*payJob, 0, maxPaymentBatch)
	for {
		select {
		case j := <-s.payments:
			jobs = append(jobs[:0], j)
		case <-ctx.Done():
			for {
				select {
				case j := <-s.payments:
					j.err = surge.Errorf(surge.EUNAVAILABLE, "the node is shutting down; retry")
					close(j.done)
				default:
					return
				}
			}
		}
		jobs = batch.Fill(jobs, s.payments, maxPaymentBatch)
		if list := s.applyBatch(ctx, jobs); len(list) > 0 {
			select {
			case paid <- list:
			default: // the settler is behind: the sweep settles these
				s.metrics.settleDeferred.Add(float64(len(list)))
			}
		}
	}
}

// settleQueueDepth bounds the batches of paid orders waiting for the settler.
const settleQueueDepth = 64

// settlePaid settles the orders the applier paid, whatever batches are waiting at once, until
// paid closes.
func (s *Service) settlePaid(ctx context.Context, paid <-chan []*surge.Order) {
	for list := range paid {
		list = batch.FillFlat(list, paid, sweepBatch)
		sctx, cancel := context.WithTimeout(ctx, settleTimeout)
		s.settleAll(sctx, list)
		cancel()
	}
}

// applyBatch applies one batch and answers its notifications, and returns the orders they paid.
// A notification whose order the store does not have yet but this node acknowledged is applied
// once that order is written, with the others of the batch in the same case: two more
// transactions, rather than one each.
func (s *Service) applyBatch(ctx context.Context, batch []*payJob) []*surge.Order {
	orders, err := s.applyStored(ctx, batch)
	if err == nil {
		var missing []*payJob
		var acked []surge.Order
		for i, j := range batch {
			if orders[i] != nil {
				continue
			}
			if s.pending == nil {
				break
			}
			if o, ok := s.pending.Get(j.p.OrderID); ok {
				missing, acked = append(missing, j), append(acked, *o)
			}
		}
		if len(missing) > 0 {
			s.metrics.pendingWrites.Add(float64(len(acked)))
			if err = s.write(ctx, acked); err == nil {
				var again []*surge.Order
				if again, err = s.applyStored(ctx, missing); err == nil {
					for i, j := range missing {
						orders[slices.Index(batch, j)] = again[i]
					}
				}
			}
		}
	}
	var paid []*surge.Order
	for i, j := range batch {
		if err != nil {
			j.err = err
		} else {
			j.order = orders[i]
			s.metrics.outcome(j.p.Outcome)
			switch j.p.Outcome {
			case surge.PaymentApplied:
				paid = append(paid, orders[i])
			case surge.PaymentRefundDue:
				s.emit(ctx, surge.EventRefundDue, j.p.TxnID, orders[i])
			}
		}
		close(j.done)
	}
	if err == nil { // for the reconciliation: every notification as recorded, its outcome with it
		recorded := make([]surge.Payment, 0, len(batch))
		for i, j := range batch {
			if orders[i] != nil {
				recorded = append(recorded, j.p)
			}
		}
		if len(recorded) > 0 {
			s.emitBatch(ctx, surge.EventPaymentsRecorded, recorded)
		}
	}
	return paid
}

// emitBatch sends a batch event under an id of its own: batches are made afresh each time, so
// their ids name the node and the batch rather than what they carry.
func (s *Service) emitBatch(ctx context.Context, kind string, data any) {
	key := strconv.FormatInt(s.cfg.Worker, 10) + "-" + strconv.FormatInt(s.boot, 36) + "-" + strconv.FormatInt(s.batches.Add(1), 10)
	s.emit(ctx, kind, key, data)
}

// applyStored is one ApplyPayments transaction over the jobs' notifications.
func (s *Service) applyStored(ctx context.Context, jobs []*payJob) ([]*surge.Order, error) {
	ps := make([]*surge.Payment, len(jobs))
	for i, j := range jobs {
		ps[i] = &j.p
	}
	start := s.now()
	actx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	orders, err := s.store.ApplyPayments(actx, ps)
	s.metrics.batches.Observe(float64(len(jobs)))
	s.metrics.applySeconds.Observe(s.now().Sub(start).Seconds())
	return orders, err
}

// metrics are the order service's Prometheus series.
type metrics struct {
	notifications   *prometheus.CounterVec
	byOutcome       map[string]prometheus.Counter // read by the applier alone
	batches         prometheus.Histogram
	applySeconds    prometheus.Histogram
	paymentsRefused prometheus.Counter
	pendingReads    prometheus.Counter
	pendingWrites   prometheus.Counter
	settleDeferred  prometheus.Counter
	readBatches     prometheus.Histogram
	refunds         *prometheus.CounterVec // refunds' steps
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_payment_notifications_total",
			Help: "Payment notifications applied, by outcome (applied, duplicate, refund_due, ignored, mismatch, or unknown_order)."}, []string{"outcome"}),
		byOutcome: map[string]prometheus.Counter{},
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_payment_batch_size",
			Help: "Payment notifications applied in one transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 9)}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_payment_apply_seconds",
			Help: "Time to apply one batch of payment notifications.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		paymentsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_payment_notifications_refused_total",
			Help: "Payment notifications answered 503 because the applier's queue was full (the provider retries)."}),
		pendingReads: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_orders_read_before_written_total",
			Help: "Orders read or paid as acknowledged, before the order writer stored them."}),
		pendingWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_orders_written_on_demand_total",
			Help: "Acknowledged orders stored by a payment or cancel that came before the order writer."}),
		readBatches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_order_read_batch_size",
			Help: "Order reads answered by one statement.", Buckets: prometheus.ExponentialBuckets(1, 2, 9)}),
		settleDeferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_payment_settle_deferred_total",
			Help: "Paid orders left to the sweep to settle (stock confirmed, orders.paid stored) because the settler was behind."}),
		refunds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_refunds_total",
			Help: "Refunds by step: requested (recorded and sent to the provider), provider_unavailable (the provider unreachable or failing; sent again later), failed (the provider refused it for good), succeeded (its callback arrived), mismatch (a callback whose amount or transaction was not the refund's)."},
			[]string{"step"}),
	}
	if reg != nil {
		reg.MustRegister(m.notifications, m.batches, m.applySeconds, m.paymentsRefused, m.pendingReads, m.pendingWrites, m.settleDeferred, m.readBatches, m.refunds)
	}
	return m
}

func (m *metrics) outcome(o string) {
	if o == "" {
		o = "unknown_order"
	}
	c, ok := m.byOutcome[o]
	if !ok {
		c = m.notifications.WithLabelValues(o)
		m.byOutcome[o] = c
	}
	c.Inc()
}
