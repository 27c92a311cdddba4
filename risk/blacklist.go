// Package risk holds the verdicts that keep abusive users out of a sale. The blacklist is read
// on every purchase, so each node keeps the active blocks in memory and refreshes them each
// second: a verdict takes effect at every gate within about a second.
package risk

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
)

// Bounds of the blacklist. Every second a node reads the blocks made since its last look (a
// verdict takes effect within a second); every minute it reloads them all, which is when a
// lifted block (made on another node) stops counting.
const (
	RefreshEvery = time.Second
	ReloadEvery  = time.Minute
	MaxBlockTTL  = 365 * 24 * time.Hour
)

// Blacklist answers whether a user is blocked, from memory.
type Blacklist struct {
	store surge.BlacklistStore
	log   *slog.Logger
	now   func() time.Time
	set   atomic.Pointer[map[int64]time.Time] // user → block expiry; replaced, never changed
	since time.Time                           // newest block creation seen (Run's own)
}

// NewBlacklist returns a blacklist over a store; call Refresh or Run to fill it.
func NewBlacklist(store surge.BlacklistStore, log *slog.Logger, now func() time.Time) *Blacklist {
	if now == nil {
		now = time.Now
	}
	b := &Blacklist{store: store, log: log, now: now}
	b.set.Store(&map[int64]time.Time{})
	return b
}

// Blocked reports whether a user is blocked now.
func (b *Blacklist) Blocked(user int64) bool {
	exp, ok := (*b.set.Load())[user]
	return ok && b.now().Before(exp)
}

// Refresh reloads all active blocks.
func (b *Blacklist) Refresh(ctx context.Context) error {
	list, err := b.store.ActiveBlocks(ctx, b.now(), surge.MaxBlocks)
	if err != nil {
		return err
	}
	set := make(map[int64]time.Time, len(list))
	for _, bl := range list {
		set[bl.UserID] = bl.ExpiresAt
	}
	b.set.Store(&set)
	return nil
}

// catchUp adds the blocks made since the last look to a copy of the set.
func (b *Blacklist) catchUp(ctx context.Context) error {
	list, err := b.store.BlocksSince(ctx, b.since, surge.MaxListLimit)
	if err != nil || len(list) == 0 {
		return err
	}
	old := *b.set.Load()
	set := make(map[int64]time.Time, len(old)+len(list))
	for u, exp := range old {
		set[u] = exp
	}
	for _, bl := range list {
		set[bl.UserID] = bl.ExpiresAt
		b.since = bl.CreatedAt
	}
	b.set.Store(&set)
	return nil
}

// Run catches up every RefreshEvery and reloads every ReloadEvery until ctx ends.
func (b *Blacklist) Run(ctx context.Context) {
	t := time.NewTicker(RefreshEvery)
	defer t.Stop()
	b.since = b.now().Add(-RefreshEvery)
	last := b.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			var err error
			if b.now().Sub(last) >= ReloadEvery {
				last, err = b.now(), b.Refresh(ctx)
			} else {
				err = b.catchUp(ctx)
			}
			if err != nil && ctx.Err() == nil {
				b.log.WarnContext(ctx, "blacklist refresh failed; keeping the last copy", "err", err)
			}
		}
	}
}

// BlockInput asks to block a user for a while.
type BlockInput struct {
	UserID int64  `json:"user_id,string"`
	Reason string `json:"reason"`
	TTLSec int64  `json:"ttl_sec"`
}

// staff refuses anyone but operators and admins, saying they manage what.
func staff(a surge.Actor, what string) error {
	if !a.Role.Staff() {
		return surge.Errorf(surge.EFORBIDDEN, "only operators and admins manage %s", what)
	}
	return nil
}

// Block blocks a user (operators); this node sees it at once, the others within a second.
func (b *Blacklist) Block(ctx context.Context, a surge.Actor, in BlockInput) (*surge.Block, error) {
	if err := staff(a, "the blacklist"); err != nil {
		return nil, err
	}
	ttl := time.Duration(in.TTLSec) * time.Second
	switch {
	case in.UserID <= 0:
		return nil, surge.Errorf(surge.EINVALID, "user_id is required")
	case ttl <= 0 || ttl > MaxBlockTTL:
		return nil, surge.Errorf(surge.EINVALID, "ttl_sec must be between 1 and %d", int64(MaxBlockTTL/time.Second))
	}
	if err := surge.ValidateText("reason", in.Reason, 1, surge.MaxNameRunes); err != nil {
		return nil, err
	}
	now := b.now().UTC()
	bl := surge.Block{UserID: in.UserID, Reason: in.Reason, ExpiresAt: now.Add(ttl), CreatedAt: now}
	if err := b.store.Block(ctx, bl); err != nil {
		return nil, err
	}
	return &bl, b.Refresh(ctx)
}

// Unblock lifts a user's block (operators).
func (b *Blacklist) Unblock(ctx context.Context, a surge.Actor, user int64) error {
	if err := staff(a, "the blacklist"); err != nil {
		return err
	}
	if err := b.store.Unblock(ctx, user); err != nil {
		return err
	}
	return b.Refresh(ctx)
}

// List returns the active blocks (operators).
func (b *Blacklist) List(ctx context.Context, a surge.Actor) ([]surge.Block, error) {
	if err := staff(a, "the blacklist"); err != nil {
		return nil, err
	}
	return b.store.ActiveBlocks(ctx, b.now(), surge.MaxListLimit)
}
