// Package stocktest is the conformance suite for surge.StockEngine backends: the embedded engine
// always, Redis when SURGE_TEST_REDIS_URL is set.
package stocktest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/surgecommerce/surge"
)

// Open returns an engine for one test; the backend cleans it up with t.Cleanup.
type Open func(t *testing.T) surge.StockEngine

// Options say which optional guarantees a backend gives.
type Options struct {
	// RequestIDsSeenAcrossUsers: a request id reused by another user is refused (ECONFLICT).
	// Request ids are unique per item by contract; a backend that splits an item by user cannot
	// see another user's ids and only guarantees that a request applies at most once.
	RequestIDsSeenAcrossUsers bool
}

// Run runs the whole suite.
func Run(t *testing.T, open Open, opts Options) {
	t.Run("LoadAndAdjust", func(t *testing.T) { testLoad(t, open(t)) })
	t.Run("ReserveOutcomes", func(t *testing.T) { testReserve(t, open(t)) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, open(t), opts) })
	t.Run("ConfirmAndRelease", func(t *testing.T) { testSettle(t, open(t)) })
	t.Run("BadInputChangesNothing", func(t *testing.T) { testBadInput(t, open(t)) })
	t.Run("StressHotItem", func(t *testing.T) { testStress(t, open(t), 1, 2000, 64, 300) })
	t.Run("StressManyItems", func(t *testing.T) { testStress(t, open(t), 10_000, 3, 32, 1000) })
	t.Run("PayVersusExpireRace", func(t *testing.T) { testRace(t, open(t)) })
	t.Run("SellsOutExactly", func(t *testing.T) { testSellOut(t, open(t)) })
}

var ctx = context.Background()

// nextItem hands out item ids unlikely to collide with other runs sharing a backend.
var nextItem atomic.Int64

func init() { nextItem.Store(rand.Int64N(1<<40) + 1) }

func newItem(t *testing.T, e surge.StockEngine, allotted, limit int64) int64 {
	t.Helper()
	id := nextItem.Add(1)
	if err := e.Load(ctx, surge.StockItem{ID: id, Allotted: allotted, PerUserLimit: limit}); err != nil {
		t.Fatalf("Load = %v", err)
	}
	return id
}

func levels(t *testing.T, e surge.StockEngine, id int64) surge.StockLevels {
	t.Helper()
	l, err := e.Levels(ctx, id)
	if err != nil {
		t.Fatalf("Levels(%d) = %v", id, err)
	}
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	return l
}

func code(err error) string { return surge.ErrorCode(err) }

func testLoad(t *testing.T, e surge.StockEngine) {
	id := newItem(t, e, 10, 2)
	if l := levels(t, e, id); l != (surge.StockLevels{Allotted: 10, Available: 10}) {
		t.Fatalf("Levels = %+v; want 10 allotted and available", l)
	}
	if _, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: 1, Quantity: 2, RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Load(ctx, surge.StockItem{ID: id, Allotted: 15, PerUserLimit: 2}); err != nil {
		t.Fatalf("Load(increase) = %v", err)
	}
	if l := levels(t, e, id); l.Available != 13 || l.Reserved != 2 {
		t.Fatalf("after increase Levels = %+v; want 13 available, 2 reserved", l)
	}
	if err := e.Load(ctx, surge.StockItem{ID: id, Allotted: 2, PerUserLimit: 2}); err != nil {
		t.Fatalf("Load(decrease to what is held) = %v", err)
	}
	if err := e.Load(ctx, surge.StockItem{ID: id, Allotted: 1, PerUserLimit: 2}); code(err) != surge.ECONFLICT {
		t.Fatalf("Load(below reserved) = %v; want ECONFLICT", err)
	}
	if err := e.Load(ctx, surge.StockItem{ID: id, Allotted: 5, PerUserLimit: 1}); code(err) != surge.ECONFLICT {
		t.Fatalf("Load(lower limit after reservations) = %v; want ECONFLICT", err)
	}
	for _, bad := range []surge.StockItem{{ID: 0, Allotted: 1, PerUserLimit: 1}, {ID: id, Allotted: -1, PerUserLimit: 1},
		{ID: id, Allotted: 1, PerUserLimit: 0}} {
		if err := e.Load(ctx, bad); code(err) != surge.EINVALID {
			t.Errorf("Load(%+v) = %v; want EINVALID", bad, err)
		}
	}
	if _, err := e.Levels(ctx, nextItem.Add(1)); code(err) != surge.ENOTFOUND {
		t.Fatalf("Levels(unknown) = %v; want ENOTFOUND", err)
	}
}

func reserve(t *testing.T, e surge.StockEngine, id, user, qty int64, req string) surge.ReserveResult {
	t.Helper()
	r, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: user, Quantity: qty, RequestID: req})
	if err != nil {
		t.Fatalf("Reserve(%s) = %v", req, err)
	}
	return r
}

func testReserve(t *testing.T, e surge.StockEngine) {
	id := newItem(t, e, 5, 3)
	if r := reserve(t, e, id, 1, 2, "a"); r.Outcome != surge.Reserved || r.Held != 2 {
		t.Fatalf("Reserve(2) = %+v; want reserved, held 2", r)
	}
	if r := reserve(t, e, id, 1, 2, "b"); r.Outcome != surge.LimitReached || r.Held != 2 {
		t.Fatalf("Reserve(2 more, limit 3) = %+v; want limit reached", r)
	}
	if r := reserve(t, e, id, 2, 3, "c"); r.Outcome != surge.Reserved {
		t.Fatalf("Reserve(3) = %+v; want reserved", r)
	}
	if r := reserve(t, e, id, 3, 1, "d"); r.Outcome != surge.SoldOut {
		t.Fatalf("Reserve(1 of 0 left) = %+v; want sold out", r)
	}
	if h, err := e.Held(ctx, id, 1); err != nil || h != 2 {
		t.Fatalf("Held = %d, %v; want 2", h, err)
	}
	if h, _ := e.Held(ctx, id, 99); h != 0 {
		t.Fatalf("Held(nobody) = %d; want 0", h)
	}
	if l := levels(t, e, id); l != (surge.StockLevels{Allotted: 5, Available: 0, Reserved: 5}) {
		t.Fatalf("Levels = %+v", l)
	}
	if _, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: nextItem.Add(1), UserID: 1, Quantity: 1, RequestID: "x"}); code(err) != surge.ENOTFOUND {
		t.Fatalf("Reserve(unknown item) = %v; want ENOTFOUND", err)
	}
}

func testIdempotent(t *testing.T, e surge.StockEngine, opts Options) {
	id := newItem(t, e, 3, 3)
	const bigOrder = 117791825015603201 // a snowflake: beyond what a double holds exactly
	first, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: 1, Quantity: 2, RequestID: "same", OrderID: bigOrder})
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: 1, Quantity: 2, RequestID: "same", OrderID: 999})
	if err != nil || first.Outcome != surge.Reserved || first.Replayed || !again.Replayed ||
		again.Outcome != first.Outcome || again.Held != first.Held || again.OrderID != bigOrder || first.OrderID != bigOrder {
		t.Fatalf("Reserve twice = %+v then %+v, %v; want the first answer again, with the first order id, marked replayed", first, again, err)
	}
	if got, found, err := e.Reservation(ctx, id, 1, "same"); err != nil || !found || got != again {
		t.Fatalf("Reservation = %+v, %v, %v; want %+v", got, found, err, again)
	}
	for _, c := range []struct {
		user int64
		req  string
	}{{2, "same"}, {1, "never"}} {
		if _, found, err := e.Reservation(ctx, id, c.user, c.req); err != nil || found {
			t.Fatalf("Reservation(user %d, %q) = %v, %v; want not found", c.user, c.req, found, err)
		}
	}
	if l := levels(t, e, id); l.Reserved != 2 {
		t.Fatalf("after a retried reservation Levels = %+v; want 2 reserved", l)
	}
	if opts.RequestIDsSeenAcrossUsers {
		if _, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: 2, Quantity: 1, RequestID: "same"}); code(err) != surge.ECONFLICT {
			t.Fatalf("Reserve(same id, other user) = %v; want ECONFLICT", err)
		}
	}
	reserve(t, e, id, 3, 1, "last") // sells out
	if r := reserve(t, e, id, 1, 2, "same"); r.Outcome != surge.Reserved || r.OrderID != bigOrder {
		t.Fatalf("retry after sell-out = %+v; want the first answer (reserved), not sold out", r)
	}
}

func testSettle(t *testing.T, e surge.StockEngine) {
	id := newItem(t, e, 10, 5)
	reserve(t, e, id, 1, 2, "paid")
	reserve(t, e, id, 2, 3, "expired")
	for range 2 {
		if err := e.Confirm(ctx, id, "paid"); err != nil {
			t.Fatalf("Confirm = %v", err)
		}
		if err := e.Release(ctx, id, "expired"); err != nil {
			t.Fatalf("Release = %v", err)
		}
	}
	if l := levels(t, e, id); l != (surge.StockLevels{Allotted: 10, Available: 8, Sold: 2}) {
		t.Fatalf("Levels = %+v; want 8 available, 2 sold (release counted once)", l)
	}
	if open, err := e.OpenReservations(ctx, id); err != nil || len(open) != 0 {
		t.Fatalf("OpenReservations after settling everything = %+v, %v; want none", open, err)
	}
	if _, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: 3, Quantity: 1, RequestID: "open-1", OrderID: 77}); err != nil {
		t.Fatal(err)
	}
	open, err := e.OpenReservations(ctx, id)
	if err != nil || len(open) != 1 || open[0] != (surge.OpenReservation{RequestID: "open-1", UserID: 3, OrderID: 77, Quantity: 1}) {
		t.Fatalf("OpenReservations = %+v, %v; want the one open reservation", open, err)
	}
	if _, err := e.OpenReservations(ctx, nextItem.Add(1)); code(err) != surge.ENOTFOUND {
		t.Fatalf("OpenReservations(unknown item) = %v; want ENOTFOUND", err)
	}
	if h, _ := e.Held(ctx, id, 2); h != 0 {
		t.Fatalf("Held(released) = %d; want 0", h)
	}
	if h, _ := e.Held(ctx, id, 1); h != 2 {
		t.Fatalf("Held(paid) = %d; want 2", h)
	}
	if err := e.Release(ctx, id, "paid"); code(err) != surge.ECONFLICT {
		t.Fatalf("Release(confirmed) = %v; want ECONFLICT", err)
	}
	if err := e.Confirm(ctx, id, "expired"); code(err) != surge.ECONFLICT {
		t.Fatalf("Confirm(released) = %v; want ECONFLICT", err)
	}
	if err := e.Confirm(ctx, id, "nobody"); code(err) != surge.ENOTFOUND {
		t.Fatalf("Confirm(unknown) = %v; want ENOTFOUND", err)
	}
	if err := e.Release(ctx, nextItem.Add(1), "x"); code(err) != surge.ENOTFOUND {
		t.Fatalf("Release(unknown item) = %v; want ENOTFOUND", err)
	}
}

func testBadInput(t *testing.T, e surge.StockEngine) {
	id := newItem(t, e, 10, 5)
	for name, r := range map[string]surge.ReserveRequest{
		"zero quantity":       {ItemID: id, UserID: 1, Quantity: 0, RequestID: "a"},
		"negative quantity":   {ItemID: id, UserID: 1, Quantity: -3, RequestID: "a"},
		"no request id":       {ItemID: id, UserID: 1, Quantity: 1},
		"oversize request id": {ItemID: id, UserID: 1, Quantity: 1, RequestID: strings.Repeat("r", surge.MaxRequestIDBytes+1)},
		"no user":             {ItemID: id, Quantity: 1, RequestID: "a"},
		"no item":             {UserID: 1, Quantity: 1, RequestID: "a"},
	} {
		if _, err := e.Reserve(ctx, r); code(err) != surge.EINVALID {
			t.Errorf("Reserve(%s) = %v; want EINVALID", name, err)
		}
	}
	if err := e.Confirm(ctx, id, ""); code(err) != surge.EINVALID {
		t.Errorf("Confirm(no request id) = %v; want EINVALID", err)
	}
	if l := levels(t, e, id); l != (surge.StockLevels{Allotted: 10, Available: 10}) {
		t.Fatalf("bad input changed Levels to %+v", l)
	}
}

// testStress runs many goroutines of shoppers against items, with retries (repeated request
// ids), confirms and releases, then checks every invariant through the port.
func testStress(t *testing.T, e surge.StockEngine, items int, allotted int64, workers, perWorker int) {
	ids := make([]int64, items)
	for i := range ids {
		ids[i] = newItem(t, e, allotted, 2)
	}
	const users = 500
	var reserved sync.Map // request id → reservation, for the final check
	type res struct {
		item, user, qty int64
		settled         string
	}
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWorker {
				item := ids[rng.IntN(len(ids))]
				user := rng.Int64N(users) + 1
				qty := rng.Int64N(2) + 1
				req := fmt.Sprintf("w%d-%d", w, i)
				if rng.IntN(4) == 0 && i > 0 { // a retry of the previous request
					req = fmt.Sprintf("w%d-%d", w, i-1)
					if v, ok := reserved.Load(req); ok {
						r := v.(*res)
						item, user, qty = r.item, r.user, r.qty
					}
				}
				out, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: item, UserID: user, Quantity: qty, RequestID: req})
				if err != nil {
					if code(err) != surge.ECONFLICT { // a retry under another user is refused
						failures.Add(1)
					}
					continue
				}
				if out.Outcome != surge.Reserved {
					continue
				}
				r := &res{item: item, user: user, qty: qty}
				if prev, loaded := reserved.LoadOrStore(req, r); loaded {
					r = prev.(*res)
					continue
				}
				switch rng.IntN(3) {
				case 0:
					if e.Confirm(ctx, item, req) == nil {
						r.settled = "sold"
					}
				case 1:
					if e.Release(ctx, item, req) == nil {
						r.settled = "released"
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d reservations failed with errors", n)
	}
	want := map[int64]*surge.StockLevels{}
	held := map[[2]int64]int64{}
	reserved.Range(func(_, v any) bool {
		r := v.(*res)
		if want[r.item] == nil {
			want[r.item] = &surge.StockLevels{}
		}
		switch r.settled {
		case "sold":
			want[r.item].Sold += r.qty
			held[[2]int64{r.item, r.user}] += r.qty
		case "released":
		default:
			want[r.item].Reserved += r.qty
			held[[2]int64{r.item, r.user}] += r.qty
		}
		return true
	})
	for _, id := range ids {
		l := levels(t, e, id)
		w := want[id]
		if w == nil {
			w = &surge.StockLevels{}
		}
		if l.Reserved != w.Reserved || l.Sold != w.Sold {
			t.Fatalf("item %d: Levels = %+v; acknowledged reservations say %d reserved, %d sold", id, l, w.Reserved, w.Sold)
		}
	}
	for k, h := range held {
		got, err := e.Held(ctx, k[0], k[1])
		if err != nil || got != h || got > 2 {
			t.Fatalf("Held(item %d, user %d) = %d, %v; want %d (limit 2)", k[0], k[1], got, err, h)
		}
	}
}

func testRace(t *testing.T, e surge.StockEngine) {
	id := newItem(t, e, 100, 1)
	for u := int64(1); u <= 20; u++ {
		req := fmt.Sprint("race-", u)
		reserve(t, e, id, u, 1, req)
		var wg sync.WaitGroup
		var confirmed, released atomic.Int64
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					if e.Confirm(ctx, id, req) == nil {
						confirmed.Add(1)
					}
				} else if e.Release(ctx, id, req) == nil {
					released.Add(1)
				}
			}()
		}
		wg.Wait()
		if (confirmed.Load() == 0) == (released.Load() == 0) {
			t.Fatalf("reservation %s: %d confirms and %d releases succeeded; want exactly one kind to win", req, confirmed.Load(), released.Load())
		}
	}
	l := levels(t, e, id)
	if l.Sold+l.Available != 100 || l.Reserved != 0 {
		t.Fatalf("after the races Levels = %+v", l)
	}
}

// testSellOut has twice as many shoppers as units race for them, with some releases returning
// units mid-way: exactly the allotment is taken, never more, and nothing is left unsold.
func testSellOut(t *testing.T, e surge.StockEngine) {
	const units = 100
	id := newItem(t, e, units, 1)
	var wg sync.WaitGroup
	var got, released atomic.Int64
	for u := int64(1); u <= 2*units; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fmt.Sprint("sell-", u)
			res, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: u, Quantity: 1, RequestID: req})
			if err != nil {
				t.Errorf("Reserve = %v", err)
				return
			}
			if res.Outcome != surge.Reserved {
				return
			}
			got.Add(1)
			if u%10 == 0 && e.Release(ctx, id, req) == nil {
				released.Add(1)
			}
		}()
	}
	wg.Wait()
	l := levels(t, e, id)
	if l.Reserved != got.Load()-released.Load() || l.Reserved > units {
		t.Fatalf("Levels = %+v after %d reservations and %d releases", l, got.Load(), released.Load())
	}
	// Whatever is still available can be bought by latecomers, down to exactly zero.
	for u := int64(10_000); l.Available > 0 && u < 10_000+3*units; u++ {
		e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: u, Quantity: 1, RequestID: fmt.Sprint("late-", u)})
		l = levels(t, e, id)
	}
	if l.Available != 0 || l.Reserved != units {
		t.Fatalf("after latecomers Levels = %+v; want all %d units reserved", l, units)
	}
	if r, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: id, UserID: 99_999, Quantity: 1, RequestID: "one-more"}); err != nil || r.Outcome != surge.SoldOut {
		t.Fatalf("Reserve after sell-out = %+v, %v; want sold out", r, err)
	}
}
