package http

import (
	"testing"
	"time"
)

// A burst of slow or failed answers writes at most logLineBurst lines at once, and the next
// line written says how many were left out before it.
func TestRequestLogIsBounded(t *testing.T) {
	l := newLogLimiter()
	now := time.Now()
	passed := 0
	for range 1000 {
		if _, ok := l.allow(now); ok {
			passed++
		}
	}
	if passed != logLineBurst {
		t.Fatalf("%d of 1000 lines at once passed; want the burst of %d", passed, logLineBurst)
	}
	if got := l.dropped.Load(); got != int64(1000-passed) {
		t.Fatalf("%d lines counted as left out; want %d", got, 1000-passed)
	}
	left, ok := l.allow(now.Add(time.Second)) // a second later, room for more
	if !ok || left != int64(1000-passed) {
		t.Fatalf("next line = %v, left out before it %d; want it written, saying %d", ok, left, 1000-passed)
	}
	left, ok = l.allow(now.Add(time.Second))
	if !ok || left != 0 {
		t.Fatalf("the line after = %v, left out before it %d; want it written, saying none", ok, left)
	}
}
