package auth_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

type env struct {
	svc    *auth.Service
	sender *auth.LogSender
	clock  *clock
	ctx    context.Context
}

var secret = []byte(strings.Repeat("k", 32))

func newEnv(t *testing.T) *env {
	t.Helper()
	db := storetest.SQLite(t)
	c := &clock{t: time.Now()}
	sender := auth.NewLogSender(slog.New(slog.NewTextHandler(io.Discard, nil)))
	svc, err := auth.New(db, storetest.IDs(), ratelimit.NewCounter(c.now), sender,
		auth.Config{Secret: secret, AccessTTL: time.Minute, RefreshTTL: time.Hour, OTPTTL: time.Minute}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, sender: sender, clock: c, ctx: context.Background()}
}

func code(err error) string { return surge.ErrorCode(err) }

func TestRegisterLoginAndTokens(t *testing.T) {
	e := newEnv(t)
	tok, err := e.svc.Register(e.ctx, auth.NewUser{Username: "Alice", Email: "Alice@Example.com", Password: "correct horse", Role: surge.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if tok.User.Role != surge.RoleShopper || tok.User.Username != "alice" || tok.User.Email != "alice@example.com" {
		t.Fatalf("Register = %+v; want a lower-cased shopper whatever role was asked for", tok.User)
	}
	for _, login := range []string{"alice", "ALICE", "alice@example.com"} {
		if _, err := e.svc.Login(e.ctx, login, "correct horse", "1.2.3.4"); err != nil {
			t.Fatalf("Login(%q) = %v", login, err)
		}
	}
	actor, err := e.svc.Authenticate(tok.AccessToken)
	if err != nil || actor.UserID != tok.User.ID || actor.Role != surge.RoleShopper {
		t.Fatalf("Authenticate = %+v, %v", actor, err)
	}
	if _, err := e.svc.Register(e.ctx, auth.NewUser{Username: "alice", Password: "another pass"}); code(err) != surge.ECONFLICT {
		t.Fatalf("Register(taken) = %v; want ECONFLICT", err)
	}
	if _, err := e.svc.Register(e.ctx, auth.NewUser{Username: "bob", Password: "short"}); code(err) != surge.EINVALID {
		t.Fatalf("Register(short password) = %v; want EINVALID", err)
	}

	e.clock.advance(2 * time.Minute)
	if _, err := e.svc.Authenticate(tok.AccessToken); code(err) != surge.EUNAUTHORIZED {
		t.Fatalf("Authenticate(expired) = %v; want EUNAUTHORIZED", err)
	}
	next, err := e.svc.Refresh(e.ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh = %v", err)
	}
	if _, err := e.svc.Refresh(e.ctx, tok.RefreshToken); code(err) != surge.EUNAUTHORIZED {
		t.Fatalf("Refresh(reused) = %v; want EUNAUTHORIZED", err)
	}
	if err := e.svc.Logout(e.ctx, next.RefreshToken, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Refresh(e.ctx, next.RefreshToken); code(err) != surge.EUNAUTHORIZED {
		t.Fatalf("Refresh(after logout) = %v; want EUNAUTHORIZED", err)
	}
}

func TestForgedTokensAreRefused(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.svc.Register(e.ctx, auth.NewUser{Username: "alice", Password: "correct horse"})
	claims := jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()}
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(strings.Repeat("x", 32)))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin"}).SignedString(secret)
	badRole, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "root", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	parts := strings.Split(tok.AccessToken, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
	for name, token := range map[string]string{"wrong key": wrongKey, "alg none": none, "no expiry": noExp,
		"unknown role": badRole, "tampered": tampered, "garbage": "a.b.c", "empty": ""} {
		if _, err := e.svc.Authenticate(token); code(err) != surge.EUNAUTHORIZED {
			t.Errorf("Authenticate(%s) = %v; want EUNAUTHORIZED", name, err)
		}
	}
}

func TestBruteForceIsThrottled(t *testing.T) {
	e := newEnv(t)
	e.svc.Register(e.ctx, auth.NewUser{Username: "alice", Password: "correct horse"})
	for i := 0; i < auth.MaxLoginFailuresPerAccount; i++ {
		if _, err := e.svc.Login(e.ctx, "alice", "guess", "1.1.1.1"); code(err) != surge.EUNAUTHORIZED {
			t.Fatalf("Login(wrong) #%d = %v; want EUNAUTHORIZED", i, err)
		}
	}
	if _, err := e.svc.Login(e.ctx, "alice", "correct horse", "2.2.2.2"); code(err) != surge.ERATELIMIT {
		t.Fatalf("Login(right, after %d failures) = %v; want ERATELIMIT", auth.MaxLoginFailuresPerAccount, err)
	}
	e.clock.advance(auth.LoginFailureWindow + time.Second)
	if _, err := e.svc.Login(e.ctx, "alice", "correct horse", "2.2.2.2"); err != nil {
		t.Fatalf("Login after the window = %v; want success", err)
	}
	// Unknown accounts are throttled the same way, so probing tells nothing.
	for i := 0; i < auth.MaxLoginFailuresPerAccount; i++ {
		e.svc.Login(e.ctx, "nobody", "guess", "3.3.3.3")
	}
	if _, err := e.svc.Login(e.ctx, "nobody", "guess", "4.4.4.4"); code(err) != surge.ERATELIMIT {
		t.Fatalf("Login(unknown, throttled) = %v; want ERATELIMIT", err)
	}
}

func TestPhoneCodeLogin(t *testing.T) {
	e := newEnv(t)
	phone := "+8613800138000"
	if err := e.svc.SendOTP(e.ctx, phone, "1.1.1.1"); err != nil {
		t.Fatal(err)
	}
	c, ok := e.sender.LastCode(phone)
	if !ok || len(c) != 6 {
		t.Fatalf("LastCode = %q, %v", c, ok)
	}
	wrong := "000000"
	if c == wrong {
		wrong = "111111"
	}
	if _, err := e.svc.LoginOTP(e.ctx, phone, wrong, "1.1.1.1"); code(err) != surge.EUNAUTHORIZED {
		t.Fatalf("LoginOTP(wrong) = %v; want EUNAUTHORIZED", err)
	}
	tok, err := e.svc.LoginOTP(e.ctx, phone, c, "1.1.1.1")
	if err != nil || tok.User.Phone != phone || tok.User.Role != surge.RoleShopper {
		t.Fatalf("LoginOTP = %+v, %v; want a new shopper", tok, err)
	}
	if _, err := e.svc.LoginOTP(e.ctx, phone, c, "1.1.1.1"); code(err) != surge.EUNAUTHORIZED {
		t.Fatalf("LoginOTP(replayed) = %v; want EUNAUTHORIZED", err)
	}
	e.svc.SendOTP(e.ctx, phone, "1.1.1.1")
	c2, _ := e.sender.LastCode(phone)
	again, err := e.svc.LoginOTP(e.ctx, phone, c2, "1.1.1.1")
	if err != nil || again.User.ID != tok.User.ID {
		t.Fatalf("second LoginOTP = %+v, %v; want the same account", again, err)
	}
	e.svc.SendOTP(e.ctx, phone, "1.1.1.1")
	if err := e.svc.SendOTP(e.ctx, phone, "1.1.1.1"); code(err) != surge.ERATELIMIT {
		t.Fatalf("SendOTP #%d = %v; want ERATELIMIT", auth.MaxOTPSendsPerPhone+1, err)
	}
	for _, bad := range []string{"", "13800138000", "+86-138", "+8613800138000000000"} {
		if err := e.svc.SendOTP(e.ctx, bad, "1.1.1.1"); code(err) != surge.EINVALID {
			t.Errorf("SendOTP(%q) = %v; want EINVALID", bad, err)
		}
	}
}

func TestBootstrapAndRoles(t *testing.T) {
	e := newEnv(t)
	created, err := e.svc.Bootstrap(e.ctx, "root", "bootstrap-pass")
	if err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v; want created", created, err)
	}
	if created, err := e.svc.Bootstrap(e.ctx, "root", "other-pass"); err != nil || created {
		t.Fatalf("Bootstrap(again) = %v, %v; want a no-op", created, err)
	}
	tok, err := e.svc.Login(e.ctx, "root", "bootstrap-pass", "1.1.1.1")
	if err != nil || tok.User.Role != surge.RoleAdmin {
		t.Fatalf("Login(admin) = %+v, %v", tok, err)
	}
	admin := surge.Actor{UserID: tok.User.ID, Role: surge.RoleAdmin}
	m, err := e.svc.CreateUser(e.ctx, admin, auth.NewUser{Username: "shop1", Password: "merchant-pass", Role: surge.RoleMerchant})
	if err != nil || m.Role != surge.RoleMerchant {
		t.Fatalf("CreateUser(merchant) = %+v, %v", m, err)
	}
	if _, err := e.svc.CreateUser(e.ctx, admin, auth.NewUser{Username: "x1", Password: "merchant-pass", Role: "king"}); code(err) != surge.EINVALID {
		t.Fatalf("CreateUser(bad role) = %v; want EINVALID", err)
	}
	op := surge.Actor{UserID: m.ID, Role: surge.RoleOperator}
	if _, err := e.svc.CreateUser(e.ctx, op, auth.NewUser{Username: "x2", Password: "merchant-pass", Role: surge.RoleAdmin}); code(err) != surge.EFORBIDDEN {
		t.Fatalf("CreateUser(by operator) = %v; want EFORBIDDEN", err)
	}
}

// Concurrent guesses must not all slip past one read of the failure count.
func TestConcurrentGuessesAreThrottled(t *testing.T) {
	e := newEnv(t)
	e.svc.Register(e.ctx, auth.NewUser{Username: "alice", Password: "correct horse"})
	var wg sync.WaitGroup
	var mu sync.Mutex
	checked := 0
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.Login(e.ctx, "alice", "guess", fmt.Sprint("10.0.0.", i))
			if code(err) == surge.EUNAUTHORIZED {
				mu.Lock()
				checked++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if checked > auth.MaxLoginFailuresPerAccount {
		t.Fatalf("%d of 40 concurrent guesses were checked; want at most %d", checked, auth.MaxLoginFailuresPerAccount)
	}
}

func TestBootstrapRefusesASquattedName(t *testing.T) {
	e := newEnv(t)
	e.svc.Register(e.ctx, auth.NewUser{Username: "admin", Password: "squatter-pass"})
	if _, err := e.svc.Bootstrap(e.ctx, "admin", "bootstrap-pass"); code(err) != surge.ECONFLICT {
		t.Fatalf("Bootstrap(name taken by a shopper) = %v; want ECONFLICT", err)
	}
}
