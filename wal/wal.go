// Package wal is a write-ahead log with group commit: appenders hand over encoded frames and a
// callback; one syncer goroutine writes everything pending and fsyncs it in one go, then runs
// the callbacks, and starts the next write as soon as the last fsync ends. Frames are
// checksummed; on replay a torn tail is cut off and corruption anywhere else stops the replay.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Frame layout: magic (2 bytes) | payload length (4, little endian) | CRC-32C of payload (4) | payload.
const (
	magic0, magic1 = 0xA5, 0x5A
	HeaderBytes    = 10
	// MaxFrameBytes bounds one frame's payload.
	MaxFrameBytes = 16 << 20
	// MaxPendingBytes bounds what may wait for the syncer; appenders block beyond it.
	MaxPendingBytes = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendFrame appends one framed payload to dst.
func AppendFrame(dst, payload []byte) []byte {
	var h [HeaderBytes]byte
	h[0], h[1] = magic0, magic1
	binary.LittleEndian.PutUint32(h[2:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[6:], crc32.Checksum(payload, castagnoli))
	return append(append(dst, h[:]...), payload...)
}

// DecodeFrame reads the frame at the start of b. It returns the payload and the frame's total
// size, or an error if b does not start with a whole, intact frame.
func DecodeFrame(b []byte) (payload []byte, n int, err error) {
	if len(b) < HeaderBytes {
		return nil, 0, errTorn
	}
	if b[0] != magic0 || b[1] != magic1 {
		return nil, 0, errors.New("bad frame magic")
	}
	size := binary.LittleEndian.Uint32(b[2:])
	if size > MaxFrameBytes {
		return nil, 0, fmt.Errorf("frame length %d over the limit", size)
	}
	if len(b) < HeaderBytes+int(size) {
		return nil, 0, errTorn
	}
	payload = b[HeaderBytes : HeaderBytes+int(size)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[6:]) {
		return nil, 0, errors.New("frame checksum mismatch")
	}
	return payload, HeaderBytes + int(size), nil
}

var errTorn = errors.New("frame cut short")

// ErrCorrupt is returned (wrapped) when a log holds damage that is not a torn tail.
var ErrCorrupt = errors.New("corrupt log")

// Stats are counters of the log's work.
type Stats struct {
	Syncs  int64 // fsyncs done
	Bytes  int64 // bytes written
	Frames int64 // frames appended
}

// Log is an append-only log in numbered segment files of one directory.
type Log struct {
	dir string

	writeMu sync.Mutex // held by whoever writes to the file: the syncer or Rotate

	mu       sync.Mutex // guards the fields below; lock order: writeMu before mu
	wake     *sync.Cond
	room     *sync.Cond
	pending  []byte
	spare    []byte
	waiters  []func(error)
	spareW   []func(error)
	f        *os.File
	seg      uint64
	segBytes int64
	err      error // sticky: after a failed write or fsync the log accepts nothing more
	closed   bool

	syncs, bytes, frames atomic.Int64
	done                 chan struct{}
}

// SegmentName is the file name of segment n.
func SegmentName(n uint64) string { return fmt.Sprintf("wal-%016d.log", n) }

// Segments lists the segment numbers in dir, in order.
func Segments(dir string) ([]uint64, error) {
	return Numbered(dir, "wal-", ".log")
}

// Numbered lists the numbers n of the files named prefix+n+suffix in dir, in order.
func Numbered(dir, prefix, suffix string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, prefix), suffix), 10, 64)
		if err == nil {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// Open starts a log writing to a new segment numbered seg (which must not exist) and starts its
// syncer goroutine; Close stops it.
func Open(dir string, seg uint64) (*Log, error) {
	l := &Log{dir: dir, done: make(chan struct{})}
	l.wake = sync.NewCond(&l.mu)
	l.room = sync.NewCond(&l.mu)
	f, err := createSegment(dir, seg)
	if err != nil {
		return nil, err
	}
	l.f, l.seg = f, seg
	go l.syncer()
	return l, nil
}

func createSegment(dir string, seg uint64) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, SegmentName(seg)), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if err := SyncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// SyncDir fsyncs a directory so that files created or renamed in it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: sync dir: %w", err)
	}
	return nil
}

// Append queues already framed bytes (AppendFrame) and calls done once they are durable, or
// with the error that stopped the log. done runs on the syncer goroutine and must not block.
// With nothing to write (empty frames), done runs once everything appended before is durable.
func (l *Log) Append(frames []byte, nframes int, done func(error)) {
	l.mu.Lock()
	for l.err == nil && !l.closed && len(l.pending) > MaxPendingBytes {
		l.room.Wait()
	}
	if err := l.stopped(); err != nil {
		l.mu.Unlock()
		done(err)
		return
	}
	l.pending = append(l.pending, frames...)
	l.waiters = append(l.waiters, done)
	l.frames.Add(int64(nframes))
	l.wake.Signal()
	l.mu.Unlock()
}

func (l *Log) stopped() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return errors.New("wal: closed")
	}
	return nil
}

// syncer is the one goroutine that writes and fsyncs. After Close it flushes what is left and
// stops.
func (l *Log) syncer() {
	defer close(l.done)
	for {
		l.mu.Lock()
		for len(l.waiters) == 0 && !l.closed {
			l.wake.Wait()
		}
		if len(l.waiters) == 0 {
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		l.writeMu.Lock()
		l.mu.Lock()
		l.flushLocked()
		l.writeMu.Unlock()
	}
}

// flushLocked writes and syncs what is pending and runs its callbacks. The caller holds writeMu
// and mu; mu is released on return.
func (l *Log) flushLocked() {
	buf, waiters := l.pending, l.waiters
	l.pending, l.waiters = l.spare[:0], l.spareW[:0]
	err := l.err
	l.room.Broadcast()
	l.mu.Unlock()

	if err == nil && len(buf) > 0 {
		if _, werr := l.f.Write(buf); werr != nil {
			err = fmt.Errorf("wal: write: %w", werr)
		} else if serr := unix.Fdatasync(int(l.f.Fd())); serr != nil {
			err = fmt.Errorf("wal: fsync: %w", serr)
		}
		l.syncs.Add(1)
		l.bytes.Add(int64(len(buf)))
		l.segBytes += int64(len(buf))
	}
	for _, w := range waiters {
		w(err)
	}
	clear(waiters)
	l.mu.Lock()
	if err != nil && l.err == nil {
		l.err = err
	}
	l.spare, l.spareW = buf[:0], waiters[:0]
	l.mu.Unlock()
}

// Rotate makes everything appended so far durable in the current segment and switches to a new
// one, returning its number. Callers that need a clean cut (snapshots) stop appending first.
func (l *Log) Rotate() (uint64, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	l.flushLocked()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.stopped(); err != nil {
		return 0, err
	}
	f, err := createSegment(l.dir, l.seg+1)
	if err != nil {
		l.err = err
		return 0, err
	}
	l.f.Close()
	l.f, l.seg, l.segBytes = f, l.seg+1, 0
	return l.seg, nil
}

// SegmentBytes returns the bytes written to the current segment.
func (l *Log) SegmentBytes() int64 {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	return l.segBytes
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{Syncs: l.syncs.Load(), Bytes: l.bytes.Load(), Frames: l.frames.Load()}
}

// Err returns the error that stopped the log, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close makes everything appended durable, stops the syncer and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.wake.Broadcast()
	l.room.Broadcast()
	l.mu.Unlock()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if cerr := l.f.Close(); cerr != nil && l.err == nil {
		return cerr
	}
	return l.err
}
