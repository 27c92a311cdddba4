package paysim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/paysim"
)

var key = []byte("a key the merchant and the provider share")

// merchant records the notifications it is sent; it answers 503 with a hint to the first
// busy of them.
type merchant struct {
	mu     sync.Mutex
	got    []payment.Notification
	busy   atomic.Int64
	gotAt  []time.Time
	hintMs int
}

func (m *merchant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n, err := payment.Decode(key, body, r.Header.Get(payment.SignatureHeader), time.Now())
	if err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if m.busy.Add(-1) >= 0 {
		w.Header().Set(surge.RetryAfterMsHeader, strconv.Itoa(m.hintMs))
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	m.mu.Lock()
	m.got, m.gotAt = append(m.got, n), append(m.gotAt, time.Now())
	m.mu.Unlock()
}

func (m *merchant) wait(t *testing.T, n int) []payment.Notification {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		m.mu.Lock()
		got := append([]payment.Notification(nil), m.got...)
		m.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("the merchant got fewer than %d notifications", n)
	return nil
}

func ticket(t *testing.T, notify string, order int64) string {
	t.Helper()
	tk, err := payment.SignTicket(key, payment.Ticket{TxnID: "T" + strconv.FormatInt(order, 10), OrderID: order,
		Amount: surge.Money{Amount: 100, Currency: "CNY"}, ExpiresAt: time.Now().Add(time.Minute), NotifyURL: notify})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func pay(t *testing.T, url string, r paysim.PayRequest) *http.Response {
	t.Helper()
	b, _ := json.Marshal(r)
	resp, err := http.Post(url+"/paysim/v1/pay", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// A payment is charged once and notified in order ("processing", then "paid", then the
// duplicates asked for), or out of order when asked; a second charge of one ticket is refused,
// unless it is the same request sent again (its Idempotency-Key), which gets the first answer.
func TestPaymentsAreNotified(t *testing.T) {
	m := &merchant{}
	shop := httptest.NewServer(m)
	defer shop.Close()
	p := paysim.New(key, 0, slog.New(slog.DiscardHandler))
	defer p.Close()
	prov := httptest.NewServer(p.Handler())
	defer prov.Close()
	if r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 1), Duplicates: 2}); r.StatusCode != 200 {
		t.Fatalf("pay = %d; want 200", r.StatusCode)
	}
	if r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 1)}); r.StatusCode != http.StatusConflict {
		t.Fatalf("paying the same transaction again = %d; want 409", r.StatusCode)
	}
	got := m.wait(t, 4)
	want := []string{payment.StatusProcessing, payment.StatusPaid, payment.StatusPaid, payment.StatusPaid}
	for i, n := range got {
		if n.Status != want[i] || n.OrderID != 1 {
			t.Fatalf("notification %d = %+v; want %s of order 1", i, n, want[i])
		}
	}
	pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 2), OutOfOrder: true})
	if got = m.wait(t, 6); got[4].Status != payment.StatusPaid || got[5].Status != payment.StatusProcessing {
		t.Fatalf("out of order = %s then %s; want paid then processing", got[4].Status, got[5].Status)
	}
	// A request sent again with its Idempotency-Key gets the first answer, and charges nothing more.
	payKeyed := func(order int64, key string) int {
		b, _ := json.Marshal(paysim.PayRequest{Ticket: ticket(t, shop.URL, order)})
		req, _ := http.NewRequest("POST", prov.URL+"/paysim/v1/pay", bytes.NewReader(b))
		req.Header.Set(paysim.IdempotencyKeyHeader, key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b, c := payKeyed(3, "k3"), payKeyed(3, "k3"), payKeyed(3, "other"); a != 200 || b != 200 || c != http.StatusConflict {
		t.Fatalf("keyed payments = %d, %d, %d; want 200, the same request again 200, another key 409", a, b, c)
	}
	if code := payKeyed(4, strings.Repeat("k", 256)); code != http.StatusBadRequest {
		t.Fatalf("a 256-byte key = %d; want 400", code)
	}
	for deadline := time.Now().Add(5 * time.Second); p.InFlight() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d payments still in flight after all were notified", p.InFlight())
		}
	}
	if got = m.wait(t, 8); len(got) != 8 || got[6].OrderID != 3 || got[7].OrderID != 3 {
		t.Fatalf("notifications = %+v; want order 3 charged and notified once", got)
	}
}

// Past its capacity the provider refuses a payment with a hint of when to come back, and
// takes payments again once its notifications are delivered; a merchant that answers 503
// with a hint is sent the notification again after that hint.
func TestCapacityAndHints(t *testing.T) {
	m := &merchant{hintMs: 150}
	m.busy.Store(1)
	gate := make(chan struct{})
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate // the merchant is slow: payments stay in flight
		m.ServeHTTP(w, r)
	}))
	defer shop.Close()
	p := paysim.New(key, 2, slog.New(slog.DiscardHandler))
	defer p.Close()
	prov := httptest.NewServer(p.Handler())
	defer prov.Close()
	for i := range int64(2) {
		if r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 10+i)}); r.StatusCode != 200 {
			t.Fatalf("pay %d = %d; want 200 within capacity", i, r.StatusCode)
		}
	}
	r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 12)})
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get(surge.RetryAfterMsHeader) != strconv.Itoa(paysim.BusyRetryMs) ||
		r.Header.Get("Retry-After") != "1" {
		t.Fatalf("pay past capacity = %d, Retry-After-Ms %q, Retry-After %q; want 503 with %d ms and 1 s", r.StatusCode,
			r.Header.Get(surge.RetryAfterMsHeader), r.Header.Get("Retry-After"), paysim.BusyRetryMs)
	}
	start := time.Now()
	close(gate)
	m.wait(t, 4)
	for deadline := time.Now().Add(5 * time.Second); p.InFlight() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d payments still in flight after all were notified", p.InFlight())
		}
	}
	if r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 12)}); r.StatusCode != 200 {
		t.Fatalf("pay once the backlog cleared = %d; want 200", r.StatusCode)
	}
	m.mu.Lock()
	last := m.gotAt[len(m.gotAt)-1]
	m.mu.Unlock()
	if last.Sub(start) < 150*time.Millisecond {
		t.Fatalf("the refused notification came again after %s; want after the merchant's 150 ms hint", last.Sub(start))
	}
}
