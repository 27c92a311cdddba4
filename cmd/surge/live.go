package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/stream"
)

// Where the live metrics are published for every node to serve.
const (
	liveBucket      = "SURGE_LIVE_VALUES"
	liveBucketBytes = 512 << 20
	liveWatchWait   = 10 * time.Second
)

// livePlatform starts the real-time platform: ingestion into the events log, the live metrics
// pipeline (on the nodes that compute it), and this node's board of published values.
func (m *Main) livePlatform(ctx context.Context, b *backends, deps *surgehttp.Deps) error {
	bus := b.bus
	// The published values are derived: the events log and the pipeline's checkpoints are the
	// record, and the pipeline publishes every series again after a restart and every
	// live.RefreshEvery.
	if err := bus.EnsureKV(ctx, liveBucket, liveBucketBytes, true); err != nil {
		return err
	}
	bg, stop := context.WithCancel(context.Background())
	board := live.NewBoard()
	if err := m.followValues(ctx, bg, bus, board); err != nil {
		stop()
		return err
	}
	var wg sync.WaitGroup
	var handoff *live.Handoff // the batches this node ingests, carried over to its pipeline
	if m.Config.LiveCompute {
		handoff = live.NewHandoff(deps.Registry)
		ckpt, err := bus.Checkpoints(ctx)
		if err != nil {
			stop()
			return err
		}
		counters := &live.Counters{}
		deps.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "surge_live_duplicate_events_total",
			Help: "Business events dropped as copies of one already counted."}, func() float64 { return float64(counters.Duplicates.Load()) }))
		events := bus.Log(nats.EventsStream, nats.EventsSubject)
		r := live.Runner{
			Log:         stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return events.Open(ctx, after) }),
			Checkpoints: ckpt, Publisher: bus.SnapshotPublisher(), Subject: func(key string) string { return nats.KVSubject(liveBucket, key) },
			Local: board.Feed(bg), Handoff: handoff, Ticks: bus.AsyncPublisher(),
			Metrics: m.streamMetrics(deps), Counters: counters, Logger: m.Log,
		}
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(bg) }() // stops with bg
	}
	m.closers = append(m.closers, func() error { stop(); wg.Wait(); return nil })
	deps.Board = board
	if deps.Audit != nil { // invariant 6: the live GMV of a session against its paid orders
		deps.Audit.GMV = func(session int64) int64 {
			return board.Value(live.Series{Metric: "gmv", Dims: [][2]string{{live.DimSession, strconv.FormatInt(session, 10)}}}.Key())
		}
	}
	deps.Ingest = live.NewIngester(func() live.Publisher { return bus.AsyncPublisher() }, b.counter, live.IngestSlots(m.Config.LiveCompute), deps.Registry).HandOff(handoff)
	return nil
}

// followValues fills this node's board with the published values and keeps it current until bg
// ends. A node that computes them reads the bucket once, then takes each value from its own
// pipeline as it is published (live.Runner.Local): watching the bucket too would deliver every
// value back to it, at about the cost of storing it. Every other node watches the bucket.
func (m *Main) followValues(ctx, bg context.Context, bus *nats.Bus, board *live.Board) error {
	if m.Config.LiveCompute {
		ctx, cancel := context.WithTimeout(ctx, liveWatchWait)
		defer cancel()
		if err := bus.LoadKV(ctx, liveBucket, board.Apply); err != nil {
			return fmt.Errorf("live metrics: the published values did not load: %w", err)
		}
		return nil
	}
	ready, err := bus.WatchKV(bg, liveBucket, board.Apply)
	if err != nil {
		return err
	}
	select {
	case <-ready:
		return nil
	case <-time.After(liveWatchWait):
		return fmt.Errorf("live metrics: the published values did not load within %s", liveWatchWait)
	}
}
