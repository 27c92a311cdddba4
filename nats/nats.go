// Package nats is the event bus: an in-process NATS JetStream server with file storage under the
// data directory (embedded shape), or a connection to an external JetStream cluster (scale-out).
package nats

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of the bus connection.
const (
	startTimeout   = 10 * time.Second
	connectTimeout = 5 * time.Second
	// MaxReconnectWait is the longest a client waits between reconnect attempts.
	MaxReconnectWait = 2 * time.Second
)

// Config chooses the bus: URL for an external server; otherwise an embedded one storing under
// DataDir, reachable by other processes only if ListenAddr (host:port) is set.
type Config struct {
	URL        string
	DataDir    string
	ListenAddr string
	// EventBytes bounds the events log (DefaultEventBytes if zero).
	EventBytes int64
	// RelaxedSync lets an embedded server sync to disk on JetStream's own schedule instead of
	// on every write: for disposable data such as a benchmark's, never for orders.
	RelaxedSync bool
}

// Bus is a connection to JetStream, and the embedded server when there is one.
type Bus struct {
	cfg     Config
	srv     *server.Server
	Conn    *nats.Conn
	JS      jetstream.JetStream
	results atomic.Pointer[resultsKV] // set by EnsureStreams
	// snap is the snapshot publishers' own connection (SnapshotPublisher). The live sink sends
	// tens of thousands of values a second in rounds; on the node's one connection, each round
	// queued behind the ingestion's batches for the connection's lock and its pipe, and the
	// pipeline waited there for 40% of its time at 300,000 events a second.
	snap   *nats.Conn
	snapJS jetstream.JetStream
}

// Open starts or connects to the bus.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	b := &Bus{cfg: cfg}
	opts := []nats.Option{nats.Name("surge"), nats.Timeout(connectTimeout), nats.MaxReconnects(-1),
		nats.ReconnectWait(MaxReconnectWait / 4),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if err == nil { // closed on purpose
				log.Info("nats disconnected", "conn", c.Opts.Name)
				return
			}
			log.Warn("nats disconnected", "conn", c.Opts.Name, "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "conn", c.Opts.Name, "url", c.ConnectedUrl()) })}
	url := cfg.URL
	if url == "" {
		srv, err := startEmbedded(cfg, log)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	b.Conn = nc
	if b.JS, err = jetstream.New(nc); err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if b.snap, err = nats.Connect(url, append(opts, nats.Name("surge-snapshots"))...); err != nil {
		b.Close()
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	if b.snapJS, err = jetstream.New(b.snap); err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := b.Ping(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func startEmbedded(cfg Config, log *slog.Logger) (*server.Server, error) {
	o := &server.Options{
		ServerName: "surge",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		NoSigs:     true,
		NoLog:      true,
		// Every acknowledged publish is on disk: an order command acknowledged to a shopper
		// must survive kill -9 and power loss, as the stock engine's answers do. JetStream's
		// default syncs only every two minutes.
		SyncAlways: !cfg.RelaxedSync,
		DontListen: cfg.ListenAddr == "",
	}
	if cfg.ListenAddr != "" {
		host, port, err := net.SplitHostPort(cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", cfg.ListenAddr, err)
		}
		if o.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("nats listen port %q: %w", port, err)
		}
		if o.Port == 0 {
			o.Port = server.RANDOM_PORT // nats-server reads 0 as its default port, 4222
		}
		o.Host = host
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLogger(serverLog{log.With("component", "nats")}, false, false)
	go srv.Start() // Start returns once running; its goroutines stop with Shutdown in Close
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats did not start within %s", startTimeout)
	}
	return srv, nil
}

// ClientURL is where other processes reach the embedded server ("" when it does not listen or
// the bus is external).
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.srv.Addr() == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// Ping checks that the connections are up and JetStream answers.
func (b *Bus) Ping(ctx context.Context) error {
	for _, c := range []*nats.Conn{b.Conn, b.snap} {
		if !c.IsConnected() {
			return fmt.Errorf("nats: not connected (%s)", c.Status())
		}
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// Close drains the connections and stops the embedded server.
func (b *Bus) Close() {
	for _, c := range []*nats.Conn{b.snap, b.Conn} {
		if c != nil {
			_ = c.Drain()
			c.Close()
		}
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// serverLog passes the embedded server's log to slog. Its notices are mostly its start-up banner,
// kept at debug, except a slow consumer: the server closing a connection that fell behind.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Noticef(format string, v ...any) {
	level := slog.LevelDebug
	if strings.Contains(format, "Slow Consumer") {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}
func (l serverLog) Warnf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLog) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLog) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLog) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLog) Tracef(string, ...any)          {}
