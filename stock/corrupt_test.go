package stock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/wal"
)

// written opens an engine in a fresh dir, makes n reservations, closes it, and returns the dir
// and the one log segment holding them.
func written(t *testing.T, n int) (dir, segment string) {
	t.Helper()
	dir = t.TempDir()
	e := open(t, dir)
	ctx := context.Background()
	if err := e.Load(ctx, surge.StockItem{ID: 1, Allotted: 1000, PerUserLimit: 5}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := e.Reserve(ctx, surge.ReserveRequest{ItemID: 1, UserID: int64(i + 1), Quantity: 1, RequestID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := wal.Segments(dir)
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments = %v, %v; want one", segs, err)
	}
	return dir, filepath.Join(dir, wal.SegmentName(segs[0]))
}

func reserved(t *testing.T, dir string) int64 {
	t.Helper()
	e := open(t, dir)
	defer e.Close()
	if err := e.Check(); err != nil {
		t.Fatal(err)
	}
	l, err := e.Levels(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return l.Reserved
}

func TestTornTailIsCutOff(t *testing.T) {
	dir, seg := written(t, 20)
	info, _ := os.Stat(seg)
	if err := os.Truncate(seg, info.Size()-3); err != nil { // the last frame loses its end
		t.Fatal(err)
	}
	if got := reserved(t, dir); got != 19 {
		t.Fatalf("after a torn tail %d reserved; want 19 (the torn frame dropped, the rest kept)", got)
	}
	// The engine cut the tail and compacted; it starts again cleanly.
	if got := reserved(t, dir); got != 19 {
		t.Fatalf("second start: %d reserved; want 19", got)
	}
}

func TestDamagedLastFrameIsATornTail(t *testing.T) {
	dir, seg := written(t, 20)
	b, _ := os.ReadFile(seg)
	b[len(b)-2] ^= 0xff // inside the last frame, nothing intact after it
	os.WriteFile(seg, b, 0o600)
	if got := reserved(t, dir); got != 19 {
		t.Fatalf("after damage to the last frame %d reserved; want 19", got)
	}
}

func TestCorruptionInTheMiddleRefusesToStart(t *testing.T) {
	for _, at := range []string{"payload", "length", "checksum"} {
		t.Run(at, func(t *testing.T) {
			dir, seg := written(t, 20)
			b, _ := os.ReadFile(seg)
			// The second frame starts after the first (the item load); damage it.
			_, n, err := wal.DecodeFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			off := map[string]int{"payload": n + wal.HeaderBytes + 1, "length": n + 3, "checksum": n + 7}[at]
			b[off] ^= 0x5a
			os.WriteFile(seg, b, 0o600)
			_, err = stock.Open(stock.Options{Dir: dir})
			if !errors.Is(err, stock.ErrCorrupt) {
				t.Fatalf("Open(flipped %s byte in the middle) = %v; want ErrCorrupt", at, err)
			}
			// Nothing was cut: the damaged log is still there for an operator to look at.
			if after, _ := os.ReadFile(seg); len(after) != len(b) {
				t.Fatalf("the log shrank from %d to %d bytes", len(b), len(after))
			}
		})
	}
}

func TestCorruptSnapshotRefusesToStart(t *testing.T) {
	dir, _ := written(t, 20)
	reserved(t, dir) // a start after replay writes a snapshot
	matches, _ := filepath.Glob(filepath.Join(dir, "snapshot-*.snap"))
	if len(matches) != 1 {
		t.Fatalf("snapshots = %v; want one", matches)
	}
	b, _ := os.ReadFile(matches[0])
	b[len(b)/2] ^= 1
	os.WriteFile(matches[0], b, 0o600)
	if _, err := stock.Open(stock.Options{Dir: dir}); !errors.Is(err, stock.ErrCorrupt) {
		t.Fatalf("Open(corrupt snapshot) = %v; want ErrCorrupt", err)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	dir, _ := written(t, 50)
	for range 3 {
		if got := reserved(t, dir); got != 50 {
			t.Fatalf("after restart %d reserved; want 50", got)
		}
	}
}

func TestOneEnginePerDirectory(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	defer e.Close()
	if _, err := stock.Open(stock.Options{Dir: dir}); err == nil {
		t.Fatal("a second engine opened the same directory")
	}
}
