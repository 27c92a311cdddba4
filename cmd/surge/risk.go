package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"sync"

	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/nats"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/stream"
)

// riskRulesSubject tells every node the risk rules changed.
const riskRulesSubject = "surge.notes.risk.rules"

// riskNotes carries risk.Notes over the bus's notes.
type riskNotes struct{ bus *nats.Bus }

func (n riskNotes) RulesChanged() error { return n.bus.Notify(riskRulesSubject, nil) }

func (n riskNotes) Send(note risk.Note) error {
	b, err := json.Marshal(note)
	if err != nil {
		return err
	}
	return n.bus.Notify(risk.NotesSubject, b)
}

// riskControl starts risk control: this node's gate (its verdicts kept current by the bus's
// notes and the store), the rules service, and, on the node that computes the live metrics, the
// risk pipeline over the events log. It returns the gate for the purchase path.
func (m *Main) riskControl(ctx, bg context.Context, b *backends, ids func() (int64, error), secret []byte, deps *surgehttp.Deps, wg *sync.WaitGroup) (*risk.Gate, error) {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("surge risk challenges"))
	gate := risk.NewGate(b.db, b.bus, mac.Sum(nil), deps.Registry, m.Log, nil)
	if _, err := b.bus.Listen(bg, risk.NotesSubject, gate.Take); err != nil {
		return nil, err
	}
	if err := gate.Reload(ctx); err != nil {
		return nil, err
	}
	notes := riskNotes{b.bus}
	// The whole events log: a filter of the kinds the pipeline takes needs a NATS server of 2.10
	// or later, and the pipeline skips any other kind from the envelope alone.
	events := b.bus.Log(nats.EventsStream, nats.EventsSubject)
	svc := risk.NewService(b.db, ids, notes, b.bus, gate, events, m.Log, nil)
	changed := make(chan struct{}, 1)
	if _, err := b.bus.Listen(bg, riskRulesSubject, func([]byte) {
		select {
		case changed <- struct{}{}:
		default: // a reload is due already
		}
	}); err != nil {
		return nil, err
	}
	if err := svc.LoadRules(ctx); err != nil {
		return nil, err
	}
	wg.Add(2)
	go func() { defer wg.Done(); gate.Run(bg) }()              // stops with bg
	go func() { defer wg.Done(); svc.RunRules(bg, changed) }() // stops with bg
	if m.Config.LiveCompute {
		ckpt, err := b.bus.Checkpoints(ctx)
		if err != nil {
			return nil, err
		}
		metrics := risk.NewMetrics(deps.Registry, m.Log)
		r := risk.Runner{
			Log:         stream.LogFunc(func(ctx context.Context, after uint64) (stream.Reader, error) { return events.Open(ctx, after) }),
			Checkpoints: ckpt, Rules: svc.Rules, Sink: risk.NewSink(b.db, notes, b.bus, metrics, m.Log), Metrics: metrics,
			Stream: m.streamMetrics(deps), Logger: m.Log,
		}
		wg.Add(2)
		go func() { defer wg.Done(); r.Run(bg) }()        // stops with bg
		go func() { defer wg.Done(); svc.RunPrune(bg) }() // stops with bg
	}
	deps.Risk = svc
	return gate, nil
}

// streamMetrics are the stream engine's metrics, registered once for every pipeline the node
// runs.
func (m *Main) streamMetrics(deps *surgehttp.Deps) *stream.Metrics {
	if m.streams == nil {
		m.streams = stream.NewMetrics(deps.Registry)
	}
	return m.streams
}
