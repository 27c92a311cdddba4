// Package orderview keeps the order views in step with the order store and serves the
// three readers: the shopper's orders, the merchant's, and support's search.
//
// The projector reads the order events from the events log, re-reads the orders they name from
// the order store (the store is the truth; an event only says which orders changed) and writes
// their views with its position in the log, in one transaction: after a crash it goes on from
// the position stored with the last views it wrote, and writes the same views again. Events
// are sent without waiting for the bus, so a node that dies may never send the last few; a
// sweep walks the order store beside the views and projects the orders whose view is missing
// or behind.
package orderview

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/snowflake"
	"github.com/surgecommerce/surge/stream"
)

// Projection bounds. The projector writes what it has read when batchOrders orders are
// waiting or no event came for batchWait, so a busy log is written in big transactions and a
// quiet one within batchWait; checkpointEvery bounds how far it reads past order events before
// it records its position anyway.
const (
	CheckpointName  = "order-views-v1"
	batchOrders     = 1000
	batchWait       = 50 * time.Millisecond
	maxBatchAge     = 500 * time.Millisecond
	checkpointEvery = 10 * time.Second
	writeTimeout    = 30 * time.Second
	retryPause      = time.Second
	// The sweep (see runSweep): sweepPage orders at a time. The tail starts recentWindow back,
	// looks at orders tailDelay old and rests tailPause once it has caught up; the round rests
	// sweepPause between pages.
	sweepPage    = 1000
	recentWindow = time.Hour
	tailDelay    = 5 * time.Second
	tailPause    = time.Second
	sweepPause   = time.Second
	// maxUsers bounds the cache of shoppers' phones and usernames; userTTL is how long a
	// changed phone may go unseen by new views.
	maxUsers = 100_000
	userTTL  = time.Minute
)

// Reader reads the events log in order from a position.
type Reader interface {
	// Next returns the next record, waiting up to wait; ok is false when none came.
	Next(wait time.Duration) (seq uint64, data []byte, ok bool, err error)
	Close()
}

// Orders is what the projector reads from the order store.
type Orders interface {
	OrdersByID(ctx context.Context, ids []int64) ([]*surge.Order, error)
}

// Users finds shoppers' phones and usernames.
type Users interface {
	UserByID(ctx context.Context, id int64) (*surge.User, error)
}

// Metrics counts what the projector does.
type Metrics struct {
	lag     prometheus.Histogram
	applied prometheus.Counter
	drift   prometheus.Counter
	errors  *prometheus.CounterVec
}

// NewMetrics registers the projector's metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_orderview_lag_seconds",
			Help:    "Time from an order event to its orders' views written.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_orderview_applied_total",
			Help: "Order views written (an order's views count once per write)."}),
		drift: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_orderview_drift_total",
			Help: "Orders the sweep found with a view missing or behind the store: their events were lost or not yet read."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_orderview_errors_total",
			Help: "Failures of the order view projector, by stage (read, write, sweep); each is retried."}, []string{"stage"}),
	}
	reg.MustRegister(m.lag, m.applied, m.drift, m.errors)
	return m
}

// Projector keeps the order views in step with the order store. Run exactly one in a
// deployment (on the node that computes the live metrics): two would only write the same views
// twice.
type Projector struct {
	Open    func(ctx context.Context, after uint64) (Reader, error)
	Views   surge.OrderViewStore
	Orders  Orders
	Users   Users
	Metrics *Metrics // nil: none
	Log     *slog.Logger
	Now     func() time.Time // nil: time.Now
	// SweepPause is how long the round walk of the sweep rests between pages (0: a second).
	SweepPause time.Duration

	mu    sync.Mutex // guards users
	users map[int64]cachedUser
}

type cachedUser struct {
	u  *surge.User
	at time.Time
}

// Run projects the events log and sweeps the store until ctx ends. It returns once both its
// goroutines have stopped.
func (p *Projector) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.runSweep(ctx) }() // stops with ctx
	for ctx.Err() == nil {
		if err := p.follow(ctx); err != nil && ctx.Err() == nil {
			p.count("read")
			p.Log.Warn("order views: projection stopped; it goes on from its last position", "err", err)
			sleep(ctx, retryPause)
		}
	}
	wg.Wait()
}

// follow reads the log from the stored position and writes views until ctx ends or a read or
// a write fails.
func (p *Projector) follow(ctx context.Context) error {
	pos, err := p.Views.ViewCheckpoint(ctx, CheckpointName)
	if err != nil {
		return err
	}
	r, err := p.Open(ctx, pos)
	if errors.Is(err, stream.ErrLogGap) {
		// The log dropped events the views never saw: read what it holds, and leave the orders
		// of the lost events to the sweep.
		p.Log.Error("order views: the events log dropped events before they were projected; the sweep brings their orders", "err", err)
		r, err = p.Open(ctx, 0)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	b := batch{ids: map[int64]bool{}}
	lastWrite := p.now()
	for ctx.Err() == nil {
		seq, data, ok, err := r.Next(batchWait)
		if err != nil {
			return err
		}
		if ok {
			b.pos = seq
			if kind, at, ids := orderIDs(data); kind != "" {
				b.add(p.now(), at, ids)
			}
		}
		now := p.now()
		full := len(b.ids) >= batchOrders || (len(b.ids) > 0 && (!ok || now.Sub(b.first) >= maxBatchAge))
		idle := b.pos > pos && now.Sub(lastWrite) >= checkpointEvery
		if !full && !idle {
			continue
		}
		if err := p.write(ctx, &b); err != nil {
			return err
		}
		pos, lastWrite = b.pos, p.now()
	}
	return nil
}

// batch is what the projector read and has not written yet.
type batch struct {
	pos   uint64         // the log position after it
	ids   map[int64]bool // the orders its events named
	ats   []time.Time    // its events' times, for the lag
	first time.Time      // when its first order event was read
}

func (b *batch) add(now, at time.Time, ids []int64) {
	if len(b.ids) == 0 {
		b.first = now
	}
	for _, id := range ids {
		b.ids[id] = true
	}
	if len(b.ats) < batchOrders { // enough for the histogram
		b.ats = append(b.ats, at)
	}
}

// write projects a batch's orders and records its position with them, then empties it.
func (p *Projector) write(ctx context.Context, b *batch) error {
	ids := make([]int64, 0, len(b.ids))
	for id := range b.ids {
		ids = append(ids, id)
	}
	if err := p.project(ctx, ids, surge.ViewCheckpoint{Name: CheckpointName, Position: b.pos}); err != nil {
		p.count("write")
		return err
	}
	if p.Metrics != nil {
		now := p.now()
		for _, at := range b.ats {
			p.Metrics.lag.Observe(now.Sub(at).Seconds())
		}
	}
	clear(b.ids)
	b.ats = b.ats[:0]
	return nil
}

// project writes the views of orders (as the store holds them) with cp.
func (p *Projector) project(ctx context.Context, ids []int64, cp surge.ViewCheckpoint) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var views []surge.OrderView
	for len(ids) > 0 {
		n := min(len(ids), surge.MaxOrdersPerMessage)
		orders, err := p.Orders.OrdersByID(ctx, ids[:n])
		if err != nil {
			return err
		}
		users, err := p.usersOf(ctx, orders)
		if err != nil {
			return err
		}
		for _, o := range orders {
			views = append(views, surge.NewOrderView(o, users[o.UserID]))
		}
		ids = ids[n:]
	}
	if err := p.Views.PutOrderViews(ctx, views, cp); err != nil {
		return err
	}
	if p.Metrics != nil {
		p.Metrics.applied.Add(float64(len(views)))
	}
	return nil
}

// userReaders bounds the shoppers read from the store at once: a sale's batch of orders has
// a thousand shoppers the cache has not seen, one lookup each.
const userReaders = 8

// usersOf returns the shoppers of orders, by id.
func (p *Projector) usersOf(ctx context.Context, orders []*surge.Order) (map[int64]*surge.User, error) {
	users := make(map[int64]*surge.User, len(orders))
	for _, o := range orders {
		users[o.UserID] = nil
	}
	ids := make(chan int64, len(users))
	for id := range users {
		ids <- id
	}
	close(ids)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(userReaders, len(users)) {
		wg.Add(1)
		go func() { // ends when ids is drained
			defer wg.Done()
			for id := range ids {
				u, err := p.user(ctx, id)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				users[id] = u
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return users, first
}

// user returns a shopper (nil if there is none), from the cache when it is fresh.
func (p *Projector) user(ctx context.Context, id int64) (*surge.User, error) {
	now := p.now()
	p.mu.Lock()
	c, ok := p.users[id]
	p.mu.Unlock()
	if ok && now.Sub(c.at) < userTTL {
		return c.u, nil
	}
	u, err := p.Users.UserByID(ctx, id)
	if surge.ErrorCode(err) == surge.ENOTFOUND {
		u, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.users == nil || len(p.users) >= maxUsers {
		p.users = make(map[int64]cachedUser) // dropped whole: cheaper than an LRU, and refilled at the rate orders come
	}
	p.users[id] = cachedUser{u: u, at: now}
	p.mu.Unlock()
	return u, nil
}

// runSweep walks the order store beside the views for good, on two walks: the tail follows
// the new orders (from the last recentWindow's at start-up, at once) and looks at each once
// when it is tailDelay old, by when its events have been projected, so that an order whose
// event was lost shows within seconds; the round walks every order at a steady pace, for the
// changes of older orders whose events were lost.
func (p *Projector) runSweep(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.walk(ctx, "tail") }() // stops with ctx
	p.walk(ctx, "round")
	wg.Wait()
}

// idAt is the least snowflake id made at t or later.
func idAt(t time.Time) int64 {
	since := t.Sub(snowflake.Epoch)
	if since <= 0 {
		return 0
	}
	return since.Milliseconds() << (snowflake.WorkerBits + snowflake.SequenceBits)
}

// walk runs the tail walk or the round walk until ctx ends.
func (p *Projector) walk(ctx context.Context, which string) {
	tail := which == "tail"
	pause := cmp.Or(p.SweepPause, sweepPause)
	after := int64(0)
	if tail {
		after = idAt(p.now().Add(-recentWindow))
	}
	for ctx.Err() == nil {
		before := int64(math.MaxInt64)
		if tail {
			before = idAt(p.now().Add(-tailDelay))
		}
		last, err := p.SweepPage(ctx, after, before)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				p.count("sweep")
				p.Log.Warn("order views: sweep failed; it goes on", "walk", which, "err", err)
			}
			sleep(ctx, retryPause)
		case tail && (last == 0 || last >= before): // caught up with the orders old enough
			after = max(after, min(last, before-1))
			sleep(ctx, tailPause)
		case tail:
			after = last
		case last == 0: // the end: round again
			after = 0
			sleep(ctx, pause)
		default:
			after = last
			sleep(ctx, pause)
		}
	}
}

// SweepPage projects the orders after afterID and before beforeID, of a page of those after
// afterID, whose views are missing or behind, and returns the last id it looked at (0 at the
// end of the store).
func (p *Projector) SweepPage(ctx context.Context, afterID, beforeID int64) (int64, error) {
	drift, last, err := p.Views.OrderViewDrift(ctx, afterID, sweepPage)
	if err != nil {
		return last, err
	}
	drift = slices.DeleteFunc(drift, func(id int64) bool { return id >= beforeID })
	if len(drift) == 0 {
		return last, nil
	}
	if p.Metrics != nil {
		p.Metrics.drift.Add(float64(len(drift)))
	}
	return last, p.project(ctx, drift, surge.ViewCheckpoint{})
}

func (p *Projector) count(stage string) {
	if p.Metrics != nil {
		p.Metrics.errors.WithLabelValues(stage).Inc()
	}
}

func (p *Projector) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// orderIDs returns the kind, time and order ids of an order event (kind "" for any other
// event). Every kind under "order." carries one order, every kind under "orders." a list.
// Events sent by EmitEvent start with their id, which starts with their kind: the others are
// passed over without being decoded.
func orderIDs(data []byte) (kind string, at time.Time, ids []int64) {
	const head = `{"id":"`
	if rest, ok := bytes.CutPrefix(data, []byte(head)); ok && !bytes.HasPrefix(rest, []byte("order")) {
		return "", at, nil
	}
	var e struct {
		Kind string          `json:"kind"`
		At   time.Time       `json:"at"`
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(data, &e) != nil {
		return "", at, nil
	}
	type ref struct {
		ID int64 `json:"id,string"`
	}
	switch {
	case strings.HasPrefix(e.Kind, "order."):
		var o ref
		if json.Unmarshal(e.Data, &o) != nil || o.ID == 0 {
			return "", at, nil
		}
		return e.Kind, e.At, []int64{o.ID}
	case strings.HasPrefix(e.Kind, "orders."):
		var list []ref
		if json.Unmarshal(e.Data, &list) != nil {
			return "", at, nil
		}
		for _, o := range list {
			if o.ID != 0 {
				ids = append(ids, o.ID)
			}
		}
		return e.Kind, e.At, ids
	}
	return "", at, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
