package storetest

import (
	"strconv"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// RunRisk checks the surge.RiskStore contract: rules stored with an audit of every change,
// verdicts stored once however often they are put, listed by time, by expiry and by user, and
// the allow-list.
func RunRisk(t *testing.T, open Open) {
	f := newFixture(t, open)
	runRiskRules(t, f)
	runVerdicts(t, f)
	runAllows(t, f)
}

func runRiskRules(t *testing.T, f *fixture) {
	r := &surge.RiskRule{ID: f.id(), Name: "burst", Expr: "attempts_10s > 20", On: surge.SubjectUser, Action: surge.ActionChallenge,
		Bits: 12, TTLSec: 600, Reason: "BURST", Priority: 5, Mode: surge.ModeDryRun, Force: true, Version: 9, UpdatedBy: 7,
		UpdatedAt: f.now, CreatedAt: f.now}
	must(t, "CreateRiskRule", f.s.CreateRiskRule(f.ctx, r))
	if r.Version != 1 {
		t.Fatalf("CreateRiskRule left version %d; want 1", r.Version)
	}
	dup := *r
	wantCode(t, "CreateRiskRule(same id)", f.s.CreateRiskRule(f.ctx, &dup), surge.ECONFLICT)
	got, err := f.s.RiskRule(f.ctx, r.ID)
	must(t, "RiskRule", err)
	want := *r
	want.Force = false // a request flag, not stored
	if !sameRule(got, &want) {
		t.Fatalf("RiskRule(%d) = %+v; want %+v", r.ID, got, want)
	}
	_, err = f.s.RiskRule(f.ctx, f.id())
	wantCode(t, "RiskRule(unknown)", err, surge.ENOTFOUND)

	other := &surge.RiskRule{ID: f.id(), Name: "farm", Expr: "devices_1m > 5", On: surge.SubjectNetwork, Action: surge.ActionBlock,
		TTLSec: 60, Reason: "FARM", Mode: surge.ModeOff, UpdatedBy: 7, UpdatedAt: f.now, CreatedAt: f.now}
	must(t, "CreateRiskRule", f.s.CreateRiskRule(f.ctx, other))
	if list, err := f.s.RiskRules(f.ctx); err != nil || len(list) != 2 || list[0].ID != r.ID || list[1].ID != other.ID {
		t.Fatalf("RiskRules = %v, %v; want %d then %d", list, err, r.ID, other.ID)
	}

	// A change that refuses writes nothing.
	_, err = f.s.UpdateRiskRule(f.ctx, r.ID, 8, f.now.Add(time.Second), func(x *surge.RiskRule) error {
		x.Name = "refused"
		return surge.Errorf(surge.EINVALID, "no")
	})
	wantCode(t, "UpdateRiskRule(refused)", err, surge.EINVALID)
	if got, err := f.s.RiskRule(f.ctx, r.ID); err != nil || got.Name != "burst" || got.Version != 1 {
		t.Fatalf("after a refused change: %+v, %v; want burst at version 1", got, err)
	}
	if changes, err := f.s.RiskRuleChanges(f.ctx, r.ID, 10); err != nil || len(changes) != 1 {
		t.Fatalf("changes after a refused change = %+v, %v; want the creation only", changes, err)
	}
	_, err = f.s.UpdateRiskRule(f.ctx, f.id(), 8, f.now, func(*surge.RiskRule) error { return nil })
	wantCode(t, "UpdateRiskRule(unknown)", err, surge.ENOTFOUND)

	// A change bumps the version, keeps the id and creation, and is audited as by's.
	at := f.now.Add(time.Minute)
	updated, err := f.s.UpdateRiskRule(f.ctx, r.ID, 8, at, func(x *surge.RiskRule) error {
		x.Mode, x.Bits, x.Force = surge.ModeEnforcing, 16, true
		x.ID, x.CreatedAt, x.Version = 1, f.now.Add(time.Hour), 100 // not the change's to make
		return nil
	})
	must(t, "UpdateRiskRule", err)
	want = *r
	want.Force, want.Mode, want.Bits, want.Version, want.UpdatedBy, want.UpdatedAt = false, surge.ModeEnforcing, 16, 2, 8, at
	if !sameRule(updated, &want) {
		t.Fatalf("UpdateRiskRule = %+v; want %+v", updated, want)
	}
	if got, err := f.s.RiskRule(f.ctx, r.ID); err != nil || !sameRule(got, &want) {
		t.Fatalf("RiskRule after a change = %+v, %v; want %+v", got, err, want)
	}
	changes, err := f.s.RiskRuleChanges(f.ctx, r.ID, 10)
	must(t, "RiskRuleChanges", err)
	if len(changes) != 2 {
		t.Fatalf("RiskRuleChanges = %+v; want 2", changes)
	}
	last, first := changes[0], changes[1]
	if last.RuleID != r.ID || last.Version != 2 || last.By != 8 || !last.At.Equal(at) || last.Before == nil || last.After == nil ||
		last.Before.Version != 1 || last.Before.Mode != surge.ModeDryRun || !sameRule(last.After, &want) {
		t.Fatalf("the newest change = %+v (before %+v, after %+v); want version 2 by 8, dry run then enforcing", last, last.Before, last.After)
	}
	created := *r
	created.Force = false
	if first.Version != 1 || first.By != 7 || !first.At.Equal(f.now) || first.Before != nil || first.After == nil || !sameRule(first.After, &created) {
		t.Fatalf("the first change = %+v (after %+v); want version 1 by 7 with nothing before", first, first.After)
	}
	if changes, err := f.s.RiskRuleChanges(f.ctx, r.ID, 1); err != nil || len(changes) != 1 || changes[0].Version != 2 {
		t.Fatalf("RiskRuleChanges(n=1) = %+v, %v; want version 2 only", changes, err)
	}
	if changes, err := f.s.RiskRuleChanges(f.ctx, f.id(), 10); err != nil || len(changes) != 0 {
		t.Fatalf("RiskRuleChanges(unknown) = %+v, %v; want none", changes, err)
	}
}

// sameRule compares rules whose times may differ in location.
func sameRule(a, b *surge.RiskRule) bool {
	x, y := *a, *b
	if !x.UpdatedAt.Equal(y.UpdatedAt) || !x.CreatedAt.Equal(y.CreatedAt) {
		return false
	}
	x.UpdatedAt, x.CreatedAt, y.UpdatedAt, y.CreatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return x == y
}

// sameVerdict compares verdicts whose times may differ in location.
func sameVerdict(a, b surge.Verdict) bool {
	if !a.Trigger.Equal(b.Trigger) || !a.CreatedAt.Equal(b.CreatedAt) || !a.ExpiresAt.Equal(b.ExpiresAt) {
		return false
	}
	a.Trigger, a.CreatedAt, a.ExpiresAt, b.Trigger, b.CreatedAt, b.ExpiresAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func verdictIDs(vs []surge.Verdict) []string {
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
	}
	return ids
}

func runVerdicts(t *testing.T, f *fixture) {
	rule := f.id()
	verdict := func(id string, subject, value string, user int64, created time.Time, ttl time.Duration) surge.Verdict {
		return surge.Verdict{ID: id, RuleID: rule, Version: 3, Subject: subject, Value: value, Action: surge.ActionBlock, Reason: "BURST",
			Mode: surge.ModeEnforcing, User: user, Trigger: created.Add(-time.Second), CreatedAt: created, ExpiresAt: created.Add(ttl)}
	}
	user, other := f.id(), f.id()
	byEvent := verdict("v1", surge.SubjectIP, "192.0.2.1", user, f.now, time.Hour) // made by the user's event
	aboutUser := verdict("v2", surge.SubjectUser, strconv.FormatInt(user, 10), other, f.now.Add(time.Millisecond), time.Hour)
	expired := verdict("v3", surge.SubjectDevice, "dev-1", other, f.now.Add(2*time.Millisecond), -time.Second)
	tied := verdict("v0", surge.SubjectNetwork, "198.51.100.0/24", other, f.now, time.Hour) // same time as v1, smaller id
	challenge := verdict("v4", surge.SubjectUser, strconv.FormatInt(other, 10), other, f.now.Add(3*time.Millisecond), time.Hour)
	challenge.Action, challenge.Bits, challenge.Mode = surge.ActionChallenge, 20, surge.ModeDryRun

	must(t, "PutVerdicts(none)", f.s.PutVerdicts(f.ctx, nil))
	must(t, "PutVerdicts", f.s.PutVerdicts(f.ctx, []surge.Verdict{byEvent, aboutUser, expired}))
	again := byEvent
	again.Reason, again.ExpiresAt = "CHANGED", f.now.Add(-time.Hour)
	// The same ids again, one twice in a batch: the first write of each wins.
	must(t, "PutVerdicts(again)", f.s.PutVerdicts(f.ctx, []surge.Verdict{again, tied, aboutUser, challenge, tied}))
	must(t, "PutVerdicts(again)", f.s.PutVerdicts(f.ctx, []surge.Verdict{again, tied, aboutUser, challenge, expired}))

	all, err := f.s.VerdictsSince(f.ctx, f.now.Add(-time.Minute), "", 100)
	must(t, "VerdictsSince", err)
	if ids := verdictIDs(all); len(ids) != 5 || ids[0] != "v0" || ids[1] != "v1" || ids[2] != "v2" || ids[3] != "v3" || ids[4] != "v4" {
		t.Fatalf("VerdictsSince = %v; want v0 v1 v2 v3 v4, each once", ids)
	}
	if !sameVerdict(all[1], byEvent) || !sameVerdict(all[4], challenge) {
		t.Fatalf("stored verdicts %+v, %+v; want %+v, %+v (the first write)", all[1], all[4], byEvent, challenge)
	}
	if got, err := f.s.VerdictsSince(f.ctx, f.now.Add(time.Millisecond), "", 2); err != nil || len(got) != 2 || got[0].ID != "v2" || got[1].ID != "v3" {
		t.Fatalf("VerdictsSince(now+1ms, 2) = %v, %v; want v2 v3", verdictIDs(got), err)
	}
	// a page goes on after the last verdict of the one before, past ties of its time
	if got, err := f.s.VerdictsSince(f.ctx, f.now, "v0", 2); err != nil || len(got) != 2 || got[0].ID != "v1" || got[1].ID != "v2" {
		t.Fatalf("VerdictsSince(now, after v0, 2) = %v, %v; want v1 v2", verdictIDs(got), err)
	}
	if got, err := f.s.VerdictsSince(f.ctx, f.now, "v1", 10); err != nil || len(got) != 3 || got[0].ID != "v2" {
		t.Fatalf("VerdictsSince(now, after v1) = %v, %v; want v2 v3 v4", verdictIDs(got), err)
	}
	if got, err := f.s.VerdictsSince(f.ctx, f.now.Add(time.Second), "", 10); err != nil || len(got) != 0 {
		t.Fatalf("VerdictsSince(later) = %v, %v; want none", verdictIDs(got), err)
	}

	// v3 expired a second after it was made; pruning what expired before then leaves it
	if n, err := f.s.PruneVerdicts(f.ctx, f.now.Add(2*time.Millisecond-time.Second), 10); err != nil || n != 0 {
		t.Fatalf("PruneVerdicts(before v3 expired) = %d, %v; want 0", n, err)
	}
	defer func() {
		if n, err := f.s.PruneVerdicts(f.ctx, f.now, 10); err != nil || n != 1 {
			t.Fatalf("PruneVerdicts(now) = %d, %v; want v3 alone", n, err)
		}
		if got, err := f.s.VerdictsSince(f.ctx, f.now.Add(-time.Minute), "", 100); err != nil || len(got) != 4 {
			t.Fatalf("after pruning: %v, %v; want the 4 that still act", verdictIDs(got), err)
		}
	}()
	active, err := f.s.ActiveVerdicts(f.ctx, f.now, 100)
	must(t, "ActiveVerdicts", err)
	if ids := verdictIDs(active); len(ids) != 4 || ids[0] != "v4" || ids[1] != "v2" || ids[2] != "v1" || ids[3] != "v0" {
		t.Fatalf("ActiveVerdicts = %v; want v4 v2 v1 v0, newest first (not the expired v3)", ids)
	}
	if got, err := f.s.ActiveVerdicts(f.ctx, f.now.Add(2*time.Hour), 100); err != nil || len(got) != 0 {
		t.Fatalf("ActiveVerdicts(later) = %v, %v; want none", verdictIDs(got), err)
	}
	if got, err := f.s.ActiveVerdicts(f.ctx, f.now, 1); err != nil || len(got) != 1 {
		t.Fatalf("ActiveVerdicts(n=1) = %v, %v; want one", verdictIDs(got), err)
	}

	mine, err := f.s.UserVerdicts(f.ctx, user, 10)
	must(t, "UserVerdicts", err)
	if ids := verdictIDs(mine); len(ids) != 2 || ids[0] != "v2" || ids[1] != "v1" {
		t.Fatalf("UserVerdicts(%d) = %v; want v2 (about the user) then v1 (made by the user's event)", user, ids)
	}
	if got, err := f.s.UserVerdicts(f.ctx, user, 1); err != nil || len(got) != 1 || got[0].ID != "v2" {
		t.Fatalf("UserVerdicts(n=1) = %v, %v; want v2", verdictIDs(got), err)
	}
	if got, err := f.s.UserVerdicts(f.ctx, f.id(), 10); err != nil || len(got) != 0 {
		t.Fatalf("UserVerdicts(a stranger) = %v, %v; want none", verdictIDs(got), err)
	}
}

func runAllows(t *testing.T, f *fixture) {
	a := surge.RiskAllow{Subject: surge.SubjectDevice, Value: "dev-1", Reason: "support", By: 9, CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}
	must(t, "Allow", f.s.Allow(f.ctx, a))
	must(t, "Allow(expired)", f.s.Allow(f.ctx, surge.RiskAllow{Subject: surge.SubjectIP, Value: "192.0.2.1", Reason: "old", By: 9,
		CreatedAt: f.now.Add(-time.Hour), ExpiresAt: f.now}))
	// The same subject and value under another subject kind is another entry.
	must(t, "Allow(user)", f.s.Allow(f.ctx, surge.RiskAllow{Subject: surge.SubjectUser, Value: "dev-1", Reason: "other", By: 9,
		CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}))
	replaced := surge.RiskAllow{Subject: surge.SubjectDevice, Value: "dev-1", Reason: "false positive", By: 10,
		CreatedAt: f.now.Add(time.Second), ExpiresAt: f.now.Add(2 * time.Hour)}
	must(t, "Allow(again)", f.s.Allow(f.ctx, replaced))
	list, err := f.s.ActiveAllows(f.ctx, f.now, 10)
	must(t, "ActiveAllows", err)
	if len(list) != 2 {
		t.Fatalf("ActiveAllows = %+v; want the device's and the user's entries", list)
	}
	var got surge.RiskAllow
	for _, x := range list {
		if x.Subject == surge.SubjectDevice {
			got = x
		}
	}
	if got.Value != "dev-1" || got.Reason != replaced.Reason || got.By != replaced.By || !got.CreatedAt.Equal(replaced.CreatedAt) ||
		!got.ExpiresAt.Equal(replaced.ExpiresAt) {
		t.Fatalf("the device's entry = %+v; want %+v (replaced)", got, replaced)
	}
	if list, err := f.s.ActiveAllows(f.ctx, f.now.Add(3*time.Hour), 10); err != nil || len(list) != 0 {
		t.Fatalf("ActiveAllows(later) = %+v, %v; want none", list, err)
	}
	must(t, "Disallow", f.s.Disallow(f.ctx, surge.SubjectDevice, "dev-1"))
	wantCode(t, "Disallow(again)", f.s.Disallow(f.ctx, surge.SubjectDevice, "dev-1"), surge.ENOTFOUND)
	wantCode(t, "Disallow(missing)", f.s.Disallow(f.ctx, surge.SubjectNetwork, "203.0.113.0/24"), surge.ENOTFOUND)
	if list, err := f.s.ActiveAllows(f.ctx, f.now, 10); err != nil || len(list) != 1 || list[0].Subject != surge.SubjectUser {
		t.Fatalf("ActiveAllows after Disallow = %+v, %v; want the user's entry only", list, err)
	}
}
