package main

import (
	"context"
	"errors"
	"flag"
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
	fs := flag.NewFlagSet("payment-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	key := fs.String("payment-key", env("SURGE_PAYMENT_KEY"), "key shared with Surge (surge serve --payment-key) [SURGE_PAYMENT_KEY]")
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
