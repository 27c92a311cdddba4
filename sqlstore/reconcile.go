package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/surgecommerce/surge"
)

// PutMismatches implements surge.ReconcileStore.
func (s *Store) PutMismatches(ctx context.Context, list []surge.Mismatch) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, m := range list {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO recon_mismatches (id, kind, txn_id, order_id, amount, detail, at, raised_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
				m.ID, m.Kind, m.TxnID, m.OrderID, m.Amount, m.Detail, ms(m.At), ms(m.RaisedAt)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Mismatches implements surge.ReconcileStore.
func (s *Store) Mismatches(ctx context.Context, since time.Time, kind string, n int) ([]surge.Mismatch, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, kind, txn_id, order_id, amount, detail, at, raised_at FROM recon_mismatches
		WHERE raised_at >= ? AND (CAST(? AS TEXT) = '' OR kind = ?) ORDER BY raised_at DESC, id LIMIT ?`), ms(since), kind, kind, limit(n))
	if err != nil {
		return nil, s.wrap(err, "mismatches")
	}
	defer rows.Close()
	var list []surge.Mismatch
	for rows.Next() {
		var m surge.Mismatch
		var at, raised int64
		if err := rows.Scan(&m.ID, &m.Kind, &m.TxnID, &m.OrderID, &m.Amount, &m.Detail, &at, &raised); err != nil {
			return nil, s.wrap(err, "mismatches")
		}
		m.At, m.RaisedAt = fromMs(at), fromMs(raised)
		list = append(list, m)
	}
	return list, s.wrap(rows.Err(), "mismatches")
}
