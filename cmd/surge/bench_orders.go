package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/postgres"
	"github.com/surgecommerce/surge/snowflake"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/storetest"
)

// OrderBenchResult is what surge bench orders measured.
type OrderBenchResult struct {
	Backend       string  `json:"backend"`
	Orders        int     `json:"orders"`         // all the merchant's
	ShopperOrders int     `json:"shopper_orders"` // the one busy shopper's
	LoadSec       float64 `json:"load_sec"`       // 0 when the data was there already (--keep)
	LoadUsPerRow  float64 `json:"load_us_per_order"`
	Queries       int     `json:"queries_each"`
	// Latencies of each reader's query, in milliseconds.
	Readers []OrderBenchReader `json:"readers"`
}

// OrderBenchReader is one query's latencies.
type OrderBenchReader struct {
	Name  string  `json:"name"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	Rows  float64 `json:"rows_per_page"` // on average
}

// orderBenchLoaded is the checkpoint that records a finished load, and its size.
const orderBenchLoaded = "bench-orders-loaded"

// orderBenchStore is what the bench needs of a backend.
type orderBenchStore interface {
	surge.OrderViewStore
	Migrate(ctx context.Context) ([]int64, error)
	Close() error
}

// benchOrders measures the order views' readers over a big shop.
func benchOrders(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := command{name: "bench orders",
		about: `Measures the order views (R-4.3): loads the views of one merchant's N orders spread over many
shoppers, one of whom has 10,000 of them, straight through the store (in transactions of 10,000),
then times each reader: the busy shopper's first page and a page 5,000 orders deep, the
merchant's paid orders of one week, and support's search by a phone's digits, a piece of a
username and the start of an order id; p50 and p99 of each over --queries runs, one at a time.
With --keep the data stays (SQLite: --data-dir; PostgreSQL: --schema) and a later run with the
same --orders measures it again without loading.`,
		env: envFlags(map[string]string{"postgres-url": "SURGE_POSTGRES_URL"}),
		examples: []string{"surge bench orders --orders 1000000", "surge bench orders --backend postgres --postgres-url postgres://localhost/surge --orders 10000000 --keep --schema bench_orders",
			"surge bench orders --orders 10000000 --data-dir ./bench-orders --keep --json"}}.flagSet(stderr)
	backend := fs.String("backend", "sqlite", "sqlite or postgres")
	pgURL := fs.String("postgres-url", env("SURGE_POSTGRES_URL"), "PostgreSQL for --backend postgres")
	schema := fs.String("schema", "", "PostgreSQL schema to load into (default: a new one, dropped at the end unless --keep)")
	dir := fs.String("data-dir", "", "SQLite data directory (default: a temporary one, removed at the end unless --keep)")
	keep := fs.Bool("keep", false, "keep the loaded data, and measure data already loaded instead of loading it again")
	orders := fs.Int("orders", 10_000_000, "orders of the merchant")
	queries := fs.Int("queries", 1000, "runs of each query")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *orders < 10_000 || *queries < 1 || (*backend != "sqlite" && *backend != "postgres") || (*backend == "postgres" && *pgURL == "") {
		return fmt.Errorf("orders must be at least 10000, queries positive, backend sqlite or postgres (with --postgres-url)")
	}
	store, analyze, cleanup, err := openOrderBenchStore(ctx, *backend, *pgURL, *schema, *dir, *keep, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	data := newOrderBenchData(*orders)
	res := OrderBenchResult{Backend: *backend, Orders: *orders, ShopperOrders: data.busyOrders, Queries: *queries}
	if loaded, err := store.ViewCheckpoint(ctx, orderBenchLoaded); err != nil {
		return err
	} else if loaded != uint64(*orders) {
		if loaded != 0 {
			return fmt.Errorf("the store holds a load of %d orders; use another --data-dir or --schema", loaded)
		}
		start := time.Now()
		if err := data.load(ctx, store, stderr); err != nil {
			return err
		}
		res.LoadSec = time.Since(start).Seconds()
		res.LoadUsPerRow = float64(time.Since(start).Microseconds()) / float64(*orders)
	}
	// The planner's statistics, as autovacuum keeps them in service; fresh tables have none.
	if err := analyze(ctx); err != nil {
		return err
	}
	for _, r := range data.readers(store) {
		m, err := timeReader(ctx, r, *queries)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		res.Readers = append(res.Readers, m)
		fmt.Fprintf(stderr, "bench orders: %s p99 %.2f ms\n", m.Name, m.P99Ms)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "%s: one merchant's %d orders, one shopper's %d", res.Backend, res.Orders, res.ShopperOrders)
	if res.LoadSec > 0 {
		fmt.Fprintf(stdout, "; loaded in %.0f s (%.1f µs an order)", res.LoadSec, res.LoadUsPerRow)
	}
	fmt.Fprintf(stdout, "\n%-34s %9s %9s %9s %6s\n", "reader", "p50 ms", "p99 ms", "max ms", "rows")
	for _, m := range res.Readers {
		fmt.Fprintf(stdout, "%-34s %9.2f %9.2f %9.2f %6.1f\n", m.Name, m.P50Ms, m.P99Ms, m.MaxMs, m.Rows)
	}
	return nil
}

// openOrderBenchStore opens and migrates the backend, in a place of its own, and returns how
// to gather the planner's statistics of the views.
func openOrderBenchStore(ctx context.Context, backend, pgURL, schema, dir string, keep bool, stderr io.Writer) (orderBenchStore, func(context.Context) error, func(), error) {
	var store orderBenchStore
	cleanup := func() {}
	analyze := func(context.Context) error { return nil } // SQLite plans these queries well without
	if backend == "sqlite" {
		if dir == "" {
			tmp, err := os.MkdirTemp("", "surge-bench-orders-")
			if err != nil {
				return nil, nil, nil, err
			}
			dir = tmp
		}
		db, err := sqlite.Open(ctx, filepath.Join(dir, "surge.db"), storetest.IDs())
		if err != nil {
			return nil, nil, nil, err
		}
		store = db
		cleanup = func() {
			db.Close()
			if !keep {
				os.RemoveAll(dir)
			}
		}
	} else {
		admin, err := postgres.Open(ctx, pgURL, storetest.IDs())
		if err != nil {
			return nil, nil, nil, err
		}
		if schema == "" {
			schema = fmt.Sprintf("surge_bench_orders_%d", rand.Uint64()>>1)
		}
		if _, err := admin.SQL().ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
			admin.Close()
			return nil, nil, nil, err
		}
		u, err := url.Parse(pgURL)
		if err != nil {
			admin.Close()
			return nil, nil, nil, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		db, err := postgres.Open(ctx, u.String(), storetest.IDs())
		if err != nil {
			admin.Close()
			return nil, nil, nil, err
		}
		store = db
		analyze = func(ctx context.Context) error {
			_, err := db.SQL().ExecContext(ctx, "ANALYZE order_views_by_user, order_views_by_merchant, order_search")
			return err
		}
		cleanup = func() {
			db.Close()
			if !keep {
				admin.SQL().ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			}
			admin.Close()
		}
		fmt.Fprintf(stderr, "bench orders: schema %s\n", schema)
	}
	if _, err := store.Migrate(ctx); err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	return store, analyze, cleanup, nil
}

// orderBenchData describes the merchant's orders without holding them: order i is made the
// same way by the load and by the queries that look for it.
type orderBenchData struct {
	n          int
	users      int64
	busyEvery  int // every busyEvery-th order is the busy shopper's
	busyOrders int
	start      time.Time
	step       time.Duration // between two orders' creation
}

const (
	benchMerchant = 7
	benchBusyUser = 1
	benchLoadTx   = 10_000 // orders a transaction of the load writes
)

func newOrderBenchData(n int) *orderBenchData {
	d := &orderBenchData{n: n, users: max(int64(n/10), 1), busyEvery: n / 10_000,
		start: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)}
	d.busyOrders = (n + d.busyEvery - 1) / d.busyEvery
	d.step = 90 * 24 * time.Hour / time.Duration(n) // a quarter's orders
	return d
}

func (d *orderBenchData) created(i int) time.Time { return d.start.Add(time.Duration(i) * d.step) }

// id is a snowflake-shaped id of order i: its creation millisecond and a sequence.
func (d *orderBenchData) id(i int) int64 {
	return d.created(i).Sub(snowflake.Epoch).Milliseconds()<<(snowflake.WorkerBits+snowflake.SequenceBits) | int64(i&4095)
}

func (d *orderBenchData) user(i int) int64 {
	if i%d.busyEvery == 0 {
		return benchBusyUser
	}
	return 1000 + int64(uint64(i)*0x9E3779B97F4A7C15>>20)%d.users
}

func benchPhone(u int64) string    { return fmt.Sprintf("+86139%08d", u%100_000_000) }
func benchUsername(u int64) string { return "s" + strconv.FormatInt(u*2654435761%1_000_000_007, 36) }

func (d *orderBenchData) view(i int) surge.OrderView {
	states := []surge.OrderState{surge.OrderPaid, surge.OrderPaid, surge.OrderPaid, surge.OrderPaid, surge.OrderPaid, surge.OrderPaid,
		surge.OrderCancelled, surge.OrderCancelled, surge.OrderPendingPayment, surge.OrderConsumed}
	u := d.user(i)
	id := d.id(i)
	v := surge.OrderView{ID: id, TxnID: "T" + strconv.FormatInt(id, 10), UserID: u, MerchantID: benchMerchant, SessionID: 1 + int64(i/100_000),
		ItemID: 11 + int64(i%50), SKUID: 101 + int64(i%50), Quantity: 1, Amount: surge.Money{Amount: 9900, Currency: "CNY"},
		State: states[i%len(states)], CreatedAt: d.created(i), Phone: benchPhone(u), Username: benchUsername(u)}
	v.Version = v.State.Rank()
	if v.State.PaidOrLater() {
		paid := v.CreatedAt.Add(time.Minute)
		v.PaidAt = &paid
	}
	return v
}

// load writes every order's views, benchLoadTx to a transaction, and records the load.
func (d *orderBenchData) load(ctx context.Context, store orderBenchStore, stderr io.Writer) error {
	start, last := time.Now(), time.Now()
	batch := make([]surge.OrderView, 0, benchLoadTx)
	for i := range d.n {
		batch = append(batch, d.view(i))
		if len(batch) < benchLoadTx && i < d.n-1 {
			continue
		}
		if err := store.PutOrderViews(ctx, batch, surge.ViewCheckpoint{}); err != nil {
			return err
		}
		batch = batch[:0]
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			fmt.Fprintf(stderr, "bench orders: loaded %d of %d orders, %.0f a second\n", i+1, d.n, float64(i+1)/time.Since(start).Seconds())
		}
	}
	return store.PutOrderViews(ctx, nil, surge.ViewCheckpoint{Name: orderBenchLoaded, Position: uint64(d.n)})
}

// benchReader is one reader's query, run with a fresh random target each time.
type benchReader struct {
	name string
	run  func(ctx context.Context, rng *rand.Rand) (*surge.OrderPage, error)
}

const benchPage = 20

func (d *orderBenchData) readers(store surge.OrderViewStore) []benchReader {
	// The busy shopper's order 5,000 from the newest: its orders are every busyEvery-th.
	deepIdx := (d.busyOrders - 5000) * d.busyEvery
	deep := &surge.OrderCursor{CreatedAt: d.created(deepIdx), ID: d.id(deepIdx)}
	week := 7 * 24 * time.Hour
	randomOrder := func(rng *rand.Rand) int { return rng.IntN(d.n) }
	return []benchReader{
		{"shopper: first page", func(ctx context.Context, _ *rand.Rand) (*surge.OrderPage, error) {
			return store.ShopperOrders(ctx, benchBusyUser, nil, benchPage)
		}},
		{"shopper: 5,000 orders deep", func(ctx context.Context, _ *rand.Rand) (*surge.OrderPage, error) {
			return store.ShopperOrders(ctx, benchBusyUser, deep, benchPage)
		}},
		{"merchant: paid, one week", func(ctx context.Context, rng *rand.Rand) (*surge.OrderPage, error) {
			from := d.start.Add(time.Duration(rng.Int64N(int64(90*24*time.Hour - week))))
			return store.MerchantOrders(ctx, benchMerchant, surge.OrderFilter{States: []surge.OrderState{surge.OrderPaid}, From: from, To: from.Add(week)}, nil, benchPage)
		}},
		{"merchant: paid or cancelled", func(ctx context.Context, rng *rand.Rand) (*surge.OrderPage, error) {
			return store.MerchantOrders(ctx, benchMerchant, surge.OrderFilter{States: []surge.OrderState{surge.OrderPaid, surge.OrderCancelled}}, nil, benchPage)
		}},
		{"support: phone digits", func(ctx context.Context, rng *rand.Rand) (*surge.OrderPage, error) {
			p := benchPhone(d.user(randomOrder(rng)))
			return store.SearchOrders(ctx, surge.OrderSearch{Text: p[len(p)-8:]}, nil, benchPage)
		}},
		{"support: piece of a username", func(ctx context.Context, rng *rand.Rand) (*surge.OrderPage, error) {
			name := benchUsername(d.user(randomOrder(rng)))
			return store.SearchOrders(ctx, surge.OrderSearch{Text: name[1:]}, nil, benchPage)
		}},
		{"support: order id prefix", func(ctx context.Context, rng *rand.Rand) (*surge.OrderPage, error) {
			id := strconv.FormatInt(d.id(randomOrder(rng)), 10)
			return store.SearchOrders(ctx, surge.OrderSearch{Text: id[:len(id)-2]}, nil, benchPage)
		}},
	}
}

// timeReader runs a reader n times, one at a time, and sums up its latencies.
func timeReader(ctx context.Context, r benchReader, n int) (OrderBenchReader, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 0, n)
	rows := 0
	for range n {
		start := time.Now()
		p, err := r.run(ctx, rng)
		if err != nil {
			return OrderBenchReader{}, err
		}
		lat = append(lat, time.Since(start))
		rows += len(p.Items)
	}
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[min(int(q*float64(n)), n-1)].Microseconds()) / 1000 }
	return OrderBenchReader{Name: r.name, P50Ms: ms(0.50), P99Ms: ms(0.99), MaxMs: ms(1), Rows: float64(rows) / float64(n)}, nil
}
