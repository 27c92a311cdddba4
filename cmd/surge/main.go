// Command surge is the Surge flash-sale and real-time platform in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const help = `Usage: surge <command> [flags]

Flash sales and live commerce in one binary (see surge <command> --help):

  serve        run the platform (embedded by default, or on PostgreSQL, Redis and NATS)
  migrate      apply the relational schema's migrations and exit
  reconcile    reconcile a day's payments against the payment provider's ledger file
  demo         start an embedded node, run a 30-second sale against it, and keep it up
  loadgen      replay a flash-sale crowd against a deployment and check the invariants
  bench        measure a part: stock, purchase, nexmark or live
  payment-sim  run the simulated payment provider on its own port
  help         show this text

Examples:
  surge serve --admin-password change-me-now
  surge demo
  surge loadgen --target http://127.0.0.1:8080 --admin-password change-me-now
  surge bench stock --help
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, help)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], env, stderr)
	case "migrate":
		err = runMigrate(ctx, args[1:], env, stdout, stderr)
	case "reconcile":
		err = runReconcile(ctx, args[1:], env, stdout, stderr)
	case "bench":
		err = runBench(ctx, args[1:], env, stdout, stderr)
	case "payment-sim":
		err = runPaymentSim(ctx, args[1:], env, stderr)
	case "loadgen":
		err = runLoadgen(ctx, args[1:], env, stdout, stderr)
	case "demo":
		err = runDemo(ctx, args[1:], env, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, help)
		return 0
	default:
		fmt.Fprintf(stderr, "surge: unknown command %q\n\n%s", args[0], help)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "surge %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// runServe runs a node until ctx is cancelled (SIGINT or SIGTERM).
func runServe(ctx context.Context, args []string, env func(string) string, stderr io.Writer) error {
	c, _, err := parseConfig("serve", args, env, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(*c, stderr)
	if err != nil {
		return err
	}
	m := NewMain(*c, log)
	if err := m.Run(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	return m.Close()
}
