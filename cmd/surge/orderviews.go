package main

import (
	"context"
	"sync"

	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/orderview"
)

// orderViews serves the order lists from the views on every node, and on the node that
// computes the live metrics, runs the one projector that keeps them in step: it reads the
// events log as the other single pipelines there do, and its position is stored with the views.
func (m *Main) orderViews(bg context.Context, b *backends, deps *surgehttp.Deps, wg *sync.WaitGroup) {
	deps.OrderViews = orderview.NewService(b.db)
	if !m.Config.LiveCompute {
		return
	}
	events := b.bus.Log(nats.EventsStream, nats.EventsSubject)
	p := &orderview.Projector{
		Open:  func(ctx context.Context, after uint64) (orderview.Reader, error) { return events.Open(ctx, after) },
		Views: b.db, Orders: b.db, Users: b.db, Metrics: orderview.NewMetrics(deps.Registry), Log: m.Log,
	}
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(bg) }() // stops with bg
}
