package nexmark_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/nexmark"
	"github.com/surgecommerce/surge/stream"
)

func config() stream.Config {
	return stream.Config{OutOfOrderness: nexmark.DefaultOutOfOrderness, CheckpointInterval: 20 * time.Millisecond}
}

func TestGeneratorProportions(t *testing.T) {
	events := nexmark.Generate(nexmark.Config{Events: 50_000, Seed: 1})
	var people, auctions, bids int
	for _, e := range events {
		switch {
		case e.Person != nil:
			people++
		case e.Auction != nil:
			auctions++
		case e.Bid != nil:
			bids++
		}
	}
	if people != 1_000 || auctions != 3_000 || bids != 46_000 {
		t.Errorf("people %d, auctions %d, bids %d; want 1000, 3000, 46000 (2%%/6%%/92%%)", people, auctions, bids)
	}
	again := nexmark.Generate(nexmark.Config{Events: 50_000, Seed: 1})
	for i := range events {
		if events[i].Time() != again[i].Time() {
			t.Fatalf("event %d differs between two runs with one seed", i)
		}
	}
}

func TestQueriesMatchBatch(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for _, order := range []struct {
		name    string
		delayMs int64
	}{{"in order", 0}, {"out of order", 1_500}} {
		events := nexmark.Generate(nexmark.Config{Events: 100_000, Seed: seed, MaxDelayMs: order.delayMs, Rate: 2_000})
		for _, q := range nexmark.Queries() {
			t.Run(order.name+"/"+q.QueryName(), func(t *testing.T) {
				o, err := q.RunEvents(context.Background(), config(), events)
				if err != nil {
					t.Fatal(err)
				}
				if !o.Correct {
					t.Errorf("%s: %d results differ from the batch computation", q.QueryName(), o.Results)
				}
				if o.Results == 0 {
					t.Errorf("%s: no results; the check would pass vacuously", q.QueryName())
				}
			})
		}
	}
}

// TestCheckCatchesAWrongResult keeps the batch comparison honest.
func TestCheckCatchesAWrongResult(t *testing.T) {
	events := nexmark.Generate(nexmark.Config{Events: 20_000, Seed: 7})
	got := nexmark.Q2.Batch(events)
	if err := nexmark.Q2.Check(got, events); err != nil {
		t.Fatalf("the batch results fail their own check: %v", err)
	}
	got[len(got)/2].Price++
	if err := nexmark.Q2.Check(got, events); err == nil {
		t.Error("a changed price passed the check")
	}
	if err := nexmark.Q2.Check(got[1:], events); err == nil {
		t.Error("a missing result passed the check")
	}
}

// buses are the JetStream servers to test on: embedded always, external when configured.
func buses(t *testing.T) map[string]*nats.Bus {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := map[string]*nats.Bus{}
	b, err := nats.Open(context.Background(), nats.Config{DataDir: t.TempDir()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	out["embedded"] = b
	if url := os.Getenv("SURGE_TEST_NATS_URL"); url != "" {
		b, err := nats.Open(context.Background(), nats.Config{URL: url}, quiet)
		if err != nil {
			t.Fatalf("external NATS at %s: %v", url, err)
		}
		t.Cleanup(b.Close)
		out["external"] = b
	}
	return out
}

// crashingLog cancels the run after a number of records, as a crash would stop it.
type crashingLog struct {
	stream.Log
	after  int
	cancel context.CancelFunc
}

func (l crashingLog) Open(ctx context.Context, after uint64) (stream.Reader, error) {
	r, err := l.Log.Open(ctx, after)
	return &crashingReader{Reader: r, left: l.after, cancel: l.cancel}, err
}

type crashingReader struct {
	stream.Reader
	left   int
	cancel context.CancelFunc
}

func (r *crashingReader) Next(wait time.Duration) (uint64, []byte, bool, error) {
	if r.left == 0 {
		r.cancel()
		return 0, nil, false, nil
	}
	r.left--
	return r.Reader.Next(wait)
}

// TestQueriesAcrossCrashesOnJetStream reads out-of-order events from a durable JetStream
// stream, crashes each query several times at random points, and restarts it from its last
// checkpoint: the results, kept by id, equal the batch computation — nothing lost, nothing
// counted twice.
func TestQueriesAcrossCrashesOnJetStream(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	events := nexmark.Generate(nexmark.Config{Events: 20_000, Seed: seed, MaxDelayMs: 1_500, Rate: 400})
	for shape, bus := range buses(t) {
		t.Run(shape, func(t *testing.T) {
			ctx := context.Background()
			name := fmt.Sprintf("NEXMARK_TEST_%d", seed%1_000_000_007)
			if err := bus.EnsureLog(ctx, name, name+".>"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bus.JS.DeleteStream(context.Background(), name) })
			pub := bus.AsyncPublisher()
			for i, e := range events {
				data, err := nexmark.Encode(e)
				if err != nil {
					t.Fatal(err)
				}
				if err := pub.PublishAsync(name+".events", fmt.Sprint(i), data); err != nil {
					t.Fatal(err)
				}
			}
			if err := pub.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			ckpt, err := bus.Checkpoints(ctx)
			if err != nil {
				t.Fatal(err)
			}
			log := bus.Log(name, name+".events")
			r := rand.New(rand.NewPCG(seed, 9))
			for _, q := range nexmark.Queries() {
				t.Run(q.QueryName(), func(t *testing.T) {
					runName := name + "/" + q.QueryName()
					t.Cleanup(func() { ckpt.Delete(context.Background(), runName) })
					res := q.NewResults()
					crashes := 0
					for ; ; crashes++ {
						runCtx, cancel := context.WithCancel(ctx)
						var l stream.Log = stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return log.Open(ctx, after) })
						if crashes < 3 {
							l = crashingLog{Log: l, after: 1 + r.IntN(len(events)/3), cancel: cancel}
						}
						err := q.ResumeLog(runCtx, config(), runName, l, ckpt, uint64(len(events)), res)
						cancel()
						if errors.Is(err, context.Canceled) {
							continue
						}
						if err != nil {
							t.Fatal(err)
						}
						break
					}
					if err := q.CheckResults(res, events); err != nil {
						t.Errorf("after %d crashes: %v", crashes, err)
					}
					t.Logf("%s: %d results, %d replayed after crashes", q.QueryName(), res.Len(), res.Replays())
				})
			}
		})
	}
}
