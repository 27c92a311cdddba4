package coupon_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/stock"
	"github.com/surgecommerce/surge/storetest"
)

func TestReadUsers(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []int64
		err      string
	}{
		{"one a line", "1\n2\r\n3\n", []int64{1, 2, 3}, ""},
		{"csv with a header", "user_id,name\n\"7\",ann\n8,bo\n\n9\n", []int64{7, 8, 9}, ""},
		{"a spreadsheet's byte-order mark", "\xef\xbb\xbfuser_id\n4\n", []int64{4}, ""},
		{"twice", "5\n6\n5\n", []int64{5, 6}, ""},
		{"not an id", "1\nabc\n", nil, `line 2: "abc" is not a user id`},
		{"zero", "0\n", nil, "line 1"},
		{"negative", "-4\n", nil, "line 1"},
		{"overflowing", "9223372036854775808\n", nil, "line 1"},
		{"header later", "1\nuser_id\n", nil, "line 2"},
		{"long line", "1\n" + strings.Repeat("9", 300) + "\n", nil, "line 2 is longer than 256 bytes"},
	} {
		got, err := coupon.ReadUsers(strings.NewReader(c.in))
		if c.err != "" {
			if surge.ErrorCode(err) != surge.EINVALID || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: ReadUsers = %v, %v; want EINVALID naming %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: ReadUsers = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	var many strings.Builder
	for i := range surge.MaxGrantUsers + 1 {
		fmt.Fprintln(&many, i+1)
	}
	if _, err := coupon.ReadUsers(strings.NewReader(many.String())); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("ReadUsers of %d users = %v; want EINVALID", surge.MaxGrantUsers+1, err)
	}
}

// FuzzReadUsers: any file is a list of positive, distinct ids, or EINVALID; never a crash.
func FuzzReadUsers(f *testing.F) {
	for _, s := range []string{"1\n2\n", "user_id\n3\n", "\"4\",x\n", "a\n", "\n\n", strings.Repeat("1", 300)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := coupon.ReadUsers(strings.NewReader(string(data)))
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("ReadUsers = %v; want EINVALID", err)
			}
			return
		}
		seen := map[int64]bool{}
		for _, u := range users {
			if u <= 0 || seen[u] {
				t.Fatalf("ReadUsers gave %v", users)
			}
			seen[u] = true
		}
	})
}

// A grant of 2,500 users (three listed twice) from a batch of 2,000 with one coupon a shopper,
// where one user was granted one by an earlier grant: it grants until the batch runs out and
// stops there, each user at most once. Drafts, strangers and bad lists are refused.
func TestGrantRuns(t *testing.T) {
	ctx := context.Background()
	svc, db := newService(t)
	op := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	now := time.Now().UTC()
	in := coupon.BatchInput{Name: "for loyal shoppers", Rule: coupon.Rule{Kind: coupon.Fixed, Value: 100, Currency: "CNY",
		Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, Total: 2000, PerUser: 1, ClaimFrom: now.Add(time.Hour), ClaimUntil: now.Add(2 * time.Hour), ValidDays: 3}
	b, err := svc.CreateBatch(ctx, op, in)
	if err != nil {
		t.Fatal(err)
	}
	users := make(surge.IDList, 0, 2503)
	for u := range int64(2500) {
		users = append(users, 10_000+u)
	}
	users = append(users, 10_000, 10_001, 10_002)
	_, err = svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "g", Users: users})
	wantCode(t, "a grant of a draft", err, surge.ECONFLICT)
	if _, err := svc.Publish(ctx, op, b.ID); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		a    surge.Actor
		in   coupon.GrantInput
		code string
	}{
		"a shopper":     {surge.Actor{UserID: 9, Role: surge.RoleShopper}, coupon.GrantInput{RequestID: "g", Users: users}, surge.ENOTFOUND},
		"no users":      {op, coupon.GrantInput{RequestID: "g"}, surge.EINVALID},
		"a bad user":    {op, coupon.GrantInput{RequestID: "g", Users: surge.IDList{5, -1}}, surge.EINVALID},
		"no request id": {op, coupon.GrantInput{Users: users}, surge.EINVALID},
	} {
		_, err := svc.Grant(ctx, c.a, b.ID, c.in)
		wantCode(t, name, err, c.code)
	}
	// An earlier grant gives shopper 10,005 its one coupon, outside the claim window.
	g, err := svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "early", Users: surge.IDList{10_005}})
	if err != nil || g.Users != 1 {
		t.Fatalf("Grant = %+v, %v", g, err)
	}
	g, err = svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "g", Users: users})
	if err != nil || g.Users != 2500 || g.State != surge.GrantRunning {
		t.Fatalf("Grant = %+v, %v; want 2,500 users, running", g, err)
	}
	dups := surge.IDList{20_001, 20_002, 20_001, 20_003}
	if g, err := svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "dups", Users: dups}); err != nil || g.Users != 3 ||
		fmt.Sprint(dups) != "[20001 20002 20001 20003]" {
		t.Fatalf("Grant = %+v, %v, the list after it %v; want 3 users, the caller's list as it was", g, err, dups)
	}
	run := func() {
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); svc.RunGrants(runCtx, 1, 1e6) }()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got, err := svc.GrantStatus(ctx, op, b.ID, g.ID)
			if err == nil && got.State != surge.GrantRunning {
				g = got
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the grant is still %+v, %v", got, err)
			}
		}
		cancel()
		<-done
	}
	run()
	// 1 granted before, 1,999 now, shopper 10,005 refused at the limit; the batch ran out.
	if g.State != surge.GrantStopped || g.Granted != 1999 || g.Refused != 1 || !strings.Contains(g.Reason, "issued") {
		t.Fatalf("grant = %+v; want stopped at the batch's end, 1,999 granted and 1 refused", g)
	}
	if n, _ := db.CouponCount(ctx, b.ID); n != 2000 {
		t.Fatalf("coupons stored = %d; want 2,000", n)
	}
	if is, _ := svc.Issuance(ctx, b.ID); is.Issued != 2000 {
		t.Fatalf("issued = %+v; want 2,000", is)
	}
	if _, err := svc.GrantStatus(ctx, op, b.ID+1, g.ID); surge.ErrorCode(err) != surge.ENOTFOUND {
		t.Fatalf("a grant read under another batch = %v; want ENOTFOUND", err)
	}
	// A shopper cannot send a grant's request id, and so take its users' place.
	_, err = svc.Claim(ctx, surge.Actor{UserID: 10_003, Role: surge.RoleShopper}, b.ID, coupon.ClaimRequest{RequestID: fmt.Sprint("\x00grant-", g.ID)})
	wantCode(t, "a claim with a control character", err, surge.EINVALID)

	// Offline, the batch takes no new grant; a retried request still gets its grant.
	if _, err := svc.Offline(ctx, op, b.ID); err != nil {
		t.Fatal(err)
	}
	if again, err := svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "g", Users: users}); err != nil || again.ID != g.ID {
		t.Fatalf("a retried grant of an offline batch = %+v, %v; want grant %d", again, err, g.ID)
	}
	_, err = svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "new", Users: users})
	wantCode(t, "a new grant of an offline batch", err, surge.ECONFLICT)
}

// A grant of red envelopes of random amounts goes on while the budget has money left, drawing
// again for a user whose amount did not fit, and stops once too little is left.
func TestGrantSpendsABudget(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	e, err := stock.Open(stock.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ids, draws := storetest.IDs(), atomic.Int64{} // each claim draws a coupon id, and with it its amount
	svc := coupon.NewService(db, nil, coupon.NewLedger(e), ratelimit.NewCounter(nil), nil, slog.New(slog.DiscardHandler),
		func() (int64, error) { draws.Add(1); return ids() }, nil)
	op := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	now := time.Now().UTC()
	b, err := svc.CreateBatch(ctx, op, coupon.BatchInput{Name: "rain", Rule: coupon.Rule{Kind: coupon.Envelope, Min: 1, Max: 100, Currency: "CNY",
		Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, Total: 1000, PerUser: 100, ClaimFrom: now, ClaimUntil: now.Add(time.Hour), ValidDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Publish(ctx, op, b.ID); err != nil {
		t.Fatal(err)
	}
	users := make(surge.IDList, 200)
	for i := range users {
		users[i] = int64(30_000 + i)
	}
	g, err := svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "rain", Users: users})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.RunGrants(runCtx, 1, 1e6) }()
	for deadline := time.Now().Add(20 * time.Second); g.State == surge.GrantRunning; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the grant is still %+v", g)
		}
		if g, err = svc.GrantStatus(ctx, op, b.ID, g.ID); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	is, err := svc.Issuance(ctx, b.ID)
	// A budget the grant stopped with money left ran out on a user whose envelope did not fit:
	// that user drew again. (Spent to the last minor unit, it may have needed no second draw.)
	if claims := g.Granted + g.Refused + 1; err == nil && is.Left > 0 && draws.Load() <= claims+2 { // the batch, the grant and one claim each
		t.Fatalf("%d ids drawn for %d claims, %d left; want more: a user whose envelope did not fit draws again", draws.Load(), claims, is.Left)
	}
	states, serr := db.CouponStates(ctx, b.ID)
	if err != nil || serr != nil || g.State != surge.GrantStopped || states[surge.CouponIssued].Value != is.Issued || is.Issued > 1000 ||
		is.Left >= 70 || states[surge.CouponIssued].Count != g.Granted {
		t.Fatalf("grant %+v; issuance %+v; stored %+v; want it stopped with little left (redrawn), what was granted stored",
			g, is, states)
	}
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if surge.ErrorCode(err) != code {
		t.Fatalf("%s: %v; want %s", what, err, code)
	}
}

// One shop's grants waiting or running at once are bounded, so that it cannot hold up the
// others'; a retry of one of them is still answered.
func TestGrantsAreBounded(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t)
	op := surge.Actor{UserID: 1, Role: surge.RoleOperator}
	now := time.Now().UTC()
	b, err := svc.CreateBatch(ctx, op, coupon.BatchInput{Name: "many grants", Rule: coupon.Rule{Kind: coupon.Fixed, Value: 100, Currency: "CNY",
		Scope: coupon.Scope{Kind: coupon.ScopePlatform}}, Total: 1000, PerUser: 1, ClaimFrom: now, ClaimUntil: now.Add(time.Hour), ValidDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Publish(ctx, op, b.ID); err != nil {
		t.Fatal(err)
	}
	for i := range surge.MaxRunningGrants {
		if _, err := svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: fmt.Sprint("q", i), Users: surge.IDList{int64(100 + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "one-more", Users: surge.IDList{5}})
	wantCode(t, "a grant past the bound", err, surge.ERATELIMIT)
	if g, err := svc.Grant(ctx, op, b.ID, coupon.GrantInput{RequestID: "q3", Users: surge.IDList{103}}); err != nil || g.Users != 1 {
		t.Fatalf("a retried grant = %+v, %v; want the stored one", g, err)
	}
}
