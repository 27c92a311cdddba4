package purchase

import (
	"context"
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
	eng, err := stock.Open(stock.Options{Dir: filepath.Join(t.TempDir(), "stock")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	const item = 7
	if err := eng.Load(ctx, surge.StockItem{ID: item, Allotted: 1, PerUserLimit: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Reserve(ctx, surge.ReserveRequest{ItemID: item, UserID: 50, Quantity: 1, RequestID: "r50", OrderID: 500}); err != nil {
		t.Fatal(err)
	}
	g := &gatedLookups{Engine: eng, gate: make(chan struct{})}
	s := &Service{stock: g, metrics: NewMetrics(prometheus.NewRegistry()), quit: make(chan struct{}),
		lookups: make(chan *lookup, lookupQueueDepth)}
	s.wg.Add(1)
	go s.lookUp(g)
	defer s.Close()

	const n = 100
	found := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ask := func(user int) {
		defer wg.Done()
		res, ok, err := s.reservation(ctx, surge.ReserveRequest{ItemID: item, UserID: int64(user), RequestID: "r" + strconv.Itoa(user)})
		found[user], errs[user] = ok && res.OrderID == 500, err
	}
	wg.Add(1)
	go ask(0)
	for len(s.lookups) > 0 || g.calls() == 0 { // the first call is out, at the gate
		time.Sleep(time.Millisecond)
	}
	for user := 1; user < n; user++ {
		wg.Add(1)
		go ask(user)
	}
	for len(s.lookups) < n-1 {
		time.Sleep(time.Millisecond)
	}
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
