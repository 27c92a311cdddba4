package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/faultproxy"
	"github.com/surgecommerce/surge/purchase"
)

// TestBackendsBrieflyDown runs the scale-out shape through proxies that take PostgreSQL and
// then NATS away for a while. Purchases acknowledged while PostgreSQL is down become orders
// once it returns; while NATS is down purchases are refused (never acknowledged), and the
// shoppers' retries succeed once it returns.
func TestBackendsBrieflyDown(t *testing.T) {
	pg, rd, nt := os.Getenv("SURGE_TEST_POSTGRES_URL"), os.Getenv("SURGE_TEST_REDIS_URL"), os.Getenv("SURGE_TEST_NATS_URL")
	if pg == "" || rd == "" || nt == "" {
		t.Skip("the scale-out backends are not configured")
	}
	pgURL, _ := url.Parse(freshSchema(t, pg))
	pgProxy := proxyTo(t, pgURL.Host)
	pgURL.Host = pgProxy.Addr()
	natsURL, _ := url.Parse(nt)
	natsProxy := proxyTo(t, natsURL.Host)
	natsURL.Host = natsProxy.Addr()

	c := saleConfig(t)
	c.PostgresURL, c.RedisURL, c.NATSURL = pgURL.String(), rd, natsURL.String()
	c.RedisPrefix = fmt.Sprintf("surge_outage_%d", time.Now().UnixNano())
	_, cl := start(t, c)
	tm := newTeam(t, cl)
	item := openSale(t, tm, 100, 1, 900)
	ctx := context.Background()
	shopper(t, cl, 1).Item(ctx, item) // the node caches the published item

	acked := map[int64]int64{}
	pgProxy.Down(true)
	for u := int64(9001); u <= 9010; u++ {
		res, err := buy(ctx, shopper(t, cl, u), item, fmt.Sprint("pgdown-", u))
		if err != nil {
			t.Fatalf("purchase while PostgreSQL is down = %v; want it acknowledged (stock and bus are up)", err)
		}
		acked[u] = res.OrderID
	}
	time.Sleep(time.Second) // the order writer keeps failing and retrying meanwhile
	pgProxy.Down(false)
	checkSale(t, cl, item, 100, acked)

	natsProxy.Down(true)
	refused := 0
	for u := int64(9101); u <= 9105; u++ {
		if _, err := buy(ctx, shopper(t, cl, u), item, fmt.Sprint("natsdown-", u)); err != nil {
			if surge.ErrorCode(err) != surge.EUNAVAILABLE {
				t.Fatalf("purchase while NATS is down = %v; want EUNAVAILABLE", err)
			}
			refused++
		}
	}
	if refused != 5 {
		t.Fatalf("%d of 5 purchases refused while NATS was down; want all (none may be acknowledged)", refused)
	}
	natsProxy.Down(false)
	for u := int64(9101); u <= 9105; u++ { // the same shoppers tap again
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var res *purchase.Result
			res, err = buy(ctx, shopper(t, cl, u), item, fmt.Sprint("natsdown-", u))
			if err == nil {
				acked[u] = res.OrderID
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("retry of shopper %d after NATS returned = %v", u, err)
			}
		}
	}
	checkSale(t, cl, item, 100, acked)
}

func proxyTo(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestTicketsAnswerOnAnyNode runs two nodes on the same backends, answers every purchase on
// one of them "queued" at once, and polls and streams the tickets on the other.
func TestTicketsAnswerOnAnyNode(t *testing.T) {
	pg, rd, nt := os.Getenv("SURGE_TEST_POSTGRES_URL"), os.Getenv("SURGE_TEST_REDIS_URL"), os.Getenv("SURGE_TEST_NATS_URL")
	if pg == "" || rd == "" || nt == "" {
		t.Skip("the scale-out backends are not configured")
	}
	c := saleConfig(t)
	c.PostgresURL, c.RedisURL, c.NATSURL = freshSchema(t, pg), rd, nt
	c.RedisPrefix = fmt.Sprintf("surge_twonodes_%d", time.Now().UnixNano())
	c.AnswerWait = time.Nanosecond // node A answers every purchase "queued"
	_, a := start(t, c)
	c.WorkerID, c.AnswerWait = 1, 200*time.Millisecond
	c.AdminPassword = "" // the admin exists already
	_, b := start(t, c)
	tm := newTeam(t, a)
	item := openSale(t, tm, 3, 1, 900)
	ctx := context.Background()
	for u := int64(1); u <= 4; u++ {
		onA, onB := shopper(t, a, 7100+u), shopper(t, b, 7100+u)
		tok := ok[*purchase.Detail](t, "Item")(onA.Item(ctx, item)).Token
		res, err := onA.Purchase(ctx, purchase.Request{ItemID: item, Quantity: 1, RequestID: fmt.Sprint("two-", u), Token: tok})
		if u == 4 && surge.ErrorCode(err) == surge.ESOLDOUT {
			continue // node A already knew: nothing was queued
		}
		// Node A answers at once, "queued" with a ticket, unless the decision was in before its
		// handler looked (a busy machine can hold the handler that long): an answer beats a
		// ticket. Either way the ticket is shared, and node B must give its order.
		if err != nil || (res.Status != purchase.StatusQueued && res.Status != purchase.StatusSuccess) || res.Ticket == "" {
			t.Fatalf("purchase on node A = %+v, %v; want queued (or, decided already, success) with a ticket", res, err)
		}
		var got *purchase.Result
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got, err = onB.PollPurchase(ctx, res.Ticket)
			if (err == nil && got.Status != purchase.StatusQueued) || surge.ErrorCode(err) == surge.ESOLDOUT || time.Now().After(deadline) {
				break
			}
		}
		switch {
		case u <= 3 && (err != nil || got.Status != purchase.StatusSuccess || got.OrderID == 0):
			t.Fatalf("poll on node B for shopper %d = %+v, %v; want the order", u, got, err)
		case u == 4 && surge.ErrorCode(err) != surge.ESOLDOUT:
			t.Fatalf("poll on node B for the fourth shopper = %+v, %v; want ESOLDOUT (3 units)", got, err)
		}
	}
}
