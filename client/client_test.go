package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/surgecommerce/surge/purchase"
)

// A server may close a kept-alive connection just as a request goes out on it. A purchase is
// idempotent by its request id and says so, so the transport sends it again on a new
// connection, and the shopper gets the answer instead of "server closed idle connection".
func TestPurchaseIsResentWhenTheServerClosesAKeptAliveConnection(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	closed := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" { // opens the connection the purchase will reuse
			w.Write([]byte(`{"ready":true,"backends":{}}`))
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		first := !closed
		closed = true
		key := r.Header.Get(IdempotencyKeyHeader)
		mu.Unlock()
		if key != "buy-1" {
			t.Errorf("%s = %q; want the request id", IdempotencyKeyHeader, key)
		}
		if first { // close the kept-alive connection without an answer
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"status":"success","order_id":"7","ticket":"1.buy-1"}`))
	}))
	defer srv.Close()
	c := New(srv.URL).As("token")
	ctx := context.Background()
	if _, err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := c.Purchase(ctx, purchase.Request{ItemID: 1, Quantity: 1, RequestID: "buy-1", Token: "t"})
	if err != nil {
		t.Fatalf("Purchase = %v; want the answer of the attempt sent again", err)
	}
	if res.OrderID != 7 || len(bodies) != 2 || bodies[0] != bodies[1] {
		t.Fatalf("Purchase = %+v after %d sends %q; want order 7 after the same attempt twice", res, len(bodies), bodies)
	}
}
