package sqlstore

import (
	"context"
	"time"

	"github.com/surgecommerce/surge"
)

// SettlementFacts implements surge.SettlementStore.
func (s *Store) SettlementFacts(ctx context.Context, merchantID int64, from, to time.Time) (*surge.SettlementFacts, error) {
	f := &surge.SettlementFacts{}
	paid, err := s.orders(ctx, nil, `merchant_id = ? AND paid_at >= ? AND paid_at < ? AND state IN (?, ?, ?, ?) ORDER BY id`,
		merchantID, ms(from), ms(to), string(surge.OrderPaid), string(surge.OrderConsumed), string(surge.OrderReviewed), string(surge.OrderRefunded))
	if err != nil {
		return nil, err
	}
	for _, o := range paid {
		lines, err := s.voucherLines(ctx, o.ID)
		if err != nil {
			return nil, err
		}
		f.Paid = append(f.Paid, surge.PaidFacts{Order: o, VoucherLines: lines})
	}
	if f.Redeemed, err = s.vouchers(ctx, nil, `merchant_id = ? AND redeemed_at >= ? AND redeemed_at < ? AND state = ? ORDER BY order_id, seq`,
		merchantID, ms(from), ms(to), string(surge.VoucherRedeemed)); err != nil {
		return nil, err
	}
	refunds, err := s.refunds(ctx, nil, `kind = ? AND state = ? AND succeeded_at >= ? AND succeeded_at < ?
		AND order_id IN (SELECT id FROM orders WHERE merchant_id = ?) ORDER BY order_id, id`,
		surge.RefundOrder, string(surge.RefundSucceeded), ms(from), ms(to), merchantID)
	if err != nil {
		return nil, err
	}
	for _, r := range refunds {
		lines, err := s.voucherLines(ctx, r.OrderID)
		if err != nil {
			return nil, err
		}
		f.Refunded = append(f.Refunded, surge.RefundFacts{Refund: r, VoucherLines: lines})
	}
	return f, nil
}

// voucherLines are the lines of an order that issued vouchers.
func (s *Store) voucherLines(ctx context.Context, orderID int64) ([]int, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT DISTINCT line FROM vouchers WHERE order_id = ? ORDER BY line`), orderID)
	if err != nil {
		return nil, s.wrap(err, "vouchers")
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var l int
		if err := rows.Scan(&l); err != nil {
			return nil, s.wrap(err, "vouchers")
		}
		out = append(out, l)
	}
	return out, s.wrap(rows.Err(), "vouchers")
}
