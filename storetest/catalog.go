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

		up, err := f.s.UpdateSPU(f.ctx, p.ID, func(p *surge.SPU) error { p.Title, p.Images = "Renamed", nil; return nil })
		must(t, "UpdateSPU", err)
		got, _ = f.s.SPUByID(f.ctx, p.ID)
		if got.Title != "Renamed" || len(got.Images) != 0 || up.Title != "Renamed" || got.Code != "P-1" {
			t.Fatalf("SPUByID after update = %+v", got)
		}
		refused := surge.Errorf(surge.EFORBIDDEN, "no")
		_, err = f.s.UpdateSPU(f.ctx, p.ID, func(p *surge.SPU) error { p.Title = "Not written"; return refused })
		wantCode(t, "UpdateSPU(change refuses)", err, surge.EFORBIDDEN)
		if got, _ = f.s.SPUByID(f.ctx, p.ID); got.Title != "Renamed" {
			t.Fatalf("a refused change was written: %+v", got)
		}
		_, err = f.s.UpdateSPU(f.ctx, 7, func(*surge.SPU) error { return nil })
		wantCode(t, "UpdateSPU(unknown)", err, surge.ENOTFOUND)
		_, err = f.s.SPUByID(f.ctx, 7)
		wantCode(t, "SPUByID(unknown)", err, surge.ENOTFOUND)
		p2 := f.spu(100, "P-2")
		_, err = f.s.UpdateSPU(f.ctx, p2.ID, func(p *surge.SPU) error { p.Code = "P-1"; return nil })
		wantCode(t, "UpdateSPU(code taken)", err, surge.ECONFLICT)
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

		_, err = f.s.UpdateSKU(f.ctx, k.ID, f.now, func(k *surge.SKU) error { k.Stock, k.Price.Amount = 40, 100; return nil })
		must(t, "UpdateSKU", err)
		got, _ = f.s.SKUByID(f.ctx, k.ID)
		if got.Stock != 40 || got.Price.Amount != 100 || got.CostPrice.Amount != k.CostPrice.Amount {
			t.Fatalf("SKUByID after update = %+v", got)
		}
		_, err = f.s.UpdateSKU(f.ctx, 5, f.now, func(*surge.SKU) error { return nil })
		wantCode(t, "UpdateSKU(unknown)", err, surge.ENOTFOUND)

		other := f.spu(100, "Q")
		f.sku(other, "K-9", 1)
		list, err := f.s.ListSKUs(f.ctx, surge.CatalogFilter{SPUID: p.ID})
		if err != nil || len(list) != 1 || list[0].ID != k.ID {
			t.Fatalf("ListSKUs(spu) = %v, %v; want [%d]", list, err, k.ID)
		}
	})

	t.Run("Import", func(t *testing.T) { runImport(t, open) })
}

func importRow(line int, spu, sku string, stock int64) surge.ImportRow {
	return surge.ImportRow{Line: line, SPUCode: spu, SPUTitle: "Title " + spu, CategoryL1: "Food", CategoryL2: "Snacks",
		SKUCode: sku, SKUTitle: "Title " + sku, PriceMinor: 990, CostMinor: 500, Currency: "CNY", Stock: stock}
}

func runImport(t *testing.T, open Open) {
	f := newFixture(t, open)
	rep, err := f.s.Import(f.ctx, 100, []surge.ImportRow{importRow(1, "S1", "A", 10), importRow(2, "S1", "B", 20), importRow(3, "S2", "C", 30)}, f.now)
	if err != nil || !rep.Applied || rep.SPUsCreated != 2 || rep.SKUsCreated != 3 || rep.SPUsUpdated != 1 || len(rep.Errors) != 0 {
		t.Fatalf("Import(new) = %+v, %v; want applied, 2 SPUs and 3 SKUs created", rep, err)
	}
	// An SPU edited with images and a description keeps them when a file without those columns
	// is imported again.
	spus, _ := f.s.ListSPUs(f.ctx, surge.CatalogFilter{MerchantID: 100})
	_, err = f.s.UpdateSPU(f.ctx, spus[0].ID, func(p *surge.SPU) error {
		p.Images, p.Description = []string{"https://img.example/s1.jpg"}, "Crunchy"
		return nil
	})
	must(t, "UpdateSPU", err)
	rep, err = f.s.Import(f.ctx, 100, []surge.ImportRow{importRow(1, "S1", "A", 11)}, f.now)
	if err != nil || !rep.Applied || rep.SKUsUpdated != 1 || rep.SKUsCreated != 0 {
		t.Fatalf("Import(again) = %+v, %v; want one SKU updated", rep, err)
	}
	kept, _ := f.s.SPUByID(f.ctx, spus[0].ID)
	if len(kept.Images) != 1 || kept.Description != "Crunchy" {
		t.Fatalf("re-import without images or description changed them: %+v", kept)
	}
	skus, _ := f.s.ListSKUs(f.ctx, surge.CatalogFilter{MerchantID: 100})
	if len(skus) != 3 || skus[0].Stock != 11 {
		t.Fatalf("after re-import: %d SKUs, first stock %d; want 3 and 11", len(skus), skus[0].Stock)
	}
	empty, images := "", []string{}
	clear := importRow(1, "S1", "A", 11)
	clear.Description, clear.Images = &empty, &images
	if rep, err = f.s.Import(f.ctx, 100, []surge.ImportRow{clear}, f.now); err != nil || !rep.Applied {
		t.Fatalf("Import(clearing) = %+v, %v", rep, err)
	}
	if cleared, _ := f.s.SPUByID(f.ctx, spus[0].ID); len(cleared.Images) != 0 || cleared.Description != "" {
		t.Fatalf("re-import with empty images and description kept them: %+v", cleared)
	}

	moved := importRow(2, "S2", "A", 5) // A belongs to S1
	rep, err = f.s.Import(f.ctx, 100, []surge.ImportRow{importRow(1, "S3", "E", 1), moved, importRow(3, "S4", "F", 1)}, f.now)
	if err != nil || rep.Applied || len(rep.Errors) != 1 || rep.Errors[0].Line != 2 || rep.Errors[0].Code != surge.ECONFLICT {
		t.Fatalf("Import(with a conflicting line) = %+v, %v; want not applied, an error on line 2", rep, err)
	}
	spus, _ = f.s.ListSPUs(f.ctx, surge.CatalogFilter{MerchantID: 100})
	if len(spus) != 2 {
		t.Fatalf("after a failed import there are %d SPUs; want the 2 from before (all or nothing)", len(spus))
	}
}
