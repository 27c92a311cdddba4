// Package reconcile checks Surge's money against itself and against the payment provider
// in real time, a pipeline on the events log follows every transaction's order,
// payments, stock movements and refunds and raises what disagrees; daily, the provider's ledger
// file is compared with Surge's transaction records, and each finding gets a repair.
package reconcile

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// The real-time pipeline's name (its checkpoint's; the version changes with its state's
// encoding), its watermark bound, and how long a transaction is followed.
const (
	PipelineName   = "reconcile-v2"
	OutOfOrderness = 5 * time.Second
	// DefaultGrace is how long after a transaction's last record its mismatches are judged:
	// long enough for the order, its payment and its stock movement to have been written,
	// short enough for a mismatch to be raised within a minute.
	DefaultGrace = 30 * time.Second
	// keep is how long a quiet transaction is remembered (the state held, and checkpointed, is
	// a quarter of an hour of transactions): a duplicate payment later than that is judged
	// against a transaction started afresh, where it is one payment; the daily reconciliation
	// finds it against the provider's ledger.
	keep            = 15 * time.Minute
	checkpointEvery = 10 * time.Second
	maxNotifies     = 4 // distinct payments remembered per transaction
	storeTimeout    = 10 * time.Second
)

// Signal kinds.
const (
	sigTick uint8 = iota
	sigCreated
	sigPayment
	sigUnmatched
	sigStock
	sigRefund
)

// Signal is one thing the events log says about a transaction.
type Signal struct {
	Kind uint8
	// Ordered: a refund of an order (not of a payment no order kept), which Surge makes only of
	// a paid order.
	Ordered bool
	Txn     string
	Order   int64
	Amount  int64
	Outcome string // a payment's outcome, or a stock movement's op
	Notify  string
	At      int64
}

// Txn is what the pipeline keeps of one transaction: exported, for its checkpoint.
type Txn struct {
	Order       int64
	Amount      int64 // the order's, once created
	Created     bool
	Applied     int      // payments applied
	Notifies    []string // distinct paid notifications (up to maxNotifies)
	Mismatch    bool     // a payment whose amount or transaction was not the order's
	Late        bool     // a payment after the order was cancelled
	Unmatched   int64    // amount of a payment whose order Surge does not have
	Confirmed   int64    // units confirmed sold
	Refunded    int64
	OrderRefund bool  // a refund of an order came (its order was paid, maybe long before)
	PaidAmount  int64 // amount of the paid notifications
	Last        int64 // event time of the last record
	Raised      uint8 // kinds raised, a bit each
	Judged      int64 // the grace timer last judged at
	MismatchAmt int64
}

var kinds = []string{surge.MismatchPaymentWithoutOrder, surge.MismatchPaidTwice, surge.MismatchAmount,
	surge.MismatchPaidAfterCancel, surge.MismatchStockWithoutPayment, surge.MismatchRefundWithoutPay}

// Build adds the real-time reconciliation to a stream of signals: per transaction, grace
// after its last record, each kind of mismatch that holds is raised once.
func Build(src stream.Stream[Signal], grace time.Duration) stream.Stream[surge.Mismatch] {
	g := grace.Milliseconds()
	keyed := stream.KeyBy(stream.Filter(src, func(s Signal) bool { return s.Kind != sigTick && s.Txn != "" }),
		func(s Signal) string { return s.Txn })
	return stream.Process(keyed, stream.Processor[string, Signal, Txn, surge.Mismatch]{
		OnRecord: func(c *stream.Context[string, Txn, surge.Mismatch], s Signal) {
			t := c.State()
			t.add(&s)
			t.Last = max(t.Last, c.Time)
			c.SetTimer(t.Last + g)
			c.SetTimer(t.Last + keep.Milliseconds())
		},
		OnTimer: func(c *stream.Context[string, Txn, surge.Mismatch]) {
			t, ok := c.Lookup()
			if !ok {
				return
			}
			if c.Time >= t.Last+keep.Milliseconds() {
				c.Clear()
				return
			}
			if c.Time < t.Last+g {
				return // a record came since: its own timer judges
			}
			for i, kind := range kinds {
				bit := uint8(1) << i
				if t.Raised&bit != 0 {
					continue
				}
				if amount, detail, holds := t.holds(kind); holds {
					t.Raised |= bit
					c.Emit(c.Time, surge.Mismatch{ID: kind + ":" + c.Key, Kind: kind, TxnID: c.Key, OrderID: t.Order, Amount: amount,
						Detail: detail, At: time.UnixMilli(t.Last).UTC(), RaisedAt: time.UnixMilli(c.Time).UTC()})
				}
			}
		},
	})
}

func (t *Txn) add(s *Signal) {
	if s.Order != 0 {
		t.Order = s.Order
	}
	switch s.Kind {
	case sigCreated:
		t.Created, t.Amount = true, s.Amount
	case sigUnmatched:
		t.Unmatched += s.Amount
	case sigStock:
		if s.Outcome == surge.StockConfirm {
			t.Confirmed = max(t.Confirmed, s.Amount) // a movement sent again is the same one
		}
	case sigRefund:
		t.Refunded += s.Amount
		t.OrderRefund = t.OrderRefund || s.Ordered
	case sigPayment:
		switch s.Outcome {
		case surge.PaymentApplied, surge.PaymentDuplicate, surge.PaymentRefundDue:
			seen := false
			for _, n := range t.Notifies {
				seen = seen || n == s.Notify
			}
			if !seen && len(t.Notifies) < maxNotifies {
				t.Notifies = append(t.Notifies, s.Notify)
				t.PaidAmount += s.Amount
				if s.Outcome == surge.PaymentApplied {
					t.Applied++
				}
			}
			t.Late = t.Late || s.Outcome == surge.PaymentRefundDue
			t.Created = true // the store had its order
		case surge.PaymentMismatch:
			t.Mismatch, t.MismatchAmt, t.Created = true, s.Amount, true
		}
	}
}

// holds reports whether a kind of mismatch holds for the transaction, with the amount at stake.
func (t *Txn) holds(kind string) (int64, string, bool) {
	switch kind {
	case surge.MismatchPaymentWithoutOrder:
		return t.Unmatched, "the provider reported a payment of an order Surge does not have", t.Unmatched > 0 && !t.Created
	case surge.MismatchPaidTwice:
		n := len(t.Notifies)
		return t.PaidAmount - t.PaidAmount/int64(max(n, 1)), fmt.Sprintf("%d distinct payments of one transaction", n), n >= 2
	case surge.MismatchAmount: // unless given back before it was judged
		return t.MismatchAmt, fmt.Sprintf("a payment of %d for an order of %d", t.MismatchAmt, t.Amount), t.Mismatch && t.Refunded < t.MismatchAmt
	case surge.MismatchPaidAfterCancel:
		return t.PaidAmount, "a payment of an order cancelled before it came: refund it", t.Late && t.Refunded < t.PaidAmount
	case surge.MismatchStockWithoutPayment:
		return t.Amount, fmt.Sprintf("%d units confirmed sold with no payment applied", t.Confirmed), t.Confirmed > 0 && t.Applied == 0
	case surge.MismatchRefundWithoutPay:
		// a payment of any outcome (a second charge, a wrong amount, one after a cancel) is money
		// that may be given back
		paid := len(t.Notifies) > 0 || t.Mismatch || t.Unmatched > 0
		// an order's refund on a transaction not followed since its order (paid before this
		// pipeline's memory) is no sign of anything: Surge refunds only paid orders
		forgotten := t.OrderRefund && !t.Created
		return t.Refunded, "a refund of a transaction no payment reached", t.Refunded > 0 && !paid && !forgotten
	}
	return 0, "", false
}

// envelope is a message of the events log.
type envelope struct {
	Kind string         `json:"kind"`
	At   time.Time      `json:"at"`
	Data jsontext.Value `json:"data"`
}

var lenient = jsonv2.RejectUnknownMembers(false)

// wanted are the kinds the pipeline reads.
var wanted = map[string]bool{"live.tick": true, surge.EventOrdersCreated: true, surge.EventPaymentsRecorded: true,
	surge.EventPaymentUnmatched: true, surge.EventStockSettled: true, surge.EventRefundSucceeded: true}

// txnOrder is what the pipeline reads of an order.
type txnOrder struct {
	ID     int64       `json:"id,string"`
	TxnID  string      `json:"txn_id"`
	Amount surge.Money `json:"amount"`
}

// DecodeSignals reads one message of the events log into the signals it carries for the
// reconciliation: orders created, payments recorded or unmatched, stock movements, refunds,
// and the live metrics' ticks of time. Other kinds carry none, and are skipped without their
// data being read.
func DecodeSignals(data []byte) ([]Signal, error) {
	if id, ok := bytes.CutPrefix(data, []byte(`{"id":"`)); ok { // Surge's events: the id starts with the kind
		if kind, _, ok := bytes.Cut(id[:min(len(id), 64)], []byte(":")); ok && !bytes.ContainsRune(kind, '"') && !wanted[string(kind)] {
			return nil, nil
		}
	}
	var env envelope
	if err := jsonv2.Unmarshal(data, &env, lenient); err != nil {
		return nil, err
	}
	at := env.At.UnixMilli()
	switch env.Kind {
	case "live.tick":
		return []Signal{{Kind: sigTick, At: at}}, nil
	case surge.EventOrdersCreated:
		var list []txnOrder
		if err := jsonv2.Unmarshal(env.Data, &list, lenient); err != nil {
			return nil, err
		}
		out := make([]Signal, len(list))
		for i, o := range list {
			out[i] = Signal{Kind: sigCreated, Txn: o.TxnID, Order: o.ID, Amount: o.Amount.Amount, At: at}
		}
		return out, nil
	case surge.EventPaymentsRecorded:
		var list []surge.Payment
		if err := jsonv2.Unmarshal(env.Data, &list, lenient); err != nil {
			return nil, err
		}
		out := make([]Signal, 0, len(list))
		for _, p := range list {
			out = append(out, Signal{Kind: sigPayment, Txn: p.TxnID, Order: p.OrderID, Amount: p.Amount.Amount, Outcome: p.Outcome, Notify: p.NotifyID, At: at})
		}
		return out, nil
	case surge.EventPaymentUnmatched:
		var p surge.Payment
		if err := jsonv2.Unmarshal(env.Data, &p, lenient); err != nil {
			return nil, err
		}
		return []Signal{{Kind: sigUnmatched, Txn: p.TxnID, Order: p.OrderID, Amount: p.Amount.Amount, Notify: p.NotifyID, At: at}}, nil
	case surge.EventStockSettled:
		var list []surge.StockMove
		if err := jsonv2.Unmarshal(env.Data, &list, lenient); err != nil {
			return nil, err
		}
		out := make([]Signal, len(list))
		for i, m := range list {
			out[i] = Signal{Kind: sigStock, Txn: m.TxnID, Order: m.OrderID, Amount: m.Units, Outcome: m.Op, At: at}
		}
		return out, nil
	case surge.EventRefundSucceeded:
		var r surge.Refund
		if err := jsonv2.Unmarshal(env.Data, &r, lenient); err != nil {
			return nil, err
		}
		return []Signal{{Kind: sigRefund, Ordered: r.Kind == surge.RefundOrder, Txn: r.TxnID, Order: r.OrderID, Amount: r.Amount.Amount, At: at}}, nil
	}
	return nil, nil
}

// Sink stores the mismatches raised, counts them and logs them.
type Sink struct {
	store  surge.ReconcileStore
	log    *slog.Logger
	raised *prometheus.CounterVec
	queue  []surge.Mismatch
}

// NewSink returns the pipeline's sink; its counter surge_reconcile_mismatches_total{kind} is
// registered on reg.
func NewSink(store surge.ReconcileStore, reg prometheus.Registerer, log *slog.Logger) *Sink {
	s := &Sink{store: store, log: log, raised: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_reconcile_mismatches_total",
		Help: "Mismatches the real-time reconciliation raised between orders, payments, stock movements and refunds, by kind."}, []string{"kind"})}
	for _, k := range kinds {
		s.raised.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(s.raised)
	}
	return s
}

// Write implements stream.Sink: mismatches are few, and stored at the next flush.
func (s *Sink) Write(_ uint64, _ int64, m surge.Mismatch) error {
	s.queue = append(s.queue, m)
	return nil
}

// Flush implements stream.Sink: a checkpoint waits until the mismatches raised are stored.
func (s *Sink) Flush(ctx context.Context) error {
	if len(s.queue) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	fresh, err := s.store.PutMismatches(ctx, s.queue)
	if err != nil {
		return err
	}
	for _, m := range fresh { // a replay after a restart raises again what is stored already: counted once
		s.raised.WithLabelValues(m.Kind).Inc()
		s.log.Warn("reconciliation mismatch", "kind", m.Kind, "txn", m.TxnID, "order", m.OrderID, "amount", m.Amount)
	}
	s.queue = s.queue[:0]
	return nil
}

// Runner keeps the real-time reconciliation running on the events log, restarting it from its
// last checkpoint after a failure. Run it on one node (the one that computes the live metrics).
type Runner struct {
	Log         stream.Log
	Checkpoints stream.Checkpoints
	Sink        *Sink
	Grace       time.Duration
	Stream      *stream.Metrics
	Logger      *slog.Logger
}

// Run follows the transactions until ctx ends.
func (r Runner) Run(ctx context.Context) {
	stream.Keep(ctx, "reconciliation pipeline", r.Logger, r.runOnce)
}

func (r Runner) runOnce(ctx context.Context, fresh bool) error {
	p, src := stream.New(PipelineName, stream.Config{OutOfOrderness: OutOfOrderness, Metrics: r.Stream, CheckpointInterval: checkpointEvery},
		func(s Signal) int64 { return s.At })
	stream.To(Build(src, r.Grace), stream.Sink[surge.Mismatch](r.Sink))
	return p.RunLog(ctx, stream.LogRun[Signal]{Log: r.Log, DecodeAll: DecodeSignals, Checkpoints: r.Checkpoints, Fresh: fresh,
		TimeOnly: func(s Signal) bool { return s.Kind == sigTick },
		Invalid: func(seq uint64, _ []byte, err error) {
			r.Logger.Warn("events log record skipped by the reconciliation: not readable", "seq", seq, "err", err)
		},
		OnGap: func(err error) bool {
			r.Logger.Error("the reconciliation misses events: the log dropped them before the pipeline read them", "err", err)
			return true
		}})
}
