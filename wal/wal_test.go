package wal_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/surgecommerce/surge/wal"
)

func TestAppendIsDurableBeforeItsCallback(t *testing.T) {
	dir := t.TempDir()
	l, err := wal.Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		frame := wal.AppendFrame(nil, []byte{byte(i)})
		go l.Append(frame, 1, func(err error) {
			defer wg.Done()
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st := l.Stats()
	if st.Frames != 200 || st.Syncs == 0 || st.Syncs > 200 {
		t.Fatalf("Stats = %+v; want 200 frames in 1 to 200 fsyncs", st)
	}
	// Each callback ran after its fsync, so the file already holds every frame.
	b, _ := os.ReadFile(filepath.Join(dir, wal.SegmentName(1)))
	frames := 0
	for len(b) > 0 {
		_, n, err := wal.DecodeFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		b, frames = b[n:], frames+1
	}
	if frames != 200 {
		t.Fatalf("file holds %d frames; want 200", frames)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	called := false
	l.Append(nil, 0, func(err error) { called = err != nil })
	if !called {
		t.Fatal("Append after Close did not report an error")
	}
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	l, _ := wal.Open(dir, 7)
	done := make(chan error, 1)
	l.Append(wal.AppendFrame(nil, []byte("a")), 1, func(err error) { done <- err })
	seg, err := l.Rotate()
	if err != nil || seg != 8 {
		t.Fatalf("Rotate = %d, %v; want 8", seg, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l.Close()
	segs, _ := wal.Segments(dir)
	if len(segs) != 2 || segs[0] != 7 || segs[1] != 8 {
		t.Fatalf("Segments = %v; want [7 8]", segs)
	}
}

func TestReplayCorruptionOutsideTheLastSegment(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	for _, p := range []string{"one", "two", "three"} {
		b = wal.AppendFrame(b, []byte(p))
	}
	torn := b[:len(b)-2]
	os.WriteFile(filepath.Join(dir, wal.SegmentName(1)), torn, 0o600)
	var got [][]byte
	collect := func(p []byte) error { got = append(got, bytes.Clone(p)); return nil }
	if _, err := wal.Replay(dir, 1, false, collect); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("Replay(torn, not last) = %v; want ErrCorrupt", err)
	}
	got = nil
	res, err := wal.Replay(dir, 1, true, collect)
	if err != nil || len(got) != 2 || res.Truncated != int64(len(torn)-len(wal.AppendFrame(wal.AppendFrame(nil, []byte("one")), []byte("two")))) {
		t.Fatalf("Replay(torn, last) = %+v, %v, %d frames; want 2 frames and the tail cut", res, err, len(got))
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(wal.AppendFrame(nil, []byte("payload")))
	f.Add([]byte{0xA5, 0x5A, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		payload, n, err := wal.DecodeFrame(b)
		if err != nil {
			return
		}
		if n > len(b) || n != wal.HeaderBytes+len(payload) {
			t.Fatalf("DecodeFrame = %d bytes of %d", n, len(b))
		}
		if again := wal.AppendFrame(nil, payload); !bytes.Equal(again, b[:n]) {
			t.Fatal("a decoded frame does not encode back to itself")
		}
	})
}
