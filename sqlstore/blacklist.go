package sqlstore

import (
	"context"
	"time"

	"github.com/surgecommerce/surge"
)

// Block implements surge.BlacklistStore.
func (s *Store) Block(ctx context.Context, b surge.Block) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO blacklist (user_id, reason, expires_at, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET reason = excluded.reason, expires_at = excluded.expires_at, created_at = excluded.created_at`),
		b.UserID, b.Reason, ms(b.ExpiresAt), ms(b.CreatedAt))
	return s.wrap(err, "block")
}

// Unblock implements surge.BlacklistStore.
func (s *Store) Unblock(ctx context.Context, userID int64) error {
	res, err := s.exec(ctx, s.q(`DELETE FROM blacklist WHERE user_id = ?`), userID)
	return s.affectedOne(res, err, "block")
}

// ActiveBlocks implements surge.BlacklistStore.
func (s *Store) ActiveBlocks(ctx context.Context, now time.Time, n int) ([]surge.Block, error) {
	return s.blocks(ctx, `expires_at > ? ORDER BY user_id LIMIT ?`, ms(now), n)
}

// BlocksSince implements surge.BlacklistStore.
func (s *Store) BlocksSince(ctx context.Context, since time.Time, n int) ([]surge.Block, error) {
	return s.blocks(ctx, `created_at >= ? ORDER BY created_at LIMIT ?`, ms(since), n)
}

func (s *Store) blocks(ctx context.Context, where string, args ...any) ([]surge.Block, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT user_id, reason, expires_at, created_at FROM blacklist WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "blocks")
	}
	defer rows.Close()
	var list []surge.Block
	for rows.Next() {
		var b surge.Block
		var exp, created int64
		if err := rows.Scan(&b.UserID, &b.Reason, &exp, &created); err != nil {
			return nil, s.wrap(err, "blocks")
		}
		b.ExpiresAt, b.CreatedAt = fromMs(exp), fromMs(created)
		list = append(list, b)
	}
	return list, s.wrap(rows.Err(), "blocks")
}
