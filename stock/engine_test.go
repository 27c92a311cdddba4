package stock_test

import (
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/stock/stocktest"
)

func open(t *testing.T, dir string) *stock.Engine {
	t.Helper()
	e, err := stock.Open(stock.Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return e
}

func TestConformance(t *testing.T) {
	stocktest.Run(t, func(t *testing.T) surge.StockEngine {
		e := open(t, t.TempDir())
		t.Cleanup(func() {
			if err := e.Check(); err != nil {
				t.Errorf("invariants: %v", err)
			}
			e.Close()
		})
		return e
	}, stocktest.Options{RequestIDsSeenAcrossUsers: true})
}
