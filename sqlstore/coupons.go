package sqlstore

import (
	"context"
	"database/sql"
	"strings"

	"github.com/surgecommerce/surge"
)

const batchColumns = `id, merchant_id, name, rule, total, per_user, claim_from, claim_until, valid_from, valid_until,
	valid_days, state, created_by, created_at, updated_at`

// CreateCouponBatch implements surge.CouponStore.
func (s *Store) CreateCouponBatch(ctx context.Context, b *surge.CouponBatch) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO coupon_batches (`+batchColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		b.ID, b.MerchantID, b.Name, string(b.Rule), b.Total, b.PerUser, ms(b.ClaimFrom), ms(b.ClaimUntil), ms(b.ValidFrom),
		ms(b.ValidUntil), b.ValidDays, b.State, b.CreatedBy, ms(b.CreatedAt), ms(b.UpdatedAt))
	return s.wrap(err, "coupon batch")
}

// CouponBatch implements surge.CouponStore.
func (s *Store) CouponBatch(ctx context.Context, id int64) (*surge.CouponBatch, error) {
	list, err := s.batches(ctx, s.db, `id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
	}
	return list[0], nil
}

// UpdateCouponBatch implements surge.CouponStore.
func (s *Store) UpdateCouponBatch(ctx context.Context, id int64, change func(*surge.CouponBatch) error) (*surge.CouponBatch, error) {
	var b *surge.CouponBatch
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		list, err := s.batches(ctx, tx, `id = ?`+s.dialect.ForUpdate, id)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return surge.Errorf(surge.ENOTFOUND, "coupon batch not found")
		}
		b = list[0]
		if err := change(b); err != nil {
			return err
		}
		b.ID = id
		_, err = tx.ExecContext(ctx, s.q(`UPDATE coupon_batches SET name = ?, rule = ?, total = ?, per_user = ?, claim_from = ?,
			claim_until = ?, valid_from = ?, valid_until = ?, valid_days = ?, state = ?, updated_at = ? WHERE id = ?`),
			b.Name, string(b.Rule), b.Total, b.PerUser, ms(b.ClaimFrom), ms(b.ClaimUntil), ms(b.ValidFrom), ms(b.ValidUntil),
			b.ValidDays, b.State, ms(b.UpdatedAt), b.ID)
		return s.wrap(err, "coupon batch")
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// CouponBatches implements surge.CouponStore.
func (s *Store) CouponBatches(ctx context.Context, merchant int64, states []string, before int64, n int) ([]*surge.CouponBatch, error) {
	where, args := `(CAST(? AS BIGINT) < 0 OR merchant_id = ?) AND (CAST(? AS BIGINT) = 0 OR id < ?)`, []any{merchant, merchant, before, before}
	if len(states) > 0 {
		where += ` AND state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
		for _, st := range states {
			args = append(args, st)
		}
	}
	return s.batches(ctx, s.db, where+` ORDER BY id DESC LIMIT ?`, append(args, min(max(n, 1), 500))...)
}

func (s *Store) batches(ctx context.Context, q querier, where string, args ...any) ([]*surge.CouponBatch, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+batchColumns+` FROM coupon_batches WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "coupon batches")
	}
	defer rows.Close()
	var list []*surge.CouponBatch
	for rows.Next() {
		var b surge.CouponBatch
		var rule string
		var claimFrom, claimUntil, validFrom, validUntil, created, updated int64
		if err := rows.Scan(&b.ID, &b.MerchantID, &b.Name, &rule, &b.Total, &b.PerUser, &claimFrom, &claimUntil, &validFrom,
			&validUntil, &b.ValidDays, &b.State, &b.CreatedBy, &created, &updated); err != nil {
			return nil, s.wrap(err, "coupon batches")
		}
		b.Rule = []byte(rule)
		b.ClaimFrom, b.ClaimUntil, b.ValidFrom, b.ValidUntil = fromMs(claimFrom), fromMs(claimUntil), fromMs(validFrom), fromMs(validUntil)
		b.CreatedAt, b.UpdatedAt = fromMs(created), fromMs(updated)
		list = append(list, &b)
	}
	return list, s.wrap(rows.Err(), "coupon batches")
}

// SaveCoupon implements surge.CouponStore.
func (s *Store) SaveCoupon(ctx context.Context, c *surge.Coupon, claimKey string) (*surge.Coupon, error) {
	_, err := s.exec(ctx, s.q(`INSERT INTO coupons (id, batch_id, user_id, claim_key, state, claimed_at, valid_from, valid_until)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
		c.ID, c.BatchID, c.UserID, claimKey, c.State, ms(c.ClaimedAt), ms(c.ValidFrom), ms(c.ValidUntil))
	if err != nil {
		return nil, s.wrap(err, "coupon")
	}
	list, err := s.coupons(ctx, `batch_id = ? AND claim_key = ?`, c.BatchID, claimKey)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.EINTERNAL, "coupon %d was stored and is not there", c.ID)
	}
	return list[0], nil
}

// CouponCount implements surge.CouponStore.
func (s *Store) CouponCount(ctx context.Context, batch int64) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM coupons WHERE batch_id = ?`), batch).Scan(&n)
	return n, s.wrap(err, "coupons")
}

// CouponsOf implements surge.CouponStore.
func (s *Store) CouponsOf(ctx context.Context, user int64, n int) ([]*surge.Coupon, error) {
	return s.coupons(ctx, `user_id = ? ORDER BY id DESC LIMIT ?`, user, min(max(n, 1), 500))
}

func (s *Store) coupons(ctx context.Context, where string, args ...any) ([]*surge.Coupon, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, batch_id, user_id, state, claimed_at, valid_from, valid_until
		FROM coupons WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "coupons")
	}
	defer rows.Close()
	var list []*surge.Coupon
	for rows.Next() {
		var c surge.Coupon
		var claimed, from, until int64
		if err := rows.Scan(&c.ID, &c.BatchID, &c.UserID, &c.State, &claimed, &from, &until); err != nil {
			return nil, s.wrap(err, "coupons")
		}
		c.ClaimedAt, c.ValidFrom, c.ValidUntil = fromMs(claimed), fromMs(from), fromMs(until)
		list = append(list, &c)
	}
	return list, s.wrap(rows.Err(), "coupons")
}
