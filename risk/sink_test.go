package risk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

type sentNotes struct {
	mu    sync.Mutex
	notes []Note
}

func (n *sentNotes) RulesChanged() error { return nil }
func (n *sentNotes) Send(note Note) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notes = append(n.notes, note)
	return nil
}

// failingStore refuses verdicts until it is told to take them.
type failingStore struct {
	surge.RiskStore
	fail bool
}

func (f *failingStore) PutVerdicts(ctx context.Context, vs []surge.Verdict) error {
	if f.fail {
		return errDown
	}
	return f.RiskStore.PutVerdicts(ctx, vs)
}

// The sink sends each verdict to the gates and the events log at once; a flush returns once
// all are stored, or with the error of a batch the store refused (the pipeline then replays
// them), and the store holds each verdict once however often it is written.
func TestSinkStoresEveryVerdictOnce(t *testing.T) {
	store := &failingStore{RiskStore: openStore(t)}
	notes, bus := &sentNotes{}, &emitted{}
	s := NewSink(store, notes, bus, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	at := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	for i := range 1200 {
		v := verdict("v"+string(rune('a'+i%26))+time.Duration(i).String(), surge.SubjectDevice, "farm", surge.ActionBlock, 0, surge.ModeEnforcing, at)
		if err := s.Write(uint64(i+1), 0, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := store.VerdictsSince(context.Background(), at.Add(-time.Hour), "", surge.MaxRiskVerdicts)
	if err != nil || len(got) != 1200 || len(notes.notes) != 1200 || len(bus.msgs) != 1200 {
		t.Fatalf("stored %d (%v), noted %d, on the bus %d; want 1200 each", len(got), err, len(notes.notes), len(bus.msgs))
	}
	store.fail = true
	s.Write(2000, 0, verdict("late", surge.SubjectDevice, "farm", surge.ActionBlock, 0, surge.ModeEnforcing, at))
	if err := s.Flush(context.Background()); !errors.Is(err, errDown) {
		t.Fatalf("a flush with the store down: %v", err)
	}
	store.fail = false
	s.Write(2000, 0, verdict("late", surge.SubjectDevice, "farm", surge.ActionBlock, 0, surge.ModeEnforcing, at)) // the replay
	s.Write(2001, 0, verdict("v"+"a"+time.Duration(0).String(), surge.SubjectDevice, "farm", surge.ActionBlock, 0, surge.ModeEnforcing, at))
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.VerdictsSince(context.Background(), at.Add(-time.Hour), "", surge.MaxRiskVerdicts); len(got) != 1201 {
		t.Fatalf("after the replay: %d stored, want 1201", len(got))
	}
}

// Verdicts that ended VerdictHistory ago are deleted; those support may still look up stay.
func TestOldVerdictsArePruned(t *testing.T) {
	store := openStore(t)
	c := &clock{t: time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)}
	old := verdict("old", surge.SubjectDevice, "d", surge.ActionBlock, 0, surge.ModeEnforcing, c.now().Add(-VerdictHistory-time.Hour))
	recent := verdict("recent", surge.SubjectDevice, "d", surge.ActionBlock, 0, surge.ModeEnforcing, c.now().Add(-VerdictHistory+time.Hour))
	ctx := context.Background()
	if err := store.PutVerdicts(ctx, []surge.Verdict{old, recent}); err != nil {
		t.Fatal(err)
	}
	s := NewService(store, nil, &sentNotes{}, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), c.now)
	s.prune(ctx)
	got, err := store.VerdictsSince(ctx, c.now().Add(-2*VerdictHistory), "", 10)
	if err != nil || len(got) != 1 || got[0].ID != "recent" {
		t.Fatalf("after pruning: %+v, %v; want the recent one", got, err)
	}
}
