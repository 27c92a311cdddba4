package stock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/surgecommerce/surge/wal"
)

func snapshotName(seg uint64) string { return fmt.Sprintf("snapshot-%016d.snap", seg) }

// snapshots lists the snapshot numbers in dir, oldest first. Snapshot n holds everything logged
// in segments below n.
func snapshots(dir string) ([]uint64, error) { return wal.Numbered(dir, "snapshot-", ".snap") }

// ErrCorrupt is returned (wrapped) by Open when the snapshot or the log is damaged beyond a torn
// tail. The engine refuses to start rather than guess at stock.
var ErrCorrupt = wal.ErrCorrupt

// recover rebuilds the shards' state from the newest snapshot and the log after it. It returns
// the number of the segment to write next and whether anything was replayed.
func (e *Engine) recover() (next uint64, replayed bool, err error) {
	dir := e.opts.Dir
	snaps, err := snapshots(dir)
	if err != nil {
		return 0, false, fmt.Errorf("stock: %w", err)
	}
	var base uint64
	if len(snaps) > 0 {
		base = snaps[len(snaps)-1]
		b, err := os.ReadFile(filepath.Join(dir, snapshotName(base)))
		if err != nil {
			return 0, false, fmt.Errorf("stock: %w", err)
		}
		if err := e.loadSnapshot(b); err != nil {
			return 0, false, fmt.Errorf("%w: snapshot %d: %v", ErrCorrupt, base, err)
		}
		replayed = true
	}
	segs, err := wal.Segments(dir)
	if err != nil {
		return 0, false, fmt.Errorf("stock: %w", err)
	}
	next = base
	var live []uint64
	for _, seg := range segs {
		if seg >= base {
			live = append(live, seg)
		}
	}
	for i, seg := range live {
		res, err := wal.Replay(dir, seg, i == len(live)-1, e.replayFrame)
		if err != nil {
			if errors.Is(err, errInconsistent) || errors.Is(err, errShort) {
				err = fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			return 0, false, fmt.Errorf("stock: replay: %w", err)
		}
		replayed = replayed || res.Frames > 0 || res.Truncated > 0
		next = seg + 1
	}
	if err := e.Check(); err != nil {
		return 0, false, fmt.Errorf("%w: after replay: %v", ErrCorrupt, err)
	}
	return next, replayed, nil
}

// replayFrame applies one logged frame's records to their shards.
func (e *Engine) replayFrame(payload []byte) error {
	for len(payload) > 0 {
		r, rest, err := decodeRecord(payload)
		if err != nil {
			return fmt.Errorf("%w: %v", errInconsistent, err)
		}
		if err := e.shardOf(r.item).st.apply(&r); err != nil {
			return err
		}
		payload = rest
	}
	return nil
}

// loadSnapshot loads a snapshot into the shards.
func (e *Engine) loadSnapshot(b []byte) error {
	return loadSnapshot(b, func(id int64) *state { return e.shardOf(id).st })
}

// Snapshot writes the whole state to a snapshot file and deletes the log segments and older
// snapshots it replaces. Writers pause while the state is encoded, not while it is written.
func (e *Engine) Snapshot() error {
	defer e.snapping.Store(false)
	e.cut.Lock()
	seg, err := e.log.Rotate()
	if err != nil {
		e.cut.Unlock()
		return fmt.Errorf("stock: snapshot: %w", err)
	}
	states := make([]*state, len(e.shards))
	for i, s := range e.shards {
		states[i] = s.st
	}
	b := appendSnapshot(nil, states...)
	e.appended.Store(0)
	e.cut.Unlock()

	dir := e.opts.Dir
	tmp := filepath.Join(dir, snapshotName(seg)+".tmp")
	if err := writeSync(tmp, b); err != nil {
		return fmt.Errorf("stock: snapshot: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, snapshotName(seg))); err != nil {
		return fmt.Errorf("stock: snapshot: %w", err)
	}
	if err := wal.SyncDir(dir); err != nil {
		return err
	}
	return e.prune(seg)
}

// prune deletes segments and snapshots that snapshot seg replaces.
func (e *Engine) prune(seg uint64) error {
	dir := e.opts.Dir
	segs, err := wal.Segments(dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s < seg {
			os.Remove(filepath.Join(dir, wal.SegmentName(s)))
		}
	}
	snaps, err := snapshots(dir)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if s < seg {
			os.Remove(filepath.Join(dir, snapshotName(s)))
		}
	}
	return nil
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
