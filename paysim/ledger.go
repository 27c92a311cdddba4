package paysim

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

// LedgerFlushMs is how often the open day's buffered lines are written to its file: a reader of
// the .part file, or a crash, sees the provider's movements at most this late.
const LedgerFlushMs = 200

const (
	partSuffix   = ".csv.part"
	closedSuffix = ".csv"
)

// ledgerFiles keeps the provider's daily ledger files in a directory (format in package
// payment): the open day's <day>.csv.part, and <day>.csv for each day closed. Its flusher
// goroutine is stopped by close.
type ledgerFiles struct {
	dir string
	log *slog.Logger

	mu     sync.Mutex
	closed string // the latest day closed: a movement of it or before goes to the day after
	f      *os.File
	w      *payment.LedgerWriter // of the open day; nil when none is open
	dirty  bool                  // lines buffered since the last flush

	stop chan struct{}
	done chan struct{}
}

// openLedgerFiles starts the ledger in dir. A .part file left by a provider that stopped without
// closing its day is closed now, its lines up to the last whole one kept: the movements of that
// day still to come go to the next day's file.
func openLedgerFiles(dir string, now func() time.Time, log *slog.Logger) (*ledgerFiles, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	l := &ledgerFiles{dir: dir, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		name := n.Name()
		day, isPart := strings.CutSuffix(name, partSuffix)
		if !isPart {
			day, _ = strings.CutSuffix(name, closedSuffix)
		}
		if _, err := payment.ParseLedgerDay(day); err != nil || (!isPart && day+closedSuffix != name) {
			continue // not a ledger file
		}
		if isPart {
			if err := l.recover(day); err != nil {
				return nil, err
			}
		}
		l.closed = max(l.closed, day)
	}
	go l.flusher(now) // stops on close
	return l, nil
}

// recover closes a day's .part file as it was left.
func (l *ledgerFiles) recover(day string) error {
	path := filepath.Join(l.dir, day+partSuffix)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	t, n, err := payment.ReadOpenLedger(f, day, func(payment.LedgerEntry) error { return nil })
	if err != nil {
		return fmt.Errorf("%s: %w", path, err) // an altered file is left for an operator to look at
	}
	if err := f.Truncate(n); err != nil {
		return err
	}
	if _, err := f.Seek(n, io.SeekStart); err != nil {
		return err
	}
	var w *payment.LedgerWriter
	if n == 0 {
		w, err = payment.NewLedgerWriter(f, day)
	} else {
		w, err = payment.ResumeLedgerWriter(f, day, t)
	}
	if err != nil {
		return err
	}
	l.log.Warn("paysim: closing a ledger day left open", "day", day, "lines", t.Lines)
	return l.finish(f, w)
}

// finish writes a day's trailer, makes the file durable and names it closed.
func (l *ledgerFiles) finish(f *os.File, w *payment.LedgerWriter) error {
	if err := w.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	day := w.Day()
	if err := os.Rename(filepath.Join(l.dir, day+partSuffix), filepath.Join(l.dir, day+closedSuffix)); err != nil {
		return err
	}
	if d, err := os.Open(l.dir); err == nil { // the rename itself survives a crash
		d.Sync()
		d.Close()
	}
	l.log.Info("paysim: ledger day closed", "day", day, "lines", w.Totals().Lines,
		"payments_minor", w.Totals().PaymentsMinor, "refunds_minor", w.Totals().RefundsMinor)
	return nil
}

// append books a movement: to the day of its time, or the day after the latest closed one.
// Callers hold the provider's lock, so lines are in the order movements were accepted.
func (l *ledgerFiles) append(e payment.LedgerEntry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	day := payment.LedgerDay(e.At)
	if day <= l.closed {
		next, _ := payment.ParseLedgerDay(l.closed)
		day = payment.LedgerDay(next.AddDate(0, 0, 1))
	}
	if l.w != nil && l.w.Day() < day {
		if err := l.closeOpen(); err != nil {
			return err
		}
	}
	if l.w == nil {
		f, err := os.OpenFile(filepath.Join(l.dir, day+partSuffix), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			return err
		}
		w, err := payment.NewLedgerWriter(f, day)
		if err != nil {
			f.Close()
			return err
		}
		l.f, l.w = f, w
	}
	if err := l.w.Append(e); err != nil {
		return err
	}
	l.dirty = true
	return nil
}

// closeOpen closes the open day. Callers hold l.mu.
func (l *ledgerFiles) closeOpen() error {
	f, w := l.f, l.w
	l.f, l.w, l.dirty = nil, nil, false
	l.closed = max(l.closed, w.Day())
	err := l.finish(f, w)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// closeDay closes day (and an open earlier one) and returns what its file states. A day without
// movements gets a file with no lines; a day closed already is answered from its file. Returns
// EINVALID for a day that has not begun at now.
func (l *ledgerFiles) closeDay(day string, now time.Time) (payment.LedgerTotals, error) {
	if _, err := payment.ParseLedgerDay(day); err != nil {
		return payment.LedgerTotals{}, err
	}
	if day > payment.LedgerDay(now) {
		return payment.LedgerTotals{}, surge.Errorf(surge.EINVALID, "the ledger day %s has not begun", day)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil && l.w.Day() <= day {
		open := l.w.Day()
		t := l.w.Totals()
		if err := l.closeOpen(); err != nil {
			return payment.LedgerTotals{}, err
		}
		if open == day {
			return t, nil
		}
	}
	l.closed = max(l.closed, day)
	f, err := os.Open(filepath.Join(l.dir, day+closedSuffix))
	if err == nil {
		defer f.Close()
		return payment.ReadLedger(f, day, func(payment.LedgerEntry) error { return nil })
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return payment.LedgerTotals{}, err
	}
	nf, err := os.OpenFile(filepath.Join(l.dir, day+partSuffix), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return payment.LedgerTotals{}, err
	}
	defer nf.Close()
	w, err := payment.NewLedgerWriter(nf, day)
	if err != nil {
		return payment.LedgerTotals{}, err
	}
	return w.Totals(), l.finish(nf, w)
}

// openClosed opens a closed day's file. Returns ENOTFOUND when there is none.
func (l *ledgerFiles) openClosed(day string) (*os.File, error) {
	if _, err := payment.ParseLedgerDay(day); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(l.dir, day+closedSuffix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, surge.Errorf(surge.ENOTFOUND, "no closed ledger of %s", day)
	}
	return f, err
}

// flusher writes buffered lines out every LedgerFlushMs, and closes the open day once it is
// over, so that a day's file is final soon after midnight even when nothing moves, until close.
func (l *ledgerFiles) flusher(now func() time.Time) {
	defer close(l.done)
	tick := time.NewTicker(LedgerFlushMs * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-l.stop:
			return
		}
		l.mu.Lock()
		var err error
		switch {
		case l.w != nil && l.w.Day() < payment.LedgerDay(now()):
			err = l.closeOpen()
		case l.dirty:
			l.dirty = false
			err = l.w.Flush()
		}
		l.mu.Unlock()
		if err != nil {
			l.log.Error("paysim: ledger write failed", "err", err)
		}
	}
}

// close stops the flusher and closes the open day.
func (l *ledgerFiles) close() error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	return l.closeOpen()
}
