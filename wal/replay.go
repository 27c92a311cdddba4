package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ReplayResult says what a replay found.
type ReplayResult struct {
	Frames    int   // intact frames read
	Truncated int64 // bytes of torn tail cut off (last segment only)
}

// Replay reads segment seg of dir and calls fn with each frame's payload in order. In the last
// segment (last true), damage after which no intact frame follows is a torn write from a crash:
// the file is truncated there. Any other damage returns an error wrapping ErrCorrupt, and fn is
// not called for anything after it.
func Replay(dir string, seg uint64, last bool, fn func(payload []byte) error) (ReplayResult, error) {
	var res ReplayResult
	path := filepath.Join(dir, SegmentName(seg))
	b, err := os.ReadFile(path)
	if err != nil {
		return res, fmt.Errorf("wal: %w", err)
	}
	off := 0
	for off < len(b) {
		payload, n, err := DecodeFrame(b[off:])
		if err != nil {
			if !last || intactFrameAfter(b[off+1:]) {
				return res, fmt.Errorf("%w: segment %d at byte %d: %v", ErrCorrupt, seg, off, err)
			}
			res.Truncated = int64(len(b) - off)
			return res, truncate(path, int64(off))
		}
		if err := fn(payload); err != nil {
			return res, fmt.Errorf("segment %d at byte %d: %w", seg, off, err)
		}
		res.Frames++
		off += n
	}
	return res, nil
}

// intactFrameAfter reports whether any whole, checksummed frame starts anywhere in b. A torn
// tail holds none; damage in the middle of a log is followed by intact frames.
func intactFrameAfter(b []byte) bool {
	for i := 0; i+HeaderBytes <= len(b); i++ {
		if b[i] != magic0 || b[i+1] != magic1 {
			continue
		}
		if _, _, err := DecodeFrame(b[i:]); err == nil {
			return true
		}
	}
	return false
}

func truncate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("wal: truncate torn tail: %w", err)
	}
	return f.Sync()
}

// IsCorrupt reports whether err says the log is damaged.
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }
