package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

func (f *fixture) order(user, item int64, req string, expires time.Time) *surge.Order {
	f.t.Helper()
	id := f.id()
	o := &surge.Order{ID: id, TxnID: fmt.Sprint("T", id), RequestID: req, UserID: user, SessionID: 1, ItemID: item,
		SKUID: 2, MerchantID: 3, Quantity: 1, Amount: surge.Money{Amount: 990, Currency: "CNY"},
		State: surge.OrderPendingPayment, CreatedAt: f.now, ExpiresAt: expires}
	created, err := f.s.CreateOrder(f.ctx, o)
	if err != nil || !created {
		f.t.Fatalf("CreateOrder = %v, %v", created, err)
	}
	return o
}

// RunOrders checks the surge.OrderStore contract.
func RunOrders(t *testing.T, open Open) {
	t.Run("CreateIsIdempotentByRequest", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.order(7, 100, "req-1", f.now.Add(time.Minute))
		again := *o
		again.ID, again.TxnID = f.id(), "T-other"
		created, err := f.s.CreateOrder(f.ctx, &again)
		if err != nil || created || again.ID != o.ID || again.TxnID != o.TxnID {
			t.Fatalf("CreateOrder(same request) = %v, %v, %+v; want the stored order back", created, err, again)
		}
		got, err := f.s.OrderByRequest(f.ctx, 100, 7, "req-1")
		if err != nil || got.ID != o.ID || got.State != surge.OrderPendingPayment || !got.ExpiresAt.Equal(o.ExpiresAt) {
			t.Fatalf("OrderByRequest = %+v, %v", got, err)
		}
		if _, err := f.s.OrderByRequest(f.ctx, 100, 7, "nope"); surge.ErrorCode(err) != surge.ENOTFOUND {
			t.Fatalf("OrderByRequest(unknown) = %v; want ENOTFOUND", err)
		}
		f.order(7, 101, "req-1", f.now) // same request id on another item is another order
		f.order(8, 100, "req-1", f.now) // and from another user on the same item too
		batch := []surge.Order{*o, *o}
		batch[0].ID, batch[1].ID, batch[1].RequestID, batch[1].TxnID = f.id(), f.id(), "req-2", "T-req-2"
		many, err := f.s.CreateOrders(f.ctx, batch)
		if err != nil || len(many) != 2 || many[0] || !many[1] {
			t.Fatalf("CreateOrders(existing, new) = %v, %v; want [false true]", many, err)
		}
		list, err := f.s.OrdersByUser(f.ctx, 7, 10)
		if err != nil || len(list) != 3 || list[0].ID != batch[1].ID || list[1].ItemID != 101 {
			t.Fatalf("OrdersByUser = %v, %v; want 3, newest first", list, err)
		}
	})

	t.Run("StateMachine", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.order(1, 100, "r", f.now.Add(time.Minute))
		paid, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
		if err != nil || paid.State != surge.OrderPaid || paid.PaidAt == nil || !paid.PaidAt.Equal(f.now) {
			t.Fatalf("Transition(pay) = %+v, %v", paid, err)
		}
		cur, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelTimeout, f.now)
		wantCode(t, "Transition(cancel a paid order)", err, surge.ECONFLICT)
		if cur == nil || cur.State != surge.OrderPaid {
			t.Fatalf("a lost transition returned %+v; want the order as it is", cur)
		}
		_, err = f.s.Transition(f.ctx, o.ID, surge.OrderPaid, surge.OrderPendingPayment, "", f.now)
		wantCode(t, "Transition(paid back to pending)", err, surge.EINVALID)
		_, err = f.s.Transition(f.ctx, 404, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
		wantCode(t, "Transition(unknown)", err, surge.ENOTFOUND)
	})

	t.Run("PayVersusExpireHasOneWinner", func(t *testing.T) {
		f := newFixture(t, open)
		for i := range 10 {
			o := f.order(int64(i), 100, fmt.Sprint("race-", i), f.now)
			won := concurrently(8, func(j int) error {
				if j%2 == 0 {
					_, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
					return err
				}
				_, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelTimeout, f.now)
				return err
			})
			if won != 1 {
				t.Fatalf("%d of 8 racing transitions won; want exactly 1", won)
			}
		}
	})

	t.Run("ExpiryAndSettlement", func(t *testing.T) {
		f := newFixture(t, open)
		oldest := f.order(1, 100, "oldest", f.now.Add(-2*time.Second))
		late := f.order(2, 100, "late", f.now.Add(-time.Second))
		paid := f.order(3, 100, "paid", f.now.Add(-3*time.Second))
		f.order(4, 100, "fresh", f.now.Add(time.Hour))
		if _, err := f.s.Transition(f.ctx, paid.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now); err != nil {
			t.Fatal(err)
		}
		first, err := f.s.ExpireDue(f.ctx, f.now, 1)
		if err != nil || len(first) != 1 || first[0].ID != oldest.ID || first[0].State != surge.OrderCancelled ||
			first[0].CancelReason != surge.CancelTimeout || first[0].StockSettled {
			t.Fatalf("ExpireDue(limit 1) = %v, %v; want the oldest due order, cancelled for timeout", first, err)
		}
		rest, err := f.s.ExpireDue(f.ctx, f.now, 10)
		if err != nil || len(rest) != 1 || rest[0].ID != late.ID {
			t.Fatalf("ExpireDue = %v, %v; want only the other late order (not the paid one, not the fresh one)", rest, err)
		}
		if again, err := f.s.ExpireDue(f.ctx, f.now, 10); err != nil || len(again) != 0 {
			t.Fatalf("ExpireDue once more = %v, %v; want nothing left", again, err)
		}
		if got, err := f.s.OrderByID(f.ctx, paid.ID); err != nil || got.State != surge.OrderPaid {
			t.Fatalf("the paid order after the sweep = %+v, %v; want it paid still", got, err)
		}
		un, err := f.s.UnsettledStock(f.ctx, 10)
		if err != nil || len(un) != 3 {
			t.Fatalf("UnsettledStock = %v, %v; want the two cancelled orders and the paid one", un, err)
		}
		must(t, "MarkStockSettled(none)", f.s.MarkStockSettled(f.ctx))
		must(t, "MarkStockSettled", f.s.MarkStockSettled(f.ctx, oldest.ID, late.ID))
		if un, _ = f.s.UnsettledStock(f.ctx, 10); len(un) != 1 || un[0].ID != paid.ID {
			t.Fatalf("UnsettledStock after settling two = %v; want the paid order only", un)
		}
		must(t, "MarkStockSettled", f.s.MarkStockSettled(f.ctx, paid.ID))
		if un, _ = f.s.UnsettledStock(f.ctx, 10); len(un) != 0 {
			t.Fatalf("UnsettledStock after settling all = %v", un)
		}
	})

	t.Run("ExpireVersusPayHasOneWinner", func(t *testing.T) {
		f := newFixture(t, open)
		const n = 40
		orders := make([]*surge.Order, n)
		for i := range orders {
			orders[i] = f.order(int64(i), 100, fmt.Sprint("due-", i), f.now.Add(-time.Second))
		}
		var mu sync.Mutex
		paid := map[int64]bool{}
		expired := map[int64]int{}
		var wg sync.WaitGroup
		for range 2 { // two nodes sweeping at once
			wg.Go(func() {
				for range n {
					list, err := f.s.ExpireDue(f.ctx, f.now, 7)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for _, o := range list {
						expired[o.ID]++
					}
					mu.Unlock()
				}
			})
		}
		for _, o := range orders {
			wg.Go(func() {
				if _, err := f.s.Transition(f.ctx, o.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now); err == nil {
					mu.Lock()
					paid[o.ID] = true
					mu.Unlock()
				} else if surge.ErrorCode(err) != surge.ECONFLICT {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for _, o := range orders {
			got, err := f.s.OrderByID(f.ctx, o.ID)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case paid[o.ID] && (expired[o.ID] != 0 || got.State != surge.OrderPaid):
				t.Fatalf("order %d was paid and expired %d times, now %s", o.ID, expired[o.ID], got.State)
			case !paid[o.ID] && (expired[o.ID] != 1 || got.State != surge.OrderCancelled):
				t.Fatalf("order %d was not paid and expired %d times, now %s; want once", o.ID, expired[o.ID], got.State)
			}
		}
	})

	t.Run("PaymentsOncePerNotification", func(t *testing.T) {
		f := newFixture(t, open)
		o := f.order(1, 100, "r", f.now)
		p := &surge.Payment{NotifyID: "n1", TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount, Status: "paid",
			PaidAt: f.now, ReceivedAt: f.now, Outcome: "applied"}
		fresh, err := f.s.RecordPayment(f.ctx, p)
		must(t, "RecordPayment", err)
		again, err := f.s.RecordPayment(f.ctx, p)
		if !fresh || again || err != nil {
			t.Fatalf("RecordPayment twice = %v then %v, %v; want fresh once", fresh, again, err)
		}
		list, err := f.s.PaymentsByOrder(f.ctx, o.ID)
		if err != nil || len(list) != 1 || list[0].Outcome != "applied" || list[0].Amount != o.Amount {
			t.Fatalf("PaymentsByOrder = %v, %v", list, err)
		}
	})

	t.Run("ApplyPaymentsInOneBatch", func(t *testing.T) {
		f := newFixture(t, open)
		pending := f.order(1, 100, "pending", f.now.Add(time.Hour))
		twice := f.order(2, 100, "twice", f.now.Add(time.Hour))
		gone := f.order(3, 100, "gone", f.now)
		crashed := f.order(4, 100, "crashed", f.now.Add(time.Hour))
		wrong := f.order(5, 100, "wrong", f.now.Add(time.Hour))
		_, err := f.s.Transition(f.ctx, gone.ID, surge.OrderPendingPayment, surge.OrderCancelled, surge.CancelTimeout, f.now)
		must(t, "Transition(cancel)", err)
		// Paid by an earlier release that died before it recorded the notification.
		_, err = f.s.Transition(f.ctx, crashed.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
		must(t, "Transition(pay)", err)
		at := f.now.Add(time.Second)
		pay := func(o *surge.Order, id, status string) *surge.Payment {
			return &surge.Payment{NotifyID: id, TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount, Status: status, PaidAt: f.now, ReceivedAt: at}
		}
		short := pay(wrong, "w-1", surge.PaymentStatusPaid)
		short.Amount.Amount--
		// Listed against the order of their ids, to show that the batch locks in id order
		// yet answers in the order asked.
		batch := []*surge.Payment{short, pay(crashed, "c-1", "paid"), pay(gone, "g-1", "paid"), pay(twice, "t-2", "paid"),
			pay(twice, "t-1", "paid"), pay(pending, "p-0", "processing"), pay(pending, "p-1", "paid"),
			{NotifyID: "u-1", TxnID: "T1", OrderID: 404, Amount: pending.Amount, Status: "paid", PaidAt: f.now, ReceivedAt: at}}
		orders, err := f.s.ApplyPayments(f.ctx, batch)
		must(t, "ApplyPayments", err)
		want := []string{surge.PaymentMismatch, surge.PaymentApplied, surge.PaymentRefundDue, surge.PaymentApplied,
			surge.PaymentDuplicate, surge.PaymentIgnored, surge.PaymentApplied, ""}
		for i, p := range batch {
			if p.Outcome != want[i] {
				t.Errorf("ApplyPayments: notification %s outcome %q; want %q", p.NotifyID, p.Outcome, want[i])
			}
		}
		if len(orders) != len(batch) || orders[7] != nil || orders[6].State != surge.OrderPaid || orders[6].PaidAt == nil ||
			!orders[6].PaidAt.Equal(at) || orders[2].State != surge.OrderCancelled || orders[0].State != surge.OrderPendingPayment {
			t.Fatalf("ApplyPayments orders = %v; want each one's order after the batch, nil for the unknown one", orders)
		}
		for _, o := range []*surge.Order{pending, twice} {
			got, err := f.s.OrderByID(f.ctx, o.ID)
			if err != nil || got.State != surge.OrderPaid || !got.PaidAt.Equal(at) {
				t.Fatalf("order after ApplyPayments = %+v, %v; want paid at the notification's arrival", got, err)
			}
		}
		if got, _ := f.s.OrderByID(f.ctx, wrong.ID); got.State != surge.OrderPendingPayment {
			t.Fatalf("a mismatched payment moved its order to %s", got.State)
		}
		if list, _ := f.s.PaymentsByOrder(f.ctx, 404); len(list) != 0 {
			t.Fatalf("a notification for no order was recorded: %v", list)
		}
		// The provider sends the paid notification again: a duplicate now, recorded once.
		again := []*surge.Payment{pay(pending, "p-1", "paid"), pay(twice, "t-3", "paid")}
		_, err = f.s.ApplyPayments(f.ctx, again)
		must(t, "ApplyPayments(again)", err)
		if again[0].Outcome != surge.PaymentDuplicate || again[1].Outcome != surge.PaymentDuplicate {
			t.Fatalf("outcomes of repeated payments = %q, %q; want duplicate", again[0].Outcome, again[1].Outcome)
		}
		list, err := f.s.PaymentsByOrder(f.ctx, pending.ID)
		if err != nil || len(list) != 2 || list[1].NotifyID != "p-1" || list[1].Outcome != surge.PaymentApplied {
			t.Fatalf("PaymentsByOrder = %v, %v; want processing and the one applied record", list, err)
		}
		a, err := f.s.AuditItem(f.ctx, 100, 1)
		if err != nil || a.PaidWithoutOnePayment != 0 || a.Orders[surge.OrderPaid] != 3 {
			t.Fatalf("AuditItem = %+v, %v; want 3 paid orders, each with one applied payment", a, err)
		}
	})

	t.Run("ManyInOneCall", func(t *testing.T) {
		f := newFixture(t, open)
		const n = surge.MaxListLimit + 20 // past one statement's share, so the work is split
		batch := make([]surge.Order, n)
		for i := range batch {
			batch[i] = surge.Order{ID: f.id(), TxnID: fmt.Sprint("T-many-", i), RequestID: fmt.Sprint("many-", i), UserID: int64(i + 1),
				SessionID: 1, ItemID: 100, SKUID: 1, MerchantID: 1, Quantity: 1, Amount: surge.Money{Amount: 100, Currency: "CNY"},
				State: surge.OrderPendingPayment, CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}
		}
		batch[n-1].RequestID = batch[0].RequestID // the same request as the first: skipped
		batch[n-1].UserID = batch[0].UserID
		created, err := f.s.CreateOrders(f.ctx, batch)
		must(t, "CreateOrders", err)
		for i, c := range created {
			if c != (i != n-1) {
				t.Fatalf("CreateOrders created[%d] = %v", i, c)
			}
		}
		ids := []int64{404} // an unknown one too
		for _, o := range batch {
			ids = append(ids, o.ID)
		}
		got, err := f.s.OrdersByID(f.ctx, ids)
		must(t, "OrdersByID", err)
		found := map[int64]bool{}
		for _, o := range got {
			found[o.ID] = o.State == surge.OrderPendingPayment && o.TxnID != ""
		}
		if len(got) != n-1 || !found[batch[0].ID] || !found[batch[n-2].ID] || found[batch[n-1].ID] {
			t.Fatalf("OrdersByID = %d orders; want the %d stored, whole", len(got), n-1)
		}
		for _, id := range []int64{batch[3].ID, 404} { // one at a time too
			one, err := f.s.OrdersByID(f.ctx, []int64{id})
			if err != nil || len(one) != map[bool]int{true: 1, false: 0}[id != 404] || len(one) == 1 && one[0].ID != id {
				t.Fatalf("OrdersByID(%d) = %v, %v", id, one, err)
			}
		}
		var ps []*surge.Payment
		for _, o := range batch[:n-1] {
			for _, id := range []string{"-a", "-b"} {
				ps = append(ps, &surge.Payment{NotifyID: o.TxnID + id, TxnID: o.TxnID, OrderID: o.ID, Amount: o.Amount,
					Status: surge.PaymentStatusPaid, PaidAt: f.now, ReceivedAt: f.now})
			}
		}
		orders, err := f.s.ApplyPayments(f.ctx, ps)
		must(t, "ApplyPayments", err)
		for i, p := range ps {
			want := surge.PaymentApplied
			if i%2 == 1 {
				want = surge.PaymentDuplicate
			}
			if p.Outcome != want || orders[i] == nil || orders[i].State != surge.OrderPaid {
				t.Fatalf("notification %s: %q, order %+v; want %q of a paid order", p.NotifyID, p.Outcome, orders[i], want)
			}
		}
		a, err := f.s.AuditItem(f.ctx, 100, 1)
		if err != nil || a.Orders[surge.OrderPaid] != n-1 || a.PaidWithoutOnePayment != 0 {
			t.Fatalf("AuditItem = %+v, %v; want %d paid orders, each with one applied payment", a, err, n-1)
		}
	})

	t.Run("ApplyPaymentsVersusExpiry", func(t *testing.T) {
		f := newFixture(t, open)
		const n = 30
		orders := make([]*surge.Order, n)
		for i := range orders {
			orders[i] = f.order(int64(i), 100, fmt.Sprint("race-", i), f.now.Add(-time.Second))
		}
		var mu sync.Mutex
		applied := map[int64]int{}
		expired := map[int64]bool{}
		var wg sync.WaitGroup
		wg.Go(func() {
			list, err := f.s.ExpireDue(f.ctx, f.now, n)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			for _, o := range list {
				expired[o.ID] = true
			}
			mu.Unlock()
		})
		for node := range 3 { // three nodes each apply every payment, in batches of their own
			wg.Go(func() {
				for lo := 0; lo < n; lo += 7 {
					var batch []*surge.Payment
					for _, o := range orders[lo:min(lo+7, n)] {
						batch = append(batch, &surge.Payment{NotifyID: fmt.Sprint(o.ID, "-", node), TxnID: o.TxnID, OrderID: o.ID,
							Amount: o.Amount, Status: "paid", PaidAt: f.now, ReceivedAt: f.now})
					}
					if _, err := f.s.ApplyPayments(f.ctx, batch); err != nil {
						if surge.ErrorCode(err) != surge.EUNAVAILABLE { // contention: the provider retries
							t.Error(err)
						}
						continue
					}
					mu.Lock()
					for _, p := range batch {
						if p.Outcome == surge.PaymentApplied {
							applied[p.OrderID]++
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for _, o := range orders {
			if applied[o.ID] > 1 || applied[o.ID] == 1 && expired[o.ID] || applied[o.ID] == 0 && !expired[o.ID] {
				t.Fatalf("order %d: applied %d times, expired %v; want exactly one of the two", o.ID, applied[o.ID], expired[o.ID])
			}
		}
	})

	t.Run("AuditItem", func(t *testing.T) {
		f := newFixture(t, open)
		paid := f.order(1, 100, "a", f.now)
		f.order(1, 100, "b", f.now) // user 1 now holds 2 units: over a limit of 1
		gone := f.order(2, 100, "c", f.now)
		f.order(3, 101, "d", f.now) // another item
		unpaid := f.order(4, 100, "e", f.now)
		_, err := f.s.Transition(f.ctx, paid.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
		must(t, "Transition(paid)", err)
		_, err = f.s.Transition(f.ctx, unpaid.ID, surge.OrderPendingPayment, surge.OrderPaid, "", f.now)
		must(t, "Transition(paid, no payment)", err)
		_, err = f.s.Transition(f.ctx, gone.ID, surge.OrderPendingPayment, surge.OrderCancelled, "expired", f.now)
		must(t, "Transition(cancelled)", err)
		for i, outcome := range []string{"applied", "duplicate"} {
			_, err := f.s.RecordPayment(f.ctx, &surge.Payment{NotifyID: fmt.Sprint("n", i), TxnID: paid.TxnID, OrderID: paid.ID,
				Amount: paid.Amount, Status: "paid", PaidAt: f.now, ReceivedAt: f.now, Outcome: outcome})
			must(t, "RecordPayment", err)
		}
		a, err := f.s.AuditItem(f.ctx, 100, 1)
		must(t, "AuditItem", err)
		want := surge.OrderAudit{Orders: map[surge.OrderState]int64{surge.OrderPaid: 2, surge.OrderPendingPayment: 1, surge.OrderCancelled: 1},
			Units:          map[surge.OrderState]int64{surge.OrderPaid: 2, surge.OrderPendingPayment: 1, surge.OrderCancelled: 1},
			UsersOverLimit: 1, PaidWithoutOnePayment: 1, UnreleasedCancelled: 1,
			PaidAmount: paid.Amount.Amount + unpaid.Amount.Amount}
		if fmt.Sprint(*a) != fmt.Sprint(want) || a.LiveUnits() != 3 || a.PaidAmount == 0 {
			t.Fatalf("AuditItem = %+v; want %+v with 3 live units", *a, want)
		}
		must(t, "MarkStockSettled", f.s.MarkStockSettled(f.ctx, gone.ID))
		if a, err = f.s.AuditItem(f.ctx, 100, 2); err != nil || a.UnreleasedCancelled != 0 || a.UsersOverLimit != 0 {
			t.Fatalf("AuditItem(after release, limit 2) = %+v, %v", a, err)
		}
		if a, err = f.s.AuditItem(f.ctx, 999, 1); err != nil || len(a.Orders) != 0 || a.LiveUnits() != 0 {
			t.Fatalf("AuditItem(no orders) = %+v, %v", a, err)
		}
	})
}

// RunBlacklist checks the surge.BlacklistStore contract.
func RunBlacklist(t *testing.T, open Open) {
	f := newFixture(t, open)
	must(t, "Block", f.s.Block(f.ctx, surge.Block{UserID: 1, Reason: "bot", ExpiresAt: f.now.Add(time.Hour), CreatedAt: f.now}))
	must(t, "Block(expired)", f.s.Block(f.ctx, surge.Block{UserID: 2, Reason: "old", ExpiresAt: f.now, CreatedAt: f.now}))
	must(t, "Block(again)", f.s.Block(f.ctx, surge.Block{UserID: 1, Reason: "bot farm", ExpiresAt: f.now.Add(2 * time.Hour), CreatedAt: f.now}))
	list, err := f.s.ActiveBlocks(f.ctx, f.now, 10)
	if err != nil || len(list) != 1 || list[0].UserID != 1 || list[0].Reason != "bot farm" {
		t.Fatalf("ActiveBlocks = %+v, %v; want user 1's latest block only", list, err)
	}
	since, err := f.s.BlocksSince(f.ctx, f.now.Add(-time.Second), 10)
	if err != nil || len(since) != 2 {
		t.Fatalf("BlocksSince = %+v, %v; want both blocks", since, err)
	}
	if since, _ = f.s.BlocksSince(f.ctx, f.now.Add(time.Millisecond), 10); len(since) != 0 {
		t.Fatalf("BlocksSince(after now) = %+v; want none", since)
	}
	must(t, "Unblock", f.s.Unblock(f.ctx, 1))
	wantCode(t, "Unblock(again)", f.s.Unblock(f.ctx, 1), surge.ENOTFOUND)
	if list, _ = f.s.ActiveBlocks(f.ctx, f.now, 10); len(list) != 0 {
		t.Fatalf("ActiveBlocks after unblock = %+v", list)
	}
}
