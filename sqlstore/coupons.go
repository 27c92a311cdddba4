package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"strconv"
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
	_, err := s.exec(ctx, s.q(`INSERT INTO coupons (id, batch_id, user_id, claim_key, state, claimed_at, valid_from, valid_until, value)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
		c.ID, c.BatchID, c.UserID, claimKey, c.State, ms(c.ClaimedAt), ms(c.ValidFrom), ms(c.ValidUntil), c.Value)
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

// couponSelect reads coupons (scanCoupons), given its WHERE.
const couponSelect = `SELECT id, batch_id, user_id, state, claimed_at, valid_from, valid_until, order_id, discount, value FROM coupons WHERE `

func (s *Store) couponsIn(ctx context.Context, q querier, where string, args ...any) ([]*surge.Coupon, error) {
	rows, err := q.QueryContext(ctx, s.q(couponSelect+where), args...)
	if err != nil {
		return nil, s.wrap(err, "coupons")
	}
	return s.scanCoupons(rows)
}

// scanCoupons reads rows of couponSelect and closes them.
func (s *Store) scanCoupons(rows *sql.Rows) ([]*surge.Coupon, error) {
	defer rows.Close()
	var list []*surge.Coupon
	for rows.Next() {
		var c surge.Coupon
		var claimed, from, until int64
		if err := rows.Scan(&c.ID, &c.BatchID, &c.UserID, &c.State, &claimed, &from, &until, &c.OrderID, &c.Discount, &c.Value); err != nil {
			return nil, s.wrap(err, "coupons")
		}
		c.ClaimedAt, c.ValidFrom, c.ValidUntil = fromMs(claimed), fromMs(from), fromMs(until)
		list = append(list, &c)
	}
	return list, s.wrap(rows.Err(), "coupons")
}

// CouponsByID implements surge.CouponStore. An order's few coupons (the purchase path's read)
// are read with a statement prepared once: parsing it was a tenth of the embedded node's work in
// a sale with coupons.
func (s *Store) CouponsByID(ctx context.Context, ids []int64) ([]*surge.Coupon, error) {
	if n := len(ids); n > 0 && n <= surge.MaxCouponsPerOrder {
		st, err := s.prepared(ctx, s.q(couponSelect+`id IN `+list(n)))
		if err != nil {
			return nil, s.wrap(err, "coupons")
		}
		rows, err := st.QueryContext(ctx, anys(ids)...)
		if err != nil {
			return nil, s.wrap(err, "coupons")
		}
		return s.scanCoupons(rows)
	}
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

// LockCoupons implements surge.CouponStore: one transaction for all the locks. The rows of every
// lock are read locked at once, in the order of their ids (so two nodes' transactions never wait
// for each other in a circle), and each lock is then judged and moved as if alone, its update
// repeating the condition it judged: two orders racing for a coupon cannot both have it.
func (s *Store) LockCoupons(ctx context.Context, locks []surge.CouponLock, now time.Time) ([]int64, []error, error) {
	orders, errs := make([]int64, len(locks)), make([]error, len(locks))
	var all []int64
	for i, l := range locks {
		if errs[i] = l.Validate(); errs[i] == nil {
			all = append(all, l.IDs...)
		}
	}
	if len(all) == 0 {
		return orders, errs, nil
	}
	slices.Sort(all)
	all = slices.Compact(all)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		b := &lockBatch{rows: make(map[int64]*lockRow, len(all)), fresh: map[int64]bool{}}
		for chunk := range slices.Chunk(all, surge.MaxListLimit) {
			if err := s.lockRows(ctx, tx, chunk, b.rows); err != nil {
				return err
			}
		}
		for i, l := range locks {
			if errs[i] != nil {
				continue
			}
			orders[i], errs[i] = s.lockOne(ctx, tx, b, l, now)
			if db, ok := errs[i].(dbError); ok {
				return db.err // the database failed: nothing of the batch holds
			}
		}
		return s.writeLocks(ctx, tx, b, now)
	})
	if err != nil {
		return nil, nil, err
	}
	return orders, errs, nil
}

// dbError is a failure of the database inside LockCoupons, as opposed to a lock's refusal: the
// whole batch fails with it, and the store reports it as it reports any (a deadlock, a lost
// connection: EUNAVAILABLE).
type dbError struct{ err error }

func (e dbError) Error() string { return e.err.Error() }

// lockRow is a coupon as a lock judges it.
type lockRow struct {
	user, order int64
	by          int64 // the attempt that locks it, when this batch does
	state, key  string
}

// lockBatch is LockCoupons' view of its coupons: the rows as the locks judged so far leave them,
// and the new locks to write, all in one statement (writeLocks): a statement per lock cost the
// network store a round trip each, and a sale's locks waited in line behind them.
type lockBatch struct {
	rows   map[int64]*lockRow
	writes []int64        // coupons newly locked, in the order judged
	fresh  map[int64]bool // orders locked in this batch
}

// writeLocks writes a batch's new locks, in statements of at most maxLockWrite coupons, each
// joining the coupons to a list of their new values: a CASE per column cost each row a
// comparison per coupon of the statement, a fifth of an embedded node's work in a sale with
// coupons.
func (s *Store) writeLocks(ctx context.Context, tx *sql.Tx, b *lockBatch, now time.Time) error {
	const row = "(CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT))"
	for chunk := range slices.Chunk(b.writes, maxLockWrite) {
		args := []any{surge.CouponLocked, ms(now)}
		for _, id := range chunk {
			r := b.rows[id]
			args = append(args, id, r.order, r.key, r.by)
		}
		args = append(args, surge.CouponIssued)
		res, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET state = ?, locked_at = ?, order_id = v.column2, lock_key = v.column3,
			lock_by = v.column4 FROM (VALUES `+row+strings.Repeat(", "+row, len(chunk)-1)+`) AS v
			WHERE coupons.id = v.column1 AND coupons.state = ?`), args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(chunk)) {
			return surge.Errorf(surge.EINTERNAL, "coupons: %d of %d locked, %v", n, len(chunk), err)
		}
	}
	return nil
}

// maxLockWrite bounds the coupons one statement of writeLocks locks.
const maxLockWrite = 200

// lockOne judges one lock inside LockCoupons' transaction, keeping the batch's rows up to date;
// a new lock is written with the others by writeLocks.
func (s *Store) lockOne(ctx context.Context, tx *sql.Tx, b *lockBatch, l surge.CouponLock, now time.Time) (int64, error) {
	rows := b.rows
	// The key is stored with the number of coupons it locked: when every coupon of this lock
	// carries it, they are exactly the coupons the first request locked, with no need to count.
	key := l.Key + "#" + strconv.Itoa(len(l.IDs))
	mine, locked := 0, int64(0) // coupons this key locked already, and their order
	for _, id := range l.IDs {
		c := rows[id]
		if c == nil || c.user != l.User {
			return 0, surge.Errorf(surge.ENOTFOUND, "coupon %d is not one of yours", id)
		}
		if c.state == surge.CouponLocked && c.key == key {
			if mine > 0 && c.order != locked { // the same key on two orders: not one earlier lock
				return 0, surge.Errorf(surge.ECONFLICT, "this request locked other coupons; retry it with the same ones")
			}
			mine++
			locked = c.order
		}
	}
	if mine == len(l.IDs) && b.fresh[locked] { // the first request is in this batch: the lock is by this attempt now
		for _, id := range l.IDs {
			rows[id].by = l.Order
		}
		return locked, nil
	}
	switch {
	case mine == len(l.IDs): // the coupons are on the order the first request locked them to
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET lock_by = ?, locked_at = ? WHERE order_id = ? AND state = ?`),
			l.Order, ms(now), locked, surge.CouponLocked); err != nil {
			return 0, dbError{err}
		}
		return locked, nil
	case mine != 0:
		return 0, surge.Errorf(surge.ECONFLICT, "this request locked other coupons; retry it with the same ones")
	}
	for _, id := range l.IDs {
		switch rows[id].state {
		case surge.CouponUsed:
			return 0, surge.Errorf(surge.ECONFLICT, "coupon %d is used", id)
		case surge.CouponLocked:
			return 0, surge.Errorf(surge.ECONFLICT, "coupon %d is on another order, or on this request's with other coupons", id)
		}
	}
	for _, id := range l.IDs {
		*rows[id] = lockRow{user: l.User, order: l.Order, by: l.Order, state: surge.CouponLocked, key: key}
		b.writes = append(b.writes, id)
	}
	b.fresh[l.Order] = true
	return l.Order, nil
}

// lockRows reads coupons locked for update, in the order of their ids, into rows.
func (s *Store) lockRows(ctx context.Context, tx *sql.Tx, ids []int64, into map[int64]*lockRow) error {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id, user_id, state, order_id, lock_key FROM coupons WHERE id IN `+
		list(len(ids))+` ORDER BY id`+s.dialect.ForUpdate), anys(ids)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var r lockRow
		if err := rows.Scan(&id, &r.user, &r.state, &r.order, &r.key); err != nil {
			return err
		}
		into[id] = &r
	}
	return rows.Err()
}

// UseCoupons implements surge.CouponStore, in one transaction of two statements per
// maxLockWrite coupons: an update per coupon held the rows of a sale's paid orders a round trip
// each, and the coupon locks of the purchases waited behind them.
func (s *Store) UseCoupons(ctx context.Context, uses []surge.CouponUse) ([]error, error) {
	errs := make([]error, len(uses))
	type use struct {
		use    int // index into uses
		id     int64
		amount int64
	}
	var all []use
	for i, u := range uses {
		for id, amount := range u.Amounts {
			all = append(all, use{i, id, amount})
		}
	}
	slices.SortFunc(all, func(a, b use) int { return cmp.Compare(a.id, b.id) })
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.dialect.ForUpdate != "" && len(all) > 0 { // rows locked in id order, as LockCoupons does
			ids := make([]int64, len(all))
			for i, u := range all {
				ids[i] = u.id
			}
			lockRows := map[int64]*lockRow{}
			for chunk := range slices.Chunk(ids, surge.MaxListLimit) {
				if err := s.lockRows(ctx, tx, chunk, lockRows); err != nil {
					return err
				}
			}
		}
		for chunk := range slices.Chunk(all, maxLockWrite) {
			var order, discount strings.Builder
			var orderArgs, discountArgs, ids []any
			for _, u := range chunk {
				order.WriteString(" WHEN ? THEN CAST(? AS BIGINT)")
				discount.WriteString(" WHEN ? THEN CAST(? AS BIGINT)")
				orderArgs = append(orderArgs, u.id, uses[u.use].Order)
				discountArgs = append(discountArgs, u.id, u.amount)
				ids = append(ids, u.id)
			}
			args := append(append(append([]any{surge.CouponUsed}, discountArgs...), surge.CouponLocked), ids...)
			args = append(args, orderArgs...)
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET state = ?, discount = CASE id`+discount.String()+` END
				WHERE state = ? AND id IN `+list(len(chunk))+` AND order_id = CASE id`+order.String()+` END`), args...); err != nil {
				return err
			}
			rows, err := tx.QueryContext(ctx, s.q(`SELECT id, order_id, state FROM coupons WHERE id IN `+list(len(chunk))), ids...)
			if err != nil {
				return err
			}
			got := map[int64]lockRow{}
			for rows.Next() {
				var id int64
				var r lockRow
				if err := rows.Scan(&id, &r.order, &r.state); err != nil {
					rows.Close()
					return err
				}
				got[id] = r
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, u := range chunk {
				if r := got[u.id]; (r.state != surge.CouponUsed || r.order != uses[u.use].Order) && errs[u.use] == nil {
					errs[u.use] = surge.Errorf(surge.ECONFLICT, "coupon %d is not on order %d", u.id, uses[u.use].Order)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// ReturnCoupons implements surge.CouponStore, in one transaction.
func (s *Store) ReturnCoupons(ctx context.Context, orders []int64) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockOrdersCoupons(ctx, tx, orders); err != nil {
			return err
		}
		for chunk := range slices.Chunk(orders, surge.MaxListLimit) {
			res, err := tx.ExecContext(ctx, s.q(`UPDATE coupons SET state = ?, order_id = 0, lock_key = '', locked_at = 0, lock_by = 0,
				discount = 0 WHERE state IN (?, ?) AND order_id IN `+list(len(chunk))),
				append([]any{surge.CouponIssued, surge.CouponLocked, surge.CouponUsed}, anys(chunk)...)...)
			if err != nil {
				return err
			}
			got, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += got
		}
		return nil
	})
	return n, err
}

// ReleaseLocks implements surge.CouponStore, in one transaction.
func (s *Store) ReleaseLocks(ctx context.Context, rels []surge.CouponRelease, lockedBefore time.Time) ([]int64, error) {
	before := int64(0)
	if !lockedBefore.IsZero() {
		before = ms(lockedBefore)
	}
	out := make([]int64, len(rels))
	orders := make([]int64, len(rels))
	for i, r := range rels {
		orders[i] = r.Order
	}
	// The stale-lock sweep (lockedBefore set) releases only coupons of orders never made: an
	// order written meanwhile keeps its coupons.
	unmade := ""
	if before != 0 {
		unmade = ` AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = coupons.order_id)`
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockOrdersCoupons(ctx, tx, orders); err != nil {
			return err
		}
		st, err := s.stmt(ctx, tx, s.q(`UPDATE coupons SET state = ?, order_id = 0, lock_key = '', locked_at = 0, lock_by = 0
			WHERE order_id = ? AND state = ? AND (CAST(? AS BIGINT) = 0 OR lock_by = ?) AND (CAST(? AS BIGINT) = 0 OR locked_at < ?)`+unmade))
		if err != nil {
			return err
		}
		for i, r := range rels {
			res, err := st.ExecContext(ctx, surge.CouponIssued, r.Order, surge.CouponLocked, r.By, r.By, before, before)
			if err != nil {
				return err
			}
			if out[i], err = res.RowsAffected(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockOrdersCoupons locks the rows of the coupons on orders, in the order of their ids, as
// LockCoupons does: two transactions that change the same coupons never wait for each other in
// a circle.
func (s *Store) lockOrdersCoupons(ctx context.Context, tx *sql.Tx, orders []int64) error {
	if s.dialect.ForUpdate == "" {
		return nil // one writer at a time: no row locks to order
	}
	for chunk := range slices.Chunk(orders, surge.MaxListLimit) {
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id FROM coupons WHERE order_id IN `+list(len(chunk))+` ORDER BY id`+s.dialect.ForUpdate), anys(chunk)...)
		if err != nil {
			return err
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
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
	return s.coupons(ctx, `state = ? AND locked_at < ? AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = coupons.order_id)
		ORDER BY locked_at LIMIT ?`, surge.CouponLocked, ms(before), min(max(n, 1), 500))
}

// CouponsOnItem implements surge.CouponStore.
func (s *Store) CouponsOnItem(ctx context.Context, itemID int64) ([]*surge.Coupon, error) {
	return s.coupons(ctx, `order_id IN (SELECT id FROM orders WHERE item_id = ?) ORDER BY id`, itemID)
}

// CouponStates implements surge.CouponStore.
func (s *Store) CouponStates(ctx context.Context, batch int64) (map[string]surge.CouponTally, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT state, COUNT(*), COALESCE(SUM(value), 0) FROM coupons WHERE batch_id = ? GROUP BY state`), batch)
	if err != nil {
		return nil, s.wrap(err, "coupons")
	}
	defer rows.Close()
	out := map[string]surge.CouponTally{}
	for rows.Next() {
		var st string
		var t surge.CouponTally
		if err := rows.Scan(&st, &t.Count, &t.Value); err != nil {
			return nil, s.wrap(err, "coupons")
		}
		out[st] = t
	}
	return out, s.wrap(rows.Err(), "coupons")
}
