package order

import (
	"context"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/batch"
)

// Bounds of the order readers.
const (
	// maxReadBatch is how many order reads one statement answers.
	maxReadBatch = 256
	// readQueueDepth bounds the reads waiting for a reader; past it a read goes to the store
	// on its own.
	readQueueDepth = 4096
	// readers is how many statements of reads run at once.
	readers = 4
)

// readJob is one order read waiting for a reader, and then its result.
type readJob struct {
	id    int64
	done  chan struct{} // closed once order or err is set
	order *surge.Order
	err   error
}

// readStored reads an order from the store. While the readers run (Run), the reads asked for
// together are answered by one statement: when a crowd of winners reads its orders at once,
// a statement each made them queue for the network store's connections, each a round trip,
// and "success → order readable" took over a second. Otherwise, and when the readers are
// full, the read goes to the store on its own.
func (s *Service) readStored(ctx context.Context, id int64) (*surge.Order, error) {
	if !s.reading.Load() {
		return s.store.OrderByID(ctx, id)
	}
	j := &readJob{id: id, done: make(chan struct{})}
	select {
	case s.reads <- j:
	default:
		return s.store.OrderByID(ctx, id)
	}
	select {
	case <-j.done:
		return j.order, j.err
	case <-s.readersDone: // stopped before this read was taken
		return s.store.OrderByID(ctx, id)
	case <-ctx.Done():
		return nil, surge.Errorf(surge.EUNAVAILABLE, "the order was not read in time; retry")
	}
}

// readOrders is a reader: it takes the reads waiting, up to maxReadBatch, reads their orders
// in one statement and answers them, until ctx ends.
func (s *Service) readOrders(ctx context.Context) {
	jobs := make([]*readJob, 0, maxReadBatch)
	ids := make([]int64, 0, maxReadBatch)
	for {
		select {
		case j := <-s.reads:
			jobs = append(jobs[:0], j)
		case <-ctx.Done():
			return
		}
		jobs = batch.Fill(jobs, s.reads, maxReadBatch)
		ids = ids[:0]
		for _, j := range jobs {
			ids = append(ids, j.id)
		}
		list, err := s.store.OrdersByID(ctx, ids)
		byID := make(map[int64]*surge.Order, len(list))
		for _, o := range list {
			byID[o.ID] = o
		}
		for _, j := range jobs {
			switch o := byID[j.id]; {
			case err != nil:
				j.err = err
			case o == nil:
				j.err = surge.Errorf(surge.ENOTFOUND, "order not found")
			default:
				cp := *o // two reads of one order get a copy each
				j.order = &cp
			}
			close(j.done)
		}
		s.metrics.readBatches.Observe(float64(len(jobs)))
	}
}

// runReaders runs the readers until ctx ends; reads that were still waiting then go to the
// store on their own (readStored).
func (s *Service) runReaders(ctx context.Context) {
	done := make(chan struct{}, readers)
	s.reading.Store(true)
	for range readers {
		go func() { defer func() { done <- struct{}{} }(); s.readOrders(ctx) }()
	}
	for range readers {
		<-done
	}
	s.reading.Store(false)
	s.stopReaders.Do(func() { close(s.readersDone) })
}
