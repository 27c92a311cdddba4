// Package http is Surge's HTTP JSON API: the routes under /v1, health and readiness, Prometheus
// metrics and the OpenAPI description, over net/http.
package http

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/orderview"
	"github.com/surgecommerce/surge/promo"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/reconcile"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/sale"
	"github.com/surgecommerce/surge/settlement"
	"github.com/surgecommerce/surge/voucher"
)

// Bounds of the HTTP layer.
const (
	MaxBodyBytes    = 1 << 20 // a JSON request body; imports have their own limit
	maxRequestIDLen = 64
	checkTimeout    = 2 * time.Second
)

// Check is one readiness check: a backend and how to ask whether it answers.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// CodeSource exposes one-time codes in development mode.
type CodeSource interface {
	LastCode(phone string) (string, bool)
}

// Deps are what the API serves.
type Deps struct {
	Auth     *auth.Service
	Catalog  *catalog.Service
	Sale     *sale.Service
	Checks   []Check
	Log      *slog.Logger
	Registry *prometheus.Registry
	// DevCodes, when set, enables GET /v1/dev/otp, which shows the last code sent to a phone.
	// Only for development (surge serve --dev).
	DevCodes CodeSource

	Purchase   *purchase.Service
	Orders     *order.Service
	Blacklist  *risk.Blacklist
	Audit      *audit.Auditor      // checks a session against the invariants
	PaymentKey []byte              // verifies payment provider notifications
	Paysim     http.Handler        // the simulated payment provider, served under /paysim/ when set
	Names      Names               // product names for the big screen's top items (nil: SKU ids alone)
	Coupons    *coupon.Service     // coupon batches and claims (nil: no coupon routes)
	Checkout   *checkout.Service   // ordinary checkouts (nil: no checkout route)
	Promo      *promo.Service      // promotion activities and quotes (nil: no promotion routes)
	Risk       *risk.Service       // risk rules, verdicts and the allow-list (nil: no risk routes)
	Vouchers   *voucher.Service    // vouchers of paid voucher products (nil: no voucher routes)
	Reconcile  *reconcile.Service  // what reconciliation found (nil: no reconciliation routes)
	Settlement *settlement.Service // shops' settlements (nil: no settlement routes)

	// OrderViews serves the order lists: the shopper's, the merchant's, support's search (nil:
	// the shopper's from the order store, no others).
	OrderViews *orderview.Service

	Board   *live.Board    // the live metrics, served from memory
	Ingest  *live.Ingester // takes business events into the events log
	Tickets *live.Tickets  // short-lived tickets that open the big screen's stream

	// TrustedProxies are the load balancers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
}

// Server is the API.
type Server struct {
	// streams ends with CloseStreams: long-lived event streams watch it.
	streams      context.Context
	closeStreams context.CancelFunc

	deps    Deps
	routes  []route
	mux     *http.ServeMux
	metrics *metrics
	logs    *logLimiter
	openapi []byte
}

// New builds the API and registers its metrics.
func New(d Deps) (*Server, error) {
	s := &Server{deps: d, mux: http.NewServeMux(), metrics: newMetrics(d.Registry, d.Checks), logs: newLogLimiter()}
	s.streams, s.closeStreams = context.WithCancel(context.Background())
	s.routes = s.table()
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.endpoint(rt))
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry}))
	s.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.openapi)
	})
	if d.Paysim != nil {
		s.mux.Handle("/paysim/", d.Paysim)
	}
	if d.Board != nil {
		s.mux.HandleFunc("GET /live", s.screenPage)
		s.mux.HandleFunc("GET /live/{room}", s.screenPage)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, surge.Errorf(surge.ENOTFOUND, "no route %s %s", r.Method, r.URL.Path))
	})
	var err error
	if s.openapi, err = json.MarshalIndent(s.openAPI(), "", "  "); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return s, nil
}

// CloseStreams ends the open event streams, as a shutdown begins (http.Server.Shutdown waits
// for handlers, and a stream's handler would otherwise run until its client leaves).
func (s *Server) CloseStreams() { s.closeStreams() }

// Handler returns the whole API with request ids, logging, metrics and panic recovery.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the request id carried by ctx.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithRequestID wraps a log handler so that every record logged with a request's context
// carries its request id, whichever package logs it.
func WithRequestID(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// recorder remembers the status a handler wrote.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the recorder.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// slowRequest is how long a request may take before its log line is a warning.
const slowRequest = time.Second

// Bounds of the request log's warnings and errors: a node past its capacity answers thousands
// of slow or refused requests a second, and writing a line for each (one lock, one write to
// stderr) held 254 of its goroutines at once in a big sale, slowing it further.
const (
	maxLogLinesPerSec = 20
	logLineBurst      = 50
)

// logLimiter passes at most maxLogLinesPerSec request lines a second (a burst of logLineBurst),
// and counts those it leaves out until the next one it passes.
type logLimiter struct {
	lim     *rate.Limiter
	dropped atomic.Int64
}

func newLogLimiter() *logLimiter {
	return &logLimiter{lim: rate.NewLimiter(maxLogLinesPerSec, logLineBurst)}
}

// allow reports whether a line may be written at now, and how many were left out before it.
func (l *logLimiter) allow(now time.Time) (left int64, ok bool) {
	if !l.lim.AllowN(now, 1) {
		l.dropped.Add(1)
		return 0, false
	}
	return l.dropped.Swap(0), true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-Id", id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			s.deps.Log.ErrorContext(r.Context(), "panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if rec.status == 0 {
				s.fail(rec, r, surge.Errorf(surge.EINTERNAL, "internal error"))
			}
		}
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		d := time.Since(start)
		s.metrics.observe(route, methodLabel(r.Method), trafficLabel(r), rec.status, d)
		// One line per request is the access log at debug level: in a sale the node answers tens
		// of thousands of sold-outs a second, which the metrics count; failures and slow answers
		// are always logged.
		level := slog.LevelDebug
		switch {
		case rec.status >= 500 && rec.status != http.StatusServiceUnavailable:
			level = slog.LevelError
		case rec.status == http.StatusServiceUnavailable: // refused for load, or a backend down: the readiness says which
			level = slog.LevelWarn
		case d >= slowRequest && rec.Header().Get("Content-Type") != "text/event-stream": // streams are long by design
			level = slog.LevelWarn
		}
		if !s.deps.Log.Enabled(r.Context(), level) {
			return
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", route), slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(d.Microseconds())/1000), slog.String("remote", s.clientIP(r))}
		if level > slog.LevelDebug {
			left, ok := s.logs.allow(time.Now())
			if !ok {
				s.metrics.suppressed.Inc()
				return
			}
			if left > 0 {
				attrs = append(attrs, slog.Int64("suppressed_before", left))
			}
		}
		s.deps.Log.LogAttrs(r.Context(), level, "request", attrs...)
	}()
	s.mux.ServeHTTP(rec, r)
}

// methodLabel keeps the metrics' method label to a known set: a client can send any method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions:
		return m
	}
	return "OTHER"
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// newRequestID names a request that came without an id: 96 random bits, from the runtime's
// generator (seeded by the system, and without a system call per request).
func newRequestID() string {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(b[8:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

// clientIP is the address a request came from: the peer, or, when the peer is one of the
// configured trusted proxies (a load balancer), the right-most X-Forwarded-For address that is
// not itself a trusted proxy. A header from anyone else is ignored: any client can forge it.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.deps.TrustedProxies) == 0 || !s.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if _, err := netip.ParseAddr(hop); err != nil {
			return host // a malformed chain: trust only what we saw
		}
		if !s.trusted(hop) {
			return hop
		}
	}
	return host
}

func (s *Server) trusted(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, p := range s.deps.TrustedProxies {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// reply writes a JSON response.
func reply(w http.ResponseWriter, status int, v any) {
	if v == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if raw, ok := v.(json.RawMessage); ok { // encoded already, as a cache keeps it
		w.Write(raw)
		w.Write([]byte{'\n'})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// fail writes the error envelope. Internal errors are logged with their detail and answered
// without it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := surge.ErrorCode(err)
	if code == surge.EINTERNAL {
		s.deps.Log.ErrorContext(r.Context(), "internal error", "err", err)
	}
	if code == surge.ERATELIMIT || code == surge.EUNAVAILABLE {
		setRetryAfter(w.Header(), surge.RetryAfterMs(err))
	}
	body := ErrorBody{Error: ErrorDetail{Code: code, Message: surge.ErrorMessage(err), RequestID: RequestID(r.Context())}}
	if refused, ok := errors.AsType[*refusedImport](err); ok {
		body.Error.Report = refused.report
		reply(w, Status(code), body)
		return
	}
	if refusal, ok := errors.AsType[*surge.RiskRefusal](err); ok {
		body.Error.Reason = refusal.Reason
		if refusal.Seed != "" {
			body.Error.Challenge = &Challenge{Seed: refusal.Seed, Bits: refusal.Bits}
		}
		reply(w, Status(code), body)
		return
	}
	if changed, ok := errors.AsType[*surge.PriceChanged](err); ok && changed.Quote != nil {
		body.Error.Quote = changed.Quote
		reply(w, Status(code), body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(Status(code))
	w.Write(body.appendJSON(make([]byte, 0, 128)))
}

// setRetryAfter tells a refused client when to come back: Retry-After in whole seconds (at
// least one, rounded up, as HTTP has it) and Retry-After-Ms exactly. Without a hint, a second.
func setRetryAfter(h http.Header, ms int64) {
	if ms <= 0 {
		ms = 1000
	}
	h.Set("Retry-After", strconv.FormatInt((ms+999)/1000, 10))
	h.Set(surge.RetryAfterMsHeader, strconv.FormatInt(ms, 10))
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	reply(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness is the /readyz answer: each backend's state.
type Readiness struct {
	Ready    bool              `json:"ready"`
	Backends map[string]string `json:"backends"`
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
	defer cancel()
	out := Readiness{Ready: true, Backends: make(map[string]string, len(s.deps.Checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range s.deps.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Check(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil { // the detail may name hosts and users: log it, don't show it
				s.deps.Log.WarnContext(ctx, "backend not ready", "backend", c.Name, "err", err)
				out.Ready = false
				out.Backends[c.Name] = "down"
				return
			}
			out.Backends[c.Name] = "ok"
		}()
	}
	wg.Wait()
	status := http.StatusOK
	if !out.Ready {
		status = http.StatusServiceUnavailable
	}
	reply(w, status, out)
}

// bearer returns the actor named by the request's bearer token.
func (s *Server) bearer(r *http.Request) (surge.Actor, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return surge.Actor{}, surge.Errorf(surge.EUNAUTHORIZED, "an Authorization: Bearer token is required")
	}
	return s.deps.Auth.Authenticate(token)
}

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}
