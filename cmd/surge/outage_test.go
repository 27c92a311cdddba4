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
