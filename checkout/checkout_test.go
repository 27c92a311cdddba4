package checkout_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/storetest"
)

type nowhere struct{}

func (nowhere) Emit(string, string, []byte) error                            { return nil }
func (nowhere) PublishAll(context.Context, string, []string, [][]byte) error { return nil }

// A checkout nobody pays expires with the sweep, and its units go back to its SKU once, however
// often the sweep runs.
func TestUnpaidCheckoutExpires(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	eng, err := stock.Open(stock.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ids := storetest.IDs()
	spuID, _ := ids()
	if err := db.CreateSPU(ctx, &surge.SPU{ID: spuID, MerchantID: 1, Code: "T", Title: "Tea", CategoryL1: "Home"}); err != nil {
		t.Fatal(err)
	}
	skuID, _ := ids()
	if err := db.CreateSKU(ctx, &surge.SKU{ID: skuID, SPUID: spuID, MerchantID: 1, Code: "T-1", Title: "Tea 1",
		Price: surge.Money{Amount: 1500, Currency: "CNY"}, CostPrice: &surge.Money{Amount: 500, Currency: "CNY"}, Stock: 3}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	log := slog.New(slog.DiscardHandler)
	co := checkout.New(db, db, nil, nil, nil, log, ids, clock, time.Minute)
	o, err := co.Checkout(ctx, surge.Actor{UserID: 9, Role: surge.RoleShopper}, checkout.Request{RequestID: "r",
		Lines: []coupon.CartLine{{SKU: skuID, Quantity: 2}}})
	if err != nil || o.Amount.Amount != 3000 || o.Price != nil {
		t.Fatalf("Checkout = %+v, %v; want ¥30.00 to pay", o, err)
	}
	stockLeft := func() int64 {
		k, err := db.SKUByID(ctx, skuID)
		if err != nil {
			t.Fatal(err)
		}
		return k.Stock
	}
	if stockLeft() != 1 {
		t.Fatalf("stock after the checkout = %d; want 1", stockLeft())
	}
	now = now.Add(2 * time.Minute)
	orders := order.New(db, db, eng, nowhere{}, order.Config{}, log, clock)
	for range 2 {
		if _, err := orders.SweepAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := db.OrderByID(ctx, o.ID); err != nil || got.State != surge.OrderCancelled || got.CancelReason != surge.CancelTimeout || stockLeft() != 3 {
		t.Fatalf("after the sweeps: %+v, %v, stock %d; want cancelled for the timeout, all 3 back", got, err, stockLeft())
	}
}
