package live

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/stream"
)

type nopPublisher struct{}

func (nopPublisher) PublishAsync(string, string, []byte) error { return nil }
func (nopPublisher) Flush(context.Context) error               { return nil }

// No more than the ingester's slots of batches are read and written at once, however many
// senders post together; the others wait their turn and are then taken.
func TestIngestReadsAtMostSlotsBatchesAtOnce(t *testing.T) {
	for _, slots := range []int{1, 2} {
		t.Run(fmt.Sprint(slots, " slots"), func(t *testing.T) {
			in := NewIngester(func() Publisher { return nopPublisher{} }, ratelimit.NewCounter(nil), slots, prometheus.NewRegistry())
			var inside, most atomic.Int32
			release := make(chan struct{})
			in.now = func() time.Time { // called for each batch and message, with a slot held
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				inside.Add(-1)
				return time.Now()
			}
			const senders = 5
			var wg sync.WaitGroup
			for i := range senders {
				wg.Go(func() {
					body := fmt.Sprintf(`{"id":"e%d","type":"click","sku":"s","time":%d}`+"\n", i, time.Now().UnixMilli())
					if res, err := in.Ingest(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", strings.NewReader(body), false); err != nil || res.Accepted != 1 {
						t.Errorf("sender %d: %+v, %v; want its event accepted", i, res, err)
					}
				})
			}
			finished := make(chan struct{})
			go func() { wg.Wait(); close(finished) }()
			for done := false; !done; { // one call through at a time, once the slots are taken
				select {
				case <-finished:
					done = true
				case <-time.After(20 * time.Millisecond): // room for a sender past the bound to show
					select {
					case release <- struct{}{}:
					case <-finished:
						done = true
					}
				}
			}
			if m := most.Load(); m != int32(slots) {
				t.Errorf("at most %d batches were read at once; want %d", m, slots)
			}
		})
	}
}

// A batch whose sender goes away while every slot is taken is answered EUNAVAILABLE, and takes
// no slot; the counting node keeps a core, other nodes use them all.
func TestIngestTurns(t *testing.T) {
	in := NewIngester(func() Publisher { return nopPublisher{} }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	in.now = func() time.Time {
		once.Do(func() { close(entered); <-release })
		return time.Now()
	}
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	line := func(id string) string {
		return fmt.Sprintf(`{"id":"%s","type":"click","sku":"s","time":%d}`+"\n", id, time.Now().UnixMilli())
	}
	done := make(chan error, 1)
	go func() { // ends once released
		_, err := in.Ingest(context.Background(), staff, "holder", strings.NewReader(line("a")), false)
		done <- err
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := in.Ingest(ctx, staff, "gone", strings.NewReader(line("b")), false); surge.ErrorCode(err) != surge.EUNAVAILABLE {
		t.Errorf("a batch whose sender left while waiting for its turn = %v; want EUNAVAILABLE", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the batch holding the slot = %v; want it accepted", err)
	}
	if len(in.slots) != 0 {
		t.Errorf("%d slots still taken after every batch ended", len(in.slots))
	}

	cores := runtime.GOMAXPROCS(0)
	if got := IngestSlots(false); got != cores {
		t.Errorf("IngestSlots on a node that does not count = %d; want all %d cores", got, cores)
	}
	if got := IngestSlots(true); got != max(1, cores-1) {
		t.Errorf("IngestSlots on the counting node = %d; want %d", got, max(1, cores-1))
	}
}

// keepingPublisher keeps every message as it was handed over, without copying it.
type keepingPublisher struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (p *keepingPublisher) PublishAsync(subject, _ string, data []byte) error {
	if subject == IngestSubject {
		p.mu.Lock()
		p.msgs = append(p.msgs, data)
		p.mu.Unlock()
	}
	return nil
}
func (p *keepingPublisher) Flush(context.Context) error { return nil }

// Bodies are read into buffers that later batches reuse: nothing an ingested batch handed on
// (its log messages, its events) may share their memory. Each batch's messages still read back
// as its events once batches of every size, big ones past the pooled bound among them, have
// been read into the same buffers after it.
func TestIngestedBatchesOwnTheirBytes(t *testing.T) {
	pub := &keepingPublisher{}
	in := NewIngester(func() Publisher { return pub }, ratelimit.NewCounter(nil), 1, prometheus.NewRegistry())
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	var want []string
	for i, n := range []int{3000, 2, 20_000, 1, 500, 40} { // 20,000 lines: past maxPooledBody
		var b strings.Builder
		for j := range n {
			id := fmt.Sprintf("b%d-%d-%s", i, j, strings.Repeat("x", i*7%50))
			fmt.Fprintf(&b, `{"id":"%s","type":"click","sku":"s%d","time":%d}`+"\n", id, j, time.Now().UnixMilli())
			want = append(want, id)
		}
		if res, err := in.Ingest(context.Background(), staff, "r", strings.NewReader(b.String()), false); err != nil || res.Accepted != n {
			t.Fatalf("batch %d: %+v, %v; want %d accepted", i, res, err, n)
		}
	}
	var got []string
	for _, m := range pub.msgs {
		evs, err := DecodeBusEvents(m)
		if err != nil {
			t.Fatalf("a log message no longer reads: %v", err)
		}
		for _, e := range evs {
			got = append(got, e.ID)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the log messages hold %d events, not the %d sent in order", len(got), len(want))
	}
}

// A plain body's lines, read where they lie, are the lines a scanner of lines with a buffer of
// MaxLineBytes gives a gzipped body: the same lines, a trailing '\r' dropped, and the same
// lines too long.
func FuzzByteLines(f *testing.F) {
	for _, n := range []int{MaxLineBytes - 2, MaxLineBytes - 1, MaxLineBytes, MaxLineBytes + 1} {
		x := bytes.Repeat([]byte("x"), n)
		f.Add(x)
		f.Add(append(slices.Clone(x), '\n'))
		f.Add(append(slices.Clone(x), '\r', '\n'))
		f.Add(append([]byte("a\n\r\n"), x...))
	}
	f.Add([]byte("a\nb\r\n\n\r\rc"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
		bl := &byteLines{data: data}
		for i := 0; ; i++ {
			a, b := sc.Scan(), bl.Scan()
			if a != b || !bytes.Equal(sc.Bytes(), bl.Bytes()) {
				t.Fatalf("line %d: scanner %v, %d bytes; byteLines %v, %d bytes", i, a, len(sc.Bytes()), b, len(bl.Bytes()))
			}
			if !a {
				break
			}
		}
		if !errors.Is(bl.Err(), sc.Err()) {
			t.Fatalf("scanner ends with %v; byteLines with %v", sc.Err(), bl.Err())
		}
	})
}

// FuzzIngestClockSkew: an event of any type, dated anywhere around the server's clock, beside a
// line of anything. An event dated within MaxClockAhead after the server's clock and MaxEventAge
// before it is taken, received at the server's time; any other is refused with ECLOCK. Whatever
// the lines' times, the pipeline's watermark stays behind the time the events were received, the
// events come back from the log as taken, and the refused-lines counter counts what the answer
// reports.
func FuzzIngestClockSkew(f *testing.F) {
	for _, skew := range []int64{0, 1, -1, MaxClockAhead.Milliseconds(), MaxClockAhead.Milliseconds() + 1, 4 * time.Minute.Milliseconds(),
		-10 * time.Minute.Milliseconds(), -MaxEventAge.Milliseconds(), -MaxEventAge.Milliseconds() - 1, 1 << 62, -1 << 62} {
		f.Add(skew, uint8(skew&0xff), []byte(`{"id":"other","type":"like","room":"r","user":"u","time":1790000300000}`))
	}
	f.Add(int64(0), uint8(4), []byte(`{"id":"x","type":"pay","order":"o","sku":"s","shop":"7","user":"u","units":1,"time":1790000000000}`))
	f.Add(int64(5), uint8(3), []byte(``))
	base := time.UnixMilli(1_790_000_000_000)
	staff := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	f.Fuzz(func(t *testing.T, skew int64, typ uint8, other []byte) {
		types := surge.BizTypes()
		at := base.UnixMilli() + skew
		e := surge.BusinessEvent{ID: "e", Type: types[int(typ)%len(types)], Time: at, Platform: "ios", User: "u1", Room: "r1", Shop: "7",
			SKU: "s1", Order: "o1", Units: 2, Amount: 990, Status: "shipped"}
		line, err := e.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.ContainsAny(other, "\n\r") {
			other = nil
		}
		body := append(append(line, '\n'), other...)
		var logged [][]byte
		reg := prometheus.NewRegistry()
		in := NewIngester(func() Publisher {
			return publisherFunc(func(subject string, data []byte) {
				if subject == IngestSubject {
					logged = append(logged, data)
				}
			})
		}, ratelimit.NewCounter(nil), 1, reg)
		in.now = func() time.Time { return base }
		res, err := in.Ingest(context.Background(), staff, "fuzz", bytes.NewReader(body), false)
		if err != nil {
			t.Fatalf("Ingest = %v", err)
		}
		inBounds := skew <= MaxClockAhead.Milliseconds() && skew >= -MaxEventAge.Milliseconds()
		firstRefused := len(res.Errors) > 0 && res.Errors[0].Line == 1
		code := surge.ECLOCK
		if at < 1_000_000_000_000 || at > 9_999_999_999_999 {
			code = surge.EINVALID // not a time in milliseconds at all
		}
		if inBounds == firstRefused || (firstRefused && res.Errors[0].Code != code) {
			t.Fatalf("an event %d ms off the server's clock: %+v; want it taken within the bounds, refused with ECLOCK past them", skew, res)
		}
		if got := rejectedCount(t, reg); got != res.Rejected {
			t.Fatalf("surge_ingest_events_rejected_total = %d; the answer reports %d", got, res.Rejected)
		}
		p, src := stream.New("skew", stream.Config{OutOfOrderness: OutOfOrderness}, PipelineTime)
		stream.To(Build(src, &Counters{}), stream.Sink[Contribution](NewSink(publisherFunc(func(string, []byte) {}), func(k string) string { return k })))
		taken := 0
		records := func(yield func(surge.BusinessEvent) bool) {
			for _, msg := range logged {
				evs, err := DecodeBusEvents(msg)
				if err != nil {
					t.Fatalf("a logged message reads as %v", err)
				}
				for _, ev := range evs {
					taken++
					if ev.Received != base.UnixMilli() {
						t.Fatalf("%+v came back from the log received at %d; want the server's %d", ev, ev.Received, base.UnixMilli())
					}
					if !yield(ev) {
						return
					}
					if wm := p.Watermark(); wm >= base.UnixMilli()-OutOfOrderness.Milliseconds() {
						t.Fatalf("the watermark reached %d after an event dated %d; the events were received at %d", wm, ev.Time, base.UnixMilli())
					}
				}
			}
		}
		if err := p.RunSeq(context.Background(), records); err != nil {
			t.Fatal(err)
		}
		if taken != res.Accepted {
			t.Fatalf("%d events in the log; the answer took %d", taken, res.Accepted)
		}
	})
}

// publisherFunc is a Publisher that hands each message to a function.
type publisherFunc func(subject string, data []byte)

func (f publisherFunc) PublishAsync(subject, _ string, data []byte) error {
	f(subject, data)
	return nil
}
func (publisherFunc) Flush(context.Context) error { return nil }

// rejectedCount is surge_ingest_events_rejected_total in reg, over its codes.
func rejectedCount(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range families {
		if mf.GetName() == "surge_ingest_events_rejected_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}

// failingLog takes messages and refuses them at Flush, as a full events log does; it keeps the
// subjects published to.
type failingLog struct{ subjects []string }

func (l *failingLog) PublishAsync(subject, _ string, _ []byte) error {
	l.subjects = append(l.subjects, subject)
	return nil
}
func (*failingLog) Flush(context.Context) error {
	return surge.Errorf(surge.ERATELIMIT, "the events log is full")
}

// A batch the log refuses parks none of its refused lines and counts none: its answer reports
// none, and the sender retries the whole batch. The dead letters go once the events are in.
func TestIngestRefusedByTheLogParksNothing(t *testing.T) {
	log := &failingLog{}
	reg := prometheus.NewRegistry()
	in := NewIngester(func() Publisher { return log }, ratelimit.NewCounter(nil), 1, reg)
	body := `{"id":"a","type":"click","sku":"s1","time":` + fmt.Sprint(time.Now().UnixMilli()) + "}\n" + `{"id":"b","type":"teleport"}`
	if _, err := in.Ingest(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleOperator}, "r", strings.NewReader(body), false); surge.ErrorCode(err) != surge.ERATELIMIT {
		t.Fatalf("Ingest into a full log = %v; want ERATELIMIT", err)
	}
	if slices.Contains(log.subjects, DeadLetterSubject) || rejectedCount(t, reg) != 0 {
		t.Errorf("published to %v and counted %d refused lines; want no dead letter and no count", log.subjects, rejectedCount(t, reg))
	}
}
