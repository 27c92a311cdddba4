package nats

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// The embedded server's log goes to the node's: its start-up notices at debug, a slow consumer
// (a connection it closes for falling behind) and its errors where an operator sees them.
func TestEmbeddedServerLogsToSlog(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := Open(context.Background(), Config{DataDir: t.TempDir(), RelaxedSync: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if !strings.Contains(out.String(), `level=DEBUG msg="Server is ready" component=nats`) {
		t.Errorf("the server's start-up is not in the log at debug:\n%s", out.String())
	}
	out.Reset()
	l := serverLog{log}
	l.Noticef("pipe - cid:%d - Slow Consumer Detected: MaxPending of %d Exceeded", 5, 64<<20)
	l.Errorf("disk %s", "full")
	l.Warnf("lame duck")
	for _, want := range []string{`level=WARN msg="pipe - cid:5 - Slow Consumer Detected: MaxPending of 67108864 Exceeded"`,
		`level=ERROR msg="disk full"`, `level=WARN msg="lame duck"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, out.String())
		}
	}
}
