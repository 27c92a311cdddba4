package sqlstore

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
)

// CreateSession implements surge.SessionStore.
func (s *Store) CreateSession(ctx context.Context, se *surge.Session) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO sessions (id, name, start_at, end_at, created_at, updated_at, pay_timeout_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), se.ID, se.Name, ms(se.StartAt), ms(se.EndAt), ms(se.CreatedAt), ms(se.UpdatedAt),
		se.PayTimeoutSec*1000)
	return s.wrap(err, "session")
}

// SessionByID implements surge.SessionStore.
func (s *Store) SessionByID(ctx context.Context, id int64) (*surge.Session, error) {
	list, err := s.sessions(ctx, s.db, `id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "session not found")
	}
	return list[0], nil
}

// ListSessions implements surge.SessionStore.
func (s *Store) ListSessions(ctx context.Context, f surge.SessionFilter) ([]*surge.Session, error) {
	return s.sessions(ctx, s.db, `end_at > ? AND (? = 0 OR published_at > 0) ORDER BY start_at, id LIMIT ?`,
		ms(f.EndAfter), boolInt(f.Published), limit(f.Limit))
}

// sessions loads sessions and then, in one query, their items.
func (s *Store) sessions(ctx context.Context, q querier, where string, args ...any) ([]*surge.Session, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT id, name, start_at, end_at, created_at, updated_at, pay_timeout_ms,
		published_at FROM sessions WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "sessions")
	}
	defer rows.Close()
	var list []*surge.Session
	byID := map[int64]*surge.Session{}
	var ids []any
	for rows.Next() {
		var se surge.Session
		var start, end, created, updated, payMs, published int64
		if err := rows.Scan(&se.ID, &se.Name, &start, &end, &created, &updated, &payMs, &published); err != nil {
			return nil, s.wrap(err, "sessions")
		}
		se.StartAt, se.EndAt, se.CreatedAt, se.UpdatedAt = fromMs(start), fromMs(end), fromMs(created), fromMs(updated)
		se.PayTimeoutSec = payMs / 1000
		if published > 0 {
			t := fromMs(published)
			se.PublishedAt = &t
		}
		se.Items = []*surge.SessionItem{}
		list = append(list, &se)
		byID[se.ID] = &se
		ids = append(ids, se.ID)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, "sessions")
	}
	if len(list) == 0 {
		return list, nil
	}
	in := strings.Repeat("?, ", len(ids)-1) + "?"
	items, err := s.items(ctx, q, `si.session_id IN (`+in+`)`, ids...)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if se := byID[it.SessionID]; se != nil {
			se.Items = append(se.Items, it)
		}
	}
	return list, nil
}

func (s *Store) items(ctx context.Context, q querier, where string, args ...any) ([]*surge.SessionItem, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT si.id, si.session_id, si.sku_id, k.merchant_id, k.title, si.allotted,
		si.sale_price_minor, si.currency, si.per_user_limit, k.price_minor, k.currency
		FROM session_items si JOIN skus k ON k.id = si.sku_id WHERE `+where+` ORDER BY si.id`), args...)
	if err != nil {
		return nil, s.wrap(err, "session items")
	}
	defer rows.Close()
	var list []*surge.SessionItem
	for rows.Next() {
		var it surge.SessionItem
		if err := rows.Scan(&it.ID, &it.SessionID, &it.SKUID, &it.MerchantID, &it.Title, &it.Allotted,
			&it.SalePrice.Amount, &it.SalePrice.Currency, &it.PerUserLimit, &it.ListPrice.Amount, &it.ListPrice.Currency); err != nil {
			return nil, s.wrap(err, "session items")
		}
		list = append(list, &it)
	}
	return list, s.wrap(rows.Err(), "session items")
}

// UpdateSession implements surge.SessionStore.
func (s *Store) UpdateSession(ctx context.Context, id int64, now time.Time, change func(*surge.Session) error) (*surge.Session, error) {
	var se *surge.Session
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockEditable(ctx, tx, id, now); err != nil {
			return err
		}
		list, err := s.sessions(ctx, tx, `id = ?`, id)
		if err != nil {
			return err
		}
		se = list[0]
		if err := change(se); err != nil {
			return err
		}
		se.ID = id
		_, err = tx.ExecContext(ctx, s.q(`UPDATE sessions SET name = ?, start_at = ?, end_at = ?, updated_at = ?, pay_timeout_ms = ?
			WHERE id = ?`), se.Name, ms(se.StartAt), ms(se.EndAt), ms(se.UpdatedAt), se.PayTimeoutSec*1000, se.ID)
		return s.wrap(err, "session")
	})
	if err != nil {
		return nil, err
	}
	return se, nil
}

// lockEditable locks a session row and checks it is neither published nor started.
func (s *Store) lockEditable(ctx context.Context, tx *sql.Tx, id int64, now time.Time) error {
	var start, published int64
	err := tx.QueryRowContext(ctx, s.q(`SELECT start_at, published_at FROM sessions WHERE id = ?`+s.dialect.ForUpdate), id).
		Scan(&start, &published)
	if err != nil {
		return s.wrap(err, "session")
	}
	if published > 0 {
		return surge.Errorf(surge.ECONFLICT, "the session is published; it can no longer be edited")
	}
	if now.UnixMilli() >= start {
		return surge.Errorf(surge.ECONFLICT, "the session has started; it can no longer be edited")
	}
	return nil
}

// PublishSession implements surge.SessionStore.
func (s *Store) PublishSession(ctx context.Context, id int64, now time.Time) (*surge.Session, error) {
	var se *surge.Session
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE sessions SET published_at = ? WHERE id = ? AND published_at = 0 AND end_at > ?`),
			ms(now), id, ms(now))
		if err != nil {
			return err
		}
		list, err := s.sessions(ctx, tx, `id = ?`, id)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return surge.Errorf(surge.ENOTFOUND, "session not found")
		}
		se = list[0]
		if n, _ := res.RowsAffected(); n == 0 && se.PublishedAt == nil {
			return surge.Errorf(surge.ECONFLICT, "the session has ended; it cannot be published")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return se, nil
}

// ItemByID implements surge.SessionStore.
func (s *Store) ItemByID(ctx context.Context, itemID int64) (*surge.SessionItem, *surge.Session, error) {
	items, err := s.items(ctx, s.db, `si.id = ?`, itemID)
	if err != nil {
		return nil, nil, err
	}
	if len(items) == 0 {
		return nil, nil, surge.Errorf(surge.ENOTFOUND, "session item not found")
	}
	list, err := s.sessions(ctx, s.db, `id = ?`, items[0].SessionID)
	if err != nil {
		return nil, nil, err
	}
	if len(list) == 0 {
		return nil, nil, surge.Errorf(surge.ENOTFOUND, "session not found")
	}
	list[0].Items = nil
	return items[0], list[0], nil
}

// AddItem implements surge.SessionStore.
func (s *Store) AddItem(ctx context.Context, it *surge.SessionItem, now time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockEditable(ctx, tx, it.SessionID, now); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM session_items WHERE session_id = ?`), it.SessionID).Scan(&n); err != nil {
			return s.wrap(err, "session items")
		}
		if n >= surge.MaxSessionItems {
			return surge.Errorf(surge.ECONFLICT, "a session holds at most %d items", surge.MaxSessionItems)
		}
		if err := s.checkAllotment(ctx, tx, it, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO session_items (id, session_id, sku_id, allotted, sale_price_minor,
			currency, per_user_limit) VALUES (?, ?, ?, ?, ?, ?, ?)`),
			it.ID, it.SessionID, it.SKUID, it.Allotted, it.SalePrice.Amount, it.SalePrice.Currency, it.PerUserLimit)
		return s.wrap(err, "sku in this session")
	})
}

// checkAllotment locks the SKU and checks currency and that stock covers every allotment.
func (s *Store) checkAllotment(ctx context.Context, tx *sql.Tx, it *surge.SessionItem, now time.Time) error {
	k, err := s.skuByID(ctx, tx, it.SKUID, s.dialect.ForUpdate)
	if err != nil {
		return err
	}
	if k.Price.Currency != it.SalePrice.Currency {
		return surge.Errorf(surge.EINVALID, "sale_price must be in the sku's currency %s", k.Price.Currency)
	}
	others, err := s.allotted(ctx, tx, it.SKUID, it.ID, now)
	if err != nil {
		return err
	}
	if others+it.Allotted > k.Stock {
		return surge.Errorf(surge.ECONFLICT, "allotted %d exceeds the %d units of stock not allotted elsewhere",
			it.Allotted, max(k.Stock-others, 0))
	}
	it.MerchantID, it.Title = k.MerchantID, k.Title
	return nil
}

// UpdateItem implements surge.SessionStore.
func (s *Store) UpdateItem(ctx context.Context, sessionID, itemID int64, now time.Time, change func(*surge.SessionItem) error) (*surge.SessionItem, error) {
	var it *surge.SessionItem
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockEditable(ctx, tx, sessionID, now); err != nil {
			return err
		}
		items, err := s.items(ctx, tx, `si.id = ? AND si.session_id = ?`, itemID, sessionID)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return surge.Errorf(surge.ENOTFOUND, "session item not found")
		}
		it = items[0]
		sku := it.SKUID
		if err := change(it); err != nil {
			return err
		}
		it.ID, it.SessionID, it.SKUID = itemID, sessionID, sku
		if err := s.checkAllotment(ctx, tx, it, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`UPDATE session_items SET allotted = ?, sale_price_minor = ?, currency = ?,
			per_user_limit = ? WHERE id = ?`), it.Allotted, it.SalePrice.Amount, it.SalePrice.Currency, it.PerUserLimit, it.ID)
		return s.wrap(err, "session item")
	})
	if err != nil {
		return nil, err
	}
	return it, nil
}

// DeleteItem implements surge.SessionStore.
func (s *Store) DeleteItem(ctx context.Context, sessionID, itemID int64, now time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockEditable(ctx, tx, sessionID, now); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM session_items WHERE id = ? AND session_id = ?`), itemID, sessionID)
		return s.affectedOne(res, err, "session item")
	})
}
