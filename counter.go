package surge

import (
	"context"
	"time"
)

// Counter counts events per key in fixed windows. In-process on one node; in Redis when many
// nodes must share the count (login throttling, quotas).
type Counter interface {
	// Add adds delta (which may be negative) to the key's count and returns the new count. A
	// window of the given length starts with the first Add; when it has passed, the count
	// starts again from zero.
	Add(ctx context.Context, key string, delta int64, window time.Duration) (int64, error)
	// Count returns the key's count in its current window, 0 if there is none.
	Count(ctx context.Context, key string) (int64, error)
	// Reset forgets the key.
	Reset(ctx context.Context, key string) error
}
