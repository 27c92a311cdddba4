// Package stock is the embedded stock engine: it decides, for each purchase attempt, whether
// the user gets units of an item — atomically, durably and idempotently.
//
// Items are spread over shards. Each shard has one writer goroutine that takes requests from a
// bounded queue in batches, decides them against its in-memory state, and appends the batch's
// records to the write-ahead log as one frame. The log's syncer fsyncs many frames at once
// (group commit) and only then are the callers answered, so every answer a caller sees is
// durable. Snapshots cut the log; on start the engine loads the newest snapshot and replays the
// log after it.
package stock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/batch"
	"github.com/surgecommerce/surge/wal"
)

// Bounds of the engine.
const (
	MaxBatchOps          = 4096      // operations one shard decides per log frame
	DefaultQueueDepth    = 1 << 14   // operations waiting per shard before callers block
	DefaultSnapshotBytes = 256 << 20 // log bytes after which a snapshot cuts the log
)

// Options configure an engine.
type Options struct {
	Dir           string // the engine's directory; nothing else may use it
	Shards        int    // writer goroutines; default GOMAXPROCS
	QueueDepth    int    // per shard; default DefaultQueueDepth
	SnapshotBytes int64  // default DefaultSnapshotBytes
}

// Engine is the embedded surge.StockEngine.
type Engine struct {
	opts   Options
	log    *wal.Log
	lock   *os.File
	shards []*shard
	flags  sync.Map // item id → *atomic.Bool, the sold-out flags callers read without the writer

	cut      sync.RWMutex // shards hold it shared while deciding and appending; snapshots exclusively
	appended atomic.Int64 // log bytes since the last snapshot
	snapping atomic.Bool

	quit    chan struct{}
	wg      sync.WaitGroup // shard writers and snapshot goroutines
	closeMu sync.Mutex
	closed  bool

	decisions [4]atomic.Int64 // by outcome; [0] counts sold-out answers from the flag
}

type shard struct {
	e     *Engine
	in    chan *op
	mu    sync.RWMutex // guards st: the writer changes it under mu, readers read under RLock
	st    *state
	buf   []byte
	frame []byte
}

type opKind uint8

const (
	opReserve opKind = iota
	opLoad
	opConfirm
	opRelease
)

// op is one request to a shard writer. done receives the durability verdict.
type op struct {
	kind opKind
	reqs []surge.ReserveRequest
	keys []key
	out  []surge.BatchResult
	load surge.StockItem
	k    key
	err  error // the decision's error (load, confirm, release)
	done chan error
}

var opPool = sync.Pool{New: func() any { return &op{done: make(chan error, 1)} }}

// Open loads the engine from its directory (snapshot plus log replay) and starts its writers.
// It refuses to start on a damaged log or snapshot, except a torn log tail, which it cuts off.
func Open(opts Options) (*Engine, error) {
	if opts.Shards <= 0 {
		opts.Shards = runtime.GOMAXPROCS(0)
	}
	if opts.QueueDepth <= 0 {
		opts.QueueDepth = DefaultQueueDepth
	}
	if opts.SnapshotBytes <= 0 {
		opts.SnapshotBytes = DefaultSnapshotBytes
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("stock: %w", err)
	}
	e := &Engine{opts: opts, quit: make(chan struct{})}
	var err error
	if e.lock, err = lockDir(opts.Dir); err != nil {
		return nil, err
	}
	for range opts.Shards {
		s := &shard{e: e, in: make(chan *op, opts.QueueDepth)}
		s.st = newState(e.publish)
		e.shards = append(e.shards, s)
	}
	next, replayed, err := e.recover()
	if err != nil {
		e.lock.Close()
		return nil, err
	}
	if e.log, err = wal.Open(opts.Dir, next); err != nil {
		e.lock.Close()
		return nil, err
	}
	for _, s := range e.shards {
		e.wg.Add(1)
		go s.run()
	}
	if replayed {
		if err := e.Snapshot(); err != nil { // compact what was replayed, so the next start is quick
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("stock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("stock: %s is in use by another engine: %w", dir, err)
	}
	return f, nil
}

func (e *Engine) shardOf(item int64) *shard { return e.shards[e.shardIndex(item)] }

func (e *Engine) shardIndex(item int64) int {
	x := uint64(item)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return int(x % uint64(len(e.shards)))
}

// publish makes an item's sold-out flag readable by callers.
func (e *Engine) publish(it *item) { e.flags.Store(it.id, it.soldOut) }

// run is a shard's writer. It stops when the engine closes.
func (s *shard) run() {
	defer s.e.wg.Done()
	ops := make([]*op, 0, MaxBatchOps)
	for {
		select {
		case o := <-s.in:
			ops = append(ops[:0], o)
		case <-s.e.quit:
			return
		}
		ops = batch.Fill(ops, s.in, MaxBatchOps)
		s.decide(ops)
	}
}

// decide runs one batch: decisions in memory, then one frame to the log, answered on fsync.
func (s *shard) decide(batch []*op) {
	e := s.e
	e.cut.RLock()
	s.mu.Lock()
	s.buf = s.buf[:0]
	for _, o := range batch {
		s.buf = s.exec(o, s.buf)
	}
	s.mu.Unlock()
	s.frame = s.frame[:0]
	if len(s.buf) > 0 {
		s.frame = wal.AppendFrame(s.frame, s.buf)
	}
	waiting := make([]*op, len(batch))
	copy(waiting, batch)
	e.log.Append(s.frame, min(len(s.frame), 1), func(err error) {
		for _, o := range waiting {
			o.done <- err
		}
	})
	e.cut.RUnlock()
	if e.appended.Add(int64(len(s.frame))) > e.opts.SnapshotBytes && e.snapping.CompareAndSwap(false, true) {
		e.wg.Add(1)
		go func() { // owned by the engine: Close waits for it
			defer e.wg.Done()
			_ = e.Snapshot()
		}()
	}
}

// exec decides one op against the shard state and appends its records to buf.
func (s *shard) exec(o *op, buf []byte) []byte {
	var r *record
	switch o.kind {
	case opReserve:
		for i, req := range o.reqs {
			res, rec, err := s.st.reserve(req, o.keys[i])
			o.out[i] = surge.BatchResult{ReserveResult: res, Err: err}
			if rec != nil {
				buf = appendRecord(buf, rec)
			}
			if err == nil {
				s.e.decisions[res.Outcome].Add(1)
			}
		}
		return buf
	case opLoad:
		r, o.err = s.st.load(o.load)
	case opConfirm:
		r, o.err = s.st.settle(recConfirm, o.k)
	case opRelease:
		r, o.err = s.st.settle(recRelease, o.k)
	}
	if r != nil {
		buf = appendRecord(buf, r)
	}
	return buf
}

// submit hands an op to its shard and waits until its batch is durable.
func (e *Engine) submit(ctx context.Context, s *shard, o *op) error {
	select {
	case s.in <- o:
	case <-e.quit:
		return errClosed
	case <-ctx.Done():
		return surge.Errorf(surge.EUNAVAILABLE, "stock engine busy: %v", ctx.Err())
	}
	select {
	case err := <-o.done:
		if err != nil {
			return surge.Errorf(surge.EUNAVAILABLE, "stock log failed: %v", err)
		}
		return nil
	case <-e.quit:
		return errClosed
	}
}

var errClosed = surge.Errorf(surge.EUNAVAILABLE, "stock engine closed")

// Load implements surge.StockEngine.
func (e *Engine) Load(ctx context.Context, it surge.StockItem) error {
	if err := it.Validate(); err != nil {
		return err
	}
	o := &op{kind: opLoad, load: it, done: make(chan error, 1)}
	if err := e.submit(ctx, e.shardOf(it.ID), o); err != nil {
		return err
	}
	return o.err
}

// Reserve implements surge.StockEngine. A sold-out item answers from its flag, without the
// writer, unless the request id is a reservation already made (a retry gets its first answer).
func (e *Engine) Reserve(ctx context.Context, r surge.ReserveRequest) (surge.ReserveResult, error) {
	if err := r.Validate(); err != nil {
		return surge.ReserveResult{}, err
	}
	f, ok := e.flags.Load(r.ItemID)
	if !ok {
		return surge.ReserveResult{}, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", r.ItemID)
	}
	s := e.shardOf(r.ItemID)
	k := requestKey(r.ItemID, r.RequestID)
	if f.(*atomic.Bool).Load() && !s.known(k) {
		e.decisions[0].Add(1)
		return surge.ReserveResult{Outcome: surge.SoldOut}, nil
	}
	o := opPool.Get().(*op)
	o.kind, o.reqs, o.keys = opReserve, append(o.reqs[:0], r), append(o.keys[:0], k)
	o.out = append(o.out[:0], surge.BatchResult{})
	err := e.submit(ctx, s, o)
	res := o.out[0]
	if err == nil { // an op given up on may still be answered later; only a finished one is reused
		opPool.Put(o)
	}
	if err != nil {
		return surge.ReserveResult{}, err
	}
	return res.ReserveResult, res.Err
}

// known reports whether a reservation exists for a request key.
func (s *shard) known(k key) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.st.res.get(k)
	return ok
}

// ReserveBatch decides many reservations with one wait: the purchase queue hands over what has
// arrived in one go. out must be as long as reqs. The returned error is an engine failure that
// leaves every answer unknown; per-request errors are in out.
func (e *Engine) ReserveBatch(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) error {
	if len(out) < len(reqs) {
		return surge.Errorf(surge.EINVALID, "out is shorter than the batch")
	}
	ops := make([]*op, len(e.shards))
	where := make([][]int, len(e.shards))
	for i, r := range reqs {
		if err := r.Validate(); err != nil {
			out[i] = surge.BatchResult{Err: err}
			continue
		}
		n := e.shardIndex(r.ItemID)
		o := ops[n]
		if o == nil {
			o = &op{kind: opReserve, done: make(chan error, 1)}
			ops[n] = o
		}
		o.reqs = append(o.reqs, r)
		o.keys = append(o.keys, requestKey(r.ItemID, r.RequestID))
		o.out = append(o.out, surge.BatchResult{})
		where[n] = append(where[n], i)
	}
	for n, o := range ops {
		if o == nil {
			continue
		}
		select {
		case e.shards[n].in <- o:
		case <-e.quit:
			return errClosed
		case <-ctx.Done():
			return surge.Errorf(surge.EUNAVAILABLE, "stock engine busy: %v", ctx.Err())
		}
	}
	var firstErr error
	for n, o := range ops {
		if o == nil {
			continue
		}
		var err error
		select {
		case err = <-o.done:
		case <-e.quit:
			err = errClosed
		}
		if err != nil && firstErr == nil {
			firstErr = surge.Errorf(surge.EUNAVAILABLE, "stock log failed: %v", err)
		}
		for j, i := range where[n] {
			out[i] = o.out[j]
		}
	}
	return firstErr
}

func (e *Engine) settle(ctx context.Context, kind opKind, itemID int64, requestID string) error {
	if err := surge.ValidateRequestID(requestID); err != nil {
		return err
	}
	if _, ok := e.flags.Load(itemID); !ok {
		return surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", itemID)
	}
	o := &op{kind: kind, k: requestKey(itemID, requestID), done: make(chan error, 1)}
	if err := e.submit(ctx, e.shardOf(itemID), o); err != nil {
		return err
	}
	return o.err
}

// Confirm implements surge.StockEngine.
func (e *Engine) Confirm(ctx context.Context, itemID int64, requestID string) error {
	return e.settle(ctx, opConfirm, itemID, requestID)
}

// Release implements surge.StockEngine.
func (e *Engine) Release(ctx context.Context, itemID int64, requestID string) error {
	return e.settle(ctx, opRelease, itemID, requestID)
}

// Levels implements surge.StockEngine. Reads see decisions whose fsync may still be running.
func (e *Engine) Levels(_ context.Context, itemID int64) (surge.StockLevels, error) {
	s := e.shardOf(itemID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	it := s.st.items[itemID]
	if it == nil {
		return surge.StockLevels{}, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", itemID)
	}
	return it.levels(), nil
}

// Held implements surge.StockEngine.
func (e *Engine) Held(_ context.Context, itemID, userID int64) (int64, error) {
	s := e.shardOf(itemID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	it := s.st.items[itemID]
	if it == nil {
		return 0, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", itemID)
	}
	return it.held[userID], nil
}

// Reservation is what the engine knows of one reservation.
type Reservation struct {
	UserID   int64
	OrderID  int64
	Quantity int64
	State    string // "reserved", "sold" or "released"
}

// Lookup returns a reservation by item and request id (for audits, reconciliation and tests).
func (e *Engine) Lookup(itemID int64, requestID string) (Reservation, bool) {
	s := e.shardOf(itemID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.st.res.get(requestKey(itemID, requestID))
	if !ok {
		return Reservation{}, false
	}
	return Reservation{UserID: r.user, OrderID: r.order, Quantity: int64(r.qty), State: [...]string{"", "reserved", "sold", "released"}[r.state]}, true
}

// OpenReservations implements surge.StockEngine.
func (e *Engine) OpenReservations(_ context.Context, itemID int64) ([]surge.OpenReservation, error) {
	s := e.shardOf(itemID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.st.items[itemID] == nil {
		return nil, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", itemID)
	}
	var out []surge.OpenReservation
	for k, id := range s.st.open {
		if k.item != itemID {
			continue
		}
		r, _ := s.st.res.get(k)
		out = append(out, surge.OpenReservation{RequestID: id, UserID: r.user, OrderID: r.order, Quantity: int64(r.qty)})
	}
	return out, nil
}

// Reservation implements surge.StockEngine.
func (e *Engine) Reservation(_ context.Context, itemID, userID int64, requestID string) (surge.ReserveResult, bool, error) {
	if err := surge.ValidateRequestID(requestID); err != nil {
		return surge.ReserveResult{}, false, err
	}
	s := e.shardOf(itemID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	it := s.st.items[itemID]
	if it == nil {
		return surge.ReserveResult{}, false, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", itemID)
	}
	r, ok := s.st.res.get(requestKey(itemID, requestID))
	if !ok || r.user != userID {
		return surge.ReserveResult{}, false, nil
	}
	return surge.ReserveResult{Outcome: surge.Reserved, Held: it.held[userID], OrderID: r.order, Replayed: true}, true, nil
}

// Check verifies every invariant of the whole state (expensive: for tests and audits).
func (e *Engine) Check() error {
	for i, s := range e.shards {
		s.mu.RLock()
		err := s.st.check()
		s.mu.RUnlock()
		if err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return nil
}

// Stats are the engine's counters.
type Stats struct {
	wal.Stats
	Reserved, SoldOut, LimitReached, SoldOutFromFlag int64
	Items, Reservations                              int
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	st := Stats{Stats: e.log.Stats(), Reserved: e.decisions[surge.Reserved].Load(),
		SoldOut: e.decisions[surge.SoldOut].Load(), LimitReached: e.decisions[surge.LimitReached].Load(),
		SoldOutFromFlag: e.decisions[0].Load()}
	for _, s := range e.shards {
		s.mu.RLock()
		st.Items += len(s.st.items)
		st.Reservations += s.st.res.len()
		s.mu.RUnlock()
	}
	return st
}

// Err returns the error that stopped the engine's log (a failed write or fsync), if any: after
// one the engine answers nothing until it is restarted and has replayed its log.
func (e *Engine) Err() error { return e.log.Err() }

// Close stops the writers, makes everything decided durable, and releases the directory.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	close(e.quit)
	e.wg.Wait()
	err := e.log.Close()
	return errors.Join(err, e.lock.Close())
}
