package risk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// memLog is an events log in memory; crashAfter ends the run (as a crash: no checkpoint) once
// that many records were read.
type memLog struct {
	data       [][]byte
	crashAfter int
	cancel     context.CancelFunc
	read       int
}

func (l *memLog) Open(_ context.Context, after uint64) (stream.Reader, error) {
	return &memReader{l: l, next: after}, nil
}

type memReader struct {
	l    *memLog
	next uint64
}

func (r *memReader) Next(wait time.Duration) (uint64, []byte, bool, error) {
	if int(r.next) >= len(r.l.data) {
		time.Sleep(wait)
		return 0, nil, false, nil
	}
	r.l.read++
	if r.l.crashAfter > 0 && r.l.read == r.l.crashAfter {
		r.l.cancel()
	}
	r.next++
	return r.next, r.l.data[r.next-1], true, nil
}

func (r *memReader) Pending() uint64 { return uint64(len(r.l.data)) - r.next }
func (r *memReader) Close()          {}

type memCheckpoints struct {
	mu    sync.Mutex
	saved map[string][]byte
}

func (c *memCheckpoints) Load(_ context.Context, name string) ([]byte, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.saved[name]
	return bytes.Clone(b), ok, nil
}

func (c *memCheckpoints) Save(_ context.Context, name string, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saved[name] = bytes.Clone(data)
	return nil
}

// attemptsMessages writes signals as the gates write purchase.attempts events, batchSize each.
func attemptsMessages(t *testing.T, signals []Signal, batchSize int) [][]byte {
	var out [][]byte
	for i := 0; i < len(signals); i += batchSize {
		var batch []map[string]any
		for _, s := range signals[i:min(i+batchSize, len(signals))] {
			outcome := "ESOLDOUT"
			if s.Won {
				outcome = "success"
			}
			batch = append(batch, map[string]any{"item_id": "1", "user_id": fmt.Sprint(s.User), "quantity": 1, "request_id": "r",
				"outcome": outcome, "ip": s.Values[onIP], "device": s.Values[onDevice], "at": time.UnixMilli(s.At).UTC()})
		}
		b, err := json.Marshal(surge.Event{ID: fmt.Sprint("a", i), Kind: surge.EventPurchaseAttempts, At: time.UnixMilli(signals[i].At).UTC(), Data: batch})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// runLog runs the pipeline on the log until it ends at until (or crashes), collecting verdicts.
func runLog(t *testing.T, log *memLog, ckpt *memCheckpoints, set *RuleSet, until uint64, got map[string]surge.Verdict, dup *int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log.cancel = cancel
	p, src := stream.New(PipelineName, stream.Config{OutOfOrderness: OutOfOrderness, CheckpointInterval: time.Nanosecond},
		func(s Signal) int64 { return s.At })
	stream.To(Build(src, func() *RuleSet { return set }, nil), stream.Sink[surge.Verdict](stream.SinkFunc[surge.Verdict](
		func(_ uint64, _ int64, v surge.Verdict) error {
			if _, ok := got[v.ID]; ok {
				*dup++
			}
			got[v.ID] = v
			return nil
		})))
	return p.RunLog(ctx, stream.LogRun[Signal]{Log: log, DecodeAll: DecodeSignals, Checkpoints: ckpt, Until: until})
}

// The computing node killed after a checkpoint and restarted replays the events since it, and
// ends with the very state and verdicts of a run that was never stopped: nothing counted twice.
func TestRestartResumesWithoutDoubleCounting(t *testing.T) {
	start := int64(1_800_000_000_000)
	signals := merge(farm(3000, 6, start, 7), humans(3000, start, 7))
	msgs := attemptsMessages(t, signals, 20)
	// Exact counts: a count counted twice would make its verdict at another attempt.
	set, _ := NewRuleSet([]*surge.RiskRule{
		rule(1, "attempts_1h.device == 250", surge.SubjectDevice, surge.ActionBlock, surge.ModeEnforcing),
		rule(2, "attempts_1m.network == 1200", surge.SubjectNetwork, surge.ActionBlock, surge.ModeDryRun),
		rule(3, "accounts_1h.ip == 40", surge.SubjectIP, surge.ActionBlock, surge.ModeEnforcing),
	})
	n := uint64(len(msgs))

	straight, straightCk := map[string]surge.Verdict{}, &memCheckpoints{saved: map[string][]byte{}}
	var dups int
	if err := runLog(t, &memLog{data: msgs}, straightCk, set, n, straight, &dups); err != nil {
		t.Fatal(err)
	}
	if len(straight) < 6+1+1 || dups != 0 {
		t.Fatalf("the straight run made %d verdicts (%d twice)", len(straight), dups)
	}

	crashed, ck := map[string]surge.Verdict{}, &memCheckpoints{saved: map[string][]byte{}}
	log := &memLog{data: msgs, crashAfter: int(n) * 2 / 3}
	if err := runLog(t, log, ck, set, n, crashed, &dups); err == nil {
		t.Fatal("the run did not crash")
	}
	if _, ok := ck.saved[PipelineName]; !ok {
		t.Fatal("no checkpoint before the crash")
	}
	log.crashAfter = 0
	if err := runLog(t, log, ck, set, n, crashed, &dups); err != nil {
		t.Fatal(err)
	}
	if len(crashed) != len(straight) {
		t.Errorf("after a restart: %d verdicts, straight %d", len(crashed), len(straight))
	}
	for id, v := range straight {
		if crashed[id] != v {
			t.Errorf("verdict %s: straight %+v, after the restart %+v", id, v, crashed[id])
		}
	}
	if !bytes.Equal(ck.saved[PipelineName], straightCk.saved[PipelineName]) {
		t.Error("the final checkpoint after a restart is not the straight run's: the state differs")
	}
}
