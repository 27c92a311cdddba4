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
	ids := make([]int64, 0, len(paid))
	for _, o := range paid {
		ids = append(ids, o.ID)
	}
	voucherLines, err := s.voucherLines(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, o := range paid {
		f.Paid = append(f.Paid, surge.PaidFacts{Order: o, VoucherLines: voucherLines[o.ID]})
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
	ids = ids[:0]
	for _, r := range refunds {
		ids = append(ids, r.OrderID)
	}
	if voucherLines, err = s.voucherLines(ctx, ids); err != nil {
		return nil, err
	}
	for _, r := range refunds {
		f.Refunded = append(f.Refunded, surge.RefundFacts{Refund: r, VoucherLines: voucherLines[r.OrderID]})
	}
	return f, nil
}

// voucherLines are the lines of orders that issued vouchers, by order: one statement per
// surge.MaxListLimit orders.
func (s *Store) voucherLines(ctx context.Context, ids []int64) (map[int64][]int, error) {
	out := map[int64][]int{}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), surge.MaxListLimit)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, s.q(`SELECT DISTINCT order_id, line FROM vouchers WHERE order_id IN `+list(len(chunk))+` ORDER BY order_id, line`), args...)
		if err != nil {
			return nil, s.wrap(err, "vouchers")
		}
		for rows.Next() {
			var id int64
			var l int
			if err := rows.Scan(&id, &l); err != nil {
				rows.Close()
				return nil, s.wrap(err, "vouchers")
			}
			out[id] = append(out[id], l)
		}
		if err := rows.Close(); err != nil {
			return nil, s.wrap(err, "vouchers")
		}
		if err := rows.Err(); err != nil {
			return nil, s.wrap(err, "vouchers")
		}
	}
	return out, nil
}
