package purchase

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stock"
)

// gatedLookups is the embedded engine taking lookups in batches, as Redis does; the first call
// waits at the gate, so that the test knows what queues behind it.
type gatedLookups struct {
	*stock.Engine
	gate    chan struct{}
	reg     *prometheus.Registry // the service's metrics
	mu      sync.Mutex
	batches []int
}

func (g *gatedLookups) Reservations(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) error {
	g.mu.Lock()
	first := len(g.batches) == 0
	g.batches = append(g.batches, len(reqs))
	g.mu.Unlock()
	if first {
		<-g.gate
	}
	for i, r := range reqs {
		res, _, err := g.Reservation(ctx, r.ItemID, r.UserID, r.RequestID)
		out[i] = surge.BatchResult{ReserveResult: res, Err: err}
	}
	return nil
}

// The lookups of sold-out answers that arrive while one call is out go in the next call
// together, and each gets its own answer: the one retry of a reservation finds it.
func TestSoldOutLookupsGoTogether(t *testing.T) {
	ctx := context.Background()
	s, g := gatedService(t)
	defer s.Close()

	const n = 100
	found := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ask := func(user int) {
		defer wg.Done()
		res, ok, err := s.reservation(ctx, lookupOf(user))
		found[user], errs[user] = ok && res.OrderID == 500, err
	}
	wg.Add(1)
	go ask(0)
	waitFor(t, "the first call", func() bool { return len(s.lookups) == 0 && g.calls() == 1 })
	for user := 1; user < n; user++ {
		wg.Add(1)
		go ask(user)
	}
	waitFor(t, "the lookups to queue", func() bool { return len(s.lookups) == n-1 })
	close(g.gate)
	wg.Wait()
	for user := range n {
		if errs[user] != nil || found[user] != (user == 50) {
			t.Errorf("user %d: found %v, %v; want found only for user 50", user, found[user], errs[user])
		}
	}
	if g.calls() != 2 || g.batches[1] != n-1 {
		t.Fatalf("lookups went in calls of %v; want 1 then %d", g.batches, n-1)
	}
}

func (g *gatedLookups) calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.batches)
}

// When the queue is full an attempt asks alone, and counts; when the node stops, the attempts
// waiting for a batch are answered at once rather than left hanging.
func TestLookupsWhenFullOrStopping(t *testing.T) {
	ctx := context.Background()
	s, g := gatedService(t)
	var wg sync.WaitGroup
	errs := make(chan error, lookupQueueDepth+1)
	ask := func(user int) {
		defer wg.Done()
		_, _, err := s.reservation(ctx, lookupOf(user))
		errs <- err
	}
	wg.Add(1)
	go ask(0)
	waitFor(t, "the first call", func() bool { return len(s.lookups) == 0 && g.calls() == 1 })
	for user := 1; user <= lookupQueueDepth; user++ {
		wg.Add(1)
		go ask(user)
	}
	waitFor(t, "a full queue", func() bool { return len(s.lookups) == lookupQueueDepth })
	res, ok, err := s.reservation(ctx, lookupOf(50))
	if alone := g.counter(t, "surge_purchase_lookups_alone_total"); err != nil || !ok || res.OrderID != 500 || alone != 1 {
		t.Fatalf("a lookup past a full queue = %+v, %v, %v (counted alone: %v); want found, counted", res, ok, err, alone)
	}
	close(s.quit)
	wg.Wait()
	close(errs)
	for err := range errs {
		if surge.ErrorCode(err) != surge.EUNAVAILABLE {
			t.Fatalf("a lookup waiting when the node stopped = %v; want EUNAVAILABLE", err)
		}
	}
	close(g.gate)
	s.wg.Wait()
}

// The embedded engine answers lookups from memory: they go to it directly, with no batcher.
func TestEmbeddedLookupsGoDirect(t *testing.T) {
	eng, err := stock.Open(stock.Options{Dir: filepath.Join(t.TempDir(), "stock")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	s := New(Config{}, nil, eng, nil, nil, nil, nil, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler), nil)
	defer s.Close()
	if s.lookups != nil {
		t.Fatal("the embedded engine's lookups go through a batcher")
	}
}

const lookupItem = 7

// gatedService is a purchase service whose lookups go in batches to the embedded engine behind
// a gate; user 50 holds the item's one unit, reserved with request id r50 for order 500.
func gatedService(t *testing.T) (*Service, *gatedLookups) {
	t.Helper()
	ctx := context.Background()
	eng, err := stock.Open(stock.Options{Dir: filepath.Join(t.TempDir(), "stock")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	if err := eng.Load(ctx, surge.StockItem{ID: lookupItem, Allotted: 1, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Reserve(ctx, lookupOf(50, 500)); err != nil {
		t.Fatal(err)
	}
	g := &gatedLookups{Engine: eng, gate: make(chan struct{}), reg: prometheus.NewRegistry()}
	s := New(Config{}, nil, g, nil, nil, nil, nil, nil, NewMetrics(g.reg), slog.New(slog.DiscardHandler), nil)
	if s.lookups == nil {
		t.Fatal("an engine that takes lookups in batches is not given them")
	}
	return s, g
}

// lookupOf is user's attempt on the test item, with request id r<user> (and an order id).
func lookupOf(user int, order ...int64) surge.ReserveRequest {
	r := surge.ReserveRequest{ItemID: lookupItem, UserID: int64(user), Quantity: 1, RequestID: "r" + strconv.Itoa(user)}
	if len(order) > 0 {
		r.OrderID = order[0]
	}
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
	}
}

func (g *gatedLookups) counter(t *testing.T, name string) float64 {
	t.Helper()
	families, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
