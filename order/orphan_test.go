package order_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/snowflake"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/storetest"
)

type nowhere struct{}

func (nowhere) Emit(string, string, []byte) error { return nil }

func (nowhere) PublishAll(context.Context, string, []string, [][]byte) error { return nil }

// idAt makes an order id as if issued at t.
func idAt(t time.Time, seq int64) int64 {
	return t.Sub(snowflake.Epoch).Milliseconds()<<(snowflake.WorkerBits+snowflake.SequenceBits) | seq
}

// A reservation whose order never got recorded gets one from the sweep, once it is old enough;
// reservations with orders, young ones and settled ones are left alone.
func TestOrphanReservationsGetTheirOrders(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := storetest.SQLite(t)
	eng, err := stock.Open(stock.Options{Dir: filepath.Join(dir, "stock")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	spu := &surge.SPU{ID: 1, MerchantID: 9, Code: "P", Title: "P", CategoryL1: "C", Images: []string{}, CreatedAt: now, UpdatedAt: now}
	sku := &surge.SKU{ID: 2, SPUID: 1, MerchantID: 9, Code: "K", Title: "K", Price: surge.Money{Amount: 500, Currency: "CNY"},
		CostPrice: &surge.Money{Amount: 1, Currency: "CNY"}, Stock: 10, CreatedAt: now, UpdatedAt: now}
	se := &surge.Session{ID: 3, Name: "S", StartAt: now.Add(time.Minute), EndAt: now.Add(time.Hour), PayTimeoutSec: 900, CreatedAt: now, UpdatedAt: now}
	it := &surge.SessionItem{ID: 4, SessionID: 3, SKUID: 2, Allotted: 10, SalePrice: surge.Money{Amount: 100, Currency: "CNY"}, PerUserLimit: 2}
	for _, err := range []error{db.CreateSPU(ctx, spu), db.CreateSKU(ctx, sku), db.CreateSession(ctx, se), db.AddItem(ctx, it, now),
		eng.Load(ctx, surge.StockItem{ID: 4, Allotted: 10, PerUserLimit: 2})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.PublishSession(ctx, 3, now); err != nil {
		t.Fatal(err)
	}
	old, young := now.Add(-2*order.OrphanAfter), now
	reserve := func(user, orderID int64, req string) {
		if _, err := eng.Reserve(ctx, surge.ReserveRequest{ItemID: 4, UserID: user, Quantity: 2, RequestID: req, OrderID: orderID}); err != nil {
			t.Fatal(err)
		}
	}
	orphan, withOrder, fresh, settled := idAt(old, 1), idAt(old, 2), idAt(young, 3), idAt(old, 4)
	reserve(1, orphan, "orphan")
	reserve(2, withOrder, "has-order")
	reserve(3, fresh, "fresh")
	reserve(4, settled, "settled")
	if err := eng.Release(ctx, 4, "settled"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateOrder(ctx, &surge.Order{ID: withOrder, TxnID: "T-has", RequestID: "has-order", UserID: 2, SessionID: 3,
		ItemID: 4, SKUID: 2, MerchantID: 9, Quantity: 2, Amount: surge.Money{Amount: 200, Currency: "CNY"},
		State: surge.OrderPendingPayment, CreatedAt: old, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	svc := order.New(db, db, eng, nowhere{}, order.Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)), func() time.Time { return now })
	for range 2 { // the second sweep finds nothing left to do
		n, err := svc.SweepOrphans(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n > 1 {
			t.Fatalf("SweepOrphans made %d orders; want 1 at most", n)
		}
	}
	o, err := db.OrderByID(ctx, orphan)
	if err != nil || o.UserID != 1 || o.RequestID != "orphan" || o.Quantity != 2 || o.Amount.Amount != 200 ||
		o.State != surge.OrderPendingPayment || !o.ExpiresAt.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("the orphan's order = %+v, %v", o, err)
	}
	for _, id := range []int64{fresh, settled} {
		if _, err := db.OrderByID(ctx, id); surge.ErrorCode(err) != surge.ENOTFOUND {
			t.Fatalf("order %d = %v; want none (too young, or settled)", id, err)
		}
	}
}
