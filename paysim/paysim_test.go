package paysim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
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

// post sends body to url, signed with k at now when k is set, and returns the status and the
// answer's body.
func post(t *testing.T, method, url string, body []byte, header string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if header != "" {
		req.Header.Set(payment.SignatureHeader, header)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func refund(t *testing.T, prov string, k []byte, rf payment.Refund, now time.Time) (int, string) {
	t.Helper()
	body, _ := json.Marshal(rf)
	status, out := post(t, "POST", prov+"/paysim/v1/refunds", body, payment.Sign(k, body, now))
	var e paysim.ErrorBody
	json.Unmarshal(out, &e)
	if status == http.StatusAccepted {
		var r paysim.RefundResponse
		if err := json.Unmarshal(out, &r); err != nil || r.RefundID != rf.RefundID || r.Status != payment.StatusProcessing {
			t.Fatalf("refund %s answered %s; want its id and processing", rf.RefundID, out)
		}
	}
	return status, e.Error.Code
}

// ledgerOf fetches a closed day's ledger from the provider's endpoint and reads it.
func ledgerOf(t *testing.T, prov, day string, now time.Time) []payment.LedgerEntry {
	t.Helper()
	path := "/paysim/v1/ledger/" + day
	status, body := post(t, "GET", prov+path, nil, payment.LedgerRequestSignature(key, "GET", path, now))
	if status != 200 {
		t.Fatalf("GET %s = %d %s; want 200", path, status, body)
	}
	var got []payment.LedgerEntry
	if _, err := payment.ReadLedger(bytes.NewReader(body), day, func(e payment.LedgerEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatalf("ReadLedger(%s) = %v", day, err)
	}
	return got
}

func closeDay(t *testing.T, prov, day string, now time.Time) paysim.DayTotals {
	t.Helper()
	path := "/paysim/v1/ledger/" + day + "/close"
	status, body := post(t, "POST", prov+path, nil, payment.LedgerRequestSignature(key, "POST", path, now))
	var tot paysim.DayTotals
	if err := json.Unmarshal(body, &tot); status != 200 || err != nil {
		t.Fatalf("POST %s = %d %s; want 200", path, status, body)
	}
	return tot
}

func waitIdle(t *testing.T, p *paysim.Provider) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); p.InFlight() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d payments still in flight", p.InFlight())
		}
	}
}

// A refund is paid back once per refund id, never past what the transaction took, reported
// with a signed "refunded" notification, and booked in the ledger after the charge.
func TestRefunds(t *testing.T) {
	m, shop, p, prov := withLedger(t)
	if r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 1)}); r.StatusCode != 200 {
		t.Fatalf("pay = %d; want 200", r.StatusCode)
	}
	m.wait(t, 2)
	now := time.Now()
	rf := func(id string, amount int64) payment.Refund {
		return payment.Refund{RefundID: id, TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: amount, Currency: "CNY"}, NotifyURL: shop.URL}
	}
	if status, code := refund(t, prov.URL, key, rf("R1", 40), now); status != http.StatusAccepted {
		t.Fatalf("refund R1 = %d %s; want 202", status, code)
	}
	got := m.wait(t, 3)
	want := payment.Notification{NotifyID: "R1-refunded", TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: 40, Currency: "CNY"},
		Status: payment.StatusRefunded, RefundID: "R1"}
	if n := got[2]; n.PaidAt.IsZero() || n.PaidAt.After(time.Now()) {
		t.Fatalf("refunded notification paid_at = %v; want the time of the refund", n.PaidAt)
	} else if n.PaidAt = (time.Time{}); n != want {
		t.Fatalf("refunded notification = %+v; want %+v", n, want)
	}
	other := rf("R9", 1)
	other.TxnID, other.OrderID = "T999", 999
	wrongOrder := rf("R8", 1)
	wrongOrder.OrderID = 2
	for _, c := range []struct {
		name   string
		rf     payment.Refund
		k      []byte
		status int
		code   string
	}{
		{"the same refund again", rf("R1", 40), key, http.StatusAccepted, ""},
		{"its id for another amount", rf("R1", 30), key, http.StatusConflict, surge.ECONFLICT},
		{"more than is left", rf("R2", 61), key, http.StatusUnprocessableEntity, surge.EINVALID},
		{"another order", wrongOrder, key, http.StatusUnprocessableEntity, surge.EINVALID},
		{"an unknown transaction", other, key, http.StatusNotFound, surge.ENOTFOUND},
		{"a bad signature", rf("R3", 1), []byte("not the key the provider shares"), http.StatusUnauthorized, surge.EUNAUTHORIZED},
		{"all that is left", rf("R2", 60), key, http.StatusAccepted, ""},
		{"past the whole charge", rf("R4", 1), key, http.StatusUnprocessableEntity, surge.EINVALID},
	} {
		if status, code := refund(t, prov.URL, c.k, c.rf, now); status != c.status || code != c.code {
			t.Errorf("refund (%s) = %d %s; want %d %s", c.name, status, code, c.status, c.code)
		}
	}
	garbage := []byte(`{"refund_id":"R5"}`)
	if status, _ := post(t, "POST", prov.URL+"/paysim/v1/refunds", garbage, payment.Sign(key, garbage, now)); status != http.StatusBadRequest {
		t.Errorf("a signed refund without its fields = %d; want 400", status)
	}
	bad := "/paysim/v1/ledger/yesterday"
	if status, _ := post(t, "GET", prov.URL+bad, nil, payment.LedgerRequestSignature(key, "GET", bad, now)); status != http.StatusBadRequest {
		t.Errorf("GET %s = %d; want 400", bad, status)
	}
	m.wait(t, 4)
	waitIdle(t, p)
	if got = m.wait(t, 4); len(got) != 4 || got[3].RefundID != "R2" || got[3].Amount.Amount != 60 {
		t.Fatalf("notifications = %+v; want R1's once, then R2's of 60", got)
	}
	day := payment.LedgerDay(time.Now())
	if status, _ := post(t, "GET", prov.URL+"/paysim/v1/ledger/"+day, nil, ""); status != http.StatusUnauthorized {
		t.Fatalf("an unsigned GET of the ledger = %d; want 401", status)
	}
	path := "/paysim/v1/ledger/" + day
	if status, _ := post(t, "GET", prov.URL+path, nil, payment.LedgerRequestSignature(key, "GET", path, now)); status != http.StatusNotFound {
		t.Fatalf("GET of the open day's ledger = %d; want 404 until it is closed", status)
	}
	tot := closeDay(t, prov.URL, day, now)
	if tot.Lines != 3 || tot.PaymentsMinor != 100 || tot.Refunds != 2 || tot.RefundsMinor != 100 || tot.Day != day {
		t.Fatalf("closing %s = %+v; want a payment of 100 and two refunds of 100 in all", day, tot)
	}
	lines := ledgerOf(t, prov.URL, day, now)
	if len(lines) != 3 || lines[0].Type != payment.LedgerTypePayment || lines[1].RefundID != "R1" || lines[1].Amount.Amount != 40 ||
		lines[2].RefundID != "R2" || lines[0].ProviderID == lines[1].ProviderID || lines[1].ProviderID == lines[2].ProviderID {
		t.Fatalf("ledger = %+v; want the charge, then R1 and R2, each its own provider id", lines)
	}
	if again := closeDay(t, prov.URL, day, now); again != tot {
		t.Fatalf("closing %s again = %+v; want %+v from its file", day, again, tot)
	}
}

// Each fault gets the payment wrong in its own way, in the notifications and in the ledger.
func TestFaults(t *testing.T) {
	m, shop, p, prov := withLedger(t)
	if r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, 10), Fault: "lost_wallet"}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("an unknown fault = %d; want 400", r.StatusCode)
	}
	for order, fault := range map[int64]string{11: paysim.FaultMissingCallback, 12: paysim.FaultWrongAmount, 13: paysim.FaultDuplicateCharge} {
		if r := pay(t, prov.URL, paysim.PayRequest{Ticket: ticket(t, shop.URL, order), Fault: fault}); r.StatusCode != 200 {
			t.Fatalf("pay with %s = %d; want 200", fault, r.StatusCode)
		}
	}
	got := m.wait(t, 5) // wrong_amount's two, duplicate_charge's three
	waitIdle(t, p)
	notified := map[int64][]string{}
	for _, n := range m.wait(t, 5) {
		notified[n.OrderID] = append(notified[n.OrderID], fmt.Sprintf("%s/%s/%d", n.NotifyID, n.Status, n.Amount.Amount))
	}
	wantNotified := map[int64][]string{
		12: {"T12-1/processing/101", "T12-2/paid/101"},
		13: {"T13-1/processing/100", "T13-2/paid/100", "T13-3/paid/100"},
	}
	if len(got) != 5 || !reflect.DeepEqual(notified, wantNotified) {
		t.Fatalf("notifications = %v; want %v (none of order 11)", notified, wantNotified)
	}
	now := time.Now()
	day := payment.LedgerDay(now)
	closeDay(t, prov.URL, day, now)
	booked := map[int64][]int64{}
	ids := map[string]bool{}
	for _, e := range ledgerOf(t, prov.URL, day, now) {
		booked[e.OrderID] = append(booked[e.OrderID], e.Amount.Amount)
		ids[e.ProviderID] = true
	}
	if want := map[int64][]int64{11: {100}, 12: {101}, 13: {100, 100}}; !reflect.DeepEqual(booked, want) || len(ids) != 4 {
		t.Fatalf("ledger amounts by order = %v with %d provider ids; want %v with 4", booked, len(ids), want)
	}
	// Both charges of the duplicate can be paid back, and no more.
	rf := payment.Refund{RefundID: "R13", TxnID: "T13", OrderID: 13, Amount: surge.Money{Amount: 200, Currency: "CNY"}, NotifyURL: shop.URL}
	if status, code := refund(t, prov.URL, key, rf, now); status != http.StatusAccepted {
		t.Fatalf("refund of both charges = %d %s; want 202", status, code)
	}
}

// clock is a test's settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func readDay(t *testing.T, dir, day string) []payment.LedgerEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, day+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []payment.LedgerEntry
	if _, err := payment.ReadLedger(f, day, func(e payment.LedgerEntry) error { got = append(got, e); return nil }); err != nil {
		t.Fatalf("ReadLedger(%s) = %v", day, err)
	}
	return got
}

// A day's file is written as .part, flushed within moments, and closed at the first movement of
// a later day, by CloseDay (after which that day's movements go to the next day's file), on
// Close, and at the next start when the provider stopped without closing it.
func TestLedgerDays(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Date(2026, 12, 7, 23, 59, 59, 0, time.UTC)}
	p, err := paysim.Open(key, paysim.Options{LedgerDir: dir, Now: c.now}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Close() }()
	prov := httptest.NewServer(p.Handler())
	defer prov.Close()
	payAt := func(order int64) {
		t.Helper()
		tk, _ := payment.SignTicket(key, payment.Ticket{TxnID: "T" + strconv.FormatInt(order, 10), OrderID: order,
			Amount: surge.Money{Amount: 100, Currency: "CNY"}, ExpiresAt: c.now().Add(time.Minute), NotifyURL: "http://127.0.0.1:1/"})
		if r := pay(t, prov.URL, paysim.PayRequest{Ticket: tk, Fault: paysim.FaultMissingCallback}); r.StatusCode != 200 {
			t.Fatalf("pay %d = %d; want 200", order, r.StatusCode)
		}
	}
	payAt(1)
	part := filepath.Join(dir, "2026-12-07.csv.part")
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(part); bytes.Count(b, []byte("\n")) == 3 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the open day's file holds %q; want its charge written within %d ms", b, paysim.LedgerFlushMs)
		}
	}
	c.set(time.Date(2026, 12, 8, 0, 0, 1, 0, time.UTC))
	payAt(2)
	if got := readDay(t, dir, "2026-12-07"); len(got) != 1 || got[0].OrderID != 1 {
		t.Fatalf("2026-12-07 = %+v; want order 1's charge", got)
	}
	if _, err := p.CloseDay("2026-12-09"); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("CloseDay(tomorrow) = %v; want EINVALID", err)
	}
	if tot, err := p.CloseDay("2026-12-08"); err != nil || tot.Lines != 1 {
		t.Fatalf("CloseDay(today) = %+v, %v; want its one line", tot, err)
	}
	payAt(3) // today is closed: to tomorrow's file
	p.Close()
	if got := readDay(t, dir, "2026-12-09"); len(got) != 1 || got[0].OrderID != 3 || payment.LedgerDay(got[0].At) != "2026-12-08" {
		t.Fatalf("2026-12-09 = %+v; want order 3's charge of 2026-12-08", got)
	}
	// A day left open by a provider that stopped mid-write is closed with its whole lines.
	open := "#surge-payment-ledger,v1,2026-12-10\n" + payment.LedgerColumns + "\n" +
		"x-1,payment,T4,4,,100,CNY,2026-12-10T01:00:00Z\nx-2,payment,T5,5,,1"
	if err := os.WriteFile(filepath.Join(dir, "2026-12-10.csv.part"), []byte(open), 0o600); err != nil {
		t.Fatal(err)
	}
	c.set(time.Date(2026, 12, 10, 2, 0, 0, 0, time.UTC))
	if p, err = paysim.Open(key, paysim.Options{LedgerDir: dir, Now: c.now}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if got := readDay(t, dir, "2026-12-10"); len(got) != 1 || got[0].OrderID != 4 {
		t.Fatalf("2026-12-10 recovered = %+v; want order 4's charge only", got)
	}
	if tot, err := p.CloseDay("2026-12-01"); err != nil || tot.Lines != 0 {
		t.Fatalf("CloseDay(a day without movements) = %+v, %v; want an empty ledger", tot, err)
	}
	readDay(t, dir, "2026-12-01")
}

// withLedger starts a merchant to call back and a provider keeping a ledger, closed when the
// test ends.
func withLedger(t *testing.T) (*merchant, *httptest.Server, *paysim.Provider, *httptest.Server) {
	t.Helper()
	m := &merchant{}
	shop := httptest.NewServer(m)
	t.Cleanup(shop.Close)
	p, err := paysim.Open(key, paysim.Options{LedgerDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	prov := httptest.NewServer(p.Handler())
	t.Cleanup(func() { prov.Close(); p.Close() })
	return m, shop, p, prov
}
