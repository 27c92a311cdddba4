package auth

import (
	"context"
	"log/slog"
	"sync"
)

// maxRememberedCodes bounds the codes LogSender keeps for the development endpoint.
const maxRememberedCodes = 10_000

// LogSender is the built-in Sender: it writes codes to the log instead of sending an SMS, and
// remembers the last code per phone so a development endpoint can show it.
type LogSender struct {
	log *slog.Logger

	mu    sync.Mutex
	codes map[string]string
}

// NewLogSender returns a sender that logs to log.
func NewLogSender(log *slog.Logger) *LogSender {
	return &LogSender{log: log, codes: make(map[string]string)}
}

// Send implements Sender.
func (l *LogSender) Send(ctx context.Context, phone, code string) error {
	l.log.InfoContext(ctx, "one-time code", "phone", phone, "code", code)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.codes) >= maxRememberedCodes {
		clear(l.codes)
	}
	l.codes[phone] = code
	return nil
}

// LastCode returns the last code sent to a phone.
func (l *LogSender) LastCode(phone string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.codes[phone]
	return c, ok
}
