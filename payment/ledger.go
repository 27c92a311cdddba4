// The daily ledger (ledger.go) is the provider's statement of every money movement it made:
// each charge of a transaction and each refund, one line each, one file per UTC day. Surge
// reconciles its own payments against it (count and amount mismatches, missing callbacks,
// paid-but-cancelled), so it is part of the protocol, like the notifications, and its format
// is fixed here. Version v1 is a CSV file of printable ASCII only:
//
//	#surge-payment-ledger,v1,2026-12-07
//	provider_id,type,txn_id,order_id,refund_id,amount_minor,currency,at
//	p1kx9a-1,payment,T1001,1001,,12900,CNY,2026-12-07T10:00:00.123456789Z
//	p1kx9a-2,refund,T1001,1001,R7,2900,CNY,2026-12-07T11:30:00Z
//	#end,lines=2,payments=1,payments_minor=12900,refunds=1,refunds_minor=2900
//
// Its lines:
//
//   - Line 1 names the format, its version and the day (UTC, YYYY-MM-DD) the file states.
//   - Line 2 names the columns.
//   - Then one line per movement, in the order the provider accepted them: provider_id is the
//     provider's own id of the movement, unique across all files (a transaction charged twice
//     has two lines with two provider ids); type is "payment" (a charge) or "refund"; txn_id
//     and order_id are the transaction's; refund_id is Surge's id of the refund, empty for a
//     payment; amount_minor is the amount moved in minor units (never negative, and positive
//     for a refund), currency its ISO 4217 code; at is when the provider accepted the
//     movement, RFC 3339 with nanoseconds in UTC (Go's time.RFC3339Nano, trailing zeros
//     dropped).
//   - The last line is the trailer: the number of movement lines, and per type their count
//     and the sum of their amount_minor (a checksum across currencies, not a balance). A file
//     without it, or whose lines disagree with it, was cut short or altered.
//
// A movement belongs to the day of its time, except that a day closed early (an operator
// finalized today) takes no more lines: the rest of that day's movements go to the next day's
// file, their at column keeping their real time. So a day's file holds movements of that day
// and, at most, of the day before.
//
// Ids never need CSV quoting: a byte outside printable ASCII, and any of , " % #, is written
// %XX (upper-case hex), and only those are. Every value has exactly one spelling (no leading
// zeros, no '+', times in UTC as above), so a file read and written again is the same bytes.
// A day's file is named <day>.csv once closed; while the day is open it is <day>.csv.part and
// has no trailer.
//
// GET and POST requests for the ledger (GET /paysim/v1/ledger/{day}, POST
// /paysim/v1/ledger/{day}/close at the simulated provider) are signed as notifications are, the
// signed body being "<METHOD> <path>" (LedgerRequestSignature).
package payment

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
)

// Ledger format constants.
const (
	LedgerFormat  = "#surge-payment-ledger"
	LedgerVersion = "v1"
	// LedgerColumns is the column header, the file's second line.
	LedgerColumns = "provider_id,type,txn_id,order_id,refund_id,amount_minor,currency,at"
	// MaxLedgerLineBytes bounds a line (three ids of MaxRequestIDBytes, each at worst
	// percent-encoded, and the rest, fit with room to spare).
	MaxLedgerLineBytes = 1024
	// LedgerTypePayment and LedgerTypeRefund are the movement types.
	LedgerTypePayment = "payment"
	LedgerTypeRefund  = "refund"

	ledgerTrailer   = "#end"
	ledgerBufBytes  = 64 << 10
	ledgerAtLayout  = time.RFC3339Nano
	ledgerDayLayout = time.DateOnly
)

// LedgerEntry is one money movement of the ledger.
type LedgerEntry struct {
	ProviderID string
	Type       string // LedgerTypePayment or LedgerTypeRefund
	TxnID      string
	OrderID    int64
	RefundID   string // empty for a payment
	Amount     surge.Money
	At         time.Time // UTC
}

// LedgerTotals is what a ledger's trailer states: its movement lines, and per type their count
// and the sum of their amounts in minor units.
type LedgerTotals struct {
	Lines         int64 `json:"lines"`
	Payments      int64 `json:"payments"`
	PaymentsMinor int64 `json:"payments_minor"`
	Refunds       int64 `json:"refunds"`
	RefundsMinor  int64 `json:"refunds_minor"`
}

// LedgerDay is the ledger day of a time: its UTC date, YYYY-MM-DD.
func LedgerDay(t time.Time) string { return t.UTC().Format(ledgerDayLayout) }

// ParseLedgerDay checks a day's spelling (YYYY-MM-DD) and returns its start. Returns EINVALID
// for anything else.
func ParseLedgerDay(day string) (time.Time, error) {
	t, err := time.Parse(ledgerDayLayout, day)
	if err != nil || t.Format(ledgerDayLayout) != day {
		return time.Time{}, surge.Errorf(surge.EINVALID, "ledger day %.20q is not a date such as 2026-12-07", day)
	}
	return t, nil
}

// LedgerRequestSignature returns the signature header value of a ledger request (method and
// path, such as "GET" and "/paysim/v1/ledger/2026-12-07"), signed at now.
func LedgerRequestSignature(key []byte, method, path string, now time.Time) string {
	return Sign(key, []byte(method+" "+path), now)
}

// VerifyLedgerRequest checks a ledger request's signature. Returns EUNAUTHORIZED as Verify does.
func VerifyLedgerRequest(key []byte, method, path, header string, now time.Time) error {
	return Verify(key, []byte(method+" "+path), header, now)
}

// Validate checks an entry as the ledger of day holds it. Returns EINVALID.
func (e *LedgerEntry) Validate(day string) error {
	start, err := ParseLedgerDay(day)
	if err != nil {
		return err
	}
	return e.validate(day, start)
}

// validate is Validate for the day that starts at start, without an allocation for a valid entry:
// a reader calls it for every line.
func (e *LedgerEntry) validate(day string, start time.Time) error {
	switch {
	case e.ProviderID == "" || len(e.ProviderID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "provider_id must be 1 to %d bytes", surge.MaxRequestIDBytes)
	case e.Type != LedgerTypePayment && e.Type != LedgerTypeRefund:
		return surge.Errorf(surge.EINVALID, "type must be payment or refund")
	case e.TxnID == "" || len(e.TxnID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "txn_id must be 1 to %d bytes", surge.MaxRequestIDBytes)
	case e.OrderID <= 0:
		return surge.Errorf(surge.EINVALID, "order_id must be positive")
	case (e.Type == LedgerTypeRefund) != (e.RefundID != ""):
		return surge.Errorf(surge.EINVALID, "refund_id is given for a refund, and only then")
	case len(e.RefundID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "refund_id must be at most %d bytes", surge.MaxRequestIDBytes)
	case e.Type == LedgerTypeRefund && e.Amount.Amount <= 0:
		return surge.Errorf(surge.EINVALID, "a refund's amount must be positive")
	case e.Amount.Amount < 0 || e.Amount.Amount > surge.MaxPriceMinor:
		return surge.Errorf(surge.EINVALID, "amount must be 0 to %d minor units", int64(surge.MaxPriceMinor))
	case e.At.Before(start.AddDate(0, 0, -1)) || !e.At.Before(start.AddDate(0, 0, 1)):
		return surge.Errorf(surge.EINVALID, "a movement at %s is not in the ledger of %s", e.At.UTC().Format(ledgerAtLayout), day)
	}
	return surge.ValidateCurrency("amount.currency", e.Amount.Currency)
}

// add counts e into the totals; false if a sum would overflow.
func (t *LedgerTotals) add(e *LedgerEntry) bool {
	sum, n := &t.PaymentsMinor, &t.Payments
	if e.Type == LedgerTypeRefund {
		sum, n = &t.RefundsMinor, &t.Refunds
	}
	if *sum > 1<<63-1-e.Amount.Amount {
		return false
	}
	*sum += e.Amount.Amount
	*n++
	t.Lines++
	return true
}

func (t LedgerTotals) appendTrailer(b []byte) []byte {
	b = append(b, ledgerTrailer+",lines="...)
	b = strconv.AppendInt(b, t.Lines, 10)
	b = append(b, ",payments="...)
	b = strconv.AppendInt(b, t.Payments, 10)
	b = append(b, ",payments_minor="...)
	b = strconv.AppendInt(b, t.PaymentsMinor, 10)
	b = append(b, ",refunds="...)
	b = strconv.AppendInt(b, t.Refunds, 10)
	b = append(b, ",refunds_minor="...)
	b = strconv.AppendInt(b, t.RefundsMinor, 10)
	return append(b, '\n')
}

// LedgerWriter writes one day's ledger through a buffer. It is not safe for concurrent use.
type LedgerWriter struct {
	w      *bufio.Writer
	day    string
	start  time.Time // of day
	totals LedgerTotals
	line   []byte
	err    error // sticky: a ledger with a failed write is not written further
}

// NewLedgerWriter starts the ledger of day on w: it writes the header lines (to the buffer).
func NewLedgerWriter(w io.Writer, day string) (*LedgerWriter, error) {
	start, err := ParseLedgerDay(day)
	if err != nil {
		return nil, err
	}
	lw := &LedgerWriter{w: bufio.NewWriterSize(w, ledgerBufBytes), day: day, start: start}
	_, lw.err = lw.w.WriteString(LedgerFormat + "," + LedgerVersion + "," + day + "\n" + LedgerColumns + "\n")
	return lw, lw.err
}

// ResumeLedgerWriter continues on w (positioned after its last whole line) the open ledger of day
// whose lines so far add up to totals (as ReadOpenLedger found them).
func ResumeLedgerWriter(w io.Writer, day string, totals LedgerTotals) (*LedgerWriter, error) {
	start, err := ParseLedgerDay(day)
	if err != nil {
		return nil, err
	}
	return &LedgerWriter{w: bufio.NewWriterSize(w, ledgerBufBytes), day: day, start: start, totals: totals}, nil
}

// Day is the day the ledger states.
func (lw *LedgerWriter) Day() string { return lw.day }

// Totals is what the lines written so far add up to.
func (lw *LedgerWriter) Totals() LedgerTotals { return lw.totals }

// Append writes a movement. Returns EINVALID for an entry the ledger cannot hold (Validate, or
// a day's sum past int64), or the error of an earlier failed write.
func (lw *LedgerWriter) Append(e LedgerEntry) error {
	if lw.err != nil {
		return lw.err
	}
	e.At = e.At.UTC()
	if err := e.validate(lw.day, lw.start); err != nil {
		return err
	}
	t := lw.totals
	if !t.add(&e) {
		return surge.Errorf(surge.EINVALID, "the ledger of %s would sum past %d minor units", lw.day, int64(1<<63-1))
	}
	lw.line = appendEntry(lw.line[:0], &e)
	if _, lw.err = lw.w.Write(lw.line); lw.err != nil {
		return lw.err
	}
	lw.totals = t
	return nil
}

// Flush writes the buffered lines out.
func (lw *LedgerWriter) Flush() error {
	if lw.err != nil {
		return lw.err
	}
	lw.err = lw.w.Flush()
	return lw.err
}

// Close writes the trailer and flushes; the ledger takes no more lines. It does not close the
// underlying writer.
func (lw *LedgerWriter) Close() error {
	if lw.err != nil {
		return lw.err
	}
	if _, lw.err = lw.w.Write(lw.totals.appendTrailer(lw.line[:0])); lw.err != nil {
		return lw.err
	}
	if err := lw.w.Flush(); err != nil {
		lw.err = err
		return err
	}
	lw.err = surge.Errorf(surge.ECONFLICT, "the ledger of %s is closed", lw.day)
	return nil
}

func appendEntry(b []byte, e *LedgerEntry) []byte {
	b = appendID(b, e.ProviderID)
	b = append(b, ',')
	b = append(b, e.Type...)
	b = append(b, ',')
	b = appendID(b, e.TxnID)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.OrderID, 10)
	b = append(b, ',')
	b = appendID(b, e.RefundID)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.Amount.Amount, 10)
	b = append(b, ',')
	b = append(b, e.Amount.Currency...)
	b = append(b, ',')
	b = e.At.UTC().AppendFormat(b, ledgerAtLayout)
	return append(b, '\n')
}

// escaped says whether an id byte is written %XX.
func escaped(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == ',' || c == '"' || c == '%' || c == '#'
}

func appendID(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		if c := s[i]; escaped(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return b
}

// ReadLedger reads the closed ledger of day from r, calling fn with each movement in file order,
// and returns its totals. It holds one buffer whatever the file's size. Returns EINVALID for a
// file that is not the ledger of day (naming both days when it is another day's), a malformed
// line (naming its number), or a missing or disagreeing trailer (a truncated file); ETOOLARGE
// for a line over MaxLedgerLineBytes; fn's error when it fails; a read error as is.
func ReadLedger(r io.Reader, day string, fn func(LedgerEntry) error) (LedgerTotals, error) {
	t, _, err := readLedger(r, day, false, fn)
	return t, err
}

// ReadOpenLedger reads the open ledger of day (a .part file: no trailer yet) as ReadLedger does,
// except that it ends at the end of the last whole line, and returns the bytes up to there: a
// last line cut short (a write the provider did not finish) is not part of the ledger. It
// returns 0 bytes when the header lines are not whole: the ledger is to be started afresh.
func ReadOpenLedger(r io.Reader, day string, fn func(LedgerEntry) error) (LedgerTotals, int64, error) {
	return readLedger(r, day, true, fn)
}

func readLedger(r io.Reader, day string, open bool, fn func(LedgerEntry) error) (LedgerTotals, int64, error) {
	var t LedgerTotals
	start, err := ParseLedgerDay(day)
	if err != nil {
		return t, 0, err
	}
	br := bufio.NewReaderSize(r, ledgerBufBytes)
	var (
		off, lineNo int64
		trailer     []byte
		p           entryParser
		e           LedgerEntry
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxLedgerLineBytes {
			return t, off, surge.Errorf(surge.ETOOLARGE, "ledger line %d is over %d bytes", lineNo+1, MaxLedgerLineBytes)
		}
		if err == io.EOF {
			if open && lineNo < 2 {
				return t, 0, nil // the header was never finished: nothing of the ledger is there
			}
			if open {
				return t, off, nil // a partial last line, if any, was never finished
			}
			if len(line) == 0 && lineNo == 0 {
				return t, off, surge.Errorf(surge.EINVALID, "empty file: not a ledger")
			}
			if trailer != nil {
				return t, off, nil
			}
			return t, off, surge.Errorf(surge.EINVALID, "ledger of %s truncated after line %d: no trailer", day, lineNo)
		}
		if err != nil {
			return t, off, err
		}
		lineNo++
		if trailer != nil {
			return t, off, surge.Errorf(surge.EINVALID, "ledger line %d follows the trailer", lineNo)
		}
		body := line[:len(line)-1]
		switch {
		case lineNo == 1:
			if err := checkHeader(body, day); err != nil {
				return t, off, err
			}
		case lineNo == 2:
			if string(body) != LedgerColumns {
				return t, off, surge.Errorf(surge.EINVALID, "ledger line 2 is not the column header %s", LedgerColumns)
			}
		case len(body) > 0 && body[0] == '#':
			if open {
				return t, off, surge.Errorf(surge.EINVALID, "ledger line %d: an open ledger has a trailer", lineNo)
			}
			want := t.appendTrailer(nil)
			if !bytes.Equal(line, want) {
				if bytes.HasPrefix(body, []byte(ledgerTrailer+",")) {
					return t, off, surge.Errorf(surge.EINVALID, "ledger of %s truncated or altered: its trailer says %.200q, its lines add up to %q",
						day, body, want[:len(want)-1])
				}
				return t, off, surge.Errorf(surge.EINVALID, "ledger line %d is not a movement nor the trailer", lineNo)
			}
			trailer = want
		default:
			if err := p.parse(body, &e); err != nil {
				return t, off, surge.Errorf(surge.EINVALID, "ledger line %d: %s", lineNo, surge.ErrorMessage(err))
			}
			if err := e.validate(day, start); err != nil {
				return t, off, surge.Errorf(surge.EINVALID, "ledger line %d: %s", lineNo, surge.ErrorMessage(err))
			}
			if !t.add(&e) {
				return t, off, surge.Errorf(surge.EINVALID, "ledger line %d: the day's sum passes %d minor units", lineNo, int64(1<<63-1))
			}
			if err := fn(e); err != nil {
				return t, off, err
			}
		}
		off += int64(len(line))
	}
}

func checkHeader(body []byte, day string) error {
	f := bytes.Split(body, []byte(","))
	switch {
	case string(f[0]) != LedgerFormat:
		return surge.Errorf(surge.EINVALID, "not a Surge payment ledger: line 1 does not start with %s", LedgerFormat)
	case len(f) != 3:
		return surge.Errorf(surge.EINVALID, "ledger line 1 must be %s,<version>,<day>", LedgerFormat)
	case string(f[1]) != LedgerVersion:
		return surge.Errorf(surge.EINVALID, "ledger format version %.20q is not %s", f[1], LedgerVersion)
	case string(f[2]) != day:
		return surge.Errorf(surge.EINVALID, "the file is the ledger of %.20q, not of %s", f[2], day)
	}
	return nil
}

// entryParser parses movement lines, reusing what it can between them.
type entryParser struct {
	currency string // the last currency, so that a file of one currency allocates it once
	at       []byte
}

func (p *entryParser) parse(line []byte, e *LedgerEntry) error {
	var f [8][]byte
	for i := range 7 {
		j := bytes.IndexByte(line, ',')
		if j < 0 {
			return surge.Errorf(surge.EINVALID, "%d fields; want 8", i+1)
		}
		f[i], line = line[:j], line[j+1:]
	}
	if bytes.IndexByte(line, ',') >= 0 {
		return surge.Errorf(surge.EINVALID, "more than 8 fields")
	}
	f[7] = line
	var err error
	if e.ProviderID, err = parseID(f[0], "provider_id"); err != nil {
		return err
	}
	switch string(f[1]) {
	case LedgerTypePayment:
		e.Type = LedgerTypePayment
	case LedgerTypeRefund:
		e.Type = LedgerTypeRefund
	default:
		return surge.Errorf(surge.EINVALID, "type must be payment or refund")
	}
	if e.TxnID, err = parseID(f[2], "txn_id"); err != nil {
		return err
	}
	if e.OrderID, err = parseCount(f[3], "order_id"); err != nil {
		return err
	}
	if e.RefundID, err = parseID(f[4], "refund_id"); err != nil {
		return err
	}
	if e.Amount.Amount, err = parseCount(f[5], "amount_minor"); err != nil {
		return err
	}
	if string(f[6]) != p.currency {
		p.currency = string(f[6])
	}
	e.Amount.Currency = p.currency
	at, err := time.Parse(ledgerAtLayout, string(f[7]))
	if p.at = at.UTC().AppendFormat(p.at[:0], ledgerAtLayout); err != nil || !bytes.Equal(p.at, f[7]) {
		return surge.Errorf(surge.EINVALID, "at must be a UTC time such as 2026-12-07T10:00:00.5Z")
	}
	e.At = at
	return nil
}

// parseCount parses a canonical non-negative decimal: no sign, no leading zero.
func parseCount(b []byte, field string) (int64, error) {
	if len(b) == 0 || len(b) > 19 || (b[0] == '0' && len(b) > 1) {
		return 0, surge.Errorf(surge.EINVALID, "%s must be a decimal number without leading zeros", field)
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, surge.Errorf(surge.EINVALID, "%s must be a decimal number without leading zeros", field)
		}
		n = n*10 + int64(c-'0')
	}
	if n < 0 { // 19 digits past int64
		return 0, surge.Errorf(surge.EINVALID, "%s is out of range", field)
	}
	return n, nil
}

// parseID decodes an id as appendID writes it, and only so.
func parseID(b []byte, field string) (string, error) {
	if bytes.IndexByte(b, '%') < 0 {
		for _, c := range b {
			if escaped(c) {
				return "", surge.Errorf(surge.EINVALID, "%s has a byte 0x%02x that must be written %%XX", field, c)
			}
		}
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '%' {
			if escaped(c) {
				return "", surge.Errorf(surge.EINVALID, "%s has a byte 0x%02x that must be written %%XX", field, c)
			}
			out = append(out, c)
			continue
		}
		if i+2 >= len(b) {
			return "", surge.Errorf(surge.EINVALID, "%s ends in a cut %%XX", field)
		}
		hi, ok1 := unhex(b[i+1])
		lo, ok2 := unhex(b[i+2])
		if d := hi<<4 | lo; !ok1 || !ok2 || !escaped(d) {
			return "", surge.Errorf(surge.EINVALID, "%s has %%%s, which is not how the ledger writes a byte", field, b[i+1:i+3])
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
