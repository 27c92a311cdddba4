package risk

import (
	"math/rand/v2"
	"testing"
)

// Each window counts what a list of every event's second says it holds, whatever the order and
// gaps of the events (late ones included, within their slots).
func TestWindowsCountWhatTheyHold(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var w window
		var seen []int64
		now := int64(1_800_000_000)
		for range 300 {
			switch rng.IntN(4) {
			case 0:
				now += int64(rng.IntN(3))
			case 1:
				now += int64(rng.IntN(40))
			case 2:
				now += int64(rng.IntN(900))
			}
			s := now
			if rng.IntN(5) == 0 {
				s -= int64(rng.IntN(8)) // a little late: within the newest 10 seconds
			}
			w.add(s, 1)
			seen = append(seen, s)
			at := max(now, w.at)
			check := func(name string, got int64, from, to int64) {
				var want int64
				for _, x := range seen {
					if x > from && x <= to {
						want++
					}
				}
				if got != want {
					t.Fatalf("round %d: %s at %d = %d, want %d", round, name, at, got, want)
				}
			}
			check("10s", w.last10s(at), at-10, at)
			check("1m", w.lastMinute(at), (at/10-6)*10+9, at)
			check("1h", w.lastHour(at), (at/300-12)*300+299, at)
		}
	}
}

// A window read later than its last event counts only what is still inside.
func TestWindowsForgetAsTimePasses(t *testing.T) {
	var w window
	w.add(1000, 5)
	if got := w.last10s(1009); got != 5 {
		t.Errorf("9 s later: %d, want 5", got)
	}
	if got := w.last10s(1010); got != 0 {
		t.Errorf("10 s later: %d, want 0", got)
	}
	if got := w.lastMinute(1055); got != 5 {
		t.Errorf("55 s later: %d, want 5 (the slot of 1000-1009 is in)", got)
	}
	if got := w.lastMinute(1060); got != 0 {
		t.Errorf("60 s later: %d, want 0", got)
	}
	if got := w.lastHour(1000 + 3599); got != 0 && got != 5 {
		t.Errorf("an hour less a second later: %d", got)
	}
	if got := w.lastHour(1000 + 3600); got != 0 {
		t.Errorf("an hour later: %d, want 0", got)
	}
}

// Distinct accounts count each user once, forget those unseen for an hour, and stop at
// maxAccounts.
func TestAccountsCountDistinctUsers(t *testing.T) {
	var a accounts
	for i := range 10 {
		a.add(uint32(i%4), 100)
	}
	if got := a.lastHour(100); got != 4 {
		t.Errorf("4 users, 10 attempts: %d", got)
	}
	if got := a.lastHour(160); got != 0 {
		t.Errorf("an hour later: %d, want 0", got)
	}
	for i := range 200 {
		a.add(uint32(1000+i), 200)
	}
	if got := a.lastHour(200); got != maxAccounts {
		t.Errorf("200 users: %d, want the bound %d", got, maxAccounts)
	}
}
