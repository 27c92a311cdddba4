package reconcile

import (
	"bufio"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

// DefaultRunEntries is how many ledger lines are sorted in memory at once: a ledger longer than
// that is sorted in runs written to disk and merged, so that reconciling a day of any size
// holds about this many lines (some 200 bytes each) in memory.
const DefaultRunEntries = 200_000

// sorted is a ledger's movements in transaction order: Next returns them one at a time, io.EOF
// after the last.
type sorted interface {
	Next() (payment.LedgerEntry, error)
	Close() error
}

func entryLess(a, b *payment.LedgerEntry) int {
	return cmp.Or(cmp.Compare(a.TxnID, b.TxnID), cmp.Compare(a.Type, b.Type), cmp.Compare(a.ProviderID, b.ProviderID))
}

// sortLedger reads a day's closed ledger and returns its movements in transaction order, with
// its totals. The ledger is read to its end (trailer checked) before anything is returned, so a
// truncated or altered file is refused whole. Runs of runEntries are sorted in memory and, when
// there is more than one, written under dir and merged.
func sortLedger(r io.Reader, day, dir string, runEntries int) (sorted, payment.LedgerTotals, error) {
	if runEntries <= 0 {
		runEntries = DefaultRunEntries
	}
	s := &runSorter{dir: dir}
	buf := make([]payment.LedgerEntry, 0, min(runEntries, 4096))
	totals, err := payment.ReadLedger(r, day, func(e payment.LedgerEntry) error {
		buf = append(buf, e)
		if len(buf) < runEntries {
			return nil
		}
		err := s.spill(buf)
		buf = buf[:0]
		return err
	})
	if err != nil {
		s.Close()
		return nil, totals, err
	}
	slices.SortFunc(buf, func(a, b payment.LedgerEntry) int { return entryLess(&a, &b) })
	if len(s.runs) == 0 {
		return &memRun{list: buf}, totals, nil
	}
	if err := s.spill(buf); err != nil {
		s.Close()
		return nil, totals, err
	}
	if err := s.open(); err != nil {
		s.Close()
		return nil, totals, err
	}
	return s, totals, nil
}

type memRun struct {
	list []payment.LedgerEntry
	i    int
}

func (m *memRun) Next() (payment.LedgerEntry, error) {
	if m.i == len(m.list) {
		return payment.LedgerEntry{}, io.EOF
	}
	m.i++
	return m.list[m.i-1], nil
}

func (m *memRun) Close() error { return nil }

// runSorter writes sorted runs to files and merges them.
type runSorter struct {
	dir     string
	runs    []string
	readers []*runReader
	h       runHeap
}

func (s *runSorter) spill(buf []payment.LedgerEntry) error {
	slices.SortFunc(buf, func(a, b payment.LedgerEntry) int { return entryLess(&a, &b) })
	f, err := os.CreateTemp(s.dir, "ledger-run-*")
	if err != nil {
		return err
	}
	s.runs = append(s.runs, f.Name())
	w := bufio.NewWriterSize(f, 256<<10)
	var scratch []byte
	for i := range buf {
		scratch = encodeEntry(scratch[:0], &buf[i])
		if _, err := w.Write(scratch); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (s *runSorter) open() error {
	for _, name := range s.runs {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		rr := &runReader{f: f, r: bufio.NewReaderSize(f, 64<<10)}
		s.readers = append(s.readers, rr)
		if err := rr.advance(); err == nil {
			s.h = append(s.h, rr)
		} else if !errors.Is(err, io.EOF) {
			return err
		}
	}
	heap.Init(&s.h)
	return nil
}

func (s *runSorter) Next() (payment.LedgerEntry, error) {
	if len(s.h) == 0 {
		return payment.LedgerEntry{}, io.EOF
	}
	top := s.h[0]
	e := top.cur
	if err := top.advance(); errors.Is(err, io.EOF) {
		heap.Pop(&s.h)
	} else if err != nil {
		return e, err
	} else {
		heap.Fix(&s.h, 0)
	}
	return e, nil
}

func (s *runSorter) Close() error {
	for _, rr := range s.readers {
		rr.f.Close()
	}
	for _, name := range s.runs {
		os.Remove(name)
	}
	s.readers, s.runs, s.h = nil, nil, nil
	return nil
}

type runReader struct {
	f   *os.File
	r   *bufio.Reader
	cur payment.LedgerEntry
}

func (rr *runReader) advance() error {
	e, err := decodeEntry(rr.r)
	if err != nil {
		return err
	}
	rr.cur = e
	return nil
}

type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return entryLess(&h[i].cur, &h[j].cur) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// A run's entry: its strings length-prefixed, its numbers as varints.
func encodeEntry(b []byte, e *payment.LedgerEntry) []byte {
	for _, s := range []string{e.ProviderID, e.Type, e.TxnID, e.RefundID, e.Amount.Currency} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, e.OrderID)
	b = binary.AppendVarint(b, e.Amount.Amount)
	return binary.AppendVarint(b, e.At.UnixNano())
}

func decodeEntry(r *bufio.Reader) (payment.LedgerEntry, error) {
	var e payment.LedgerEntry
	var fields [5]string
	for i := range fields {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			if i == 0 {
				return e, err // io.EOF at an entry's start: the run's end
			}
			return e, io.ErrUnexpectedEOF
		}
		if n > payment.MaxLedgerLineBytes {
			return e, fmt.Errorf("a sorted run is damaged")
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return e, io.ErrUnexpectedEOF
		}
		fields[i] = string(b)
	}
	var nums [3]int64
	for i := range nums {
		v, err := binary.ReadVarint(r)
		if err != nil {
			return e, io.ErrUnexpectedEOF
		}
		nums[i] = v
	}
	e.ProviderID, e.Type, e.TxnID, e.RefundID = fields[0], fields[1], fields[2], fields[3]
	e.Amount = surge.Money{Amount: nums[1], Currency: fields[4]}
	e.OrderID, e.At = nums[0], time.Unix(0, nums[2]).UTC()
	return e, nil
}

// tempDir is where runs go: dir when set, else the system's.
func tempDir(dir string) string {
	if dir == "" {
		return os.TempDir()
	}
	return filepath.Clean(dir)
}
