package order_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/sqlite"
)

// slowReads is a store whose reads of many orders take a while, as on a busy network store,
// and which counts them.
type slowReads struct {
	*sqlite.DB
	calls, most atomic.Int64
}

func (s *slowReads) OrdersByID(ctx context.Context, ids []int64) ([]*surge.Order, error) {
	s.calls.Add(1)
	for n := int64(len(ids)); ; {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	return s.DB.OrdersByID(ctx, ids)
}

// Orders read at once are read together, in a few statements, and each reader gets its own
// order, or ENOTFOUND for an order that does not exist.
func TestOrdersReadTogether(t *testing.T) {
	db, eng, _ := dueOrders(t, 40) // orders 1000 to 1039
	store := &slowReads{DB: db}
	svc := order.New(store, db, eng, &bus{sent: map[string][]byte{}}, order.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	defer func() { stop(); <-done }()
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) { // the readers start
		if _, err := svc.Get(ctx, staff, 1000); err != nil {
			t.Fatal(err)
		}
		if store.calls.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the readers never read")
		}
	}
	before := store.calls.Load()
	const readers = 200
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() {
			id := int64(1000 + i%50) // the last ten do not exist
			o, err := svc.Get(ctx, staff, id)
			switch {
			case id >= 1040 && surge.ErrorCode(err) != surge.ENOTFOUND:
				t.Errorf("Get(%d) = %v, %v; want ENOTFOUND", id, o, err)
			case id < 1040 && (err != nil || o.ID != id || o.UserID != 100+id-1000):
				t.Errorf("Get(%d) = %+v, %v; want its order", id, o, err)
			}
		})
	}
	wg.Wait()
	if calls := store.calls.Load() - before; calls > readers/4 || store.most.Load() < 2 {
		t.Fatalf("%d reads took %d statements, at most %d orders in one; want them read together", readers, calls, store.most.Load())
	}
}
