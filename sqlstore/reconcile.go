package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/surgecommerce/surge"
)

// PutMismatches implements surge.ReconcileStore.
func (s *Store) PutMismatches(ctx context.Context, list []surge.Mismatch) ([]surge.Mismatch, error) {
	var fresh []surge.Mismatch
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		fresh = fresh[:0]
		for _, m := range list {
			res, err := tx.ExecContext(ctx, s.q(`INSERT INTO recon_mismatches (id, kind, txn_id, order_id, amount, detail, at, raised_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
				m.ID, m.Kind, m.TxnID, m.OrderID, m.Amount, m.Detail, ms(m.At), ms(m.RaisedAt))
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				fresh = append(fresh, m)
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap(err, "mismatches")
	}
	return fresh, nil
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

// MoneyRecords implements surge.ReconcileStore: the paid notifications and the refunds of the
// window, each read in txn id order, merged as they are read.
func (s *Store) MoneyRecords(ctx context.Context, from, to time.Time, fn func(*surge.TxnRecords) error) error {
	pays, err := s.db.QueryContext(ctx, s.q(`SELECT notify_id, txn_id, order_id, amount_minor, currency, status, paid_at, received_at, outcome
		FROM payments WHERE status = ? AND paid_at >= ? AND paid_at < ? ORDER BY txn_id`+s.dialect.ByteOrder+`, notify_id`),
		surge.PaymentStatusPaid, ms(from), ms(to))
	if err != nil {
		return s.wrap(err, "payments")
	}
	defer pays.Close()
	refs, err := s.db.QueryContext(ctx, s.q(`SELECT `+refundColumns+` FROM refunds
		WHERE (created_at >= ? AND created_at < ?) OR (succeeded_at >= ? AND succeeded_at < ?) ORDER BY txn_id`+s.dialect.ByteOrder+`, id`),
		ms(from), ms(to), ms(from), ms(to))
	if err != nil {
		return s.wrap(err, "refunds")
	}
	defer refs.Close()
	nextPay := func() (*surge.Payment, error) {
		if !pays.Next() {
			return nil, pays.Err()
		}
		var p surge.Payment
		var paid, received int64
		if err := pays.Scan(&p.NotifyID, &p.TxnID, &p.OrderID, &p.Amount.Amount, &p.Amount.Currency, &p.Status, &paid, &received, &p.Outcome); err != nil {
			return nil, err
		}
		p.PaidAt, p.ReceivedAt = fromMs(paid), fromMs(received)
		return &p, nil
	}
	nextRefund := func() (*surge.Refund, error) {
		if !refs.Next() {
			return nil, refs.Err()
		}
		return scanRefund(refs)
	}
	p, err := nextPay()
	if err != nil {
		return s.wrap(err, "payments")
	}
	r, err := nextRefund()
	if err != nil {
		return s.wrap(err, "refunds")
	}
	for p != nil || r != nil {
		txn := ""
		switch {
		case p == nil:
			txn = r.TxnID
		case r == nil || p.TxnID <= r.TxnID:
			txn = p.TxnID
		default:
			txn = r.TxnID
		}
		rec := &surge.TxnRecords{TxnID: txn}
		for p != nil && p.TxnID == txn {
			rec.OrderID = p.OrderID
			rec.Payments = append(rec.Payments, *p)
			if p, err = nextPay(); err != nil {
				return s.wrap(err, "payments")
			}
		}
		for r != nil && r.TxnID == txn {
			rec.OrderID = r.OrderID
			rec.Refunds = append(rec.Refunds, *r)
			if r, err = nextRefund(); err != nil {
				return s.wrap(err, "refunds")
			}
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// PutRun implements surge.ReconcileStore.
func (s *Store) PutRun(ctx context.Context, day string, report []byte, at time.Time) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO recon_runs (day, report, created_at) VALUES (?, ?, ?)
		ON CONFLICT (day) DO UPDATE SET report = excluded.report, created_at = excluded.created_at`), day, string(report), ms(at))
	return s.wrap(err, "reconciliation run")
}

// Run implements surge.ReconcileStore.
func (s *Store) Run(ctx context.Context, day string) ([]byte, error) {
	var report string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT report FROM recon_runs WHERE day = ?`), day).Scan(&report)
	if err != nil {
		return nil, s.wrap(err, "reconciliation of "+day)
	}
	return []byte(report), nil
}

// PutRepair implements surge.ReconcileStore.
func (s *Store) PutRepair(ctx context.Context, r surge.Repair) (surge.Repair, bool, error) {
	fresh := false
	var first surge.Repair
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO recon_repairs (finding_id, day, action, by_user, result, at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (day, finding_id) DO NOTHING`), r.FindingID, r.Day, r.Action, r.By, r.Result, ms(r.At))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		fresh = n == 1
		list, err := s.repairs(ctx, tx, `day = ? AND finding_id = ?`, r.Day, r.FindingID)
		if err == nil && len(list) == 1 {
			first = list[0]
		}
		return err
	})
	return first, fresh, s.wrap(err, "repair")
}

// Repairs implements surge.ReconcileStore.
func (s *Store) Repairs(ctx context.Context, day string) ([]surge.Repair, error) {
	return s.repairs(ctx, s.db, `day = ? ORDER BY at, finding_id`, day)
}

func (s *Store) repairs(ctx context.Context, q querier, where string, args ...any) ([]surge.Repair, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT finding_id, day, action, by_user, result, at FROM recon_repairs WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "repairs")
	}
	defer rows.Close()
	var list []surge.Repair
	for rows.Next() {
		var r surge.Repair
		var at int64
		if err := rows.Scan(&r.FindingID, &r.Day, &r.Action, &r.By, &r.Result, &at); err != nil {
			return nil, s.wrap(err, "repairs")
		}
		r.At = fromMs(at)
		list = append(list, r)
	}
	return list, s.wrap(rows.Err(), "repairs")
}
