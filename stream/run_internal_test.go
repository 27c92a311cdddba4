package stream

import "testing"

// The buffer a save hands back for the next checkpoint is the one it saved while it has room
// for a quarter more; past that, a new one half as big again, so that the pipeline's goroutine
// does not grow it while encoding.
func TestNextCheckpointBuffer(t *testing.T) {
	roomy := make([]byte, 800, 1000)
	if next := nextBuffer(roomy); len(next) != 0 || cap(next) != 1000 || &next[:1][0] != &roomy[0] {
		t.Errorf("for 800 bytes in 1,000: a buffer of %d/%d, the same: %v; want the same, emptied", len(next), cap(next), cap(next) > 0 && &next[:1][0] == &roomy[0])
	}
	tight := make([]byte, 801, 1000)
	if next := nextBuffer(tight); len(next) != 0 || cap(next) != 1201 {
		t.Errorf("for 801 bytes in 1,000: a buffer of %d/%d; want a new one of 1,201", len(next), cap(next))
	}
}
