package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/postgres"
	"github.com/surgecommerce/surge/promo"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/reconcile"
	"github.com/surgecommerce/surge/redis"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/sale"
	"github.com/surgecommerce/surge/snowflake"
	"github.com/surgecommerce/surge/sqlite"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/stream"
	"github.com/surgecommerce/surge/voucher"
)

// HTTP server bounds. ReadTimeout leaves room for a 64 MiB import on a slow link; writes have no
// deadline because dashboards hold streams open.
const (
	shutdownTimeout   = 10 * time.Second
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
)

// relational is what both relational backends offer.
type relational interface {
	surge.UserStore
	surge.CatalogStore
	surge.SessionStore
	surge.OrderStore
	surge.BlacklistStore
	surge.CouponStore
	surge.ActivityStore
	surge.RiskStore
	surge.RefundStore
	surge.VoucherStore
	surge.ReconcileStore
	surge.SettlementStore
	surge.OrderViewStore
	Migrate(ctx context.Context) ([]int64, error)
	Ping(ctx context.Context) error
	Close() error
}

// Main is a running Surge node: what surge serve starts, and what end-to-end tests start on
// port 0.
type Main struct {
	Config Config
	Log    *slog.Logger

	// Addr is the address the API listens on, known once Run returns; AdminAddr the profiling
	// listener's, when there is one.
	Addr, AdminAddr string
	// BusURL is where other processes reach the embedded NATS, when --nats-listen is set.
	BusURL string

	srv     *http.Server
	admin   *http.Server
	closers []func() error
	// db and promo are the node's relational store and promotion service, for the benches
	// that fill a catalog and quote in process.
	db    relational
	promo *promo.Service
	// streams are the stream engine's metrics, shared by the node's pipelines.
	streams *stream.Metrics
}

// NewMain returns a node with the given settings.
func NewMain(c Config, log *slog.Logger) *Main { return &Main{Config: c, Log: log} }

// Run opens the backends, migrates the schema, and starts serving. It returns once the API
// listens; Close stops it.
func (m *Main) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	c := m.Config
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ids, err := snowflake.New(c.WorkerID)
	if err != nil {
		return err
	}
	b, err := m.openBackends(ctx, ids.Next)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr) // first, so the node knows its own address
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.Addr, err)
	}
	m.Addr = ln.Addr().String()
	deps, err := m.services(ctx, b, ids.Next)
	if err != nil {
		ln.Close()
		return err
	}
	m.db, m.promo = b.db, deps.Promo
	api, err := surgehttp.New(deps)
	if err != nil {
		ln.Close()
		return err
	}
	m.srv = m.serve(ln, api.Handler())
	m.srv.RegisterOnShutdown(api.CloseStreams) // open event streams end, rather than hold up shutdown
	if c.AdminAddr != "" {
		aln, err := net.Listen("tcp", c.AdminAddr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", c.AdminAddr, err)
		}
		m.AdminAddr = aln.Addr().String()
		m.admin = m.serve(aln, pprofMux())
	}
	m.Log.Info("surge serving", "addr", m.Addr, "data_dir", c.DataDir, "relational", m.relationalName(),
		"bus", map[bool]string{true: "external nats", false: "embedded nats"}[c.NATSURL != ""],
		"counters", map[bool]string{true: "redis", false: "in process"}[c.RedisURL != ""])
	return nil
}

// backends are the open storage and messaging backends with their readiness checks.
type backends struct {
	db      relational
	bus     *nats.Bus
	counter surge.Counter
	stock   surge.StockEngine
	checks  []surgehttp.Check
}

// openBackends opens what the configuration picks; Close closes them.
func (m *Main) openBackends(ctx context.Context, ids func() (int64, error)) (*backends, error) {
	c := m.Config
	b := &backends{counter: ratelimit.NewCounter(nil)}
	var err error
	if b.db, err = m.openRelational(ctx, ids); err != nil {
		return nil, err
	}
	applied, err := b.db.Migrate(ctx)
	if err != nil {
		return nil, err
	}
	if len(applied) > 0 {
		m.Log.Info("schema migrated", "versions", applied)
	}
	b.checks = append(b.checks, surgehttp.Check{Name: m.relationalName(), Check: b.db.Ping})
	if b.bus, err = nats.Open(ctx, nats.Config{URL: c.NATSURL, DataDir: c.DataDir, ListenAddr: c.NATSListen, EventBytes: c.EventLogBytes}, m.Log); err != nil {
		return nil, err
	}
	m.closers = append(m.closers, func() error { b.bus.Close(); return nil })
	b.checks = append(b.checks, surgehttp.Check{Name: "nats", Check: b.bus.Ping})
	if m.BusURL = b.bus.ClientURL(); m.BusURL != "" {
		m.Log.Info("embedded nats listening", "url", m.BusURL)
	}
	if c.RedisURL != "" {
		rc, err := redis.Open(ctx, c.RedisURL, c.RedisPrefix)
		if err != nil {
			return nil, err
		}
		m.closers = append(m.closers, rc.Close)
		b.checks = append(b.checks, surgehttp.Check{Name: "redis", Check: rc.Ping})
		b.counter = rc.Counter()
		rs := rc.Stock(redis.StockOptions{Buckets: c.StockBuckets, BucketMinAllotment: c.BucketMin})
		if err := rs.LoadScripts(ctx); err != nil {
			return nil, err
		}
		b.stock = rs
		if c.wrapStock != nil {
			b.stock = c.wrapStock(rs)
		}
		return b, nil
	}
	eng, err := stock.Open(stock.Options{Dir: filepath.Join(c.DataDir, "stock")})
	if err != nil {
		return nil, err
	}
	m.closers = append(m.closers, eng.Close)
	b.checks = append(b.checks, surgehttp.Check{Name: "stock", Check: func(context.Context) error { return eng.Err() }})
	b.stock = eng
	if c.wrapStock != nil {
		b.stock = c.wrapStock(eng)
	}
	return b, nil
}

// services builds the business services over the backends and creates the bootstrap admin.
func (m *Main) services(ctx context.Context, b *backends, ids func() (int64, error)) (surgehttp.Deps, error) {
	c := m.Config
	secret, err := m.tokenSecret()
	if err != nil {
		return surgehttp.Deps{}, err
	}
	sender := auth.NewLogSender(m.Log)
	authn, err := auth.New(b.db, ids, b.counter, sender,
		auth.Config{Log: m.Log, Secret: secret, AccessTTL: c.AccessTTL, RefreshTTL: c.RefreshTTL, OTPTTL: c.OTPTTL}, nil)
	if err != nil {
		return surgehttp.Deps{}, err
	}
	if c.AdminPassword != "" {
		created, err := authn.Bootstrap(ctx, c.AdminUser, c.AdminPassword)
		if err != nil {
			return surgehttp.Deps{}, fmt.Errorf("bootstrap admin: %w", err)
		}
		if created {
			m.Log.Info("bootstrap admin created", "username", c.AdminUser)
		}
	}
	deps := surgehttp.Deps{Auth: authn, Catalog: catalog.New(b.db, b.db, ids, nil), Names: catalog.NewNames(b.db, catalog.NamesRetry), Sale: sale.New(b.db, b.stock, ids, nil),
		Checks: b.checks, Log: m.Log, Registry: prometheus.NewRegistry(), TrustedProxies: c.proxies()}
	if c.Dev {
		deps.DevCodes = sender
		m.Log.Warn("development mode: one-time codes are exposed at /v1/dev/otp")
	}
	deps.Coupons = coupon.NewService(b.db, b.db, coupon.NewLedger(b.stock), b.counter, b.bus, m.Log, ids, nil)
	deps.Coupons.Register(deps.Registry)
	deps.Promo = promo.New(promo.Config{Store: b.db, Orders: b.db, Catalog: b.db, Batches: b.db, Coupons: deps.Coupons,
		Changes: promoChanges{bus: b.bus}, Bus: b.bus, Log: m.Log, IDs: ids})
	deps.Promo.Register(deps.Registry)
	deps.Checkout = checkout.New(b.db, b.db, deps.Coupons, deps.Promo, b.bus, m.Log, ids, nil, surge.DefaultPayTimeout)
	if err := deps.Coupons.Load(ctx); err != nil {
		return deps, fmt.Errorf("loading the live coupon batches: %w", err)
	}
	if err := deps.Promo.Load(ctx); err != nil {
		return deps, fmt.Errorf("loading the live activities: %w", err)
	}
	if err := m.salePath(ctx, b, ids, secret, &deps); err != nil { // its orders carry coupons
		return deps, err
	}
	// Screen tickets are signed with a key of their own, derived from the token secret that
	// every node shares.
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("surge screen tickets"))
	deps.Tickets = live.NewTickets(mac.Sum(nil), nil)
	return deps, m.livePlatform(ctx, b, &deps)
}

// salePath starts what runs a sale: the order writer and sweeper, the blacklist, the purchase
// path, and the simulated payment provider unless a real one is configured.
func (m *Main) salePath(ctx context.Context, b *backends, ids func() (int64, error), secret []byte, deps *surgehttp.Deps) error {
	c := m.Config
	if err := b.bus.EnsureStreams(ctx); err != nil {
		return err
	}
	if n, err := deps.Sale.PreheatAll(ctx); err != nil {
		return fmt.Errorf("preheat: %w", err)
	} else if n > 0 {
		m.Log.Info("published sessions preheated", "sessions", n)
	}
	payKey, err := m.secretFile(c.PaymentKey, "payment.key")
	if err != nil {
		return err
	}
	public := c.PublicURL
	if public == "" {
		public = "http://" + m.Addr
	}
	payURL, refundURL := c.PaymentURL, c.RefundURL
	var ledgers reconcile.Ledgers
	if c.LedgerURL != "" {
		ledgers = urlLedgers(c.LedgerURL, payKey)
	}
	if payURL == "" {
		ledgerDir := c.PaySimLedger
		if ledgerDir == "" {
			ledgerDir = filepath.Join(c.DataDir, "paysim-ledger")
		}
		if ledgers == nil {
			ledgers = fileLedgers(ledgerDir)
		}
		sim, err := paysim.Open(payKey, paysim.Options{InFlight: c.PaySimFlight, LedgerDir: ledgerDir}, m.Log)
		if err != nil {
			return err
		}
		m.closers = append(m.closers, func() error { sim.Close(); return nil })
		deps.Paysim = sim.Handler()
		payURL = public + "/paysim/v1/pay"
		if refundURL == "" {
			refundURL = public + "/paysim/v1/refunds"
		}
	}
	bg, stop := context.WithCancel(context.Background())
	pending := order.NewPending(nil)
	deps.Vouchers = voucher.New(b.db, b.db, nil, b.bus, deps.Registry, m.Log, nil)
	orders := order.New(b.db, b.db, b.stock, b.bus, order.Config{PaymentKey: payKey, PaymentURL: payURL,
		NotifyURL: public + "/v1/payments/callback", TicketTTL: 10 * time.Minute, Worker: c.WorkerID, Pending: pending,
		Peers: b.bus, Registry: deps.Registry, Coupons: deps.Coupons, Activities: deps.Promo,
		Refunds: b.db, RefundURL: refundURL, Vouchers: deps.Vouchers}, m.Log, nil)
	deps.Vouchers.SetOrders(orders)
	unserve, err := b.bus.ServePending(c.WorkerID, pending.Get)
	if err != nil {
		stop()
		return err
	}
	m.closers = append(m.closers, func() error { unserve(); return nil })
	var consumed <-chan struct{}
	if c.orderWriterOff {
		off := make(chan struct{})
		close(off)
		consumed = off
	} else if consumed, err = b.bus.Consume(bg, nats.OrdersStream, "order-writer", m.Log, orders.HandleCreate); err != nil {
		stop()
		return err
	}
	blacklist := risk.NewBlacklist(b.db, m.Log, nil)
	if err := blacklist.Refresh(ctx); err != nil {
		stop()
		return err
	}
	var wg sync.WaitGroup
	gate, err := m.riskControl(ctx, bg, b, ids, secret, deps, &wg)
	if err != nil {
		stop()
		wg.Wait()
		return err
	}
	if err := m.reconciliation(ctx, bg, b, deps, orders, ledgers, &wg); err != nil {
		stop()
		wg.Wait()
		return err
	}
	m.orderViews(bg, b, deps, &wg)
	wg.Add(5)
	go func() { defer wg.Done(); deps.Promo.Run(bg) }()                                  // stops with bg
	go func() { defer wg.Done(); orders.Run(bg) }()                                      // stops with bg
	go func() { defer wg.Done(); blacklist.Run(bg) }()                                   // stops with bg
	go func() { defer wg.Done(); deps.Coupons.Run(bg) }()                                // stops with bg
	go func() { defer wg.Done(); deps.Coupons.RunGrants(bg, c.WorkerID, c.GrantRate) }() // stops with bg
	buy := purchase.New(purchase.Config{TokenKey: secret, UserRate: rate.Limit(c.UserRate), UserBurst: int(c.UserRate*2.5 + 1),
		IPRate: rate.Limit(c.IPRate), IPBurst: int(c.IPRate*2 + 1), InFlight: c.InFlight, AnswerWait: c.AnswerWait, MaxWait: c.MaxWait,
		Coupons: deps.Coupons, Risk: gate}, b.db, b.stock, b.db, pending, b.bus, blacklist, ids,
		purchase.NewMetrics(deps.Registry), m.Log, nil)
	m.closers = append(m.closers, func() error {
		buy.Close()
		stop()
		<-consumed
		wg.Wait()
		return nil
	})
	deps.Purchase, deps.Orders, deps.Blacklist, deps.PaymentKey = buy, orders, blacklist, payKey
	deps.Audit = &audit.Auditor{Sessions: b.db, Stock: b.stock, Orders: b.db, Coupons: b.db, Issuer: deps.Coupons}
	return nil
}

func (m *Main) relationalName() string {
	if m.Config.PostgresURL != "" {
		return "postgres"
	}
	return "sqlite"
}

func (m *Main) openRelational(ctx context.Context, ids func() (int64, error)) (relational, error) {
	var db relational
	var err error
	if m.Config.PostgresURL != "" {
		db, err = postgres.Open(ctx, m.Config.PostgresURL, ids)
	} else {
		db, err = sqlite.Open(ctx, filepath.Join(m.Config.DataDir, "surge.db"), ids)
	}
	if err != nil {
		return nil, err
	}
	m.closers = append(m.closers, db.Close)
	return db, nil
}

// tokenSecret returns the configured secret, or the one generated into the data dir on the
// first start (so tokens survive restarts of a single node).
func (m *Main) tokenSecret() ([]byte, error) {
	if m.Config.TokenSecret == "" && m.Config.PostgresURL != "" {
		m.Log.Warn("no token-secret set: tokens from this node will not be accepted by other nodes")
	}
	return m.secretFile(m.Config.TokenSecret, "token.secret")
}

// secretFile returns a configured secret, or one generated once into a file of the data dir.
func (m *Main) secretFile(configured, name string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	path := filepath.Join(m.Config.DataDir, name)
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	return []byte(secret), nil
}

func (m *Main) serve(ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout,
		ErrorLog: slog.NewLogLogger(m.Log.Handler(), slog.LevelWarn)}
	go func() { // stops when Close shuts the server down
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return srv
}

func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Close stops serving (letting in-flight requests finish) and closes the backends.
func (m *Main) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, s := range []*http.Server{m.srv, m.admin} {
		if s != nil {
			errs = append(errs, s.Shutdown(ctx))
		}
	}
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}

// newLogger builds the structured logger the settings ask for.
func newLogger(c Config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(surgehttp.WithRequestID(h)), nil
}
