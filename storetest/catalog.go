package storetest

import (
	"testing"

	"github.com/surgecommerce/surge"
)

func (f *fixture) spu(merchant int64, code string) *surge.SPU {
	f.t.Helper()
	p := &surge.SPU{ID: f.id(), MerchantID: merchant, Code: code, Title: "Phone " + code, CategoryL1: "Digital",
		CategoryL2: "Phones", Images: []string{"https://img.example/" + code + ".jpg"}, CreatedAt: f.now, UpdatedAt: f.now}
	must(f.t, "CreateSPU", f.s.CreateSPU(f.ctx, p))
	return p
}

func (f *fixture) sku(p *surge.SPU, code string, stock int64) *surge.SKU {
	f.t.Helper()
	k := &surge.SKU{ID: f.id(), SPUID: p.ID, MerchantID: p.MerchantID, Code: code, Title: p.Title + " " + code,
		Price: surge.Money{Amount: 399900, Currency: "CNY"}, CostPrice: &surge.Money{Amount: 250000, Currency: "CNY"},
		Stock: stock, CreatedAt: f.now, UpdatedAt: f.now}
	must(f.t, "CreateSKU", f.s.CreateSKU(f.ctx, k))
	return k
}

// RunCatalog checks the surge.CatalogStore contract.
func RunCatalog(t *testing.T, open Open) {
	t.Run("SPUs", func(t *testing.T) {
		f := newFixture(t, open)
		p := f.spu(100, "P-1")
		got, err := f.s.SPUByID(f.ctx, p.ID)
		if err != nil || got.Title != p.Title || len(got.Images) != 1 || got.Images[0] != p.Images[0] || !got.CreatedAt.Equal(f.now) {
			t.Fatalf("SPUByID = %+v, %v; want %+v", got, err, p)
		}
		dup := *p
		dup.ID = f.id()
		wantCode(t, "CreateSPU(same code, same merchant)", f.s.CreateSPU(f.ctx, &dup), surge.ECONFLICT)
		f.spu(200, "P-1") // another merchant may use the same code

		p.Title, p.Images = "Renamed", nil
		must(t, "UpdateSPU", f.s.UpdateSPU(f.ctx, p))
		got, _ = f.s.SPUByID(f.ctx, p.ID)
		if got.Title != "Renamed" || len(got.Images) != 0 {
			t.Fatalf("SPUByID after update = %+v", got)
		}
		ghost := *p
		ghost.ID = 7
		wantCode(t, "UpdateSPU(unknown)", f.s.UpdateSPU(f.ctx, &ghost), surge.ENOTFOUND)
		_, err = f.s.SPUByID(f.ctx, 7)
		wantCode(t, "SPUByID(unknown)", err, surge.ENOTFOUND)
		p2 := f.spu(100, "P-2")
		p2.Code = "P-1"
		wantCode(t, "UpdateSPU(code taken)", f.s.UpdateSPU(f.ctx, p2), surge.ECONFLICT)
	})

	t.Run("ListPages", func(t *testing.T) {
		f := newFixture(t, open)
		var mine []int64
		for i := range 7 {
			mine = append(mine, f.spu(100, "M"+string(rune('a'+i))).ID)
			f.spu(200, "O"+string(rune('a'+i)))
		}
		var seen []int64
		after := int64(0)
		for {
			page, err := f.s.ListSPUs(f.ctx, surge.CatalogFilter{MerchantID: 100, AfterID: after, Limit: 3})
			must(t, "ListSPUs", err)
			if len(page) == 0 {
				break
			}
			for _, p := range page {
				if p.MerchantID != 100 {
					t.Fatalf("ListSPUs(merchant 100) returned merchant %d", p.MerchantID)
				}
				seen = append(seen, p.ID)
			}
			after = page[len(page)-1].ID
		}
		if len(seen) != len(mine) {
			t.Fatalf("paged through %d SPUs; want %d", len(seen), len(mine))
		}
		for i := range mine {
			if seen[i] != mine[i] {
				t.Fatalf("page order %v; want %v", seen, mine)
			}
		}
		all, _ := f.s.ListSPUs(f.ctx, surge.CatalogFilter{})
		if len(all) != 14 {
			t.Fatalf("ListSPUs(all) = %d rows; want 14", len(all))
		}
	})

	t.Run("SKUs", func(t *testing.T) {
		f := newFixture(t, open)
		p := f.spu(100, "P")
		k := f.sku(p, "K-1", 50)
		got, err := f.s.SKUByID(f.ctx, k.ID)
		if err != nil || got.Price != k.Price || got.CostPrice == nil || *got.CostPrice != *k.CostPrice || got.Stock != 50 {
			t.Fatalf("SKUByID = %+v, %v; want %+v", got, err, k)
		}
		dup := *k
		dup.ID = f.id()
		wantCode(t, "CreateSKU(code taken)", f.s.CreateSKU(f.ctx, &dup), surge.ECONFLICT)
		orphan := *k
		orphan.ID, orphan.Code, orphan.SPUID = f.id(), "K-2", 9
		wantCode(t, "CreateSKU(unknown spu)", f.s.CreateSKU(f.ctx, &orphan), surge.ENOTFOUND)
		theirs := *k
		theirs.ID, theirs.Code, theirs.MerchantID = f.id(), "K-3", 200
		wantCode(t, "CreateSKU(another merchant's spu)", f.s.CreateSKU(f.ctx, &theirs), surge.EINVALID)

		k.Stock, k.Price.Amount = 40, 100
		must(t, "UpdateSKU", f.s.UpdateSKU(f.ctx, k, f.now))
		got, _ = f.s.SKUByID(f.ctx, k.ID)
		if got.Stock != 40 || got.Price.Amount != 100 {
			t.Fatalf("SKUByID after update = %+v", got)
		}
		ghost := *k
		ghost.ID = 5
		wantCode(t, "UpdateSKU(unknown)", f.s.UpdateSKU(f.ctx, &ghost, f.now), surge.ENOTFOUND)

		other := f.spu(100, "Q")
		f.sku(other, "K-9", 1)
		list, err := f.s.ListSKUs(f.ctx, surge.CatalogFilter{SPUID: p.ID})
		if err != nil || len(list) != 1 || list[0].ID != k.ID {
			t.Fatalf("ListSKUs(spu) = %v, %v; want [%d]", list, err, k.ID)
		}
	})

	t.Run("Import", func(t *testing.T) { runImport(t, open) })
}

func importRow(spu, sku string, stock int64) surge.ImportRow {
	return surge.ImportRow{SPUCode: spu, SPUTitle: "Title " + spu, CategoryL1: "Food", CategoryL2: "Snacks",
		SKUCode: sku, SKUTitle: "Title " + sku, PriceMinor: 990, CostMinor: 500, Currency: "CNY", Stock: stock}
}

func runImport(t *testing.T, open Open) {
	f := newFixture(t, open)
	rep, err := f.s.Import(f.ctx, 100, NewRows(importRow("S1", "A", 10), importRow("S1", "B", 20), importRow("S2", "C", 30)), f.now)
	if err != nil || !rep.Applied || rep.SPUsCreated != 2 || rep.SKUsCreated != 3 || rep.SPUsUpdated != 1 || len(rep.Errors) != 0 {
		t.Fatalf("Import(new) = %+v, %v; want applied, 2 SPUs and 3 SKUs created", rep, err)
	}
	rep, err = f.s.Import(f.ctx, 100, NewRows(importRow("S1", "A", 11)), f.now)
	if err != nil || !rep.Applied || rep.SKUsUpdated != 1 || rep.SKUsCreated != 0 {
		t.Fatalf("Import(again) = %+v, %v; want one SKU updated", rep, err)
	}
	skus, _ := f.s.ListSKUs(f.ctx, surge.CatalogFilter{MerchantID: 100})
	if len(skus) != 3 || skus[0].Stock != 11 {
		t.Fatalf("after re-import: %d SKUs, first stock %d; want 3 and 11", len(skus), skus[0].Stock)
	}

	bad := importRow("S3", "D", 5)
	bad.PriceMinor = -1
	moved := importRow("S2", "A", 5) // A belongs to S1
	rep, err = f.s.Import(f.ctx, 100, NewRows(importRow("S3", "E", 1), moved, bad, importRow("S4", "F", 1)), f.now)
	if err != nil || rep.Applied || len(rep.Errors) != 2 || rep.Errors[0].Line != 2 || rep.Errors[1].Line != 3 ||
		rep.Errors[0].Code != surge.ECONFLICT || rep.Errors[1].Code != surge.EINVALID || rep.Lines != 4 {
		t.Fatalf("Import(with bad lines) = %+v, %v; want not applied, errors on lines 2 and 3", rep, err)
	}
	spus, _ := f.s.ListSPUs(f.ctx, surge.CatalogFilter{MerchantID: 100})
	if len(spus) != 2 {
		t.Fatalf("after a failed import there are %d SPUs; want the 2 from before (all or nothing)", len(spus))
	}

	var many []surge.ImportRow
	for i := range surge.MaxImportErrors + 5 {
		r := importRow("S", "X"+string(rune('A'+i%26))+string(rune('A'+i/26)), -1)
		many = append(many, r)
	}
	rep, _ = f.s.Import(f.ctx, 100, NewRows(many...), f.now)
	if len(rep.Errors) != surge.MaxImportErrors || rep.ErrorsOmitted != 5 {
		t.Fatalf("Import(%d bad lines) reported %d + %d omitted; want %d + 5", len(many), len(rep.Errors), rep.ErrorsOmitted, surge.MaxImportErrors)
	}
}
