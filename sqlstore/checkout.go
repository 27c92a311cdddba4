package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"time"

	"github.com/surgecommerce/surge"
)

// CreateCheckout implements surge.OrderStore. The SKUs are locked in id order, so that two
// checkouts of the same SKUs never wait for each other in opposite orders.
func (s *Store) CreateCheckout(ctx context.Context, o *surge.Order, now time.Time) (bool, error) {
	if !o.Checkout() || o.ItemID != 0 || len(o.Lines) > surge.MaxCheckoutLines {
		return false, surge.Errorf(surge.EINVALID, "a checkout has 1 to %d lines and no sale item", surge.MaxCheckoutLines)
	}
	lines := slices.SortedFunc(slices.Values(o.Lines), func(a, b surge.OrderLine) int { return cmp.Compare(a.SKUID, b.SKUID) })
	created, dup := false, false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if stored, err := s.orderWhere(ctx, tx, `item_id = 0 AND user_id = ? AND request_id = ?`, o.UserID, o.RequestID); err == nil {
			*o = *stored
			return nil
		} else if surge.ErrorCode(err) != surge.ENOTFOUND {
			return err
		}
		for i, l := range lines {
			if i > 0 && l.SKUID == lines[i-1].SKUID || l.Quantity <= 0 {
				return surge.Errorf(surge.EINVALID, "each SKU is one line, of a positive quantity")
			}
			k, err := s.skuByID(ctx, tx, l.SKUID, s.dialect.ForUpdate)
			if err != nil {
				return err
			}
			taken, err := s.allotted(ctx, tx, l.SKUID, 0, now)
			if err != nil {
				return err
			}
			if k.Stock-taken < l.Quantity {
				return surge.Errorf(surge.ESOLDOUT, "SKU %d has %d units to sell, not %d", l.SKUID, max(k.Stock-taken, 0), l.Quantity)
			}
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE skus SET stock = stock - ? WHERE id = ?`), l.Quantity, l.SKUID); err != nil {
				return err
			}
		}
		if err := s.lockActivities(ctx, tx, o, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO orders (`+orderColumns+`) VALUES `+values(1, orderFields)),
			o.ID, o.TxnID, o.RequestID, o.UserID, o.SessionID, o.ItemID, o.SKUID, o.MerchantID, o.Quantity,
			o.Amount.Amount, o.Amount.Currency, string(o.State), o.CancelReason, ms(o.CreatedAt), ms(o.ExpiresAt),
			paidMs(o.PaidAt), boolInt(o.StockSettled), priceText(o.Price), linesText(o.Lines))
		created, dup = err == nil, err != nil && s.dialect.IsUniqueViolation(err)
		return err
	})
	if dup { // the same checkout, made at once elsewhere
		stored, err := s.orderWhere(ctx, nil, `item_id = 0 AND user_id = ? AND request_id = ?`, o.UserID, o.RequestID)
		if err != nil {
			return false, err
		}
		*o = *stored
		return false, nil
	}
	return created, err
}

// SettleCheckout implements surge.OrderStore. Giving the units back and recording that it did
// (stock_back) happen in one transaction, and only the one that records it gives anything back;
// what the order holds of activities is confirmed or released in the same transaction.
// The order's stock_settled waits for its coupons and events too (MarkStockSettled).
func (s *Store) SettleCheckout(ctx context.Context, id int64) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		o, err := s.orderWhere(ctx, tx, `id = ?`+s.dialect.ForUpdate, id)
		if err != nil {
			return err
		}
		if !o.Checkout() {
			return nil
		}
		if o.State == surge.OrderCancelled { // the units first: SKUs before activities, as CreateCheckout takes them
			res, err := tx.ExecContext(ctx, s.q(`UPDATE orders SET stock_back = 1 WHERE id = ? AND stock_back = 0`), id)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return err // given back before, with its activities
			}
			for _, l := range slices.SortedFunc(slices.Values(o.Lines), func(a, b surge.OrderLine) int { return cmp.Compare(a.SKUID, b.SKUID) }) {
				if _, err := tx.ExecContext(ctx, s.q(`UPDATE skus SET stock = stock + ? WHERE id = ?`), l.Quantity, l.SKUID); err != nil {
					return err
				}
			}
		}
		return s.settleActivities(ctx, tx, o) // a paid (or refunded) checkout's units stay sold
	})
}
