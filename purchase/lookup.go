package purchase

import (
	"context"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/batch"
)

// lookupBatcher is a stock engine that looks up many reservations per call (Redis: one round
// trip). The embedded engine answers from memory and needs no batching.
type lookupBatcher interface {
	Reservations(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) error
}

// Bounds of the lookups of sold-out answers. One call is out at a time, so a lookup waits for
// at most the calls of the two batches queued ahead of it and its own (3 s when the engine is
// unreachable); past that depth an attempt asks alone, as it did before batching.
const (
	maxLookupBatch   = 256
	lookupQueueDepth = 2 * maxLookupBatch
	lookupTimeout    = time.Second // for one call
)

type lookup struct {
	req  surge.ReserveRequest
	res  surge.BatchResult
	err  error // the engine's, for the whole batch
	done chan struct{}
}

// reservation finds whether an attempt repeats one that reserved. After a sell-out every
// attempt asks, so on an engine that takes many lookups per call the node's lookups go out
// together: one call for all that arrived while the previous one was out, as a group commit.
func (s *Service) reservation(ctx context.Context, rr surge.ReserveRequest) (surge.ReserveResult, bool, error) {
	if s.lookups == nil {
		return s.stock.Reservation(ctx, rr.ItemID, rr.UserID, rr.RequestID)
	}
	l := &lookup{req: rr, done: make(chan struct{})}
	select {
	case s.lookups <- l:
	default: // the queue is full: this one asks alone
		s.metrics.lookupsAlone.Inc()
		return s.stock.Reservation(ctx, rr.ItemID, rr.UserID, rr.RequestID)
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return surge.ReserveResult{}, false, surge.Errorf(surge.EUNAVAILABLE, "the request ended before its answer")
	case <-s.quit:
		return surge.ReserveResult{}, false, surge.Errorf(surge.EUNAVAILABLE, "the node is stopping; retry")
	}
	if l.err != nil {
		return surge.ReserveResult{}, false, l.err
	}
	return l.res.ReserveResult, l.res.Outcome == surge.Reserved, l.res.Err
}

// lookUp answers the queued lookups in batches until Close.
func (s *Service) lookUp(b lookupBatcher) {
	defer s.wg.Done()
	waiting := make([]*lookup, 0, maxLookupBatch)
	reqs := make([]surge.ReserveRequest, 0, maxLookupBatch)
	out := make([]surge.BatchResult, maxLookupBatch)
	for {
		select {
		case l := <-s.lookups:
			waiting = append(waiting[:0], l)
		case <-s.quit:
			return
		}
		waiting = batch.Fill(waiting, s.lookups, maxLookupBatch)
		reqs = reqs[:0]
		for _, l := range waiting {
			reqs = append(reqs, l.req)
		}
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		err := b.Reservations(ctx, reqs, out[:len(waiting)])
		cancel()
		s.metrics.lookupBatch.Observe(float64(len(waiting)))
		for i, l := range waiting {
			l.res, l.err = out[i], err
			close(l.done)
		}
	}
}
