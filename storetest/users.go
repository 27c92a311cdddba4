package storetest

import (
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// RunUsers checks the surge.UserStore contract.
func RunUsers(t *testing.T, open Open) {
	t.Run("CreateAndFind", func(t *testing.T) {
		f := newFixture(t, open)
		u := &surge.User{ID: f.id(), Username: "alice", Email: "alice@example.com", Role: surge.RoleShopper,
			PasswordHash: "h", CreatedAt: f.now}
		must(t, "CreateUser", f.s.CreateUser(f.ctx, u))
		p := &surge.User{ID: f.id(), Phone: "+8613800138000", Role: surge.RoleMerchant, CreatedAt: f.now}
		must(t, "CreateUser(phone only)", f.s.CreateUser(f.ctx, p))

		for _, login := range []string{"alice", "alice@example.com"} {
			got, err := f.s.UserByLogin(f.ctx, login)
			if err != nil || got.ID != u.ID || got.PasswordHash != "h" || !got.CreatedAt.Equal(f.now) {
				t.Fatalf("UserByLogin(%q) = %+v, %v; want %+v", login, got, err, u)
			}
		}
		got, err := f.s.UserByPhone(f.ctx, "+8613800138000")
		if err != nil || got.ID != p.ID || got.Role != surge.RoleMerchant || got.Username != "" {
			t.Fatalf("UserByPhone = %+v, %v; want %+v", got, err, p)
		}
		got, err = f.s.UserByID(f.ctx, u.ID)
		if err != nil || got.Email != u.Email {
			t.Fatalf("UserByID = %+v, %v", got, err)
		}
		_, err = f.s.UserByID(f.ctx, 42)
		wantCode(t, "UserByID(unknown)", err, surge.ENOTFOUND)
		_, err = f.s.UserByLogin(f.ctx, "bob")
		wantCode(t, "UserByLogin(unknown)", err, surge.ENOTFOUND)
	})

	t.Run("UniqueIdentities", func(t *testing.T) {
		f := newFixture(t, open)
		must(t, "CreateUser", f.s.CreateUser(f.ctx, &surge.User{ID: f.id(), Username: "alice", Email: "a@x.io",
			Phone: "+10000000001", Role: surge.RoleShopper, CreatedAt: f.now}))
		for name, u := range map[string]*surge.User{
			"username": {Username: "alice"},
			"email":    {Username: "other1", Email: "a@x.io"},
			"phone":    {Username: "other2", Phone: "+10000000001"},
		} {
			u.ID, u.Role, u.CreatedAt = f.id(), surge.RoleShopper, f.now
			wantCode(t, "CreateUser(duplicate "+name+")", f.s.CreateUser(f.ctx, u), surge.ECONFLICT)
		}
		// Unset identities are not duplicates of each other.
		for i := range 3 {
			must(t, "CreateUser(no email)", f.s.CreateUser(f.ctx, &surge.User{ID: f.id(),
				Username: "user" + string(rune('a'+i)), Role: surge.RoleShopper, CreatedAt: f.now}))
		}
	})

	t.Run("RefreshTokensAreSingleUse", func(t *testing.T) {
		f := newFixture(t, open)
		u := &surge.User{ID: f.id(), Username: "alice", Role: surge.RoleShopper, CreatedAt: f.now}
		must(t, "CreateUser", f.s.CreateUser(f.ctx, u))
		tok := surge.RefreshToken{Hash: "h1", UserID: u.ID, ExpiresAt: f.now.Add(time.Hour)}
		must(t, "SaveRefreshToken", f.s.SaveRefreshToken(f.ctx, tok))
		got, err := f.s.TakeRefreshToken(f.ctx, "h1", f.now)
		if err != nil || got.UserID != u.ID {
			t.Fatalf("TakeRefreshToken = %+v, %v; want user %d", got, err, u.ID)
		}
		_, err = f.s.TakeRefreshToken(f.ctx, "h1", f.now)
		wantCode(t, "TakeRefreshToken(again)", err, surge.EUNAUTHORIZED)

		must(t, "SaveRefreshToken", f.s.SaveRefreshToken(f.ctx, surge.RefreshToken{Hash: "old", UserID: u.ID, ExpiresAt: f.now}))
		_, err = f.s.TakeRefreshToken(f.ctx, "old", f.now)
		wantCode(t, "TakeRefreshToken(expired)", err, surge.EUNAUTHORIZED)

		for _, h := range []string{"a", "b"} {
			must(t, "SaveRefreshToken", f.s.SaveRefreshToken(f.ctx, surge.RefreshToken{Hash: h, UserID: u.ID, ExpiresAt: f.now.Add(time.Hour)}))
		}
		must(t, "DeleteUserRefreshTokens", f.s.DeleteUserRefreshTokens(f.ctx, u.ID))
		_, err = f.s.TakeRefreshToken(f.ctx, "a", f.now)
		wantCode(t, "TakeRefreshToken(after logout)", err, surge.EUNAUTHORIZED)

		must(t, "SaveRefreshToken", f.s.SaveRefreshToken(f.ctx, surge.RefreshToken{Hash: "race", UserID: u.ID, ExpiresAt: f.now.Add(time.Hour)}))
		won := concurrently(8, func(int) error { _, err := f.s.TakeRefreshToken(f.ctx, "race", f.now); return err })
		if won != 1 {
			t.Fatalf("%d concurrent TakeRefreshToken calls succeeded; want exactly 1", won)
		}
	})

	t.Run("OneTimeCodes", func(t *testing.T) {
		f := newFixture(t, open)
		phone := "+8613800138000"
		err := f.s.ConsumeOTP(f.ctx, phone, "c", f.now)
		wantCode(t, "ConsumeOTP(none sent)", err, surge.EUNAUTHORIZED)

		must(t, "SaveOTP", f.s.SaveOTP(f.ctx, surge.OTP{Phone: phone, CodeHash: "good", ExpiresAt: f.now.Add(time.Minute)}))
		wantCode(t, "ConsumeOTP(wrong)", f.s.ConsumeOTP(f.ctx, phone, "bad", f.now), surge.EUNAUTHORIZED)
		must(t, "ConsumeOTP(right)", f.s.ConsumeOTP(f.ctx, phone, "good", f.now))
		wantCode(t, "ConsumeOTP(reused)", f.s.ConsumeOTP(f.ctx, phone, "good", f.now), surge.EUNAUTHORIZED)

		must(t, "SaveOTP", f.s.SaveOTP(f.ctx, surge.OTP{Phone: phone, CodeHash: "good", ExpiresAt: f.now.Add(time.Minute)}))
		for i := 0; i < surge.MaxOTPAttempts; i++ {
			wantCode(t, "ConsumeOTP(wrong)", f.s.ConsumeOTP(f.ctx, phone, "bad", f.now), surge.EUNAUTHORIZED)
		}
		wantCode(t, "ConsumeOTP(right after too many wrong)", f.s.ConsumeOTP(f.ctx, phone, "good", f.now), surge.ERATELIMIT)

		must(t, "SaveOTP(new code)", f.s.SaveOTP(f.ctx, surge.OTP{Phone: phone, CodeHash: "new", ExpiresAt: f.now.Add(time.Minute)}))
		must(t, "ConsumeOTP(new code resets attempts)", f.s.ConsumeOTP(f.ctx, phone, "new", f.now))

		must(t, "SaveOTP", f.s.SaveOTP(f.ctx, surge.OTP{Phone: phone, CodeHash: "late", ExpiresAt: f.now}))
		wantCode(t, "ConsumeOTP(expired)", f.s.ConsumeOTP(f.ctx, phone, "late", f.now), surge.EUNAUTHORIZED)

		must(t, "SaveOTP", f.s.SaveOTP(f.ctx, surge.OTP{Phone: phone, CodeHash: "once", ExpiresAt: f.now.Add(time.Minute)}))
		won := concurrently(8, func(int) error { return f.s.ConsumeOTP(f.ctx, phone, "once", f.now) })
		if won != 1 {
			t.Fatalf("%d concurrent ConsumeOTP calls succeeded; want exactly 1", won)
		}
	})
}
