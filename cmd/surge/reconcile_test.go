package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/paysim"
)

// The real-time reconciliation on every shape raises each kind of mismatch, once, within the
// grace (2 s here) and a checkpoint: a payment of an order cancelled before it came, a payment
// of the wrong amount, a second distinct payment of a paid order, a payment of an order Surge
// does not have, and (written to the events log as another system would) stock confirmed and a
// refund succeeded with no payment. A paid and partly refunded order raises nothing.
func TestRealTimeReconciliation(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			c.ReconGrace = 2 * time.Second
			if c.NATSURL == "" {
				c.NATSListen = "127.0.0.1:0" // to write events as another system would
			}
			m, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			lamp := shopSKU(t, tm, "Lamp", 2000, 20, false)
			s := shopper(t, cl, 6_200_001)
			buy := func(req string) *surge.Order {
				return ok[*surge.Order](t, "Checkout")(s.Checkout(ctx, checkout.Request{RequestID: req, Lines: []coupon.CartLine{{SKU: lamp.ID, Quantity: 1}}}))
			}
			pay := func(o *surge.Order) {
				tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, o.ID))
				ok[*paysim.PayResponse](t, "Pay")(s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}))
				waitState(t, s, o.ID, surge.OrderPaid)
			}
			notify := func(n payment.Notification) string {
				_, b := postCallback(t, cl.BaseURL(), n, testPaymentKey)
				return string(b)
			}
			paid := func(o *surge.Order, id string) payment.Notification {
				return payment.Notification{NotifyID: id, TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount, Status: payment.StatusPaid, PaidAt: time.Now()}
			}

			late := buy("late") // its ticket taken, then cancelled, then paid
			tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, late.ID))
			ok[*surge.Order](t, "CancelOrder")(s.CancelOrder(ctx, late.ID))
			ok[*paysim.PayResponse](t, "Pay(late)")(s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}))
			wrong := buy("wrong")
			n := paid(wrong, "wrong-1")
			n.Amount.Amount++
			if got := notify(n); !strings.Contains(got, surge.EINVALID) {
				t.Fatalf("a wrong amount's callback answered %s", got)
			}
			twice := buy("twice")
			pay(twice)
			if got := notify(paid(twice, "twice-extra")); !strings.Contains(got, surge.PaymentDuplicate) {
				t.Fatalf("a second payment's callback answered %s", got)
			}
			ghostID := int64(1_000_000 + time.Now().UnixNano()%1_000_000) // a snowflake of 2015: long before any order
			if got := notify(payment.Notification{NotifyID: fmt.Sprint("ghost-", ghostID), TxnID: payment.TxnID(ghostID), OrderID: ghostID,
				Amount: surge.Money{Amount: 100, Currency: "CNY"}, Status: payment.StatusPaid, PaidAt: time.Now()}); !strings.Contains(got, surge.ENOTFOUND) {
				t.Fatalf("an unknown order's callback answered %s", got)
			}
			clean := buy("clean")
			pay(clean)
			waitFor(t, "a partial refund", func() bool {
				_, err := tm.op.Refund(ctx, clean.ID, order.RefundInput{RequestID: "part", Lines: []order.RefundLineInput{{Line: 0, Quantity: 1}}})
				return err == nil
			})
			stockTxn, refundTxn := fmt.Sprint("T-inj-stock-", time.Now().UnixNano()), fmt.Sprint("T-inj-refund-", time.Now().UnixNano())
			publish(t, busURL(m, c), surge.EventStockSettled, stockTxn, []surge.StockMove{{TxnID: stockTxn, OrderID: 7, Op: surge.StockConfirm, Units: 1}})
			publish(t, busURL(m, c), surge.EventRefundSucceeded, refundTxn, surge.Refund{ID: "R-" + refundTxn, TxnID: refundTxn, OrderID: 8,
				Amount: surge.Money{Amount: 500, Currency: "CNY"}})

			want := map[string]string{late.TxnID: surge.MismatchPaidAfterCancel, wrong.TxnID: surge.MismatchAmount, twice.TxnID: surge.MismatchPaidTwice,
				payment.TxnID(ghostID): surge.MismatchPaymentWithoutOrder, stockTxn: surge.MismatchStockWithoutPayment, refundTxn: surge.MismatchRefundWithoutPay}
			var got map[string][]surge.Mismatch
			deadline := time.Now().Add(90 * time.Second) // the scale-out pipeline first reads the shared log's backlog
			for {
				got = map[string][]surge.Mismatch{}
				list, err := mismatches(ctx, tm.op)
				if err != nil {
					t.Fatal(err)
				}
				for _, mm := range list {
					if _, ours := want[mm.TxnID]; ours || mm.TxnID == clean.TxnID {
						got[mm.TxnID] = append(got[mm.TxnID], mm)
					}
				}
				if len(got) >= len(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			for txn, kind := range want {
				if len(got[txn]) != 1 || got[txn][0].Kind != kind {
					t.Errorf("transaction %s: raised %+v; want one %s", txn, got[txn], kind)
				}
			}
			if len(got[clean.TxnID]) != 0 {
				t.Errorf("a clean transaction raised %+v", got[clean.TxnID])
			}
			if a := got[late.TxnID]; len(a) == 1 && (a[0].Amount != 2000 || a[0].OrderID != late.ID) {
				t.Errorf("paid after cancel: %+v; want 2000 of order %d", a[0], late.ID)
			}
			_, err := mismatches(ctx, s)
			wantCode(t, "a shopper listing mismatches", err, surge.EFORBIDDEN)
		})
	}
}

func mismatches(ctx context.Context, c *client.Client) ([]surge.Mismatch, error) {
	return c.Mismatches(ctx, time.Time{}, "")
}

// busURL is where a test reaches a node's bus: the external NATS, or the embedded one's
// listener.
func busURL(m *Main, c Config) string {
	if c.NATSURL != "" {
		return c.NATSURL
	}
	return m.BusURL
}

// publish writes one event to the events log, as another system would.
func publish(t *testing.T, url, kind, key string, data any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := openBus(t, url)
	defer b.Close()
	e := surge.Event{ID: kind + ":" + key, Kind: kind, At: time.Now().UTC(), Data: data}
	body, _ := json.Marshal(e)
	if _, err := b.JS.Publish(ctx, "surge.events."+kind, body); err != nil {
		t.Fatal(err)
	}
}

// postCallback sends a payment notification to a node's callback, signed with key, and returns
// the answer's status and body.
func postCallback(t *testing.T, base string, n payment.Notification, key string) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(n)
	req, _ := http.NewRequest("POST", base+"/v1/payments/callback", bytes.NewReader(body))
	req.Header.Set(payment.SignatureHeader, payment.Sign([]byte(key), body, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// openBus connects a test to a node's bus; the caller closes it.
func openBus(t *testing.T, url string) *nats.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := nats.Open(ctx, nats.Config{URL: url}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
