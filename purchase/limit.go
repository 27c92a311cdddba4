package purchase

import (
	"sync"

	"golang.org/x/time/rate"
)

// maxLimiterKeys bounds the token buckets one limiter keeps. Past it, an arbitrary eighth is
// forgotten: a forgotten bucket starts full, which lets a little more through, never less.
const maxLimiterKeys = 1 << 18

// limiter is a set of token buckets, one per key (a user, an IP).
type limiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(r rate.Limit, burst int) *limiter {
	return &limiter{rate: r, burst: burst, buckets: make(map[string]*rate.Limiter)}
}

// allow takes a token from key's bucket, reporting whether there was one.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxLimiterKeys {
			n := 0
			for k := range l.buckets {
				delete(l.buckets, k)
				if n++; n >= maxLimiterKeys/8 {
					break
				}
			}
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	return b.Allow()
}
