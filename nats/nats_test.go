package nats_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/surgecommerce/surge/nats"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// roundTrip proves JetStream works on the bus: a stream takes a message and a consumer reads it
// back.
func roundTrip(t *testing.T, b *nats.Bus, stream string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, MaxMsgs: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.JS.DeleteStream(context.Background(), stream) })
	if _, err := b.JS.Publish(ctx, stream+".hello", []byte("world")); err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if string(m.Data()) != "world" {
			t.Fatalf("read %q; want world", m.Data())
		}
		m.Ack()
		return
	}
	t.Fatalf("no message read back: %v", msgs.Error())
}

func TestEmbeddedPersistsUnderDataDir(t *testing.T) {
	dir := t.TempDir()
	b, err := nats.Open(context.Background(), nats.Config{DataDir: dir}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if b.ClientURL() != "" {
		t.Errorf("ClientURL() = %q; want none without a listen address", b.ClientURL())
	}
	roundTrip(t, b, "EMBEDDED")
	b.Close()
	if _, err := os.Stat(dir + "/nats/jetstream"); err != nil {
		t.Fatalf("no JetStream store under the data dir: %v", err)
	}
}

func TestEmbeddedListensForOtherProcesses(t *testing.T) {
	b, err := nats.Open(context.Background(), nats.Config{DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.ClientURL() == "" {
		t.Fatal("ClientURL() is empty with a listen address")
	}
	other, err := nats.Open(context.Background(), nats.Config{URL: b.ClientURL()}, quiet)
	if err != nil {
		t.Fatalf("another process could not join: %v", err)
	}
	defer other.Close()
	roundTrip(t, other, "JOINED")
}

func TestExternal(t *testing.T) {
	url := os.Getenv("SURGE_TEST_NATS_URL")
	if url == "" {
		t.Skip("SURGE_TEST_NATS_URL is not set")
	}
	b, err := nats.Open(context.Background(), nats.Config{URL: url}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	roundTrip(t, b, "SURGE_TEST_EXTERNAL")
}

// Queued answers are kept in a bucket in memory, apart from the one on disk that older releases
// keep; a bucket the server lost (a memory bucket does not outlive a restart of a server that is
// not clustered) is made again on the next use.
func TestResultsBucketIsInMemory(t *testing.T) {
	ctx := context.Background()
	b, err := nats.Open(ctx, nats.Config{DataDir: t.TempDir()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	old, err := b.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "SURGE_PURCHASE_RESULTS", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Put(ctx, "t0", []byte("older node")); err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := b.JS.Stream(ctx, "KV_"+nats.ResultsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CachedInfo().Config.Storage; st != jetstream.MemoryStorage {
		t.Errorf("results bucket storage = %v; want memory", st)
	}
	if e, err := old.Get(ctx, "t0"); err != nil || string(e.Value()) != "older node" {
		t.Errorf("the older releases' bucket lost its answers: %v", err)
	}
	if err := b.PutResult(ctx, "t1", []byte("answer")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := b.GetResult(ctx, "t1"); err != nil || !ok || string(v) != "answer" {
		t.Errorf("GetResult = %q %v %v; want answer", v, ok, err)
	}
	if err := b.JS.DeleteKeyValue(ctx, nats.ResultsBucket); err != nil { // as a restart of its server would
		t.Fatal(err)
	}
	if _, ok, err := b.GetResult(ctx, "t1"); ok || err != nil {
		t.Errorf("GetResult from a lost bucket = %v, %v; want not found and no error", ok, err)
	}
	if err := b.PutResult(ctx, "t2", []byte("again")); err != nil {
		t.Fatalf("PutResult after the bucket was lost: %v", err)
	}
	if v, ok, err := b.GetResult(ctx, "t2"); err != nil || !ok || string(v) != "again" {
		t.Errorf("GetResult = %q %v %v; want again", v, ok, err)
	}
}
