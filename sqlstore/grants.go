package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
)

const grantColumns = `id, batch_id, request_id, users, position, granted, refused, state, reason, created_by, created_at, updated_at`

// CreateGrant implements surge.CouponStore.
func (s *Store) CreateGrant(ctx context.Context, g *surge.CouponGrant, users []int64) (*surge.CouponGrant, error) {
	if int64(len(users)) != g.Users || len(users) == 0 || len(users) > surge.MaxGrantUsers {
		return nil, surge.Errorf(surge.EINVALID, "a grant has 1 to %d users", surge.MaxGrantUsers)
	}
	var out *surge.CouponGrant
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO coupon_grants (`+grantColumns+`) VALUES (?, ?, ?, ?, 0, 0, 0, ?, '', ?, ?, ?)
			ON CONFLICT DO NOTHING`), g.ID, g.BatchID, g.RequestID, g.Users, g.State, g.CreatedBy, ms(g.CreatedAt), ms(g.UpdatedAt))
		if err != nil {
			return s.wrap(err, "coupon grant")
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 { // stored before: the first one stands
			list, err := s.grants(ctx, tx, `batch_id = ? AND request_id = ?`, g.BatchID, g.RequestID)
			if err == nil && len(list) == 0 {
				err = surge.Errorf(surge.EINTERNAL, "coupon grant %q was stored and is not there", g.RequestID)
			}
			if err == nil {
				out = list[0]
			}
			return err
		}
		var b strings.Builder
		for chunk := 0; chunk*surge.GrantChunk < len(users); chunk++ {
			part := users[chunk*surge.GrantChunk : min(len(users), (chunk+1)*surge.GrantChunk)]
			b.Reset()
			for i, u := range part {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.FormatInt(u, 10))
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO coupon_grant_users (grant_id, chunk, users) VALUES (?, ?, ?)`),
				g.ID, chunk, b.String()); err != nil {
				return s.wrap(err, "coupon grant users")
			}
		}
		c := *g
		out = &c
		return nil
	})
	return out, err
}

// CouponGrant implements surge.CouponStore.
func (s *Store) CouponGrant(ctx context.Context, id int64) (*surge.CouponGrant, error) {
	list, err := s.grants(ctx, s.db, `id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "coupon grant not found")
	}
	return list[0], nil
}

// CouponGrantByRequest implements surge.CouponStore.
func (s *Store) CouponGrantByRequest(ctx context.Context, batch int64, requestID string) (*surge.CouponGrant, error) {
	list, err := s.grants(ctx, s.db, `batch_id = ? AND request_id = ?`, batch, requestID)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "coupon grant not found")
	}
	return list[0], nil
}

// RunningGrants implements surge.CouponStore.
func (s *Store) RunningGrants(ctx context.Context, merchant int64) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM coupon_grants g JOIN coupon_batches b ON b.id = g.batch_id
		WHERE g.state = ? AND b.merchant_id = ?`), surge.GrantRunning, merchant).Scan(&n)
	return n, s.wrap(err, "coupon grants")
}

// GrantUsers implements surge.CouponStore.
func (s *Store) GrantUsers(ctx context.Context, grant, from int64, n int) ([]int64, error) {
	n = min(max(n, 1), surge.GrantChunk)
	var out []int64
	for chunk := from / surge.GrantChunk; len(out) < n; chunk++ {
		var list string
		err := s.db.QueryRowContext(ctx, s.q(`SELECT users FROM coupon_grant_users WHERE grant_id = ? AND chunk = ?`), grant, chunk).Scan(&list)
		if err == sql.ErrNoRows {
			break
		}
		if err != nil {
			return nil, s.wrap(err, "coupon grant users")
		}
		ids := strings.Split(list, ",")
		skip := 0
		if chunk == from/surge.GrantChunk {
			skip = int(from % surge.GrantChunk)
		}
		for _, id := range ids[min(skip, len(ids)):] {
			u, err := strconv.ParseInt(id, 10, 64)
			if err != nil {
				return nil, surge.Errorf(surge.EINTERNAL, "coupon grant %d: bad user %q", grant, id)
			}
			if out = append(out, u); len(out) == n {
				break
			}
		}
	}
	return out, nil
}

// LeaseGrant implements surge.CouponStore.
func (s *Store) LeaseGrant(ctx context.Context, node int64, now, until time.Time) (*surge.CouponGrant, error) {
	for range 3 { // another node may take the one found first
		list, err := s.grants(ctx, s.db, `state = ? AND (lease_until < ? OR lease_by = ?) ORDER BY id LIMIT 1`, surge.GrantRunning, ms(now), node)
		if err != nil || len(list) == 0 {
			return nil, err
		}
		res, err := s.exec(ctx, s.q(`UPDATE coupon_grants SET lease_until = ?, lease_by = ? WHERE id = ? AND state = ? AND (lease_until < ? OR lease_by = ?)`),
			ms(until), node, list[0].ID, surge.GrantRunning, ms(now), node)
		if err != nil {
			return nil, s.wrap(err, "coupon grant")
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return list[0], nil
		}
	}
	return nil, nil
}

// SaveGrant implements surge.CouponStore.
func (s *Store) SaveGrant(ctx context.Context, g *surge.CouponGrant, node int64, until time.Time) error {
	res, err := s.exec(ctx, s.q(`UPDATE coupon_grants SET position = ?, granted = ?, refused = ?, state = ?, reason = ?, updated_at = ?,
		lease_until = ? WHERE id = ? AND lease_by = ?`), g.Position, g.Granted, g.Refused, g.State, g.Reason, ms(g.UpdatedAt), ms(until), g.ID, node)
	if err != nil {
		return s.wrap(err, "coupon grant")
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.wrap(err, "coupon grant")
	}
	if n == 0 {
		return surge.Errorf(surge.ECONFLICT, "coupon grant %d is held by another node", g.ID)
	}
	return nil
}

func (s *Store) grants(ctx context.Context, q querier, where string, args ...any) ([]*surge.CouponGrant, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+grantColumns+` FROM coupon_grants WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "coupon grants")
	}
	defer rows.Close()
	var list []*surge.CouponGrant
	for rows.Next() {
		var g surge.CouponGrant
		var created, updated int64
		if err := rows.Scan(&g.ID, &g.BatchID, &g.RequestID, &g.Users, &g.Position, &g.Granted, &g.Refused, &g.State, &g.Reason,
			&g.CreatedBy, &created, &updated); err != nil {
			return nil, s.wrap(err, "coupon grants")
		}
		g.CreatedAt, g.UpdatedAt = fromMs(created), fromMs(updated)
		list = append(list, &g)
	}
	return list, s.wrap(rows.Err(), "coupon grants")
}
