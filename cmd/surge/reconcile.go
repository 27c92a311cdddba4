package main

import (
	"context"
	"sync"

	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/reconcile"
	"github.com/surgecommerce/surge/stream"
)

// reconciliation starts the reconciliation's service and, on the node that computes the live
// metrics, the real-time reconciliation over the events log.
func (m *Main) reconciliation(ctx, bg context.Context, b *backends, deps *surgehttp.Deps, wg *sync.WaitGroup) error {
	deps.Reconcile = reconcile.NewService(b.db, nil)
	if !m.Config.LiveCompute {
		return nil
	}
	ckpt, err := b.bus.Checkpoints(ctx)
	if err != nil {
		return err
	}
	// The whole events log, as risk control reads it: a filter of several kinds needs NATS 2.10.
	events := b.bus.Log(nats.EventsStream, nats.EventsSubject)
	r := reconcile.Runner{
		Log:         stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return events.Open(ctx, after) }),
		Checkpoints: ckpt, Sink: reconcile.NewSink(b.db, b.bus, deps.Registry, m.Log), Grace: m.Config.ReconGrace,
		Stream: m.streamMetrics(deps), Logger: m.Log,
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.Run(bg) }() // stops with bg
	return nil
}
