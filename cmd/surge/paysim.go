package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/surgecommerce/surge/paysim"
)

// runPaymentSim runs the simulated payment provider on its own, for deployments that want it
// outside the Surge nodes (surge serve --payment-url pointing at it, with the same key).
func runPaymentSim(ctx context.Context, args []string, env func(string) string, stderr io.Writer) error {
	fs := command{name: "payment-sim", envInDefault: true, env: envFlags(map[string]string{"payment-key": "SURGE_PAYMENT_KEY"}),
		about: `Runs the simulated third-party payment provider on its own port, for deployments that keep it
apart from the Surge nodes: start surge serve with --payment-url pointing at its pay endpoint
and the same --payment-key. It charges a payment ticket at once (POST /paysim/v1/pay) and
calls the merchant back with signed notifications, retried until acknowledged.`,
		examples: []string{"surge payment-sim --addr 127.0.0.1:8090 --payment-key \"$KEY\"",
			"surge serve --payment-url http://127.0.0.1:8090/paysim/v1/pay --payment-key \"$KEY\" --admin-password change-me-now"}}.flagSet(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	key := fs.String("payment-key", env("SURGE_PAYMENT_KEY"), "key shared with Surge (surge serve --payment-key), at least 16 bytes")
	inFlight := fs.Int("in-flight", paysim.DefaultInFlight, "payments worked on at once (from the charge to the last notification acknowledged); past it a payment is refused 503 with Retry-After-Ms")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(*key) < 16 {
		return fmt.Errorf("--payment-key (or SURGE_PAYMENT_KEY) of at least 16 bytes is required")
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	sim := paysim.New([]byte(*key), *inFlight, log)
	defer sim.Close()
	mux := http.NewServeMux()
	mux.Handle("/paysim/", sim.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: time.Minute}
	log.Info("payment simulator serving", "pay_url", "http://"+ln.Addr().String()+"/paysim/v1/pay")
	go func() { // stops the server when ctx ends
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
