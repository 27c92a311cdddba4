package surge

import (
	"context"
	"time"
)

// Kinds of mismatch the real-time reconciliation raises between orders, payments and stock
// movements of one transaction.
const (
	MismatchPaymentWithoutOrder = "payment_without_order" // the provider reported a payment of an order Surge does not have
	MismatchPaidTwice           = "paid_twice"            // two distinct payments of one transaction
	MismatchAmount              = "amount_mismatch"       // a payment whose amount or transaction is not the order's
	MismatchPaidAfterCancel     = "paid_after_cancel"     // a payment of an order cancelled before it came: money to give back
	MismatchStockWithoutPayment = "stock_without_payment" // stock confirmed as sold with no payment applied
	MismatchRefundWithoutPay    = "refund_without_payment"
)

// Mismatch is a disagreement the real-time reconciliation found about one transaction.
type Mismatch struct {
	ID       string    `json:"id"` // kind:txn — a transaction raises each kind once
	Kind     string    `json:"kind"`
	TxnID    string    `json:"txn_id"`
	OrderID  int64     `json:"order_id,string"`
	Amount   int64     `json:"amount"` // minor units at stake
	Detail   string    `json:"detail"`
	At       time.Time `json:"at"`        // the event time of the transaction's last record
	RaisedAt time.Time `json:"raised_at"` // when the pipeline raised it (event time of the timer)
}

// Event kinds of reconciliation's inputs and outputs on the bus.
const (
	// EventPaymentsRecorded is a batch of payment notifications as recorded (Data: []Payment,
	// each with its Outcome); EventPaymentUnmatched one whose order Surge does not have.
	EventPaymentsRecorded = "payments.recorded"
	EventPaymentUnmatched = "payment.unmatched"
	// EventStockSettled is a batch of stock movements of settled orders (Data: []StockMove).
	EventStockSettled = "stock.settled"
)

// Stock movement operations.
const (
	StockConfirm = "confirm" // a paid order's units are sold
	StockRelease = "release" // a cancelled order's units went back
)

// StockMove is the stock engine settling an order's reservation.
type StockMove struct {
	TxnID   string `json:"txn_id"`
	OrderID int64  `json:"order_id,string"`
	Op      string `json:"op"`
	Units   int64  `json:"units"`
}

// TxnRecords are Surge's money records of one transaction: the paid notifications recorded
// (each with its outcome) and the refunds.
type TxnRecords struct {
	TxnID    string
	OrderID  int64
	Payments []Payment
	Refunds  []Refund
}

// Repair is what was done about a finding of the daily reconciliation, once.
type Repair struct {
	FindingID string    `json:"finding_id"`
	Day       string    `json:"day"`
	Action    string    `json:"action"`
	By        int64     `json:"by,string"`
	Result    string    `json:"result"`
	At        time.Time `json:"at"`
}

// ReconcileStore keeps what reconciliation finds.
type ReconcileStore interface {
	// MoneyRecords calls fn with Surge's money records of every transaction that has a paid
	// notification of the provider's time in [from, to) or a refund created or paid back in
	// it, one
	// transaction at a time in txn id order, reading as it goes (memory does not grow with
	// the day). A transaction's records are those of the window.
	MoneyRecords(ctx context.Context, from, to time.Time, fn func(*TxnRecords) error) error
	// PutRun stores the report of a day's reconciliation (JSON), over any earlier one.
	PutRun(ctx context.Context, day string, report []byte, at time.Time) error
	// Run returns a day's report; ENOTFOUND if the day was not reconciled.
	Run(ctx context.Context, day string) ([]byte, error)
	// PutRepair records a repair of a day's finding, once: a finding of the day repaired
	// already returns the first repair and fresh false.
	PutRepair(ctx context.Context, r Repair) (first Repair, fresh bool, err error)
	// Repairs returns the repairs of a day's findings.
	Repairs(ctx context.Context, day string) ([]Repair, error)
	// PutMismatches stores mismatches and returns those it stored now: one already stored
	// (same id) is left as it is.
	PutMismatches(ctx context.Context, ms []Mismatch) (fresh []Mismatch, err error)
	// Mismatches lists mismatches raised at or after since, newest first, of one kind ("" for
	// all), up to limit.
	Mismatches(ctx context.Context, since time.Time, kind string, limit int) ([]Mismatch, error)
}
