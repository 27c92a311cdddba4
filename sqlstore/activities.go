package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
)

const activityColumns = `id, merchant_id, name, rule, priority, cap, budget, used, spent, starts_at, ends_at, state, version, created_by, created_at, updated_at`

// CreateActivity implements surge.ActivityStore.
func (s *Store) CreateActivity(ctx context.Context, a *surge.Activity) error {
	a.Version, a.Used, a.Spent = 1, 0, 0
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO activities (`+activityColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			a.ID, a.MerchantID, a.Name, string(a.Rule), a.Priority, a.Cap, a.Budget, a.Used, a.Spent, ms(a.StartsAt), ms(a.EndsAt),
			a.State, a.Version, a.CreatedBy, ms(a.CreatedAt), ms(a.UpdatedAt))
		if err != nil {
			return s.wrap(err, "activity")
		}
		return s.saveVersion(ctx, tx, a, a.CreatedBy)
	})
}

func (s *Store) saveVersion(ctx context.Context, tx *sql.Tx, a *surge.Activity, by int64) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO activity_versions (activity_id, version, body, saved_by, saved_at) VALUES (?, ?, ?, ?, ?)`),
		a.ID, a.Version, string(body), by, ms(a.UpdatedAt))
	return s.wrap(err, "activity version")
}

// Activity implements surge.ActivityStore.
func (s *Store) Activity(ctx context.Context, id int64) (*surge.Activity, error) {
	list, err := s.activities(ctx, s.db, `id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "activity not found")
	}
	return list[0], nil
}

// UpdateActivity implements surge.ActivityStore.
func (s *Store) UpdateActivity(ctx context.Context, id, by int64, change func(*surge.Activity) error) (*surge.Activity, error) {
	var a *surge.Activity
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		list, err := s.activities(ctx, tx, `id = ?`+s.dialect.ForUpdate, id)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return surge.Errorf(surge.ENOTFOUND, "activity not found")
		}
		a = list[0]
		used, spent, version := a.Used, a.Spent, a.Version
		if err := change(a); err != nil {
			return err
		}
		a.ID, a.Used, a.Spent, a.Version = id, used, spent, version+1
		_, err = tx.ExecContext(ctx, s.q(`UPDATE activities SET name = ?, rule = ?, priority = ?, cap = ?, budget = ?, starts_at = ?,
			ends_at = ?, state = ?, version = ?, updated_at = ? WHERE id = ?`),
			a.Name, string(a.Rule), a.Priority, a.Cap, a.Budget, ms(a.StartsAt), ms(a.EndsAt), a.State, a.Version, ms(a.UpdatedAt), id)
		if err != nil {
			return s.wrap(err, "activity")
		}
		return s.saveVersion(ctx, tx, a, by)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Activities implements surge.ActivityStore.
func (s *Store) Activities(ctx context.Context, merchant int64, states []string, before int64, n int) ([]*surge.Activity, error) {
	where, args := `(CAST(? AS BIGINT) < 0 OR merchant_id = ?) AND (CAST(? AS BIGINT) = 0 OR id < ?)`, []any{merchant, merchant, before, before}
	if len(states) > 0 {
		where += ` AND state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
		for _, st := range states {
			args = append(args, st)
		}
	}
	return s.activities(ctx, s.db, where+` ORDER BY id DESC LIMIT ?`, append(args, min(max(n, 1), 500))...)
}

// LiveActivities implements surge.ActivityStore.
func (s *Store) LiveActivities(ctx context.Context) ([]*surge.Activity, error) {
	return s.activities(ctx, s.db, `state = ? ORDER BY id LIMIT ?`, surge.ActivityLive, surge.MaxLiveActivities)
}

func (s *Store) activities(ctx context.Context, q querier, where string, args ...any) ([]*surge.Activity, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+activityColumns+` FROM activities WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "activities")
	}
	defer rows.Close()
	var list []*surge.Activity
	for rows.Next() {
		var a surge.Activity
		var rule string
		var starts, ends, created, updated int64
		if err := rows.Scan(&a.ID, &a.MerchantID, &a.Name, &rule, &a.Priority, &a.Cap, &a.Budget, &a.Used, &a.Spent, &starts, &ends,
			&a.State, &a.Version, &a.CreatedBy, &created, &updated); err != nil {
			return nil, s.wrap(err, "activities")
		}
		a.Rule = json.RawMessage(rule)
		a.StartsAt, a.EndsAt, a.CreatedAt, a.UpdatedAt = fromMs(starts), fromMs(ends), fromMs(created), fromMs(updated)
		list = append(list, &a)
	}
	return list, s.wrap(rows.Err(), "activities")
}

// ActivityVersions implements surge.ActivityStore.
func (s *Store) ActivityVersions(ctx context.Context, id int64) ([]surge.ActivityVersion, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT body, saved_by, saved_at FROM activity_versions WHERE activity_id = ? ORDER BY version`), id)
	if err != nil {
		return nil, s.wrap(err, "activity versions")
	}
	defer rows.Close()
	var out []surge.ActivityVersion
	for rows.Next() {
		var body string
		var v surge.ActivityVersion
		var at int64
		if err := rows.Scan(&body, &v.By, &at); err != nil {
			return nil, s.wrap(err, "activity versions")
		}
		if err := json.Unmarshal([]byte(body), &v.Activity); err != nil {
			return nil, err
		}
		v.At = fromMs(at)
		out = append(out, v)
	}
	return out, s.wrap(rows.Err(), "activity versions")
}

// ActivityLocks implements surge.ActivityStore.
func (s *Store) ActivityLocks(ctx context.Context, id int64) (map[string]surge.CouponTally, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT state, COUNT(*), COALESCE(SUM(discount), 0) FROM activity_locks WHERE activity_id = ? GROUP BY state`), id)
	if err != nil {
		return nil, s.wrap(err, "activity locks")
	}
	defer rows.Close()
	out := map[string]surge.CouponTally{}
	for rows.Next() {
		var st string
		var t surge.CouponTally
		if err := rows.Scan(&st, &t.Count, &t.Value); err != nil {
			return nil, s.wrap(err, "activity locks")
		}
		out[st] = t
	}
	return out, s.wrap(rows.Err(), "activity locks")
}

// lockActivities takes, in a checkout's transaction, each activity its price holds: one use and
// its discount within the activity's cap and budget (counted in its row only when it has
// either), while it is live at the version priced and within its window, and once per shopper
// where it says so (and only for a shopper it still fits: no order yet, or none in the shop;
// checked under the shopper's lock). Activities are taken in id order, after the SKUs, so two
// checkouts never wait for each other in opposite orders. EPRICECHANGED names the first that
// does not hold any more.
func (s *Store) lockActivities(ctx context.Context, tx *sql.Tx, o *surge.Order, now time.Time) error {
	if o.Price == nil || len(o.Price.Activities) == 0 {
		return nil
	}
	taken := slices.SortedFunc(slices.Values(o.Price.Activities), func(a, b surge.ActivityTaken) int { return cmp.Compare(a.Activity, b.Activity) })
	locked := false // the shopper's lock, for activities given once per shopper
	for i, t := range taken {
		if i > 0 && t.Activity == taken[i-1].Activity || t.Amount < 0 {
			return surge.Errorf(surge.EINVALID, "each activity is taken once, of a discount not below 0")
		}
		changed := surge.Errorf(surge.EPRICECHANGED, "activity %d (%s) ended, ran out or changed since the price was made", t.Activity, t.Label)
		var capOrders, budget int64
		var rule string
		err := tx.QueryRowContext(ctx, s.q(`SELECT cap, budget, rule FROM activities
			WHERE id = ? AND state = ? AND version = ? AND starts_at <= ? AND ends_at > ?`),
			t.Activity, surge.ActivityLive, t.Version, ms(now), ms(now)).Scan(&capOrders, &budget, &rule)
		if errors.Is(err, sql.ErrNoRows) {
			return changed
		}
		if err != nil {
			return err
		}
		counted := capOrders > 0 || budget > 0
		if counted { // within the cap and the budget, or nothing
			res, err := tx.ExecContext(ctx, s.q(`UPDATE activities SET used = used + 1, spent = spent + ?
				WHERE id = ? AND (cap = 0 OR used < cap) AND (budget = 0 OR spent + ? <= budget)`), t.Amount, t.Activity, t.Amount)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				if err != nil {
					return err
				}
				return changed
			}
		}
		once := ""
		if t.Once {
			once = strconv.FormatInt(t.Activity, 10)
			if !locked && s.dialect.UserLock != "" {
				if _, err := tx.ExecContext(ctx, s.q(s.dialect.UserLock), o.UserID%(1<<31)); err != nil {
					return err
				}
				locked = true
			}
			var r struct {
				Audience string `json:"audience"`
			}
			if err := json.Unmarshal([]byte(rule), &r); err != nil {
				return err
			}
			shop := int64(-1) // any shop: a new shopper has no order at all
			if r.Audience == "first_in_shop" {
				shop = o.MerchantID
			}
			var had int64
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE user_id = ? AND id <> ? AND state <> ?
				AND (CAST(? AS BIGINT) < 0 OR merchant_id = ?) LIMIT 1) x`), o.UserID, o.ID, string(surge.OrderCancelled), shop, shop).Scan(&had); err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, s.q(`INSERT INTO activity_once (activity_id, user_id, order_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`),
				t.Activity, o.UserID, o.ID)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 || had > 0 {
				if err != nil {
					return err
				}
				return surge.Errorf(surge.EPRICECHANGED, "activity %d (%s) is for a shopper's first order, and this is not it", t.Activity, t.Label)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO activity_locks (order_id, activity_id, user_id, discount, once_key, counted, state) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			o.ID, t.Activity, o.UserID, t.Amount, once, boolInt(counted), surge.LockLocked); err != nil {
			return err
		}
	}
	return nil
}

// settleActivities confirms (paid) or releases (cancelled, refunded) what an order holds of
// activities, in the caller's transaction: a release gives each use and discount back once.
func (s *Store) settleActivities(ctx context.Context, tx *sql.Tx, o *surge.Order) error {
	if o.Price == nil || len(o.Price.Activities) == 0 {
		return nil
	}
	switch o.State {
	case surge.OrderPaid:
		_, err := tx.ExecContext(ctx, s.q(`UPDATE activity_locks SET state = ? WHERE order_id = ? AND state = ?`), surge.LockConfirmed, o.ID, surge.LockLocked)
		return err
	case surge.OrderCancelled, surge.OrderRefunded:
	default:
		return nil
	}
	rows, err := tx.QueryContext(ctx, s.q(`SELECT activity_id, discount, once_key, counted FROM activity_locks WHERE order_id = ? AND state <> ? ORDER BY activity_id`),
		o.ID, surge.LockReleased)
	if err != nil {
		return err
	}
	type held struct {
		activity, discount int64
		once, counted      bool
	}
	var list []held
	for rows.Next() {
		var h held
		var once string
		var counted int64
		if err := rows.Scan(&h.activity, &h.discount, &once, &counted); err != nil {
			rows.Close()
			return err
		}
		h.once, h.counted = once != "", counted != 0
		list = append(list, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, h := range list {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE activity_locks SET state = ? WHERE order_id = ? AND activity_id = ? AND state <> ?`),
			surge.LockReleased, o.ID, h.activity, surge.LockReleased)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if err != nil {
				return err
			}
			continue
		}
		if h.counted {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE activities SET used = used - 1, spent = spent - ? WHERE id = ?`), h.discount, h.activity); err != nil {
				return err
			}
		}
		if h.once {
			if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM activity_once WHERE activity_id = ? AND user_id = ? AND order_id = ?`),
				h.activity, o.UserID, o.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
