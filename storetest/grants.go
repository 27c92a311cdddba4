package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// RunCouponGrants checks bulk grants: stored once per request id with their users, read back
// in order across chunks, leased to one node at a time, and their progress kept.
func RunCouponGrants(t *testing.T, open Open) {
	f := newFixture(t, open)
	b := f.batch(0, surge.BatchLive)
	users := make([]int64, 2500)
	for i := range users {
		users[i] = f.id()
	}
	g := &surge.CouponGrant{ID: f.id(), BatchID: b.ID, RequestID: "grant-1", Users: int64(len(users)), State: surge.GrantRunning,
		CreatedBy: 1, CreatedAt: f.now, UpdatedAt: f.now}
	first, err := f.s.CreateGrant(f.ctx, g, users)
	must(t, "CreateGrant", err)
	again := *g
	again.ID = f.id()
	_, err = f.s.CreateGrant(f.ctx, &again, users[:10])
	wantCode(t, "a grant whose count does not match its users", err, surge.EINVALID)
	again.Users = 10
	second, err := f.s.CreateGrant(f.ctx, &again, users[:10])
	must(t, "CreateGrant again", err)
	if first.ID != g.ID || second.ID != g.ID || second.Users != 2500 {
		t.Fatalf("CreateGrant = %+v, then %+v; want the first grant both times", first, second)
	}
	for _, c := range []struct {
		from int64
		n    int
		want []int64
	}{{0, 1000, users[:1000]}, {998, 5, users[998:1003]}, {2400, 1000, users[2400:]}, {2500, 10, nil}, {1999, 1, users[1999:2000]}} {
		got, err := f.s.GrantUsers(f.ctx, g.ID, c.from, c.n)
		if err != nil || len(got) != len(c.want) || len(got) > 0 && !reflect.DeepEqual(got, c.want) {
			t.Fatalf("GrantUsers(from %d, %d) = %d users, %v; want %d", c.from, c.n, len(got), err, len(c.want))
		}
	}
	_, err = f.s.CouponGrant(f.ctx, f.id())
	wantCode(t, "an unknown grant", err, surge.ENOTFOUND)
	if byReq, err := f.s.CouponGrantByRequest(f.ctx, b.ID, "grant-1"); err != nil || byReq.ID != g.ID {
		t.Fatalf("CouponGrantByRequest = %+v, %v; want grant %d", byReq, err, g.ID)
	}
	_, err = f.s.CouponGrantByRequest(f.ctx, b.ID, "grant-2")
	wantCode(t, "a grant never requested", err, surge.ENOTFOUND)
	if n, err := f.s.RunningGrants(f.ctx, b.MerchantID); err != nil || n != 1 {
		t.Fatalf("RunningGrants = %d, %v; want 1", n, err)
	}
	if n, err := f.s.RunningGrants(f.ctx, f.id()); err != nil || n != 0 {
		t.Fatalf("RunningGrants of another shop = %d, %v; want 0", n, err)
	}

	held, err := f.s.LeaseGrant(f.ctx, 1, f.now, f.now.Add(time.Minute))
	if err != nil || held == nil || held.ID != g.ID {
		t.Fatalf("LeaseGrant = %+v, %v; want grant %d", held, err, g.ID)
	}
	if other, err := f.s.LeaseGrant(f.ctx, 2, f.now.Add(time.Second), f.now.Add(time.Minute)); err != nil || other != nil {
		t.Fatalf("LeaseGrant while another node holds it = %+v, %v; want none", other, err)
	}
	if mine, err := f.s.LeaseGrant(f.ctx, 1, f.now.Add(time.Second), f.now.Add(time.Minute)); err != nil || mine == nil || mine.ID != g.ID {
		t.Fatalf("LeaseGrant by its holder, restarted = %+v, %v; want grant %d", mine, err, g.ID)
	}
	held.Position, held.Granted, held.Refused, held.UpdatedAt = 1000, 990, 10, f.now.Add(time.Second)
	must(t, "SaveGrant", f.s.SaveGrant(f.ctx, held, 1, f.now.Add(2*time.Second)))
	after, err := f.s.LeaseGrant(f.ctx, 2, f.now.Add(3*time.Second), f.now.Add(time.Minute)) // the holder died
	if err != nil || after == nil || after.Position != 1000 || after.Granted != 990 || after.Refused != 10 || after.State != surge.GrantRunning {
		t.Fatalf("LeaseGrant after the lease ended = %+v, %v; want the grant at 1000", after, err)
	}
	stale := *held // node 1 wakes up and saves what it did before node 2 took over
	stale.Position = 1500
	wantCode(t, "SaveGrant by a node that no longer holds the grant", f.s.SaveGrant(f.ctx, &stale, 1, f.now.Add(time.Minute)), surge.ECONFLICT)
	after.Position, after.Granted, after.State = 2500, 2490, surge.GrantDone
	must(t, "SaveGrant", f.s.SaveGrant(f.ctx, after, 2, f.now))
	if none, err := f.s.LeaseGrant(f.ctx, 2, f.now.Add(time.Hour), f.now.Add(2*time.Hour)); err != nil || none != nil {
		t.Fatalf("LeaseGrant of a done grant = %+v, %v; want none", none, err)
	}
	if got, err := f.s.CouponGrant(f.ctx, g.ID); err != nil || got.State != surge.GrantDone || got.Granted != 2490 || got.Users != 2500 {
		t.Fatalf("CouponGrant = %+v, %v", got, err)
	}
}
