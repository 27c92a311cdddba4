package nats_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/nats"
)

// A full events log refuses new events with ERATELIMIT (the ingestion endpoint's 429), and
// keeps the ones it has.
func TestFullEventsLogRefusesWithRateLimit(t *testing.T) {
	ctx := context.Background()
	b, err := nats.Open(ctx, nats.Config{DataDir: t.TempDir(), EventBytes: 16 << 10}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	pub := b.AsyncPublisher()
	payload := bytes.Repeat([]byte("x"), 1024)
	for i := range 64 {
		if err := pub.PublishAsync("surge.events.test", fmt.Sprint(i), payload); err != nil {
			t.Fatal(err)
		}
	}
	err = pub.Flush(ctx)
	if surge.ErrorCode(err) != surge.ERATELIMIT {
		t.Fatalf("Flush after 64 KiB into a 16 KiB log = %v; want ERATELIMIT", err)
	}
	info, err := b.JS.Stream(ctx, nats.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n == 0 || n >= 64 {
		t.Errorf("the log holds %d messages; want the ones that fit", n)
	}
}
