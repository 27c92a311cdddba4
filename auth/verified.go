package auth

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/surgecommerce/surge"
)

// maxVerified bounds the access tokens a node remembers as checked, per generation (two are
// kept): about 350 bytes each with the token itself, so some 90 MiB at most. A generation holds
// the shoppers of a sale's first minute on a busy node (100,000 in a loadgen crowd of that size
// did not fit in one of 65,536: the promoted half pushed the rest out).
const maxVerified = 1 << 17

// verifiedShards split the remembered tokens, each part with its own lock and generations of
// maxVerified/verifiedShards: every request of a sale asks, and on one lock and two maps of a
// hundred thousand tokens each the asking cost more than the rest of a sold-out answer.
const verifiedShards = 16

// window is when a token is valid: from its nbf (zero when it has none) until its exp.
type window struct{ from, until time.Time }

func (w window) holds(now time.Time) bool {
	return now.Before(w.until) && !now.Before(w.from)
}

type verifiedToken struct {
	actor surge.Actor
	w     window
}

// verified remembers access tokens that passed the full check, with the window in which they
// hold, so that a shopper's next requests (the item page, then buy now, then polls) cost a map
// lookup instead of an HMAC and a JSON decode. The key is the whole token: a token that differs
// in a single byte, forged or not, is never found and gets the full check. Tokens are stateless
// (nothing revokes one before its exp), so remembering one changes no answer.
//
// Two generations keep the recently used: when the current one is full it becomes the old one
// and the oldest generation is dropped; a token found in the old one moves to the current one.
// Tokens are spread over shards by a hash with a seed of the node's own: make one with
// newVerified (the zero value has no seed).
type verified struct {
	seed   maphash.Seed
	shards [verifiedShards]verifiedShard
}

type verifiedShard struct {
	mu       sync.RWMutex
	cur, old map[string]verifiedToken
	_        [64]byte // apart from the next shard's lock
}

func newVerified() *verified { return &verified{seed: maphash.MakeSeed()} }

func (v *verified) shard(token string) *verifiedShard {
	return &v.shards[maphash.String(v.seed, token)%verifiedShards]
}

func (v *verified) get(token string, now time.Time) (surge.Actor, bool) {
	return v.shard(token).get(token, now)
}

func (v *verified) put(token string, a surge.Actor, w window) {
	sh := v.shard(token)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.putLocked(token, verifiedToken{actor: a, w: w})
}

// size is how many tokens are remembered.
func (v *verified) size() int {
	n := 0
	for i := range v.shards {
		sh := &v.shards[i]
		sh.mu.RLock()
		n += len(sh.cur) + len(sh.old)
		sh.mu.RUnlock()
	}
	return n
}

func (v *verifiedShard) get(token string, now time.Time) (surge.Actor, bool) {
	v.mu.RLock()
	t, ok := v.cur[token]
	older := false
	if !ok {
		_, older = v.old[token]
	}
	v.mu.RUnlock()
	if !ok && older { // move it forward, or drop it if it expired
		v.mu.Lock()
		if t, ok = v.old[token]; ok {
			delete(v.old, token)
			if t.w.holds(now) {
				v.putLocked(token, t)
			}
		}
		v.mu.Unlock()
	}
	if !ok || !t.w.holds(now) {
		return surge.Actor{}, false // the full check decides, and refuses an expired one
	}
	return t.actor, true
}

func (v *verifiedShard) putLocked(token string, t verifiedToken) {
	if v.cur == nil || len(v.cur) >= maxVerified/verifiedShards {
		v.old, v.cur = v.cur, make(map[string]verifiedToken, maxVerified/verifiedShards)
	}
	v.cur[token] = t
}
