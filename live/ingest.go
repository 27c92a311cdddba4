package live

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/go-json-experiment/json/jsontext"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// Bounds of one ingestion request.
const (
	MaxIngestBytes      = 32 << 20 // after decompression
	MaxIngestLines      = 50_000
	MaxLineBytes        = 64 << 10
	maxEventsPerMessage = 1000 // a bus message stays far below the 1 MiB payload limit
	maxLineErrors       = 100  // errors listed in the answer; all are dead-lettered
	maxDeadRawBytes     = 4 << 10
	maxPooledBody       = 1 << 20 // a buffer that grew past it for a big batch is let go
)

// Subjects of ingested events and their dead letters.
const (
	IngestSubject     = "surge.events." + EventsIngested
	DeadLetterSubject = "surge.deadletter.events"
)

// LineError is why one line of a batch was refused.
type LineError struct {
	Line    int    `json:"line"` // 1-based
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IngestResult is the answer to an ingested batch.
type IngestResult struct {
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	// Duplicates are lines repeating an event id seen earlier in the same batch; copies across
	// batches are dropped by the pipeline.
	Duplicates int         `json:"duplicates"`
	Errors     []LineError `json:"errors"`
}

// DeadLetter is a refused line, kept with its reason.
type DeadLetter struct {
	RequestID string `json:"request_id"`
	Line      int    `json:"line"`
	Code      string `json:"code"`
	Reason    string `json:"reason"`
	Raw       string `json:"raw"` // the line, cut at 4 KiB
	At        int64  `json:"at_ms"`
}

// Quotas of events per sender and minute: an app or a merchant cannot fill the log on its own.
// Staff (Surge's integrations) have none.
const (
	MaxAppEventsPerMinute  = 6_000
	MaxShopEventsPerMinute = 600_000
	quotaWindow            = time.Minute
)

// Ingester validates batches of business events and appends them to the events log.
type Ingester struct {
	publisher   func() Publisher
	quota       surge.Counter
	now         func() time.Time
	slots       chan struct{} // batches being read and written for the log, one entry each
	handoff     *Handoff      // this node's live pipeline, if it counts: nil elsewhere
	bodies      sync.Pool     // *bytes.Buffer, for the bodies read; none past maxPooledBody
	accepted    prometheus.Counter
	rejected    *prometheus.CounterVec
	quotaErrors prometheus.Counter
}

// IngestSlots is how many batches a node reads and writes for the log at once: on a node that
// counts the live metrics, one fewer than the cores Go runs on, and at least one; elsewhere, as
// many as the cores. The live pipeline counts on one goroutine; when every core goes to
// ingestion, the scheduler gives the pipeline one turn among a dozen handlers, and at full speed
// the counting falls seconds behind what the log holds. With a core left to it, the metrics keep
// up with the events. A batch waits for its slot with its body read in: a slow sender holds no
// slot. The bodies waiting take less memory than the same batches all decoding at once did.
func IngestSlots(counting bool) int {
	if !counting {
		return runtime.GOMAXPROCS(0)
	}
	return max(1, runtime.GOMAXPROCS(0)-1)
}

// NewIngester appends to the log through publishers made by newPublisher (one per batch, so a
// batch waits only for its own messages), counts senders' quotas in quota (shared by the nodes
// in a scale-out deployment), reads and writes at most slots batches at once, and registers its
// metrics.
func NewIngester(newPublisher func() Publisher, quota surge.Counter, slots int, reg prometheus.Registerer) *Ingester {
	in := &Ingester{publisher: newPublisher, quota: quota, now: time.Now, slots: make(chan struct{}, max(1, slots)),
		quotaErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_ingest_quota_errors_total",
			Help: "Batches let through because the quota counter failed."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_ingest_events_accepted_total", Help: "Business events accepted into the events log."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_ingest_events_rejected_total", Help: "Business event lines refused and dead-lettered, by error code."}, []string{"code"}),
	}
	reg.MustRegister(in.accepted, in.rejected, in.quotaErrors)
	return in
}

// HandOff makes the ingester offer each batch it writes to the log to this node's live pipeline,
// already read (Handoff.Decode).
func (in *Ingester) HandOff(h *Handoff) *Ingester {
	in.handoff = h
	return in
}

// Ingest reads a batch of JSON lines (gzip-compressed if gzipped), appends the valid events to
// the log in order and dead-letters the others with their reason. Returns EINVALID for a body
// that cannot be read, ETOOLARGE past the bounds, ERATELIMIT when the log is full (nothing is
// dropped: the producer retries the batch; its events are counted once), and EUNAVAILABLE when
// ctx ends while the batch waits for its turn.
//
// The body is read in whole first, as sent; then the batch waits for a slot (IngestSlots) to be
// decompressed, checked and written as log messages; then, without the slot, it is counted
// against the sender's quota, its messages are published and their acknowledgements awaited, and
// then its dead letters.
func (in *Ingester) Ingest(ctx context.Context, a surge.Actor, requestID string, body io.Reader, gzipped bool) (IngestResult, error) {
	// Read into a buffer an earlier batch was read into: grown from nothing, as io.ReadAll does,
	// copying and clearing at each doubling, reading took 13% of ingestion's work. Nothing
	// of the body is kept past Ingest: the events and log messages hold copies.
	buf, _ := in.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			in.bodies.Put(buf)
		}
	}()
	_, err := buf.ReadFrom(io.LimitReader(body, MaxIngestBytes+1))
	sent := buf.Bytes()
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok || len(sent) > MaxIngestBytes {
		return IngestResult{}, surge.Errorf(surge.ETOOLARGE, "a batch is at most %d bytes", MaxIngestBytes)
	}
	if err != nil {
		return IngestResult{}, surge.Errorf(surge.EINVALID, "read body: %v", err)
	}
	b, err := in.inTurn(ctx, func() (prepared, error) { return in.prepare(a, requestID, sent, gzipped) })
	if err != nil {
		return IngestResult{}, err
	}
	if err := in.charge(ctx, a, b.events); err != nil {
		return IngestResult{}, err // before any dead letter: the sender retries the whole batch
	}
	pub := in.publisher()
	for _, m := range b.messages {
		in.handoff.put(m.id, m.events) // before publishing: the pipeline may read it before its acknowledgement
		if err := pub.PublishAsync(IngestSubject, m.id, m.data); err != nil {
			return IngestResult{}, err
		}
	}
	if err := pub.Flush(ctx); err != nil {
		return IngestResult{}, err
	}
	// The refused lines are parked once the events are in the log: a batch the log refuses (a
	// full log answers 429) parks nothing, and its retry parks its lines once (their ids).
	for i, d := range b.dead {
		if err := pub.PublishAsync(DeadLetterSubject, b.deadIDs[i], d); err != nil {
			return IngestResult{}, err
		}
	}
	if len(b.dead) > 0 {
		if err := pub.Flush(ctx); err != nil {
			return IngestResult{}, err
		}
	}
	// Counted once the answer is certain: a batch refused whole (too large, not gzip, over its
	// quota, a log that did not take it) reports no line, and counts none.
	b.res.Accepted = b.events
	in.accepted.Add(float64(b.events))
	for code, n := range b.refused {
		in.rejected.WithLabelValues(code).Add(float64(n))
	}
	return b.res, nil
}

// inTurn runs prepare with a slot held, once one is free.
func (in *Ingester) inTurn(ctx context.Context, prepare func() (prepared, error)) (prepared, error) {
	select {
	case in.slots <- struct{}{}:
	case <-ctx.Done():
		return prepared{}, surge.Errorf(surge.EUNAVAILABLE, "the batch did not get its turn: %v", ctx.Err())
	}
	defer func() { <-in.slots }()
	return prepare()
}

// prepared is a batch read, checked and written for the log, not yet published.
type prepared struct {
	res      IngestResult
	events   int            // valid events, each once
	dead     [][]byte       // the dead letters of the refused lines
	deadIDs  []string       // their message ids: the same for a batch sent again, so the log keeps one
	refused  map[string]int // refused lines by code
	messages []logMessage
	sender   surge.Actor
	sent     []byte // the body, as sent
	batchID  string // the hash of the sender and the body, once a line is refused
}

// deadID is the message id of the dead letter of a line: the same for the same body sent again
// by the same sender, so the dead-letter stream keeps one.
func (b *prepared) deadID(line int) string {
	if b.batchID == "" { // for the batches with a refused line only: most have none
		h := xxhash.New()
		_, _ = h.WriteString(string(b.sender.Role) + "/" + strconv.FormatInt(b.sender.UserID, 10) + "/")
		_, _ = h.Write(b.sent)
		b.batchID = "dead-" + strconv.FormatUint(h.Sum64(), 36)
	}
	return b.batchID + "-" + strconv.Itoa(line)
}

// logMessage is one message of the events log, with its dedup id and the events it carries.
type logMessage struct {
	id     string
	data   []byte
	events []surge.BusinessEvent
}

// prepare reads the lines of a body, as sent, into the answer, the dead letters and the log
// messages of the valid events.
func (in *Ingester) prepare(a surge.Actor, requestID string, sent []byte, gzipped bool) (prepared, error) {
	var sc lineScanner = &byteLines{data: sent} // a plain body is read where it lies
	if gzipped {
		zr, err := gzip.NewReader(bytes.NewReader(sent))
		if err != nil {
			return prepared{}, surge.Errorf(surge.EINVALID, "body is not gzip: %v", err)
		}
		defer zr.Close()
		gz := bufio.NewScanner(io.LimitReader(zr, MaxIngestBytes+1))
		gz.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
		sc = gz
	}
	b := prepared{res: IngestResult{Errors: []LineError{}}, sender: a, sent: sent}
	// The events expected, so that room is made once rather than grown by copying as they come:
	// the lines, but no more than the body could hold (an event takes more than 32 bytes) and
	// nothing for a gzipped body, so that a body of empty lines reserves nothing much.
	lines := 0
	if !gzipped {
		lines = min(bytes.Count(sent, []byte("\n"))+1, len(sent)/32+1, MaxIngestLines)
	}
	batch := make([]surge.BusinessEvent, 0, lines)
	seen := make(map[string]struct{}, lines)
	read, line, given := 0, 0, 0
	now := in.now() // once for the batch: a clock read per event was 4% of reading it
	for sc.Scan() {
		line++
		raw := sc.Bytes()
		read += len(raw) + 1
		if read > MaxIngestBytes+1 {
			return prepared{}, surge.Errorf(surge.ETOOLARGE, "a batch is at most %d bytes", MaxIngestBytes)
		}
		if line > MaxIngestLines {
			return prepared{}, surge.Errorf(surge.ETOOLARGE, "a batch is at most %d lines", MaxIngestLines)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		given++
		e, err := DecodeEvent(raw, a, now)
		if err != nil {
			if err := in.reject(&b, requestID, line, raw, err); err != nil {
				return prepared{}, err
			}
			continue
		}
		if _, ok := seen[e.ID]; ok {
			b.res.Duplicates++
			continue
		}
		seen[e.ID] = struct{}{}
		batch = append(batch, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return prepared{}, surge.Errorf(surge.ETOOLARGE, "line %d is longer than %d bytes", line+1, MaxLineBytes)
		}
		return prepared{}, surge.Errorf(surge.EINVALID, "read body: %v", err)
	}
	if given == 0 { // a client's bug (an empty buffer sent, say) must not look like a success
		return prepared{}, surge.Errorf(surge.EINVALID, "the batch holds no events: send one JSON event per line")
	}
	b.events = len(batch)
	split := len(batch) > maxEventsPerMessage
	for len(batch) > 0 {
		n := min(len(batch), maxEventsPerMessage)
		events := batch[:n:n]
		if split && in.handoff != nil { // each message's events on their own: one held must not hold the request's
			events = slices.Clone(events)
		}
		m, err := in.message(events, read/line+32, now)
		if err != nil {
			return prepared{}, err
		}
		b.messages = append(b.messages, m)
		batch = batch[n:]
	}
	return b, nil
}

// lineScanner gives a body's lines: a bufio.Scanner of lines, or byteLines.
type lineScanner interface {
	Scan() bool
	Bytes() []byte
	Err() error
}

// byteLines splits a body in memory into lines as a bufio.Scanner of lines with a buffer of
// MaxLineBytes does (a trailing '\r' dropped, the same lines too long), without copying them
// through the scanner's buffer first (7% of reading a batch, BenchmarkDecode/ingest).
type byteLines struct {
	data, line []byte
	err        error
}

func (l *byteLines) Scan() bool {
	l.line = nil
	if l.err != nil || len(l.data) == 0 {
		return false
	}
	end, next := len(l.data), len(l.data) // the last line, without a newline
	if i := bytes.IndexByte(l.data, '\n'); i >= 0 {
		end, next = i, i+1
	}
	if end >= MaxLineBytes { // the scanner's buffer holds the line and its newline
		l.err = bufio.ErrTooLong
		return false
	}
	l.line = bytes.TrimSuffix(l.data[:end], []byte{'\r'})
	l.data = l.data[next:]
	return true
}

func (l *byteLines) Bytes() []byte { return l.line }
func (l *byteLines) Err() error    { return l.err }

// charge counts a batch against its sender's quota: ERATELIMIT past it. A counter that fails lets
// the batch through (counted in surge_ingest_quota_errors_total): a quota store that is down
// must not stop the events.
func (in *Ingester) charge(ctx context.Context, a surge.Actor, n int) error {
	var key string
	var limit int64
	switch a.Role {
	case surge.RoleShopper:
		key, limit = "ingest:app:"+strconv.FormatInt(a.UserID, 10), MaxAppEventsPerMinute
	case surge.RoleMerchant:
		key, limit = "ingest:shop:"+strconv.FormatInt(a.MerchantID(), 10), MaxShopEventsPerMinute
	default:
		return nil
	}
	if n == 0 {
		return nil
	}
	count, err := in.quota.Add(ctx, key, int64(n), quotaWindow)
	if err != nil {
		in.quotaErrors.Inc()
		return nil
	}
	if count > limit {
		return surge.Errorf(surge.ERATELIMIT, "more than %d events a minute from one sender; retry later", limit)
	}
	return nil
}

// The event times ingestion takes, around the receiving server's clock. The live metrics run on
// the time Surge receives an event (BusinessEvent.Received), so no sender's clock moves their
// watermark; these bounds keep the seconds an event counts in sane.
const (
	// MaxClockAhead is how far ahead of the server's clock an event's time may be: a sender's
	// clock a little fast, or a phone's clock not yet synchronised. An event dated later is
	// refused (ECLOCK), never moved: Surge does not rewrite a sender's time.
	MaxClockAhead = 10 * time.Second
	// MaxEventAge is how far behind the server's clock an event's time may be: events an app
	// kept while offline still count, in the seconds they happened. An older event is refused
	// (ECLOCK): the distinct users of a day are remembered a day after it ends, and an event
	// older than that would count its user again.
	MaxEventAge = 24 * time.Hour
)

// DecodeEvent reads and validates one line as the actor, at time now:
//   - shoppers' apps may send only behavioural events about themselves (their user is filled in);
//   - merchants only events of their own shop;
//   - only staff may name a sale session (the sessions' numbers come from Surge's own orders);
//   - an event's time must be within MaxClockAhead after now and MaxEventAge before it.
//
// The event is received at now. The ids of shoppers' and merchants' events are put in the
// sender's namespace, so that one sender's id can never make another's event look like a copy.
func DecodeEvent(raw []byte, a surge.Actor, now time.Time) (surge.BusinessEvent, error) {
	var e surge.BusinessEvent
	if err := surge.UnmarshalBusinessEvent(raw, &e, true); err != nil {
		return e, surge.Errorf(surge.EINVALID, "not one JSON event: %v", err)
	}
	var own string // the shopper's user
	if a.Role == surge.RoleShopper {
		if own = strconv.FormatInt(a.UserID, 10); e.User == "" {
			e.User = own
		}
	}
	if err := e.Validate(); err != nil {
		return e, err
	}
	e.Received = now.UnixMilli()
	if ahead := e.Time - e.Received; ahead > MaxClockAhead.Milliseconds() {
		return e, surge.Errorf(surge.ECLOCK, "time is %s ahead of the server's clock (%d): at most %s is taken; check the sender's clock",
			time.Duration(ahead)*time.Millisecond, e.Received, MaxClockAhead)
	}
	if behind := e.Received - e.Time; behind > MaxEventAge.Milliseconds() {
		return e, surge.Errorf(surge.ECLOCK, "time is %s behind the server's clock (%d): events of the last %s are taken",
			time.Duration(behind)*time.Millisecond, e.Received, MaxEventAge)
	}
	if e.Session != "" && !a.Role.Staff() {
		return e, surge.Errorf(surge.EFORBIDDEN, "sale sessions' events come from Surge")
	}
	switch a.Role {
	case surge.RoleShopper:
		if !surge.Behavioural(e.Type) {
			return e, surge.Errorf(surge.EFORBIDDEN, "%s events come from Surge or a merchant, not an app", e.Type)
		}
		if e.User != own {
			return e, surge.Errorf(surge.EFORBIDDEN, "an app reports its own user's events")
		}
		e.ID = "app-" + own + "-" + e.ID
	case surge.RoleMerchant:
		if e.Shop != strconv.FormatInt(a.MerchantID(), 10) {
			return e, surge.Errorf(surge.EFORBIDDEN, "a merchant reports events of its own shop")
		}
		e.ID = "shop-" + e.Shop + "-" + e.ID
	}
	return e, nil
}

func (in *Ingester) reject(b *prepared, requestID string, line int, raw []byte, err error) error {
	code, msg := surge.ErrorCode(err), surge.ErrorMessage(err)
	b.res.Rejected++
	if b.refused == nil {
		b.refused = map[string]int{}
	}
	b.refused[code]++
	if len(b.res.Errors) < maxLineErrors {
		b.res.Errors = append(b.res.Errors, LineError{Line: line, Code: code, Message: msg})
	}
	d := DeadLetter{RequestID: requestID, Line: line, Code: code, Reason: msg, Raw: string(raw[:min(len(raw), maxDeadRawBytes)]), At: in.now().UnixMilli()}
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	b.dead = append(b.dead, data)
	b.deadIDs = append(b.deadIDs, b.deadID(line))
	return nil
}

// message writes events as one bus message, with an id made of its content: a producer that
// retries a batch after a timeout appends nothing twice. The message is the JSON of a
// surge.Event with the events as its data; it is written by hand, the events first with their
// own writer, then the envelope's head in the room left before them (the id is the events'
// hash): marshalling a surge.Event would check and copy every byte of the events again.
// perEvent is the expected size of an event's JSON.
func (in *Ingester) message(events []surge.BusinessEvent, perEvent int, now time.Time) (logMessage, error) {
	const room = 128 // the head: about 40 bytes, an id of at most 18 and a time of at most 35
	msg := make([]byte, room, room+perEvent*len(events)+16)
	msg = append(msg, '[')
	for i := range events {
		if i > 0 {
			msg = append(msg, ',')
		}
		var err error
		if msg, err = events[i].AppendJSON(msg); err != nil {
			return logMessage{}, err
		}
	}
	msg = append(msg, ']', '}')
	id := strconv.FormatUint(xxhash.Sum64(msg[room:len(msg)-1]), 36) + "-" + strconv.Itoa(len(events))
	head := make([]byte, 0, room)
	head = append(head, `{"id":`...)
	head, _ = jsontext.AppendQuote(head, id)
	head = append(head, `,"kind":"`+EventsIngested+`","at":"`...)
	head = now.UTC().AppendFormat(head, time.RFC3339Nano) // the events' Received
	head = append(head, `","data":`...)
	if len(head) > room {
		return logMessage{}, fmt.Errorf("the head of a batch is %d bytes, past its %d", len(head), room)
	}
	start := room - len(head)
	copy(msg[start:], head)
	return logMessage{id, msg[start:], events}, nil
}
