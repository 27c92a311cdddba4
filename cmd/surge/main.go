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

const help = `surge: flash sales and live commerce in one binary.

Usage:
  surge serve    [flags]   run the platform (embedded by default; see surge serve --help)
  surge migrate  [flags]   apply the relational schema migrations and exit
  surge bench stock [flags]  measure the stock engine (see surge bench stock --help)
  surge bench purchase [flags]  measure the purchase API with wrk (see surge bench purchase --help)
  surge bench nexmark [flags]  run Nexmark queries on the stream engine (see surge bench nexmark --help)
  surge bench live [flags]  measure ingestion, live metrics freshness and serving (see surge bench live --help)
  surge loadgen  [flags]   replay a flash-sale crowd against a deployment and check the invariants
  surge demo     [flags]   start an embedded node, run a 30-second sale against it, keep it up
  surge payment-sim [flags]  run the simulated payment provider on its own port
  surge help               show this text
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
