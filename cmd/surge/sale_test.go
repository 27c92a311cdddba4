package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/sale"
)

const testPaymentKey = "fedcba9876543210fedcba9876543210"

// saleConfig is testConfig with the gate opened for a crowd coming from one test IP.
func saleConfig(t *testing.T) Config {
	c := testConfig(t)
	c.IPRate, c.PaymentKey = 1e6, testPaymentKey
	return c
}

// shopper returns a client signed in as a synthetic shopper: the load generator's way of
// provisioning a crowd without a password hash each.
func shopper(t *testing.T, cl *client.Client, user int64) *client.Client {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "surge", "sub": fmt.Sprint(user),
		"role": "shopper", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return cl.As(tok)
}

// openSale creates a SKU, a session starting in a moment, one item, publishes it, and waits
// until the sale is live. It returns the item id.
func openSale(t *testing.T, tm *team, units, limit, payTimeoutSec int64) int64 {
	t.Helper()
	return openSaleItem(t, tm, units, limit, payTimeoutSec).ID
}

// openSaleItem is openSale returning the whole item, session id included.
func openSaleItem(t *testing.T, tm *team, units, limit, payTimeoutSec int64) *surge.SessionItem {
	t.Helper()
	ctx := context.Background()
	code := fmt.Sprint("SALE-", time.Now().UnixNano())
	spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: code, Title: "Flash item", CategoryL1: "Digital"}))
	sku := ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: code, Title: "Flash item",
		Price: surge.Money{Amount: 99900, Currency: "CNY"}, CostPrice: surge.Money{Amount: 50000, Currency: "CNY"}, Stock: units}))
	start := time.Now().Add(1500 * time.Millisecond).UTC()
	se := ok[*surge.Session](t, "CreateSession")(tm.op.CreateSession(ctx, sale.SessionInput{Name: "flash", StartAt: start,
		EndAt: start.Add(time.Hour), PayTimeoutSec: payTimeoutSec}))
	it := ok[*surge.SessionItem](t, "AddItem")(tm.op.AddItem(ctx, se.ID, sale.ItemInput{SKUID: sku.ID, Allotted: units,
		SalePrice: surge.Money{Amount: 100, Currency: "CNY"}, PerUserLimit: limit}))
	ok[*surge.Session](t, "Publish")(tm.op.Publish(ctx, se.ID))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(start); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sale never opened")
		}
	}
	return it
}

// buy fetches the item's token, purchases, and polls a queued answer to its end.
func buy(ctx context.Context, c *client.Client, item int64, req string) (*purchase.Result, error) {
	d, err := c.Item(ctx, item)
	if err != nil {
		return nil, err
	}
	res, err := c.Purchase(ctx, purchase.Request{ItemID: item, Quantity: 1, RequestID: req, Token: d.Token})
	for deadline := time.Now().Add(20 * time.Second); err == nil && res.Status == purchase.StatusQueued; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("still queued after 20s")
		}
		res, err = c.PollPurchase(ctx, res.Ticket)
	}
	return res, err
}

func TestFlashSaleSellsExactlyTheAllotment(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			_, cl := start(t, c)
			tm := newTeam(t, cl)
			const units, shoppers, parallel = 1000, 3000, 128
			saleItem := openSaleItem(t, tm, units, 1, 900)
			item := saleItem.ID
			ctx := context.Background()

			var mu sync.Mutex
			orderOf := map[int64]int64{} // user → order
			var soldOut, failed atomic.Int64
			sem := make(chan struct{}, parallel)
			var wg sync.WaitGroup
			for i := range shoppers {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					user := int64(1_000_000 + i)
					s := shopper(t, cl, user)
					req := fmt.Sprint("buy-", user)
					tries := 1
					if i%10 == 0 {
						tries = 2 // a retry of the same request (a double tap, a timeout)
					}
					for range tries {
						res, err := buy(ctx, s, item, req)
						// A refusal for load ("busier than this node can serve now", with a
						// hint of when to come back, as a slow machine under -race gets; or
						// "the order could not be recorded yet", the bus slower than the node's
						// publish timeout) is followed as a shopper's app does: again after the
						// hint, with the same request id, within the per-shopper rate limit.
						// Any other refusal fails the test.
						for retry := 0; retry < 5 && surge.ErrorCode(err) == surge.EUNAVAILABLE; retry++ {
							time.Sleep(max(time.Duration(surge.RetryAfterMs(err))*time.Millisecond, 500*time.Millisecond))
							res, err = buy(ctx, s, item, req)
						}
						switch {
						case surge.ErrorCode(err) == surge.ESOLDOUT:
							soldOut.Add(1)
						case err != nil:
							t.Errorf("shopper %d: %v", user, err)
							failed.Add(1)
						default:
							mu.Lock()
							if prev, ok := orderOf[user]; ok && prev != res.OrderID {
								t.Errorf("shopper %d got orders %d and %d for one request", user, prev, res.OrderID)
							}
							orderOf[user] = res.OrderID
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			if len(orderOf) != units || failed.Load() > 0 {
				t.Fatalf("%d shoppers got an order (%d sold out, %d failed); want exactly %d", len(orderOf), soldOut.Load(), failed.Load(), units)
			}
			// Every success has exactly its one order, pending payment, visible to its shopper.
			deadline := time.Now().Add(15 * time.Second)
			for user, id := range orderOf {
				for {
					o, err := shopper(t, cl, user).Order(ctx, id)
					if err == nil {
						if o.State != surge.OrderPendingPayment || o.UserID != user || o.Quantity != 1 {
							t.Fatalf("order %d = %+v", id, o)
						}
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("order %d of shopper %d never appeared: %v", id, user, err)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if d, err := shopper(t, cl, 1).Item(ctx, item); err != nil || d.Remaining != 0 {
				t.Fatalf("remaining after the sale = %+v, %v; want 0", d, err)
			}
			// The operator's audit agrees, once the orders are written: nothing oversold, one
			// order per reservation.
			var rep *audit.Report
			var err error
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				rep, err = tm.op.Audit(ctx, saleItem.SessionID)
				if err == nil && rep.Passed || time.Now().After(deadline) {
					break
				}
			}
			if err != nil || !rep.Passed || len(rep.Items) != 1 || rep.Items[0].Stock.Reserved != units {
				t.Fatalf("Audit = %+v, %v; want passed with %d reserved", rep, err, units)
			}
			if _, err := shopper(t, cl, 1).Audit(ctx, saleItem.SessionID); surge.ErrorCode(err) != surge.EFORBIDDEN {
				t.Fatalf("Audit(as a shopper) = %v; want EFORBIDDEN", err)
			}
			// The stock levels alone, as the load generator's chart polls them.
			st, err := tm.op.SessionStock(ctx, saleItem.SessionID)
			want := sale.ItemStock{ItemID: item, Stock: surge.StockLevels{Allotted: units, Reserved: units}}
			if err != nil || st.SessionID != saleItem.SessionID || len(st.Items) != 1 || st.Items[0] != want {
				t.Fatalf("SessionStock = %+v, %v; want %+v", st, err, want)
			}
			if _, err := shopper(t, cl, 1).SessionStock(ctx, saleItem.SessionID); surge.ErrorCode(err) != surge.EFORBIDDEN {
				t.Fatalf("SessionStock(as a shopper) = %v; want EFORBIDDEN", err)
			}
		})
	}
}

func TestPaymentExpiryAndCallbacks(t *testing.T) {
	c := saleConfig(t)
	c.NATSListen = "127.0.0.1:0" // to read the events the sale emits
	m, cl := start(t, c)
	tm := newTeam(t, cl)
	ctx := context.Background()
	item := openSale(t, tm, 20, 1, 2) // unpaid orders expire after 2 seconds

	payer, idler, late := shopper(t, cl, 501), shopper(t, cl, 502), shopper(t, cl, 503)
	paid := ok[*purchase.Result](t, "buy(payer)")(buy(ctx, payer, item, "p1"))
	idle := ok[*purchase.Result](t, "buy(idler)")(buy(ctx, idler, item, "i1"))
	lateRes := ok[*purchase.Result](t, "buy(late)")(buy(ctx, late, item, "l1"))
	// The payer pays; the provider calls back out of order and three times over.
	waitState(t, payer, paid.OrderID, surge.OrderPendingPayment)
	tk := ok[*order.PayTicket](t, "PayTicket")(payer.PayTicket(ctx, paid.OrderID))
	if _, err := payer.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket, Duplicates: 2, OutOfOrder: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := payer.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}); err == nil {
		t.Fatal("the provider charged one transaction twice")
	}
	if _, err := late.PayTicket(ctx, paid.OrderID); surge.ErrorCode(err) != surge.ENOTFOUND {
		t.Fatalf("PayTicket(someone else's order) = %v; want ENOTFOUND", err)
	}
	waitState(t, payer, paid.OrderID, surge.OrderPaid)
	waitState(t, idler, idle.OrderID, surge.OrderCancelled)
	o := ok[*surge.Order](t, "Order(idle)")(idler.Order(ctx, idle.OrderID))
	if o.CancelReason != surge.CancelTimeout {
		t.Fatalf("expired order = %+v; want cancelled for timeout", o)
	}
	// Two of twenty were held by expired orders and came back; one is sold.
	waitState(t, late, lateRes.OrderID, surge.OrderCancelled)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := ok[*purchase.Detail](t, "Item")(payer.Item(ctx, item))
		if d.Remaining == 19 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remaining = %d; want 19 (20 less the paid one)", d.Remaining)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Callbacks straight to the endpoint: a late payment, a duplicate, forgeries, unknown orders.
	lateOrder := ok[*surge.Order](t, "Order(late)")(late.Order(ctx, lateRes.OrderID))
	paidOrder := ok[*surge.Order](t, "Order(paid)")(payer.Order(ctx, paid.OrderID))
	notify := func(n payment.Notification, key string) (int, string) {
		status, body := postCallback(t, cl.BaseURL(), n, key)
		var out struct {
			Outcome string
			Error   struct{ Code string }
		}
		json.Unmarshal(body, &out)
		if out.Outcome != "" {
			return status, out.Outcome
		}
		return status, out.Error.Code
	}
	n := func(o *surge.Order, id string) payment.Notification {
		return payment.Notification{NotifyID: id, TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount, Status: payment.StatusPaid, PaidAt: time.Now()}
	}
	for _, tc := range []struct {
		name   string
		n      payment.Notification
		key    string
		status int
		want   string
	}{
		{"late payment after expiry", n(lateOrder, "late-1"), testPaymentKey, 200, "refund_due"},
		{"same late notification again", n(lateOrder, "late-1"), testPaymentKey, 200, "refund_due"},
		{"second payment of a paid order", n(paidOrder, "extra-1"), testPaymentKey, 200, "duplicate"},
		{"forged signature", n(paidOrder, "forged-1"), "not the key not the key not the", 401, surge.EUNAUTHORIZED},
		{"unknown order", payment.Notification{NotifyID: "u-1", TxnID: "T1", OrderID: 12345, Amount: paidOrder.Amount, Status: payment.StatusPaid}, testPaymentKey, 404, surge.ENOTFOUND},
		{"wrong amount", func() payment.Notification { x := n(paidOrder, "amt-1"); x.Amount.Amount++; return x }(), testPaymentKey, 400, surge.EINVALID},
	} {
		if status, got := notify(tc.n, tc.key); status != tc.status || got != tc.want {
			t.Errorf("callback %s = %d %s; want %d %s", tc.name, status, got, tc.status, tc.want)
		}
	}
	if o := ok[*surge.Order](t, "Order(late)")(late.Order(ctx, lateRes.OrderID)); o.State != surge.OrderCancelled {
		t.Fatalf("a late payment changed the cancelled order to %s", o.State)
	}
	checkEvents(t, m.BusURL, map[string]int{surge.EventPurchaseAttempts: 1, surge.EventOrdersCreated: 1, surge.EventOrdersPaid: 1,
		surge.EventOrderExpired: 2, surge.EventRefundDue: 1, surge.EventStockChanged: 2, surge.EventPaymentsRecorded: 1,
		surge.EventPaymentUnmatched: 1, surge.EventStockSettled: 1})
}

// checkEvents reads the events stream and checks that at least the given number of each kind
// arrived, each with its own id.
func checkEvents(t *testing.T, busURL string, want map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := openBus(t, busURL)
	defer b.Close()
	cons, err := b.JS.OrderedConsumer(ctx, nats.EventsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	got, ids := map[string]int{}, map[string]bool{}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var e surge.Event
			if err := json.Unmarshal(msg.Data(), &e); err != nil || e.ID == "" || ids[e.ID] {
				t.Fatalf("event %q: %v (id seen before: %v)", msg.Data(), err, ids[e.ID])
			}
			ids[e.ID] = true
			got[e.Kind]++
		}
		if n == 0 {
			break
		}
	}
	for kind, n := range want {
		if got[kind] < n {
			t.Errorf("events of kind %s: %d; want at least %d (all: %v)", kind, got[kind], n, got)
		}
	}
}

func waitState(t *testing.T, c *client.Client, id int64, want surge.OrderState) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		o, err := c.Order(context.Background(), id)
		if err == nil && o.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %d = %+v, %v; want %s", id, o, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPurchaseRefusals(t *testing.T) {
	c := saleConfig(t)
	_, cl := start(t, c)
	tm := newTeam(t, cl)
	ctx := context.Background()
	item := openSale(t, tm, 50, 2, 900)
	other := openSale(t, tm, 5, 1, 900)
	alice, bob := shopper(t, cl, 7001), shopper(t, cl, 7002)
	aliceTok := ok[*purchase.Detail](t, "Item")(alice.Item(ctx, item)).Token
	otherTok := ok[*purchase.Detail](t, "Item")(alice.Item(ctx, other)).Token
	req := func(qty int64, id, token string) purchase.Request {
		return purchase.Request{ItemID: item, Quantity: qty, RequestID: id, Token: token}
	}
	for _, tc := range []struct {
		name string
		as   *client.Client
		r    purchase.Request
		code string
	}{
		{"no token", alice, req(1, "a1", ""), surge.EFORBIDDEN},
		{"forged token", alice, req(1, "a2", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), surge.EFORBIDDEN},
		{"another shopper's token", bob, req(1, "b1", aliceTok), surge.EFORBIDDEN},
		{"another item's token", alice, req(1, "a3", otherTok), surge.EFORBIDDEN},
		{"quantity above the limit", alice, req(3, "a4", aliceTok), surge.ELIMIT},
		{"zero quantity", alice, req(0, "a5", aliceTok), surge.EINVALID},
		{"request id with odd characters", alice, req(1, "a/6", aliceTok), surge.EINVALID},
		{"unknown item", alice, purchase.Request{ItemID: 999, Quantity: 1, RequestID: "a7", Token: aliceTok}, surge.ENOTFOUND},
	} {
		if _, err := tc.as.Purchase(ctx, tc.r); surge.ErrorCode(err) != tc.code {
			t.Errorf("Purchase(%s) = %v; want %s", tc.name, err, tc.code)
		}
	}
	if status, code := raw(t, cl.BaseURL(), "POST", "/v1/purchases", "", `{"item_id":"1"}`); status != 401 || code != surge.EUNAUTHORIZED {
		t.Errorf("Purchase without signing in = %d %s; want 401", status, code)
	}

	// Blocked by risk control, then let back in.
	ok[*surge.Block](t, "Block")(tm.op.Block(ctx, riskBlock(7002)))
	bobTok := ok[*purchase.Detail](t, "Item")(bob.Item(ctx, item)).Token
	if _, err := bob.Purchase(ctx, req(1, "b2", bobTok)); surge.ErrorCode(err) != surge.EFORBIDDEN {
		t.Fatalf("Purchase(blocked) = %v; want EFORBIDDEN", err)
	}
	if _, err := tm.m1.Block(ctx, riskBlock(7001)); surge.ErrorCode(err) != surge.EFORBIDDEN {
		t.Fatalf("Block by a merchant = %v; want EFORBIDDEN", err)
	}
	if err := tm.op.Unblock(ctx, 7002); err != nil {
		t.Fatal(err)
	}
	if res, err := bob.Purchase(ctx, req(1, "b3", bobTok)); err != nil || res.Status == "" {
		t.Fatalf("Purchase(unblocked) = %+v, %v", res, err)
	}

	// A shopper hammering the button is slowed down (2/s, burst 5).
	limited := 0
	carol := shopper(t, cl, 7003)
	carolTok := ok[*purchase.Detail](t, "Item")(carol.Item(ctx, item)).Token
	for i := range 12 {
		_, err := carol.Purchase(ctx, req(1, fmt.Sprint("c", i), carolTok))
		if surge.ErrorCode(err) == surge.ERATELIMIT {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("12 attempts in a burst were never rate limited")
	}
}

func TestPurchaseBeforeTheSaleOpens(t *testing.T) {
	_, cl := start(t, saleConfig(t))
	tm := newTeam(t, cl)
	ctx := context.Background()
	code := fmt.Sprint("EARLY-", time.Now().UnixNano())
	spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: code, Title: "Early", CategoryL1: "Digital"}))
	sku := ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: code, Title: "Early",
		Price: surge.Money{Amount: 100, Currency: "CNY"}, CostPrice: surge.Money{Amount: 50, Currency: "CNY"}, Stock: 5}))
	start := time.Now().Add(time.Hour)
	se := ok[*surge.Session](t, "CreateSession")(tm.op.CreateSession(ctx, sale.SessionInput{Name: "later", StartAt: start, EndAt: start.Add(time.Hour)}))
	it := ok[*surge.SessionItem](t, "AddItem")(tm.op.AddItem(ctx, se.ID, sale.ItemInput{SKUID: sku.ID, Allotted: 5,
		SalePrice: surge.Money{Amount: 1, Currency: "CNY"}, PerUserLimit: 1}))
	s := shopper(t, cl, 8001)
	if _, err := s.Item(ctx, it.ID); surge.ErrorCode(err) != surge.ENOTFOUND {
		t.Fatalf("Item(unpublished) = %v; want ENOTFOUND", err)
	}
	// Before the publish, the stock engine has not heard of the item: all of it is available.
	all := sale.ItemStock{ItemID: it.ID, Stock: surge.StockLevels{Allotted: 5, Available: 5}}
	if st, err := tm.op.SessionStock(ctx, se.ID); err != nil || len(st.Items) != 1 || st.Items[0] != all {
		t.Fatalf("SessionStock(unpublished) = %+v, %v; want %+v", st, err, all)
	}
	ok[*surge.Session](t, "Publish")(tm.op.Publish(ctx, se.ID))
	if st, err := tm.op.SessionStock(ctx, se.ID); err != nil || len(st.Items) != 1 || st.Items[0] != all {
		t.Fatalf("SessionStock(published) = %+v, %v; want %+v", st, err, all)
	}
	if _, err := tm.op.SessionStock(ctx, se.ID+1_000_000); surge.ErrorCode(err) != surge.ENOTFOUND {
		t.Fatalf("SessionStock(no such session) = %v; want ENOTFOUND", err)
	}
	// A node that saw the item unpublished believes it for up to a second.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := s.Item(ctx, it.ID); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if _, err := tm.op.AddItem(ctx, se.ID, sale.ItemInput{SKUID: sku.ID, Allotted: 1, SalePrice: surge.Money{Amount: 1, Currency: "CNY"}, PerUserLimit: 1}); surge.ErrorCode(err) != surge.ECONFLICT {
		t.Fatalf("AddItem(published) = %v; want ECONFLICT", err)
	}
	tok := ok[*purchase.Detail](t, "Item")(s.Item(ctx, it.ID)).Token
	if _, err := s.Purchase(ctx, purchase.Request{ItemID: it.ID, Quantity: 1, RequestID: "early", Token: tok}); surge.ErrorCode(err) != surge.ECONFLICT {
		t.Fatalf("Purchase(before the start) = %v; want ECONFLICT", err)
	}
}

func riskBlock(user int64) risk.BlockInput {
	return risk.BlockInput{UserID: user, Reason: "bot pattern", TTLSec: 3600}
}

func TestPurchaseResultStream(t *testing.T) {
	_, cl := start(t, saleConfig(t))
	tm := newTeam(t, cl)
	ctx := context.Background()
	item := openSale(t, tm, 5, 1, 900)
	s := shopper(t, cl, 6001)
	res := ok[*purchase.Result](t, "buy")(buy(ctx, s, item, "sse-1"))
	stream := func(who *client.Client, ticket string) (int, string) {
		req, _ := http.NewRequest("GET", cl.BaseURL()+"/v1/purchases/"+ticket+"/events", nil)
		resp, err := http.DefaultClient.Do(authorized(req, who))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := stream(s, res.Ticket)
	if status != 200 || !strings.HasPrefix(body, "event: result\ndata: ") || !strings.Contains(body, fmt.Sprint(res.OrderID)) {
		t.Fatalf("result stream = %d %q; want the order in one event", status, body)
	}
	if status, _ := stream(shopper(t, cl, 6002), res.Ticket); status != 404 {
		t.Fatalf("another shopper's stream = %d; want 404", status)
	}
	if p := ok[*purchase.Result](t, "PollPurchase")(s.PollPurchase(ctx, res.Ticket)); p.OrderID != res.OrderID {
		t.Fatalf("PollPurchase = %+v; want order %d", p, res.OrderID)
	}
}

// Stock that comes back after a sell-out goes through the whole gate: the sold-out shortcut only
// reads, so a blocked shopper without a token never gets it.
func TestReturnedStockPassesTheGate(t *testing.T) {
	_, cl := start(t, saleConfig(t))
	tm := newTeam(t, cl)
	ctx := context.Background()
	item := openSale(t, tm, 1, 1, 900)
	first, blocked, later := shopper(t, cl, 4001), shopper(t, cl, 4002), shopper(t, cl, 4003)
	res := ok[*purchase.Result](t, "buy")(buy(ctx, first, item, "f1"))
	if _, err := buy(ctx, later, item, "l0"); surge.ErrorCode(err) != surge.ESOLDOUT {
		t.Fatalf("buy after the sell-out = %v; want ESOLDOUT", err)
	}
	ok[*surge.Block](t, "Block")(tm.op.Block(ctx, riskBlock(4002)))
	waitState(t, first, res.OrderID, surge.OrderPendingPayment)
	ok[*surge.Order](t, "CancelOrder")(first.CancelOrder(ctx, res.OrderID))
	time.Sleep(150 * time.Millisecond) // past the lane's refresh interval: the node sees the unit back
	for i := range 200 {               // hammer while the unit is back
		r, err := blocked.Purchase(ctx, purchase.Request{ItemID: item, Quantity: 1, RequestID: fmt.Sprint("x", i)})
		if err == nil {
			t.Fatalf("a blocked shopper without a token bought: %+v", r)
		}
	}
	got := ok[*purchase.Result](t, "buy(later)")(buy(ctx, later, item, "l1"))
	if got.Status != purchase.StatusSuccess {
		t.Fatalf("the returned unit went to %+v; want the shopper who passed the gate", got)
	}
	// A retry of the first (cancelled) purchase after the sell-out still gets its first answer.
	if again := ok[*purchase.Result](t, "retry")(buy(ctx, first, item, "f1")); again.OrderID != res.OrderID {
		t.Fatalf("retry of a reserved request = %+v; want order %d", again, res.OrderID)
	}
}

// The stock left that one shopper sees never goes up, even when a cancelled order puts a unit
// back; another shopper sees the unit.
func TestRemainingIsMonotoneForOneShopper(t *testing.T) {
	_, cl := start(t, saleConfig(t))
	tm := newTeam(t, cl)
	ctx := context.Background()
	item := openSale(t, tm, 3, 1, 900)
	watcher, buyer, fresh := shopper(t, cl, 4101), shopper(t, cl, 4102), shopper(t, cl, 4103)
	if d := ok[*purchase.Detail](t, "Item")(watcher.Item(ctx, item)); d.Remaining != 3 {
		t.Fatalf("remaining = %d; want 3", d.Remaining)
	}
	res := ok[*purchase.Result](t, "buy")(buy(ctx, buyer, item, "m1"))
	time.Sleep(150 * time.Millisecond) // past the lane's refresh interval
	if d := ok[*purchase.Detail](t, "Item")(watcher.Item(ctx, item)); d.Remaining != 2 {
		t.Fatalf("remaining after a sale = %d; want 2", d.Remaining)
	}
	waitState(t, buyer, res.OrderID, surge.OrderPendingPayment)
	ok[*surge.Order](t, "CancelOrder")(buyer.CancelOrder(ctx, res.OrderID))
	time.Sleep(150 * time.Millisecond)
	if d := ok[*purchase.Detail](t, "Item")(watcher.Item(ctx, item)); d.Remaining != 2 {
		t.Fatalf("remaining for the watcher after a release = %d; want still 2 (never up)", d.Remaining)
	}
	if d := ok[*purchase.Detail](t, "Item")(fresh.Item(ctx, item)); d.Remaining != 3 {
		t.Fatalf("remaining for a new shopper = %d; want 3", d.Remaining)
	}
}
