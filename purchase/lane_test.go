package purchase

import (
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// A lane retires a while after its session ends, and not before.
func TestLaneRetiresAfterTheSession(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	s := &Service{lanes: map[int64]*lane{}, now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	l := &lane{item: 7, in: make(chan *attempt, 1), endAt: now.Add(time.Minute)}
	s.lanes[7] = l
	if s.retire(l) {
		t.Fatal("a lane retired while its session was live")
	}
	mu.Lock()
	now = now.Add(time.Minute + laneGrace + time.Second)
	mu.Unlock()
	l.in <- &attempt{req: surge.ReserveRequest{ItemID: 7}, done: make(chan struct{})}
	if s.retire(l) {
		t.Fatal("a lane retired with an attempt still queued")
	}
	queued := <-l.in
	if !s.retire(l) {
		t.Fatal("a lane did not retire after its session ended")
	}
	if _, ok := s.lanes[7]; ok {
		t.Fatal("a retired lane is still listed")
	}
	_ = queued
}
