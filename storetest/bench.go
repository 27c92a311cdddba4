package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// BenchWrites measures the writes of a sale: orders written 500 to a transaction, and the
// payments of four in five applied 64 notifications to a transaction (a "processing" and a
// "paid" each), reported per order. The fifth is abandoned and stays pending, as in a sale, so
// pending orders pile up as they do before they expire.
func BenchWrites(b *testing.B, db surge.OrderStore) {
	ctx := context.Background()
	now := time.Now().UTC()
	base := time.Now().UnixNano() // a database kept between runs gets new ids
	var created, paid time.Duration
	for i := 0; i < b.N; i += 500 {
		orders := make([]surge.Order, 500)
		for j := range orders {
			id := base + int64(i+j+1)
			orders[j] = surge.Order{ID: id, TxnID: fmt.Sprint("T", id), RequestID: fmt.Sprint("r", id), UserID: id, SessionID: 1,
				ItemID: 2, SKUID: 3, MerchantID: 4, Quantity: 1, Amount: surge.Money{Amount: 100, Currency: "CNY"},
				State: surge.OrderPendingPayment, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		}
		start := time.Now()
		if _, err := db.CreateOrders(ctx, orders); err != nil {
			b.Fatal(err)
		}
		created += time.Since(start)
		start = time.Now()
		for lo := 0; lo < len(orders); lo += 32 {
			var ps []*surge.Payment
			for k, o := range orders[lo:min(lo+32, len(orders))] {
				if k%5 == 4 {
					continue
				}
				for _, st := range []string{"processing", "paid"} {
					ps = append(ps, &surge.Payment{NotifyID: fmt.Sprint(o.TxnID, st), TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount,
						Status: st, PaidAt: now, ReceivedAt: now})
				}
			}
			if _, err := db.ApplyPayments(ctx, ps); err != nil {
				b.Fatal(err)
			}
		}
		paid += time.Since(start)
	}
	n := float64(((b.N + 499) / 500) * 500)
	b.ReportMetric(float64(created.Microseconds())/n, "us-create/order")
	b.ReportMetric(float64(paid.Microseconds())/n, "us-pay/order")
}
