package loadgen

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/purchase"
)

// slowShop answers every attempt sold out after a pause, or only once cancelled (block), and
// counts how many attempts it holds at once.
type slowShop struct {
	pause         time.Duration
	block         bool
	now, most     atomic.Int64
	attempts      atomic.Int64
	mu            sync.Mutex
	requestIDs    map[string]bool
	duplicateSeen bool
}

func (s *slowShop) Setup(context.Context) ([]int64, time.Time, error) {
	return []int64{1}, time.Now(), nil
}
func (s *slowShop) Shoppers(_ context.Context, n int) ([]Shopper, error) {
	return make([]Shopper, n), nil
}
func (s *slowShop) Page(context.Context, Shopper, int64) (string, int64, error) { return "t", 0, nil }
func (s *slowShop) Buy(ctx context.Context, _ Shopper, req purchase.Request) (*purchase.Result, error) {
	s.attempts.Add(1)
	s.mu.Lock()
	s.duplicateSeen = s.duplicateSeen || s.requestIDs[req.RequestID]
	s.requestIDs[req.RequestID] = true
	s.mu.Unlock()
	n := s.now.Add(1)
	defer s.now.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	if s.block {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // a connection takes a moment to give up
		return nil, ctx.Err()
	}
	time.Sleep(s.pause)
	return nil, surge.Errorf(surge.ESOLDOUT, "sold out")
}
func (s *slowShop) BuyWithProof(context.Context, Shopper, purchase.Request, string) (*purchase.Result, error) {
	return nil, errors.New("never challenges")
}
func (s *slowShop) EnableRule(context.Context, surge.RiskRule) (*surge.RiskRule, error) {
	return nil, errors.New("no risk control")
}
func (s *slowShop) DisableRule(context.Context, int64) error { return errors.New("no risk control") }
func (s *slowShop) Poll(context.Context, Shopper, string) (*purchase.Result, error) {
	return nil, errors.New("never queued")
}
func (s *slowShop) Order(context.Context, Shopper, int64) (*surge.Order, error) {
	return nil, errors.New("sells nothing")
}
func (s *slowShop) PayTicket(context.Context, Shopper, int64) (*order.PayTicket, error) {
	return nil, errors.New("sells nothing")
}
func (s *slowShop) PayProvider(context.Context, Shopper, *order.PayTicket) error {
	return errors.New("sells nothing")
}
func (s *slowShop) Audit(context.Context) (*audit.Report, error) {
	return audit.Check(0, nil, nil, nil), nil
}
func (s *slowShop) Remaining(context.Context) (int64, error) { return 0, nil }

// Every arrival is attempted once, never more than MaxInFlight at a time, and an attempt that
// waited for a free shopper counts that wait in its latency.
func TestReplayBoundsAttemptsInFlight(t *testing.T) {
	shop := &slowShop{pause: 20 * time.Millisecond, requestIDs: map[string]bool{}}
	c := Config{Shoppers: 400, Duration: 100 * time.Millisecond, Rate: 10_000, MaxInFlight: 8}
	res, err := Run(context.Background(), shop, c, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 400 || shop.attempts.Load() != 400 || shop.duplicateSeen || res.Outcomes[OutSoldOut] != 400 {
		t.Fatalf("attempts %d recorded, %d made (a repeat: %v), outcomes %v; want 400 once each, all sold out",
			res.Attempts, shop.attempts.Load(), shop.duplicateSeen, res.Outcomes)
	}
	if m := shop.most.Load(); m > 8 || m < 2 {
		t.Fatalf("at most %d attempts were under way at once; want 2 to 8", m)
	}
	// 400 attempts of 20 ms, 8 at a time, take a second: the last arrivals (all within 100 ms)
	// waited most of it for a free shopper.
	if res.P99Ms < 500 {
		t.Fatalf("p99 %.1f ms; want the wait for a free shopper counted (about a second)", res.P99Ms)
	}
}

// A cancelled run returns the context's error once every attempt under way has given up.
func TestReplayStopsWhenCancelled(t *testing.T) {
	shop := &slowShop{block: true, requestIDs: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, shop, Config{Shoppers: 100, Duration: 10 * time.Second, Rate: 1000, MaxInFlight: 4}, func(string, ...any) {})
		done <- err
	}()
	for shop.now.Load() < 4 { // every shopper waits on an answer
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if n := shop.now.Load(); n != 0 {
		t.Fatalf("%d attempts still under way after Run returned", n)
	}
	if m := shop.most.Load(); m != 4 {
		t.Fatalf("at most %d attempts were under way before the cancel; want all 4 shoppers busy", m)
	}
}

// A crowd's connection gives up a read or a write that the other side leaves hanging.
func TestDeadlineConnBoundsEveryReadAndWrite(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := deadlineConn{Conn: a, bound: 50 * time.Millisecond}
	for name, op := range map[string]func() error{
		"read":  func() error { _, err := c.Read(make([]byte, 1)); return err },
		"write": func() error { _, err := c.Write([]byte("x")); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- op() }()
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("%s = %v; want the deadline exceeded", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the %s was never given up", name)
		}
	}
	// The deadline is renewed at each call: a read after the last one timed out still works.
	go b.Write([]byte("y"))
	if n, err := c.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read after a timeout = %d, %v", n, err)
	}
}
