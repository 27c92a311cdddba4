package payment_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

const day = "2026-12-07"

var noon = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func sampleEntries() []payment.LedgerEntry {
	cny := func(a int64) surge.Money { return surge.Money{Amount: a, Currency: "CNY"} }
	return []payment.LedgerEntry{
		{ProviderID: "p1-1", Type: payment.LedgerTypePayment, TxnID: "T1", OrderID: 1, Amount: cny(12900), At: noon},
		{ProviderID: "p1-2", Type: payment.LedgerTypeRefund, TxnID: "T1", OrderID: 1, RefundID: "R,1 \"%#é", Amount: cny(2900), At: noon.Add(1500 * time.Millisecond)},
		{ProviderID: "p1-3", Type: payment.LedgerTypePayment, TxnID: "T2", OrderID: 2, Amount: cny(0), At: noon.Add(-12*time.Hour - time.Nanosecond)}, // the day before, after an early close
	}
}

func writeLedger(t testing.TB, d string, entries []payment.LedgerEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := payment.NewLedgerWriter(&buf, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Append(e); err != nil {
			t.Fatalf("Append(%+v) = %v", e, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(b []byte, d string) ([]payment.LedgerEntry, payment.LedgerTotals, error) {
	var got []payment.LedgerEntry
	tot, err := payment.ReadLedger(bytes.NewReader(b), d, func(e payment.LedgerEntry) error { got = append(got, e); return nil })
	return got, tot, err
}

func TestLedgerRoundTrip(t *testing.T) {
	in := sampleEntries()
	b := writeLedger(t, day, in)
	want := "#surge-payment-ledger,v1,2026-12-07\n" + payment.LedgerColumns + "\n" +
		"p1-1,payment,T1,1,,12900,CNY,2026-12-07T12:00:00Z\n" +
		"p1-2,refund,T1,1,R%2C1%20%22%25%23%C3%A9,2900,CNY,2026-12-07T12:00:01.5Z\n" +
		"p1-3,payment,T2,2,,0,CNY,2026-12-06T23:59:59.999999999Z\n" +
		"#end,lines=3,payments=2,payments_minor=12900,refunds=1,refunds_minor=2900\n"
	if string(b) != want {
		t.Fatalf("ledger =\n%s\nwant\n%s", b, want)
	}
	got, tot, err := readAll(b, day)
	if err != nil {
		t.Fatalf("ReadLedger = %v", err)
	}
	if tot != (payment.LedgerTotals{Lines: 3, Payments: 2, PaymentsMinor: 12900, Refunds: 1, RefundsMinor: 2900}) {
		t.Fatalf("totals = %+v", tot)
	}
	if len(got) != len(in) {
		t.Fatalf("read %d entries; want %d", len(got), len(in))
	}
	for i := range in {
		if got[i] != in[i] {
			t.Fatalf("entry %d = %+v; want %+v", i, got[i], in[i])
		}
	}
	// An open ledger (no trailer) reads to its last whole line.
	open := b[:bytes.LastIndex(b, []byte("#end"))]
	torn := append(append([]byte(nil), open...), "p1-4,payment,T3,3,,1"...)
	tot, n, err := payment.ReadOpenLedger(bytes.NewReader(torn), day, func(payment.LedgerEntry) error { return nil })
	if err != nil || n != int64(len(open)) || tot.Lines != 3 {
		t.Fatalf("ReadOpenLedger(torn) = %+v, %d, %v; want 3 lines, %d bytes", tot, n, err, len(open))
	}
	if _, n, err := payment.ReadOpenLedger(strings.NewReader("#surge-payment-ledger,v1,2026-12-07\nprovider_id"), day,
		func(payment.LedgerEntry) error { return nil }); err != nil || n != 0 {
		t.Fatalf("ReadOpenLedger(torn header) = %d, %v; want 0 bytes, to start afresh", n, err)
	}
}

func TestLedgerWriterRefuses(t *testing.T) {
	var buf bytes.Buffer
	w, err := payment.NewLedgerWriter(&buf, day)
	if err != nil {
		t.Fatal(err)
	}
	ok := sampleEntries()[0]
	for name, bad := range map[string]func(e *payment.LedgerEntry){
		"other day":           func(e *payment.LedgerEntry) { e.At = noon.Add(24 * time.Hour) },
		"two days before":     func(e *payment.LedgerEntry) { e.At = noon.Add(-48 * time.Hour) },
		"refund id on a pay":  func(e *payment.LedgerEntry) { e.RefundID = "R" },
		"refund without id":   func(e *payment.LedgerEntry) { e.Type = payment.LedgerTypeRefund },
		"unknown type":        func(e *payment.LedgerEntry) { e.Type = "chargeback" },
		"negative amount":     func(e *payment.LedgerEntry) { e.Amount.Amount = -1 },
		"no order":            func(e *payment.LedgerEntry) { e.OrderID = 0 },
		"long provider id":    func(e *payment.LedgerEntry) { e.ProviderID = strings.Repeat("p", surge.MaxRequestIDBytes+1) },
		"lower-case currency": func(e *payment.LedgerEntry) { e.Amount.Currency = "cny" },
	} {
		e := ok
		bad(&e)
		if err := w.Append(e); surge.ErrorCode(err) != surge.EINVALID {
			t.Errorf("Append(%s) = %v; want EINVALID", name, err)
		}
	}
	if w.Totals().Lines != 0 {
		t.Fatalf("refused entries were counted: %+v", w.Totals())
	}
	big := ok
	big.Amount.Amount = surge.MaxPriceMinor
	for range 8191 {
		if err := w.Append(big); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Append(big); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("Append past the int64 sum = %v; want EINVALID", err)
	}
}

func TestLedgerReaderErrors(t *testing.T) {
	good := string(writeLedger(t, day, sampleEntries()))
	lines := strings.SplitAfter(good, "\n")
	body := strings.Join(lines[:len(lines)-2], "") // header, columns, the movements
	trailer := lines[len(lines)-2]
	long := strings.Replace(good, "p1-1,", strings.Repeat("x", payment.MaxLedgerLineBytes)+",", 1)
	huge := strings.Replace(good, "p1-1,", strings.Repeat("x", 200_000)+",", 1)
	for _, c := range []struct {
		name, file, code, msg string
	}{
		{"empty", "", surge.EINVALID, "empty"},
		{"not a ledger", "a,b,c\n", surge.EINVALID, "not a Surge payment ledger"},
		{"other version", strings.Replace(good, ",v1,", ",v2,", 1), surge.EINVALID, "version"},
		{"other day", strings.Replace(good, "v1,2026-12-07", "v1,2026-12-08", 1), surge.EINVALID, `"2026-12-08", not of 2026-12-07`},
		{"no columns", strings.Replace(good, "provider_id,", "id,", 1), surge.EINVALID, "line 2"},
		{"no trailer", body, surge.EINVALID, "truncated"},
		{"cut mid-line", body[:len(body)-5], surge.EINVALID, "truncated"},
		{"a line dropped", strings.Replace(good, lines[3], "", 1), surge.EINVALID, "truncated"},
		{"amount altered", strings.Replace(good, ",12900,CNY", ",12901,CNY", 1), surge.EINVALID, "truncated"},
		{"after the trailer", good + lines[2], surge.EINVALID, "follows the trailer"},
		{"trailer without newline", body + strings.TrimSuffix(trailer, "\n"), surge.EINVALID, "truncated"},
		{"seven fields", strings.Replace(good, ",CNY,", ",CNY", 1), surge.EINVALID, "line 3: 7 fields"},
		{"leading zero", strings.Replace(good, ",12900,", ",012900,", 1), surge.EINVALID, "line 3: amount_minor"},
		{"signed order", strings.Replace(good, ",T1,1,,", ",T1,+1,,", 1), surge.EINVALID, "line 3: order_id"},
		{"local time", strings.Replace(good, "12:00:00Z", "13:00:00+01:00", 1), surge.EINVALID, "line 3: at"},
		{"time of another day", strings.Replace(good, "2026-12-07T12:00:00Z", "2026-12-08T12:00:00Z", 1), surge.EINVALID, "line 3"},
		{"raw comma-free quote", strings.Replace(good, "p1-1,", "p\"1,", 1), surge.EINVALID, "line 3: provider_id"},
		{"lower-case escape", strings.Replace(good, "%2C", "%2c", 1), surge.EINVALID, "line 4: refund_id"},
		{"needless escape", strings.Replace(good, "p1-1,", "p%31-1,", 1), surge.EINVALID, "line 3: provider_id"},
		{"cut escape", strings.Replace(good, "p1-1,", "p1-%2,", 1), surge.EINVALID, "line 3: provider_id"},
		{"crlf", strings.ReplaceAll(good, "\n", "\r\n"), surge.EINVALID, `ledger of "2026-12-07\r"`},
		{"too long line", long, surge.ETOOLARGE, "line 3"},
		{"line past the buffer", huge, surge.ETOOLARGE, "line 3"},
	} {
		_, _, err := readAll([]byte(c.file), day)
		if surge.ErrorCode(err) != c.code || !strings.Contains(surge.ErrorMessage(err), c.msg) {
			t.Errorf("ReadLedger(%s) = %v; want %s with %q", c.name, err, c.code, c.msg)
		}
	}
	stop := errors.New("stop")
	if _, err := payment.ReadLedger(strings.NewReader(good), day, func(payment.LedgerEntry) error { return stop }); err != stop {
		t.Fatalf("ReadLedger(failing callback) = %v; want its error", err)
	}
}

// FuzzLedgerReader: whatever the file, the reader answers with a domain error (or a callback's),
// never panics, and what it accepts is exactly what the writer writes for those entries.
func FuzzLedgerReader(f *testing.F) {
	good := writeLedger(f, day, sampleEntries())
	f.Add(good)
	f.Add(writeLedger(f, day, nil))
	f.Add(good[:len(good)-10])
	f.Add(bytes.Replace(good, []byte("2026-12-07\n"), []byte("2026-12-08\n"), 1))
	f.Add(bytes.Replace(good, []byte("%2C"), []byte("%2c"), 1))
	f.Add([]byte("#surge-payment-ledger,v1,2026-12-07\n" + payment.LedgerColumns + "\n#end,lines=0,payments=0,payments_minor=0,refunds=0,refunds_minor=0\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, tot, err := readAll(b, day)
		if err != nil {
			if code := surge.ErrorCode(err); code != surge.EINVALID && code != surge.ETOOLARGE {
				t.Fatalf("ReadLedger = %v; want EINVALID or ETOOLARGE", err)
			}
			return
		}
		again := writeLedger(t, day, got)
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted\n%q\nwhich writes back as\n%q", b, again)
		}
		got2, tot2, err := readAll(again, day)
		if err != nil || tot2 != tot || len(got2) != len(got) {
			t.Fatalf("the rewritten ledger reads as %+v, %v; want %+v", tot2, err, tot)
		}
		for i := range got {
			if got2[i] != got[i] {
				t.Fatalf("entry %d reads back as %+v; want %+v", i, got2[i], got[i])
			}
		}
	})
}

// generator streams a closed ledger of n payment lines without holding it.
type generator struct {
	n, i    int64
	buf     []byte
	pending []byte
	sum     int64
	done    bool
}

func (g *generator) Read(p []byte) (int, error) {
	for len(g.pending) == 0 {
		if g.done {
			return 0, io.EOF
		}
		g.buf = g.buf[:0]
		switch {
		case g.i == 0:
			g.buf = append(g.buf, "#surge-payment-ledger,v1,"+day+"\n"+payment.LedgerColumns+"\n"...)
		case g.i > g.n:
			g.buf = fmt.Appendf(g.buf, "#end,lines=%d,payments=%d,payments_minor=%d,refunds=0,refunds_minor=0\n", g.n, g.n, g.sum)
			g.done = true
		default:
			amount := 100 + g.i%50_000
			g.sum += amount
			g.buf = append(g.buf, "p0-"...)
			g.buf = strconv.AppendInt(g.buf, g.i, 10)
			g.buf = append(g.buf, ",payment,T"...)
			g.buf = strconv.AppendInt(g.buf, 7_000_000_000+g.i, 10)
			g.buf = append(g.buf, ',')
			g.buf = strconv.AppendInt(g.buf, 7_000_000_000+g.i, 10)
			g.buf = append(g.buf, ",,"...)
			g.buf = strconv.AppendInt(g.buf, amount, 10)
			g.buf = append(g.buf, ",CNY,"...)
			g.buf = noon.Add(time.Duration(g.i)*time.Microsecond).AppendFormat(g.buf, time.RFC3339Nano)
			g.buf = append(g.buf, '\n')
		}
		g.i++
		g.pending = g.buf
	}
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// BenchmarkLedgerReader reads a generated ledger of 10,000,000 lines (LEDGER_BENCH_LINES to
// change it) from a temporary file, and reports ns and allocations per line and the peak heap.
func BenchmarkLedgerReader(b *testing.B) {
	n := int64(10_000_000)
	if s := os.Getenv("LEDGER_BENCH_LINES"); s != "" {
		n, _ = strconv.ParseInt(s, 10, 64)
	}
	path := filepath.Join(b.TempDir(), day+".csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	size, err := io.Copy(f, &generator{n: n})
	if err != nil || f.Close() != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := uint64(0)
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var lines int64
		tot, err := payment.ReadLedger(f, day, func(e payment.LedgerEntry) error {
			if lines++; lines%1_000_000 == 0 {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
			return nil
		})
		f.Close()
		if err != nil || tot.Lines != n {
			b.Fatalf("ReadLedger = %+v, %v; want %d lines", tot, err, n)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	perLine := float64(b.Elapsed().Nanoseconds()) / float64(int64(b.N)*n)
	b.ReportMetric(perLine, "ns/line")
	b.ReportMetric(1e9/perLine, "lines/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(int64(b.N)*n), "allocs/line")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
