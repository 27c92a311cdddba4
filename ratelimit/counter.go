// Package ratelimit holds the in-process rate limiting primitives.
package ratelimit

import (
	"context"
	"sync"
	"time"
)

// MaxCounterKeys bounds the keys one in-process counter tracks. When full, expired keys are
// swept; if none expired, an arbitrary key is dropped (forgetting a count is the safe failure
// for a throttle: it lets through, it never locks out).
const MaxCounterKeys = 1 << 17

// Counter is an in-process surge.Counter. It is safe for concurrent use.
type Counter struct {
	now func() time.Time

	mu   sync.Mutex
	keys map[string]*window
}

type window struct {
	count   int64
	expires time.Time
}

// NewCounter returns an empty counter reading the clock with now (time.Now if nil).
func NewCounter(now func() time.Time) *Counter {
	if now == nil {
		now = time.Now
	}
	return &Counter{now: now, keys: make(map[string]*window)}
}

// Add implements surge.Counter.
func (c *Counter) Add(_ context.Context, key string, delta int64, length time.Duration) (int64, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.keys[key]
	if w == nil || !now.Before(w.expires) {
		if w == nil && len(c.keys) >= MaxCounterKeys {
			c.evict(now)
		}
		w = &window{expires: now.Add(length)}
		c.keys[key] = w
	}
	w.count += delta
	return w.count, nil
}

// Count implements surge.Counter.
func (c *Counter) Count(_ context.Context, key string) (int64, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.keys[key]; w != nil && now.Before(w.expires) {
		return w.count, nil
	}
	return 0, nil
}

// Reset implements surge.Counter.
func (c *Counter) Reset(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.keys, key)
	return nil
}

func (c *Counter) evict(now time.Time) {
	for k, w := range c.keys {
		if !now.Before(w.expires) {
			delete(c.keys, k)
		}
	}
	for k := range c.keys {
		if len(c.keys) < MaxCounterKeys {
			return
		}
		delete(c.keys, k)
	}
}

// Len returns how many keys the counter tracks.
func (c *Counter) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys)
}
