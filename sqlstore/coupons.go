package sqlstore

import (
	"context"
	"database/sql"
	"maps"
	"slices"
	"strings"
	"time"

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
	return s.couponsIn(ctx, s.db, where, args...)
}

func (s *Store) couponsIn(ctx context.Context, q querier, where string, args ...any) ([]*surge.Coupon, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT id, batch_id, user_id, state, claimed_at, valid_from, valid_until, order_id,
		discount FROM coupons WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "coupons")
	}
	defer rows.Close()
	var list []*surge.Coupon
	for rows.Next() {
		var c surge.Coupon
		var claimed, from, until int64
		if err := rows.Scan(&c.ID, &c.BatchID, &c.UserID, &c.State, &claimed, &from, &until, &c.OrderID, &c.Discount); err != nil {
			return nil, s.wrap(err, "coupons")
		}
		c.ClaimedAt, c.ValidFrom, c.ValidUntil = fromMs(claimed), fromMs(from), fromMs(until)
		list = append(list, &c)
	}
	return list, s.wrap(rows.Err(), "coupons")
}

// CouponsByID implements surge.CouponStore.
func (s *Store) CouponsByID(ctx context.Context, ids []int64) ([]*surge.Coupon, error) {
	var out []*surge.Coupon
	for chunk := range slices.Chunk(ids, surge.MaxListLimit) {
		got, err := s.coupons(ctx, `id IN `+list(len(chunk)), anys(chunk)...)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// anys turns ids into query arguments.
func anys(ids []int64) []any {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args
}

// LockCoupons implements surge.CouponStore: the rows are read locked, judged, and moved in one
// transaction, and the update repeats the condition it judged, so two orders racing for a coupon
// cannot both have it.
func (s *Store) LockCoupons(ctx context.Context, user, order int64, key string, ids []int64, now time.Time) (int64, error) {
	switch {
	case len(ids) == 0 || len(ids) > surge.MaxCouponsPerOrder:
		return 0, surge.Errorf(surge.EINVALID, "an order takes 1 to %d coupons", surge.MaxCouponsPerOrder)
	case order <= 0 || key == "":
		return 0, surge.Errorf(surge.EINVALID, "a lock needs its order and key")
	}
	seen := make(map[int64]bool, len(ids))
	for _, id := range ids {
		if id <= 0 || seen[id] {
			return 0, surge.Errorf(surge.EINVALID, "coupon ids are positive and given once each")
		}
		seen[id] = true
	}
	locked := order
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, keys, err := s.lockRows(ctx, tx, ids)
		if err != nil {
			return err
		}
		mine := 0 // coupons this key locked already
		for _, id := range ids {
			c := rows[id]
			if c == nil || c.UserID != user {
				return surge.Errorf(surge.ENOTFOUND, "coupon %d is not one of yours", id)
			}
			if c.State == surge.CouponLocked && keys[id] == key {
				mine++
				locked = c.OrderID
			}
		}
		if mine == len(ids) { // a retry, unless the first request locked more coupons than these
			var onOrder int64
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM coupons WHERE order_id = ? AND state = ?`),
				locked, surge.CouponLocked).Scan(&onOrder); err != nil {
				return err
			}
			if onOrder != int64(len(ids)) {
				mine = -1
			}
		}
		switch {
		case mine == len(ids): // a retry: the coupons are on the order the first request locked them to
			_, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET lock_by = ?, locked_at = ? WHERE order_id = ? AND state = ?`),
				order, ms(now), locked, surge.CouponLocked)
			return err
		case mine != 0:
			return surge.Errorf(surge.ECONFLICT, "this request locked other coupons; retry it with the same ones")
		}
		locked = order
		for _, id := range ids {
			switch c := rows[id]; c.State {
			case surge.CouponUsed:
				return surge.Errorf(surge.ECONFLICT, "coupon %d is used", id)
			case surge.CouponLocked:
				return surge.Errorf(surge.ECONFLICT, "coupon %d is on another order", id)
			}
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET state = ?, order_id = ?, lock_key = ?, locked_at = ?, lock_by = ?
			WHERE state = ? AND user_id = ? AND id IN `+list(len(ids))),
			append([]any{surge.CouponLocked, order, key, ms(now), order, surge.CouponIssued, user}, anys(ids)...)...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
			return surge.Errorf(surge.ECONFLICT, "a coupon changed while it was being locked; retry")
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return locked, nil
}

// lockRows reads coupons locked for update, by id, with their lock keys.
func (s *Store) lockRows(ctx context.Context, tx *sql.Tx, ids []int64) (map[int64]*surge.Coupon, map[int64]string, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id, user_id, state, order_id, lock_key FROM coupons WHERE id IN `+
		list(len(ids))+s.dialect.ForUpdate), anys(ids)...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	got, keys := make(map[int64]*surge.Coupon, len(ids)), make(map[int64]string, len(ids))
	for rows.Next() {
		var c surge.Coupon
		var key string
		if err := rows.Scan(&c.ID, &c.UserID, &c.State, &c.OrderID, &key); err != nil {
			return nil, nil, err
		}
		got[c.ID], keys[c.ID] = &c, key
	}
	return got, keys, rows.Err()
}

// UseCoupons implements surge.CouponStore.
func (s *Store) UseCoupons(ctx context.Context, order int64, amounts map[int64]int64) error {
	if len(amounts) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for id, amount := range amounts {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET state = ?, discount = ? WHERE id = ? AND order_id = ? AND state = ?`),
				surge.CouponUsed, amount, id, order, surge.CouponLocked); err != nil {
				return err
			}
		}
		var n int64
		ids := slices.Collect(maps.Keys(amounts))
		err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM coupons WHERE order_id = ? AND state = ? AND id IN `+list(len(ids))),
			append([]any{order, surge.CouponUsed}, anys(ids)...)...).Scan(&n)
		if err != nil {
			return err
		}
		if n != int64(len(ids)) {
			return surge.Errorf(surge.ECONFLICT, "%d of order %d's %d coupons are not on it", int64(len(ids))-n, order, len(ids))
		}
		return nil
	})
}

// ReturnCoupons implements surge.CouponStore.
func (s *Store) ReturnCoupons(ctx context.Context, order int64) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET state = ?, order_id = 0, lock_key = '', locked_at = 0, lock_by = 0,
			discount = 0 WHERE order_id = ? AND state IN (?, ?)`), surge.CouponIssued, order, surge.CouponLocked, surge.CouponUsed)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// ReleaseLock implements surge.CouponStore.
func (s *Store) ReleaseLock(ctx context.Context, order, by int64, lockedBefore time.Time) (int64, error) {
	before := int64(0)
	if !lockedBefore.IsZero() {
		before = ms(lockedBefore)
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET state = ?, order_id = 0, lock_key = '', locked_at = 0, lock_by = 0
			WHERE order_id = ? AND state = ? AND (CAST(? AS BIGINT) = 0 OR lock_by = ?) AND (CAST(? AS BIGINT) = 0 OR locked_at < ?)`),
			surge.CouponIssued, order, surge.CouponLocked, by, by, before, before)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// CouponsOnOrders implements surge.CouponStore.
func (s *Store) CouponsOnOrders(ctx context.Context, orders []int64) ([]*surge.Coupon, error) {
	var out []*surge.Coupon
	for chunk := range slices.Chunk(orders, surge.MaxListLimit) {
		got, err := s.coupons(ctx, `order_id IN `+list(len(chunk))+` AND order_id <> 0`, anys(chunk)...)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// StaleLocks implements surge.CouponStore.
func (s *Store) StaleLocks(ctx context.Context, before time.Time, n int) ([]*surge.Coupon, error) {
	return s.coupons(ctx, `state = ? AND locked_at < ? ORDER BY locked_at LIMIT ?`, surge.CouponLocked, ms(before), min(max(n, 1), 500))
}

// CouponsOnItem implements surge.CouponStore.
func (s *Store) CouponsOnItem(ctx context.Context, itemID int64) ([]*surge.Coupon, error) {
	return s.coupons(ctx, `order_id IN (SELECT id FROM orders WHERE item_id = ?) ORDER BY id`, itemID)
}

// CouponStates implements surge.CouponStore.
func (s *Store) CouponStates(ctx context.Context, batch int64) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT state, COUNT(*) FROM coupons WHERE batch_id = ? GROUP BY state`), batch)
	if err != nil {
		return nil, s.wrap(err, "coupons")
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, s.wrap(err, "coupons")
		}
		out[st] = n
	}
	return out, s.wrap(rows.Err(), "coupons")
}
