package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
)

const orderColumns = `id, txn_id, request_id, user_id, session_id, item_id, sku_id, merchant_id, quantity,
	amount_minor, currency, state, cancel_reason, created_at, expires_at, paid_at, stock_settled, price, lines`

// orderRead is what reading an order selects: orderColumns, which a new order is written
// with, and what its later life adds (refunds, review).
const orderRead = orderColumns + `, refunded_minor, review`

// CreateOrder implements surge.OrderStore.
func (s *Store) CreateOrder(ctx context.Context, o *surge.Order) (bool, error) {
	_, err := s.exec(ctx, s.q(`INSERT INTO orders (`+orderColumns+`)
		VALUES `+values(1, orderFields)),
		o.ID, o.TxnID, o.RequestID, o.UserID, o.SessionID, o.ItemID, o.SKUID, o.MerchantID, o.Quantity,
		o.Amount.Amount, o.Amount.Currency, string(o.State), o.CancelReason, ms(o.CreatedAt), ms(o.ExpiresAt),
		paidMs(o.PaidAt), boolInt(o.StockSettled), priceText(o.Price), linesText(o.Lines))
	if err == nil {
		return true, nil
	}
	if !s.dialect.IsUniqueViolation(err) {
		return false, s.wrap(err, "order")
	}
	stored, err := s.OrderByRequest(ctx, o.ItemID, o.UserID, o.RequestID)
	if err != nil {
		return false, err
	}
	*o = *stored
	return false, nil
}

// CreateOrders implements surge.OrderStore: one statement per surge.MaxListLimit orders, which
// names the orders it created. An insert per order cost the network store a round trip each, and
// a batch of orders waited for hundreds of them.
func (s *Store) CreateOrders(ctx context.Context, orders []surge.Order) ([]bool, error) {
	created := make([]bool, len(orders))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(orders); start += surge.MaxListLimit {
			chunk := orders[start:min(len(orders), start+surge.MaxListLimit)]
			args := make([]any, 0, len(chunk)*orderFields)
			for i := range chunk {
				o := &chunk[i]
				args = append(args, o.ID, o.TxnID, o.RequestID, o.UserID, o.SessionID, o.ItemID, o.SKUID, o.MerchantID, o.Quantity,
					o.Amount.Amount, o.Amount.Currency, string(o.State), o.CancelReason, ms(o.CreatedAt), ms(o.ExpiresAt),
					paidMs(o.PaidAt), boolInt(o.StockSettled), priceText(o.Price), linesText(o.Lines))
			}
			rows, err := tx.QueryContext(ctx, s.q(`INSERT INTO orders (`+orderColumns+`) VALUES `+
				values(len(chunk), orderFields)+` ON CONFLICT DO NOTHING RETURNING id`), args...)
			if err != nil {
				return err
			}
			ids := make(map[int64]bool, len(chunk))
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				ids[id] = true
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for i := range chunk {
				created[start+i] = ids[chunk[i].ID]
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}

// priceText is how an order's price breakdown is stored: JSON, or "" for none.
func priceText(p *surge.PriceBreakdown) string {
	if p == nil {
		return ""
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // plain integers and strings always encode
	}
	return string(b)
}

// linesText is how a checkout's lines are stored: JSON, or "" for a sale's order.
func linesText(lines []surge.OrderLine) string {
	if len(lines) == 0 {
		return ""
	}
	b, _ := json.Marshal(lines) // plain numbers: never fails
	return string(b)
}

// orderFields is the number of orderColumns.
const orderFields = 19

// values is the VALUES list of n rows of k placeholders each: (?, ?), (?, ?).
func values(n, k int) string {
	row := "(?" + strings.Repeat(", ?", k-1) + ")"
	var b strings.Builder
	b.Grow(n * (len(row) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// list is a parenthesised list of n placeholders: (?, ?, ?).
func list(n int) string {
	return "(?" + strings.Repeat(", ?", n-1) + ")"
}

// OrderByID implements surge.OrderStore.
func (s *Store) OrderByID(ctx context.Context, id int64) (*surge.Order, error) {
	return s.orderWhere(ctx, nil, `id = ?`, id)
}

// OrdersByID implements surge.OrderStore, one statement per surge.MaxListLimit orders.
func (s *Store) OrdersByID(ctx context.Context, ids []int64) ([]*surge.Order, error) {
	if len(ids) == 1 { // the statement prepared once
		o, err := s.OrderByID(ctx, ids[0])
		if surge.ErrorCode(err) == surge.ENOTFOUND {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*surge.Order{o}, nil
	}
	got, err := s.ordersByID(ctx, s.db, ids, "")
	return got, s.wrap(err, "orders")
}

// OrderByRequest implements surge.OrderStore.
func (s *Store) OrderByRequest(ctx context.Context, itemID, userID int64, requestID string) (*surge.Order, error) {
	return s.orderWhere(ctx, nil, `item_id = ? AND user_id = ? AND request_id = ?`, itemID, userID, requestID)
}

func (s *Store) orderWhere(ctx context.Context, tx *sql.Tx, where string, args ...any) (*surge.Order, error) {
	list, err := s.orders(ctx, tx, where, args...)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "order not found")
	}
	return list[0], nil
}

// OrdersByUser implements surge.OrderStore.
func (s *Store) OrdersByUser(ctx context.Context, userID int64, n int) ([]*surge.Order, error) {
	return s.orders(ctx, nil, `user_id = ? ORDER BY id DESC LIMIT ?`, userID, limit(n))
}

// orders reads the orders where where holds (a constant clause), within tx if not nil.
func (s *Store) orders(ctx context.Context, tx *sql.Tx, where string, args ...any) ([]*surge.Order, error) {
	st, err := s.stmt(ctx, tx, s.q(`SELECT `+orderRead+` FROM orders WHERE `+where))
	if err != nil {
		return nil, s.wrap(err, "orders")
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, s.wrap(err, "orders")
	}
	return s.scanOrders(rows)
}

// scanOrders reads rows of orderRead and closes them.
func (s *Store) scanOrders(rows *sql.Rows) ([]*surge.Order, error) {
	defer rows.Close()
	var list []*surge.Order
	for rows.Next() {
		var o surge.Order
		var state string
		var created, expires, paid, settled int64
		var price, lines, review string
		if err := rows.Scan(&o.ID, &o.TxnID, &o.RequestID, &o.UserID, &o.SessionID, &o.ItemID, &o.SKUID, &o.MerchantID,
			&o.Quantity, &o.Amount.Amount, &o.Amount.Currency, &state, &o.CancelReason, &created, &expires, &paid, &settled,
			&price, &lines, &o.Refunded, &review); err != nil {
			return nil, s.wrap(err, "orders")
		}
		if review != "" {
			o.Review = new(surge.Review)
			if err := json.Unmarshal([]byte(review), o.Review); err != nil {
				return nil, surge.Errorf(surge.EINTERNAL, "order %d: stored review: %v", o.ID, err)
			}
		}
		if lines != "" {
			if err := json.Unmarshal([]byte(lines), &o.Lines); err != nil {
				return nil, surge.Errorf(surge.EINTERNAL, "order %d: stored lines: %v", o.ID, err)
			}
		}
		if price != "" {
			o.Price = new(surge.PriceBreakdown)
			if err := json.Unmarshal([]byte(price), o.Price); err != nil {
				return nil, surge.Errorf(surge.EINTERNAL, "order %d: stored price: %v", o.ID, err)
			}
		}
		o.State, o.CreatedAt, o.ExpiresAt, o.StockSettled = surge.OrderState(state), fromMs(created), fromMs(expires), settled != 0
		if paid != 0 {
			t := fromMs(paid)
			o.PaidAt = &t
		}
		list = append(list, &o)
	}
	return list, s.wrap(rows.Err(), "orders")
}

// Transition implements surge.OrderStore. The conditional update is the arbiter of races: the
// first transition out of a state wins, the other finds the state changed.
func (s *Store) Transition(ctx context.Context, id int64, from, to surge.OrderState, reason string, now time.Time) (*surge.Order, error) {
	if !from.CanBecome(to) {
		return nil, surge.Errorf(surge.EINVALID, "an order cannot go from %s to %s", from, to)
	}
	var o *surge.Order
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		paid := int64(0)
		if to == surge.OrderPaid {
			paid = ms(now)
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE orders SET state = ?, cancel_reason = ?,
			paid_at = CASE WHEN CAST(? AS BIGINT) > 0 THEN CAST(? AS BIGINT) ELSE paid_at END WHERE id = ? AND state = ?`),
			string(to), reason, paid, paid, id, string(from))
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
		if n == 0 {
			return surge.Errorf(surge.ECONFLICT, "the order is %s, not %s", o.State, from)
		}
		return nil
	})
	if surge.ErrorCode(err) == surge.ECONFLICT {
		return o, err
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}

// ExpireDue implements surge.OrderStore. One conditional update cancels the whole batch, the
// same arbiter as Transition's: an order paid (or cancelled) after the due ones were picked no
// longer matches its state test and is left as it is, on either engine.
//
// Where rows are locked as they are read (PostgreSQL), the due orders are picked SKIP LOCKED: a
// second node sweeping at once takes the next due orders rather than waiting for these, and the
// two never lock the same rows in different orders.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, n int) ([]*surge.Order, error) {
	lock := ""
	if s.dialect.ForUpdate != "" {
		lock = s.dialect.ForUpdate + " SKIP LOCKED"
	}
	var list []*surge.Order
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The due orders are picked once (MATERIALIZED): a locking subquery inside IN may be
		// run again by PostgreSQL's plan and pick more than its LIMIT.
		rows, err := tx.QueryContext(ctx, s.q(`WITH due AS MATERIALIZED (
			SELECT id FROM orders WHERE state = ? AND expires_at <= ? ORDER BY expires_at LIMIT ?`+lock+`)
			UPDATE orders SET state = ?, cancel_reason = ? WHERE state = ? AND id IN (SELECT id FROM due) RETURNING `+orderRead),
			string(surge.OrderPendingPayment), ms(now), limit(n),
			string(surge.OrderCancelled), surge.CancelTimeout, string(surge.OrderPendingPayment))
		if err != nil {
			return err
		}
		list, err = s.scanOrders(rows)
		return err
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// UnsettledStock implements surge.OrderStore.
func (s *Store) UnsettledStock(ctx context.Context, n int) ([]*surge.Order, error) {
	return s.orders(ctx, nil, `stock_settled = 0 AND state IN (?, ?) ORDER BY id LIMIT ?`,
		string(surge.OrderPaid), string(surge.OrderCancelled), limit(n))
}

// MarkStockSettled implements surge.OrderStore, one statement per surge.MaxListLimit orders.
func (s *Store) MarkStockSettled(ctx context.Context, ids ...int64) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), surge.MaxListLimit)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		query := `UPDATE orders SET stock_settled = 1 WHERE id IN ` + list(len(chunk))
		if _, err := s.exec(ctx, s.q(query), args...); err != nil {
			return s.wrap(err, "order")
		}
	}
	return nil
}

// ApplyPayments implements surge.OrderStore: one transaction for a batch of notifications,
// where a transaction each (the state change, the record, each synced to disk) made a few
// hundred payments queue for SQLite's one writer for seconds, in front of the orders. Within
// it, a few statements for the whole batch (lock and read the orders, find those already paid
// by a notification, pay the pending, record the notifications), not a few per notification:
// on a network store each statement is a round trip, and a batch of a hundred took a second.
func (s *Store) ApplyPayments(ctx context.Context, ps []*surge.Payment) ([]*surge.Order, error) {
	byOrder := make([]int, len(ps)) // indexes by order id: row locks are always taken in one order
	for i := range byOrder {
		byOrder[i] = i
	}
	slices.SortStableFunc(byOrder, func(a, b int) int { return cmp.Compare(ps[a].OrderID, ps[b].OrderID) })
	var ids []int64
	for _, i := range byOrder {
		if n := len(ids); n == 0 || ids[n-1] != ps[i].OrderID {
			ids = append(ids, ps[i].OrderID)
		}
	}
	out := make([]*surge.Order, len(ps))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for i := range ps {
			ps[i].Outcome, out[i] = "", nil
		}
		orders, err := s.lockOrders(ctx, tx, ids)
		if err != nil {
			return err
		}
		paidBefore, err := s.paidByNotification(ctx, tx, ps, orders)
		if err != nil {
			return err
		}
		applied := map[int64]bool{} // orders a notification applied to, in this batch
		var pay []*surge.Payment    // the notifications that pay a pending order
		var record []*surge.Payment
		for _, i := range byOrder {
			p := ps[i]
			o := orders[p.OrderID]
			if o == nil {
				continue
			}
			switch {
			case p.TxnID != o.TxnID || p.Amount != o.Amount:
				p.Outcome = surge.PaymentMismatch
			case p.Status != surge.PaymentStatusPaid:
				p.Outcome = surge.PaymentIgnored
			case o.State == surge.OrderPendingPayment:
				paidAt := fromMs(ms(p.ReceivedAt))
				o.State, o.PaidAt, p.Outcome = surge.OrderPaid, &paidAt, surge.PaymentApplied
				pay = append(pay, p)
			case !o.State.PaidOrLater(): // cancelled: the money goes back
				p.Outcome = surge.PaymentRefundDue
			case applied[o.ID] || paidBefore[o.ID]:
				p.Outcome = surge.PaymentDuplicate
			default: // paid or later, and no notification paid it
				p.Outcome = surge.PaymentApplied
			}
			if p.Outcome == surge.PaymentApplied {
				applied[o.ID] = true
			}
			cp := *o // the order as this notification left it
			out[i] = &cp
			record = append(record, p)
		}
		if err := s.payOrders(ctx, tx, pay); err != nil {
			return err
		}
		return s.recordPayments(ctx, tx, record)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockOrders reads the orders of ids (sorted), locking them in that order where rows are
// locked as they are read.
func (s *Store) lockOrders(ctx context.Context, tx *sql.Tx, ids []int64) (map[int64]*surge.Order, error) {
	list, err := s.ordersByID(ctx, tx, ids, ` ORDER BY id`+s.dialect.ForUpdate)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]*surge.Order, len(list))
	for _, o := range list {
		out[o.ID] = o
	}
	return out, nil
}

// ordersByID reads the orders of ids, surge.MaxListLimit to a statement ending in tail.
func (s *Store) ordersByID(ctx context.Context, q querier, ids []int64, tail string) ([]*surge.Order, error) {
	var out []*surge.Order
	for start := 0; start < len(ids); start += surge.MaxListLimit {
		chunk := ids[start:min(len(ids), start+surge.MaxListLimit)]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := q.QueryContext(ctx, s.q(`SELECT `+orderRead+` FROM orders WHERE id IN `+list(len(chunk))+tail), args...)
		if err != nil {
			return nil, err
		}
		got, err := s.scanOrders(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// paidByNotification returns which of the orders, already paid or later, a recorded
// notification paid; only those a "paid" notification of this batch is about are looked up.
func (s *Store) paidByNotification(ctx context.Context, tx *sql.Tx, ps []*surge.Payment, orders map[int64]*surge.Order) (map[int64]bool, error) {
	var ids []any
	seen := map[int64]bool{}
	for _, p := range ps {
		if o := orders[p.OrderID]; o != nil && o.State.PaidOrLater() && p.Status == surge.PaymentStatusPaid && !seen[o.ID] {
			seen[o.ID] = true
			ids = append(ids, o.ID)
		}
	}
	out := map[int64]bool{}
	for start := 0; start < len(ids); start += surge.MaxListLimit {
		chunk := ids[start:min(len(ids), start+surge.MaxListLimit)]
		rows, err := tx.QueryContext(ctx, s.q(`SELECT DISTINCT order_id FROM payments WHERE outcome = ? AND order_id IN `+
			list(len(chunk))), append([]any{surge.PaymentApplied}, chunk...)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// payOrders moves the pending orders the notifications pay to paid, each paid when its
// notification was received. The orders were read pending in this transaction and are locked
// since (FOR UPDATE; SQLite's one writer), so the update names them by id alone: a test of
// their state as well led SQLite through the index of pending orders, every one of them, for
// each batch.
func (s *Store) payOrders(ctx context.Context, tx *sql.Tx, pay []*surge.Payment) error {
	for start := 0; start < len(pay); start += surge.MaxListLimit {
		chunk := pay[start:min(len(pay), start+surge.MaxListLimit)]
		args := []any{string(surge.OrderPaid)}
		for _, p := range chunk {
			args = append(args, p.OrderID, ms(p.ReceivedAt))
		}
		for _, p := range chunk {
			args = append(args, p.OrderID)
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE orders SET state = ?, paid_at = CASE id`+
			strings.Repeat(" WHEN ? THEN CAST(? AS BIGINT)", len(chunk))+` END WHERE id IN `+list(len(chunk))), args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(chunk)) {
			return fmt.Errorf("paid %d orders of %d: %v", n, len(chunk), err)
		}
	}
	return nil
}

// recordPayments records the notifications, each once by its notification id.
func (s *Store) recordPayments(ctx context.Context, tx *sql.Tx, ps []*surge.Payment) error {
	const fields = 9
	for start := 0; start < len(ps); start += surge.MaxListLimit {
		chunk := ps[start:min(len(ps), start+surge.MaxListLimit)]
		args := make([]any, 0, len(chunk)*fields)
		for _, p := range chunk {
			args = append(args, p.NotifyID, p.TxnID, p.OrderID, p.Amount.Amount, p.Amount.Currency, p.Status, ms(p.PaidAt), ms(p.ReceivedAt), p.Outcome)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO payments (notify_id, txn_id, order_id, amount_minor, currency,
			status, paid_at, received_at, outcome) VALUES `+values(len(chunk), fields)+` ON CONFLICT (notify_id) DO NOTHING`), args...); err != nil {
			return err
		}
	}
	return nil
}

// RecordPayment implements surge.OrderStore.
func (s *Store) RecordPayment(ctx context.Context, p *surge.Payment) (bool, error) {
	_, err := s.exec(ctx, s.q(`INSERT INTO payments (notify_id, txn_id, order_id, amount_minor, currency,
		status, paid_at, received_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		p.NotifyID, p.TxnID, p.OrderID, p.Amount.Amount, p.Amount.Currency, p.Status, ms(p.PaidAt), ms(p.ReceivedAt), p.Outcome)
	if err != nil && s.dialect.IsUniqueViolation(err) {
		return false, nil
	}
	return err == nil, s.wrap(err, "payment")
}

// PaymentsByOrder implements surge.OrderStore.
func (s *Store) PaymentsByOrder(ctx context.Context, orderID int64) ([]*surge.Payment, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT notify_id, txn_id, order_id, amount_minor, currency, status,
		paid_at, received_at, outcome FROM payments WHERE order_id = ? ORDER BY received_at`), orderID)
	if err != nil {
		return nil, s.wrap(err, "payments")
	}
	defer rows.Close()
	var list []*surge.Payment
	for rows.Next() {
		var p surge.Payment
		var paid, received int64
		if err := rows.Scan(&p.NotifyID, &p.TxnID, &p.OrderID, &p.Amount.Amount, &p.Amount.Currency, &p.Status,
			&paid, &received, &p.Outcome); err != nil {
			return nil, s.wrap(err, "payments")
		}
		p.PaidAt, p.ReceivedAt = fromMs(paid), fromMs(received)
		list = append(list, &p)
	}
	return list, s.wrap(rows.Err(), "payments")
}

func paidMs(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return ms(*t)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PricedOrders implements surge.OrderStore.
func (s *Store) PricedOrders(ctx context.Context, itemID int64) ([]*surge.Order, error) {
	return s.orders(ctx, nil, `item_id = ? AND price <> '' ORDER BY id`, itemID)
}

// AuditItem implements surge.OrderStore.
func (s *Store) AuditItem(ctx context.Context, itemID, limit int64) (*surge.OrderAudit, error) {
	a := &surge.OrderAudit{Orders: map[surge.OrderState]int64{}, Units: map[surge.OrderState]int64{}}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT state, COUNT(*), COALESCE(SUM(quantity), 0),
		COALESCE(SUM(CASE WHEN stock_settled = 0 THEN 1 ELSE 0 END), 0), COALESCE(SUM(amount_minor), 0)
		FROM orders WHERE item_id = ? GROUP BY state`), itemID)
	if err != nil {
		return nil, s.wrap(err, "orders")
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n, units, unsettled, amount int64
		if err := rows.Scan(&state, &n, &units, &unsettled, &amount); err != nil {
			return nil, s.wrap(err, "orders")
		}
		st := surge.OrderState(state)
		a.Orders[st], a.Units[st] = n, units
		switch st {
		case surge.OrderPaid, surge.OrderConsumed, surge.OrderReviewed, surge.OrderRefunded:
			a.PaidAmount += amount
		}
		if st == surge.OrderCancelled {
			a.UnreleasedCancelled = unsettled
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, "orders")
	}
	// 'applied' is surge.PaymentApplied: the notification that paid the order.
	err = s.db.QueryRowContext(ctx, s.q(`SELECT
		(SELECT COUNT(*) FROM (SELECT user_id FROM orders WHERE item_id = ? AND state <> 'cancelled'
			GROUP BY user_id HAVING SUM(quantity) > ?) over_limit),
		(SELECT COUNT(*) FROM orders o WHERE o.item_id = ? AND o.state IN ('paid', 'consumed', 'reviewed', 'refunded')
			AND (SELECT COUNT(*) FROM payments p WHERE p.order_id = o.id AND p.outcome = 'applied') <> 1)`),
		itemID, limit, itemID).Scan(&a.UsersOverLimit, &a.PaidWithoutOnePayment)
	if err != nil {
		return nil, s.wrap(err, "orders")
	}
	return a, nil
}
