package order

import (
	"context"
	"sync"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/snowflake"
)

// Bounds of the orders a node remembers before the order writer stores them.
const (
	// MaxPending is how many acknowledged orders a node remembers (about 300 bytes each): a
	// sale's peak of orders many times over, for the seconds it takes to write them.
	MaxPending = 1 << 17
	// PendingFor is how long a node remembers an acknowledged order. The order writer stores
	// orders within a second normally and within seconds of a node's death; a reservation whose
	// order never got out is given one by the orphan sweep after OrphanAfter.
	PendingFor = 10 * time.Minute
	// peerWait bounds asking another node for an order it acknowledged.
	peerWait = 250 * time.Millisecond
)

// Pending remembers the orders this node acknowledged, so that a shopper told "success" reads
// and pays the order at once, before the order writer has stored it: the order
// command is durable on the bus, and its order is served from here until the row is written.
// The store stays the truth: Pending is asked only for an order the store does not have.
type Pending struct {
	now  func() time.Time
	mu   sync.Mutex
	byID map[int64]acked
	ring []int64 // ids in the order they came, the oldest forgotten first
	next int
}

type acked struct {
	order surge.Order
	added time.Time
}

// NewPending returns an empty memory of acknowledged orders; now may be nil for the wall clock.
func NewPending(now func() time.Time) *Pending {
	if now == nil {
		now = time.Now
	}
	return &Pending{now: now, byID: make(map[int64]acked), ring: make([]int64, MaxPending)}
}

// Add remembers orders whose commands are stored on the bus.
func (p *Pending) Add(orders []surge.Order) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range orders {
		if old := p.ring[p.next]; old != 0 {
			delete(p.byID, old)
		}
		p.ring[p.next] = o.ID
		p.next = (p.next + 1) % MaxPending
		p.byID[o.ID] = acked{order: o, added: now}
	}
}

// Get returns a copy of an acknowledged order remembered here.
func (p *Pending) Get(id int64) (*surge.Order, bool) {
	p.mu.Lock()
	po, ok := p.byID[id]
	p.mu.Unlock()
	if !ok || p.now().Sub(po.added) > PendingFor {
		return nil, false
	}
	o := po.order
	return &o, true
}

// Peers asks the node that acknowledged an order for it: the node whose worker id the order's
// id carries. Not found is (nil, false, nil); an unreachable node is an error.
type Peers interface {
	PendingOrder(ctx context.Context, worker, id int64) (*surge.Order, bool, error)
}

// pendingOrder finds an order the store does not have yet: in this node's memory, or from the
// node that acknowledged it. found is false when neither has it.
func (s *Service) pendingOrder(ctx context.Context, id int64) (*surge.Order, bool) {
	if s.pending == nil {
		return nil, false
	}
	if o, ok := s.pending.Get(id); ok {
		return o, true
	}
	worker := snowflake.Worker(id)
	if s.peers == nil || worker == s.cfg.Worker || s.now().Sub(snowflake.Time(id)) > PendingFor {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, peerWait)
	defer cancel()
	o, ok, err := s.peers.PendingOrder(ctx, worker, id)
	if err != nil {
		s.log.DebugContext(ctx, "the node that acknowledged an order did not answer", "order", id, "worker", worker, "err", err)
		return nil, false
	}
	return o, ok && o.ID == id
}

// orderByID reads an order from the store, or, while the order writer has not stored it yet,
// as it was acknowledged.
func (s *Service) orderByID(ctx context.Context, id int64) (*surge.Order, error) {
	o, err := s.readStored(ctx, id)
	if surge.ErrorCode(err) != surge.ENOTFOUND {
		return o, err
	}
	if p, ok := s.pendingOrder(ctx, id); ok {
		s.metrics.pendingReads.Inc()
		return p, nil
	}
	return nil, err
}

// stored reads an order from the store, first writing it there from the acknowledged copy if
// the order writer has not yet: for the steps that change an order (a payment, a cancel).
func (s *Service) stored(ctx context.Context, id int64) (*surge.Order, error) {
	o, err := s.readStored(ctx, id)
	if surge.ErrorCode(err) != surge.ENOTFOUND {
		return o, err
	}
	p, ok := s.pendingOrder(ctx, id)
	if !ok {
		return nil, err
	}
	if err := s.write(ctx, []surge.Order{*p}); err != nil {
		return nil, err
	}
	s.metrics.pendingWrites.Inc()
	return s.store.OrderByID(ctx, id)
}

// write stores orders (idempotently) and sends orders.created for those it created.
func (s *Service) write(ctx context.Context, orders []surge.Order) error {
	created, err := s.store.CreateOrders(ctx, orders)
	if err != nil {
		return err
	}
	s.emitCreated(ctx, orders, created)
	return nil
}
