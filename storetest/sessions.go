package storetest

import (
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

func (f *fixture) session(start, end time.Time) *surge.Session {
	f.t.Helper()
	s := &surge.Session{ID: f.id(), Name: "10:00 flash sale", StartAt: start, EndAt: end, CreatedAt: f.now, UpdatedAt: f.now,
		PayTimeoutSec: 900}
	must(f.t, "CreateSession", f.s.CreateSession(f.ctx, s))
	return s
}

func (f *fixture) item(s *surge.Session, k *surge.SKU, allotted int64) (*surge.SessionItem, error) {
	it := &surge.SessionItem{ID: f.id(), SessionID: s.ID, SKUID: k.ID, Allotted: allotted,
		SalePrice: surge.Money{Amount: 99, Currency: "CNY"}, PerUserLimit: 1}
	return it, f.s.AddItem(f.ctx, it, f.now)
}

// RunSessions checks the surge.SessionStore contract.
func RunSessions(t *testing.T, open Open) {
	t.Run("EditableUntilStart", func(t *testing.T) {
		f := newFixture(t, open)
		k := f.sku(f.spu(100, "P"), "K", 10)
		up := f.session(f.now.Add(time.Hour), f.now.Add(2*time.Hour))
		live := f.session(f.now.Add(-time.Minute), f.now.Add(time.Hour))

		rename := func(se *surge.Session) error { se.Name = "renamed"; return nil }
		_, err := f.s.UpdateSession(f.ctx, up.ID, f.now, rename)
		must(t, "UpdateSession(upcoming)", err)
		_, err = f.s.UpdateSession(f.ctx, live.ID, f.now, rename)
		wantCode(t, "UpdateSession(live)", err, surge.ECONFLICT)
		_, err = f.s.UpdateSession(f.ctx, 12345, f.now, rename)
		wantCode(t, "UpdateSession(unknown)", err, surge.ENOTFOUND)
		_, err = f.item(live, k, 1)
		wantCode(t, "AddItem(live session)", err, surge.ECONFLICT)

		it, err := f.item(up, k, 5)
		must(t, "AddItem", err)
		if it.MerchantID != 100 || it.Title != k.Title {
			t.Fatalf("AddItem filled merchant %d, title %q; want 100, %q", it.MerchantID, it.Title, k.Title)
		}
		got, err := f.s.SessionByID(f.ctx, up.ID)
		if err != nil || got.Name != "renamed" || len(got.Items) != 1 || got.Items[0].Allotted != 5 || got.Items[0].Title != k.Title {
			t.Fatalf("SessionByID = %+v, %v", got, err)
		}
		upd, err := f.s.UpdateItem(f.ctx, up.ID, it.ID, f.now, func(it *surge.SessionItem) error { it.Allotted, it.PerUserLimit = 7, 2; return nil })
		if err != nil || upd.Allotted != 7 || upd.PerUserLimit != 2 || upd.SKUID != k.ID {
			t.Fatalf("UpdateItem = %+v, %v", upd, err)
		}
		later := f.now.Add(90 * time.Minute)
		_, err = f.s.UpdateItem(f.ctx, up.ID, it.ID, later, func(*surge.SessionItem) error { return nil })
		wantCode(t, "UpdateItem(after start)", err, surge.ECONFLICT)
		_, err = f.s.UpdateItem(f.ctx, up.ID, 999, f.now, func(*surge.SessionItem) error { return nil })
		wantCode(t, "UpdateItem(unknown item)", err, surge.ENOTFOUND)
		wantCode(t, "DeleteItem(after start)", f.s.DeleteItem(f.ctx, up.ID, it.ID, later), surge.ECONFLICT)
		must(t, "DeleteItem", f.s.DeleteItem(f.ctx, up.ID, it.ID, f.now))
		wantCode(t, "DeleteItem(again)", f.s.DeleteItem(f.ctx, up.ID, it.ID, f.now), surge.ENOTFOUND)
		_, err = f.s.SessionByID(f.ctx, 3)
		wantCode(t, "SessionByID(unknown)", err, surge.ENOTFOUND)
	})

	t.Run("AllotmentWithinStock", func(t *testing.T) {
		f := newFixture(t, open)
		k := f.sku(f.spu(100, "P"), "K", 10)
		a := f.session(f.now.Add(time.Hour), f.now.Add(2*time.Hour))
		b := f.session(f.now.Add(3*time.Hour), f.now.Add(4*time.Hour))
		_, err := f.item(a, k, 11)
		wantCode(t, "AddItem(above stock)", err, surge.ECONFLICT)
		ia, err := f.item(a, k, 6)
		must(t, "AddItem(6 of 10)", err)
		_, err = f.item(a, k, 1)
		wantCode(t, "AddItem(same sku twice)", err, surge.ECONFLICT)
		_, err = f.item(b, k, 5)
		wantCode(t, "AddItem(6 + 5 of 10)", err, surge.ECONFLICT)
		ib, err := f.item(b, k, 4)
		must(t, "AddItem(6 + 4 of 10)", err)
		allot := func(n int64) func(*surge.SessionItem) error {
			return func(it *surge.SessionItem) error { it.Allotted = n; return nil }
		}
		_, err = f.s.UpdateItem(f.ctx, a.ID, ia.ID, f.now, allot(7))
		wantCode(t, "UpdateItem(7 + 4 of 10)", err, surge.ECONFLICT)
		_, err = f.s.UpdateItem(f.ctx, a.ID, ia.ID, f.now, allot(6))
		must(t, "UpdateItem(same allotment)", err)

		stock := func(n int64, currency string) func(*surge.SKU) error {
			return func(k *surge.SKU) error {
				k.Stock, k.Price.Currency, k.CostPrice.Currency = n, currency, currency
				return nil
			}
		}
		_, err = f.s.UpdateSKU(f.ctx, k.ID, f.now, stock(9, "CNY"))
		wantCode(t, "UpdateSKU(stock below allotments)", err, surge.ECONFLICT)
		_, err = f.s.UpdateSKU(f.ctx, k.ID, f.now, stock(10, "USD"))
		wantCode(t, "UpdateSKU(currency change under allotments)", err, surge.ECONFLICT)
		_, err = f.s.UpdateSKU(f.ctx, k.ID, f.now, stock(10, "CNY"))
		must(t, "UpdateSKU(stock equal to allotments)", err)

		must(t, "DeleteItem", f.s.DeleteItem(f.ctx, b.ID, ib.ID, f.now))
		_, err = f.item(b, k, 4)
		must(t, "AddItem(after delete)", err)

		// Once both sessions have ended, their allotments no longer hold stock.
		afterB := f.now.Add(5 * time.Hour)
		_, err = f.s.UpdateSKU(f.ctx, k.ID, afterB, stock(0, "USD"))
		must(t, "UpdateSKU(after every session ended)", err)

		usd := &surge.SessionItem{ID: f.id(), SessionID: b.ID, SKUID: f.sku(f.spu(100, "Q"), "Q", 5).ID, Allotted: 1,
			SalePrice: surge.Money{Amount: 1, Currency: "USD"}, PerUserLimit: 1}
		wantCode(t, "AddItem(other currency)", f.s.AddItem(f.ctx, usd, f.now), surge.EINVALID)
		ghost := &surge.SessionItem{ID: f.id(), SessionID: b.ID, SKUID: 12345, Allotted: 1,
			SalePrice: surge.Money{Amount: 1, Currency: "CNY"}, PerUserLimit: 1}
		wantCode(t, "AddItem(unknown sku)", f.s.AddItem(f.ctx, ghost, f.now), surge.ENOTFOUND)
		ghost.SessionID, ghost.SKUID = 1, k.ID
		wantCode(t, "AddItem(unknown session)", f.s.AddItem(f.ctx, ghost, f.now), surge.ENOTFOUND)
	})

	t.Run("ConcurrentAllotmentsNeverExceedStock", func(t *testing.T) {
		f := newFixture(t, open)
		k := f.sku(f.spu(100, "P"), "K", 10)
		var sessions []*surge.Session
		for i := range 8 {
			sessions = append(sessions, f.session(f.now.Add(time.Duration(i+1)*time.Hour), f.now.Add(time.Duration(i+2)*time.Hour)))
		}
		won := concurrently(len(sessions), func(i int) error { _, err := f.item(sessions[i], k, 3); return err })
		if won != 3 {
			t.Fatalf("%d concurrent allotments of 3 out of 10 succeeded; want 3", won)
		}
	})

	t.Run("ListCurrentAndUpcoming", func(t *testing.T) {
		f := newFixture(t, open)
		k := f.sku(f.spu(100, "P"), "K", 10)
		f.session(f.now.Add(-2*time.Hour), f.now.Add(-time.Hour)) // ended
		later := f.session(f.now.Add(5*time.Hour), f.now.Add(6*time.Hour))
		live := f.session(f.now.Add(-time.Hour), f.now.Add(time.Hour))
		soon := f.session(f.now.Add(time.Hour), f.now.Add(2*time.Hour))
		if _, err := f.item(soon, k, 2); err != nil {
			t.Fatal(err)
		}
		list, err := f.s.ListSessions(f.ctx, surge.SessionFilter{EndAfter: f.now})
		must(t, "ListSessions", err)
		want := []int64{live.ID, soon.ID, later.ID}
		if len(list) != len(want) {
			t.Fatalf("ListSessions = %d sessions; want %d", len(list), len(want))
		}
		for i, s := range list {
			if s.ID != want[i] {
				t.Fatalf("ListSessions[%d] = %d; want %d (by start time, ended left out)", i, s.ID, want[i])
			}
		}
		if len(list[1].Items) != 1 || len(list[0].Items) != 0 || list[1].Items[0].SKUID != k.ID {
			t.Fatalf("ListSessions items = %v / %v", list[0].Items, list[1].Items)
		}
		two, _ := f.s.ListSessions(f.ctx, surge.SessionFilter{EndAfter: f.now, Limit: 2})
		if len(two) != 2 {
			t.Fatalf("ListSessions(limit 2) = %d", len(two))
		}
	})
}

// RunPublish checks publishing: it freezes a session, is idempotent, and refuses ended sessions.
func RunPublish(t *testing.T, open Open) {
	f := newFixture(t, open)
	k := f.sku(f.spu(100, "P"), "K", 10)
	se := f.session(f.now.Add(time.Hour), f.now.Add(2*time.Hour))
	it, err := f.item(se, k, 4)
	must(t, "AddItem", err)
	pub, err := f.s.PublishSession(f.ctx, se.ID, f.now)
	if err != nil || pub.PublishedAt == nil || len(pub.Items) != 1 || pub.PayTimeoutSec != 900 {
		t.Fatalf("PublishSession = %+v, %v; want published with its item and the default pay timeout", pub, err)
	}
	again, err := f.s.PublishSession(f.ctx, se.ID, f.now.Add(time.Minute))
	if err != nil || !again.PublishedAt.Equal(*pub.PublishedAt) {
		t.Fatalf("PublishSession(again) = %+v, %v; want it unchanged", again, err)
	}
	_, err = f.s.UpdateSession(f.ctx, se.ID, f.now, func(*surge.Session) error { return nil })
	wantCode(t, "UpdateSession(published)", err, surge.ECONFLICT)
	_, err = f.item(se, f.sku(f.spu(100, "Q"), "Q", 5), 1)
	wantCode(t, "AddItem(published)", err, surge.ECONFLICT)
	gotItem, gotSession, err := f.s.ItemByID(f.ctx, it.ID)
	if err != nil || gotItem.Allotted != 4 || gotSession.ID != se.ID || gotSession.PublishedAt == nil {
		t.Fatalf("ItemByID = %+v, %+v, %v", gotItem, gotSession, err)
	}
	_, _, err = f.s.ItemByID(f.ctx, 424242)
	wantCode(t, "ItemByID(unknown)", err, surge.ENOTFOUND)
	ended := f.session(f.now.Add(-2*time.Hour), f.now.Add(-time.Hour))
	_, err = f.s.PublishSession(f.ctx, ended.ID, f.now)
	wantCode(t, "PublishSession(ended)", err, surge.ECONFLICT)
	list, err := f.s.ListSessions(f.ctx, surge.SessionFilter{EndAfter: f.now, Published: true})
	if err != nil || len(list) != 1 || list[0].ID != se.ID {
		t.Fatalf("ListSessions(published) = %v, %v; want only the published one", list, err)
	}
}
