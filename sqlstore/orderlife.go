package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/surgecommerce/surge"
)

// The rest of an order's life after payment: refunds, vouchers and the review.

const refundColumns = `id, order_id, txn_id, request_id, amount_minor, currency, lines, whole, kind, reason, state, by_user,
	notify_id, created_at, succeeded_at`

const voucherColumns = `code, order_id, seq, line, sku_id, merchant_id, user_id, amount_minor, currency, state,
	issued_at, redeemed_at, till, redeemed_by`

// ReviewOrder implements surge.OrderStore.
func (s *Store) ReviewOrder(ctx context.Context, id, userID int64, r surge.Review) (*surge.Order, error) {
	text, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var o *surge.Order
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE orders SET state = ?, review = ? WHERE id = ? AND user_id = ? AND state = ?`),
			string(surge.OrderReviewed), string(text), id, userID, string(surge.OrderConsumed))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if o, err = s.orderWhere(ctx, tx, `id = ?`, id); err != nil {
			return err
		}
		switch {
		case o.UserID != userID:
			o = nil
			return surge.Errorf(surge.ENOTFOUND, "order not found")
		case n == 0:
			return surge.Errorf(surge.ECONFLICT, "the order is %s; only a consumed order is reviewed", o.State)
		}
		return nil
	})
	if err != nil {
		return o, err
	}
	return o, nil
}

// CreateRefund implements surge.RefundStore. The order's row is locked (PostgreSQL; SQLite has
// one writer) while its earlier refunds are summed, so two refunds asked at once never give
// back more than was paid.
func (s *Store) CreateRefund(ctx context.Context, r *surge.Refund) (bool, error) {
	created := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		o, err := s.orderWhere(ctx, tx, `id = ?`+s.dialect.ForUpdate, r.OrderID)
		if err != nil {
			return err
		}
		earlier, err := s.refunds(ctx, tx, `order_id = ? ORDER BY created_at, id`, r.OrderID)
		if err != nil {
			return err
		}
		for _, e := range earlier {
			if e.RequestID == r.RequestID {
				*r = *e
				return nil
			}
		}
		if o.State != surge.OrderPaid && o.State != surge.OrderConsumed {
			return surge.Errorf(surge.ECONFLICT, "order %d is %s; only a paid or consumed order is refunded", o.ID, o.State)
		}
		if len(earlier) >= surge.MaxRefundsPerOrder {
			return surge.Errorf(surge.ECONFLICT, "order %d has %d refunds already", o.ID, len(earlier))
		}
		vouchers, err := s.vouchers(ctx, tx, `order_id = ? ORDER BY seq DESC`+s.dialect.ForUpdate, o.ID)
		if err != nil {
			return err
		}
		issued := map[int][]surge.Voucher{} // per line, the vouchers not yet used, the last first
		voucherLine := map[int]bool{}
		for _, v := range vouchers {
			voucherLine[v.Line] = true
			if v.State == surge.VoucherIssued {
				issued[v.Line] = append(issued[v.Line], v)
			}
		}
		want := r.Lines
		if len(want) == 0 && len(vouchers) > 0 { // everything left: a voucher line's unused vouchers
			all, _, _, err := surge.PlanRefund(o, earlier, nil)
			if err != nil {
				return err
			}
			for _, l := range all {
				if voucherLine[l.Line] {
					l.Quantity = min(l.Quantity, int64(len(issued[l.Line])))
				}
				if l.Quantity > 0 {
					want = append(want, surge.RefundLine{Line: l.Line, Quantity: l.Quantity})
				}
			}
			if len(want) == 0 {
				return surge.Errorf(surge.ECONFLICT, "order %d has nothing left to refund: its vouchers are redeemed", o.ID)
			}
		}
		lines, total, whole, err := surge.PlanRefund(o, earlier, want)
		if err != nil {
			return err
		}
		for i, l := range lines { // a voucher's units give back what their vouchers paid
			if !voucherLine[l.Line] {
				continue
			}
			left := issued[l.Line]
			if int64(len(left)) < l.Quantity {
				return surge.Errorf(surge.ECONFLICT, "line %d has %d vouchers not redeemed, not %d: a redeemed voucher is not refunded", l.Line, len(left), l.Quantity)
			}
			total -= l.Amount
			lines[i].Amount = 0
			for _, v := range left[:l.Quantity] {
				res, err := tx.ExecContext(ctx, s.q(`UPDATE vouchers SET state = ? WHERE code = ? AND state = ?`),
					string(surge.VoucherVoid), v.Code, string(surge.VoucherIssued))
				if err != nil {
					return err
				}
				if n, err := res.RowsAffected(); err != nil {
					return err
				} else if n != 1 { // redeemed meanwhile (the rows are locked on PostgreSQL; this is the guard)
					return surge.Errorf(surge.ECONFLICT, "voucher %d of line %d was redeemed meanwhile; ask again", v.Seq, l.Line)
				}
				lines[i].Amount += v.Amount.Amount
				lines[i].Vouchers = append(lines[i].Vouchers, v.Code)
			}
			total += lines[i].Amount
		}
		r.TxnID, r.Amount, r.Lines, r.Whole, r.State = o.TxnID, surge.Money{Amount: total, Currency: o.Amount.Currency}, lines, whole, surge.RefundRequested
		r.Kind = surge.RefundOrder
		if err := s.insertRefund(ctx, tx, r); err != nil {
			return err
		}
		created = true
		return s.consumeIfUsed(ctx, tx, o.ID)
	})
	return created, s.wrap(err, "refund")
}

func (s *Store) insertRefund(ctx context.Context, tx *sql.Tx, r *surge.Refund) error {
	lines := r.Lines
	if lines == nil {
		lines = []surge.RefundLine{}
	}
	text, _ := json.Marshal(lines) // plain numbers: never fails
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO refunds (`+refundColumns+`) VALUES `+values(1, 15)),
		r.ID, r.OrderID, r.TxnID, r.RequestID, r.Amount.Amount, r.Amount.Currency, string(text), boolInt(r.Whole), r.Kind, r.Reason,
		string(r.State), r.By, "", ms(r.CreatedAt), 0)
	return err
}

// CreatePaymentRefund implements surge.RefundStore.
func (s *Store) CreatePaymentRefund(ctx context.Context, r *surge.Refund) (bool, error) {
	created := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		list, err := s.refunds(ctx, tx, `id = ?`, r.ID)
		if err != nil || len(list) > 0 {
			if len(list) > 0 {
				*r = *list[0]
			}
			return err
		}
		r.Kind, r.State, r.Whole, r.Lines = surge.RefundPayment, surge.RefundRequested, false, nil
		if err := s.insertRefund(ctx, tx, r); err != nil {
			return err
		}
		created = true
		return nil
	})
	return created, s.wrap(err, "refund")
}

// FailRefund implements surge.RefundStore.
func (s *Store) FailRefund(ctx context.Context, id string) (bool, error) {
	failed := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		list, err := s.refunds(ctx, tx, `id = ?`, id)
		if err != nil || len(list) == 0 {
			return err
		}
		r := list[0]
		// the order's row first, as a refund's creation takes it
		if _, err := s.orderWhere(ctx, tx, `id = ?`+s.dialect.ForUpdate, r.OrderID); err != nil && surge.ErrorCode(err) != surge.ENOTFOUND {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE refunds SET state = ? WHERE id = ? AND state = ?`),
			string(surge.RefundFailed), id, string(surge.RefundRequested))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		failed = true
		for _, l := range r.Lines {
			for _, code := range l.Vouchers {
				if _, err := tx.ExecContext(ctx, s.q(`UPDATE vouchers SET state = ? WHERE code = ? AND state = ?`),
					string(surge.VoucherIssued), code, string(surge.VoucherVoid)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return failed, s.wrap(err, "refund")
}

// RefundByID implements surge.RefundStore.
func (s *Store) RefundByID(ctx context.Context, id string) (*surge.Refund, error) {
	list, err := s.refunds(ctx, nil, `id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "refund %s not found", id)
	}
	return list[0], nil
}

// consumeIfUsed makes a paid order consumed once it has a voucher redeemed and none left to
// redeem.
func (s *Store) consumeIfUsed(ctx context.Context, tx *sql.Tx, orderID int64) error {
	_, err := tx.ExecContext(ctx, s.q(`UPDATE orders SET state = ? WHERE id = ? AND state = ?
		AND EXISTS (SELECT 1 FROM vouchers WHERE order_id = ? AND state = ?)
		AND NOT EXISTS (SELECT 1 FROM vouchers WHERE order_id = ? AND state = ?)`),
		string(surge.OrderConsumed), orderID, string(surge.OrderPaid), orderID, string(surge.VoucherRedeemed), orderID, string(surge.VoucherIssued))
	return err
}

// CompleteRefund implements surge.RefundStore.
func (s *Store) CompleteRefund(ctx context.Context, id, notifyID, txnID string, amount surge.Money, at time.Time) (*surge.Refund, *surge.Order, bool, error) {
	var r *surge.Refund
	var o *surge.Order
	fresh := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		list, err := s.refunds(ctx, tx, `id = ?`+s.dialect.ForUpdate, id)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return surge.Errorf(surge.ENOTFOUND, "refund %s not found", id)
		}
		r = list[0]
		if r.TxnID != txnID || r.Amount != amount {
			return surge.Errorf(surge.EINVALID, "%s is %s for %d %s; the notification says %s for %d %s",
				r, r.TxnID, r.Amount.Amount, r.Amount.Currency, txnID, amount.Amount, amount.Currency)
		}
		if r.State == surge.RefundRequested {
			fresh = true
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE refunds SET state = ?, notify_id = ?, succeeded_at = ? WHERE id = ?`),
				string(surge.RefundSucceeded), notifyID, ms(at), id); err != nil {
				return err
			}
			to := ""
			if r.Whole {
				to = string(surge.OrderRefunded)
			}
			if r.Kind == surge.RefundOrder {
				if _, err := tx.ExecContext(ctx, s.q(`UPDATE orders SET refunded_minor = refunded_minor + ?,
				state = CASE WHEN CAST(? AS TEXT) <> '' AND state IN (?, ?) THEN CAST(? AS TEXT) ELSE state END WHERE id = ?`),
					r.Amount.Amount, to, string(surge.OrderPaid), string(surge.OrderConsumed), to, r.OrderID); err != nil {
					return err
				}
			}
			r.State, r.NotifyID = surge.RefundSucceeded, notifyID
			t := fromMs(ms(at))
			r.SucceededAt = &t
		}
		o, err = s.orderWhere(ctx, tx, `id = ?`, r.OrderID)
		return err
	})
	if err != nil {
		return nil, nil, false, s.wrap(err, "refund")
	}
	return r, o, fresh, nil
}

// RefundsByOrder implements surge.RefundStore.
func (s *Store) RefundsByOrder(ctx context.Context, orderID int64) ([]*surge.Refund, error) {
	return s.refunds(ctx, nil, `order_id = ? ORDER BY created_at, id`, orderID)
}

// RequestedRefunds implements surge.RefundStore.
func (s *Store) RequestedRefunds(ctx context.Context, before time.Time, n int) ([]*surge.Refund, error) {
	return s.refunds(ctx, nil, `state = ? AND created_at < ? ORDER BY created_at, id LIMIT ?`,
		string(surge.RefundRequested), ms(before), limit(n))
}

func (s *Store) refunds(ctx context.Context, tx *sql.Tx, where string, args ...any) ([]*surge.Refund, error) {
	var q querier = s.db
	if tx != nil {
		q = tx
	}
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+refundColumns+` FROM refunds WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "refunds")
	}
	defer rows.Close()
	var list []*surge.Refund
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, s.wrap(err, "refunds")
		}
		list = append(list, r)
	}
	return list, s.wrap(rows.Err(), "refunds")
}

// scanRefund reads a row of refundColumns.
func scanRefund(rows *sql.Rows) (*surge.Refund, error) {
	var r surge.Refund
	var lines, state string
	var whole, created, succeeded int64
	if err := rows.Scan(&r.ID, &r.OrderID, &r.TxnID, &r.RequestID, &r.Amount.Amount, &r.Amount.Currency, &lines, &whole,
		&r.Kind, &r.Reason, &state, &r.By, &r.NotifyID, &created, &succeeded); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(lines), &r.Lines); err != nil {
		return nil, surge.Errorf(surge.EINTERNAL, "refund %s: stored lines: %v", r.ID, err)
	}
	r.Whole, r.State, r.CreatedAt = whole != 0, surge.RefundState(state), fromMs(created)
	if succeeded != 0 {
		t := fromMs(succeeded)
		r.SucceededAt = &t
	}
	return &r, nil
}

// IssueVouchers implements surge.VoucherStore.
func (s *Store) IssueVouchers(ctx context.Context, orderID int64, vs []surge.Voucher) ([]surge.Voucher, error) {
	var out []surge.Voucher
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		o, err := s.orderWhere(ctx, tx, `id = ?`+s.dialect.ForUpdate, orderID)
		if err != nil {
			return err
		}
		if !o.State.PaidOrLater() {
			return surge.Errorf(surge.ECONFLICT, "order %d is %s; vouchers are issued once it is paid", orderID, o.State)
		}
		if out, err = s.vouchers(ctx, tx, `order_id = ? ORDER BY seq`, orderID); err != nil || len(out) > 0 {
			return err
		}
		for _, v := range vs {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO vouchers (`+voucherColumns+`) VALUES `+values(1, 14)),
				v.Code, orderID, v.Seq, v.Line, v.SKUID, v.MerchantID, v.UserID, v.Amount.Amount, v.Amount.Currency,
				string(surge.VoucherIssued), ms(v.IssuedAt), 0, "", 0); err != nil {
				return err
			}
		}
		out, err = s.vouchers(ctx, tx, `order_id = ? ORDER BY seq`, orderID)
		return err
	})
	return out, s.wrap(err, "voucher")
}

// VouchersByOrder implements surge.VoucherStore.
func (s *Store) VouchersByOrder(ctx context.Context, orderID int64) ([]surge.Voucher, error) {
	return s.vouchers(ctx, nil, `order_id = ? ORDER BY seq`, orderID)
}

// RedeemVoucher implements surge.VoucherStore: the conditional update is the arbiter, as with
// an order's transitions; the tills that lose find the voucher redeemed.
func (s *Store) RedeemVoucher(ctx context.Context, code string, merchantID, by int64, till string, now time.Time) (*surge.Voucher, *surge.Order, error) {
	var v *surge.Voucher
	var o *surge.Order
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The order's row first, as a refund takes it before the vouchers: the two never wait
		// for each other in opposite orders.
		var orderID int64
		err := tx.QueryRowContext(ctx, s.q(`SELECT order_id FROM vouchers WHERE code = ?`), code).Scan(&orderID)
		if errors.Is(err, sql.ErrNoRows) {
			return surge.Errorf(surge.ENOTFOUND, "no voucher has this code")
		}
		if err != nil {
			return err
		}
		if _, err := s.orderWhere(ctx, tx, `id = ?`+s.dialect.ForUpdate, orderID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE vouchers SET state = ?, redeemed_at = ?, till = ?, redeemed_by = ?
			WHERE code = ? AND merchant_id = ? AND state = ?`),
			string(surge.VoucherRedeemed), ms(now), till, by, code, merchantID, string(surge.VoucherIssued))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		list, err := s.vouchers(ctx, tx, `code = ?`, code)
		if err != nil {
			return err
		}
		switch {
		case len(list) == 0:
			return surge.Errorf(surge.ENOTFOUND, "no voucher has this code")
		case list[0].MerchantID != merchantID:
			return surge.Errorf(surge.EFORBIDDEN, "this voucher is for another shop")
		case n == 0 && list[0].State == surge.VoucherVoid:
			return surge.Errorf(surge.ECONFLICT, "this voucher was refunded")
		case n == 0:
			return surge.Errorf(surge.ECONFLICT, "this voucher was redeemed at %s (till %q)", list[0].RedeemedAt.Format(time.RFC3339), list[0].Till)
		}
		v = &list[0]
		if err := s.consumeIfUsed(ctx, tx, v.OrderID); err != nil {
			return err
		}
		o, err = s.orderWhere(ctx, tx, `id = ?`, v.OrderID)
		return err
	})
	if err != nil {
		return nil, nil, s.wrap(err, "voucher")
	}
	return v, o, nil
}

func (s *Store) vouchers(ctx context.Context, tx *sql.Tx, where string, args ...any) ([]surge.Voucher, error) {
	var q querier = s.db
	if tx != nil {
		q = tx
	}
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+voucherColumns+` FROM vouchers WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "vouchers")
	}
	defer rows.Close()
	var list []surge.Voucher
	for rows.Next() {
		var v surge.Voucher
		var state string
		var issued, redeemed int64
		if err := rows.Scan(&v.Code, &v.OrderID, &v.Seq, &v.Line, &v.SKUID, &v.MerchantID, &v.UserID, &v.Amount.Amount,
			&v.Amount.Currency, &state, &issued, &redeemed, &v.Till, &v.RedeemedBy); err != nil {
			return nil, s.wrap(err, "vouchers")
		}
		v.State, v.IssuedAt = surge.VoucherState(state), fromMs(issued)
		if redeemed != 0 {
			t := fromMs(redeemed)
			v.RedeemedAt = &t
		}
		list = append(list, v)
	}
	return list, s.wrap(rows.Err(), "vouchers")
}
