// Package auth registers users and logs them in: passwords (argon2id), phone one-time codes,
// signed access tokens with rotating refresh tokens, brute-force throttling, and roles.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/surgecommerce/surge"
)

const issuer = "surge"

// Throttle limits. Failures are counted per account and per client IP in fixed windows.
const (
	MaxLoginFailuresPerAccount = 5
	MaxLoginFailuresPerIP      = 50
	LoginFailureWindow         = 15 * time.Minute
	MaxOTPSendsPerPhone        = 3
	MaxOTPSendsPerIP           = 30
	OTPSendWindow              = 10 * time.Minute
	otpDigits                  = 6
)

// Config holds the token settings.
type Config struct {
	Log        *slog.Logger
	Secret     []byte        // HMAC key for access tokens; every node of a deployment shares it
	AccessTTL  time.Duration // life of an access token
	RefreshTTL time.Duration // life of a refresh token
	OTPTTL     time.Duration // life of a one-time code
}

// Sender delivers one-time codes (an SMS gateway in production).
type Sender interface {
	Send(ctx context.Context, phone, code string) error
}

// Service is the login service.
type Service struct {
	users    surge.UserStore
	ids      func() (int64, error)
	counter  surge.Counter
	sender   Sender
	cfg      Config
	now      func() time.Time
	hash     *hasher
	decoyPHC string    // verified against when the account does not exist, so timing tells nothing
	macs     sync.Pool // HMAC-SHA256 under the token secret, reused across requests
	verified *verified // access tokens already checked
}

// New returns a login service. now may be nil for the wall clock.
func New(users surge.UserStore, ids func() (int64, error), counter surge.Counter, sender Sender, cfg Config, now func() time.Time) (*Service, error) {
	if len(cfg.Secret) < 32 {
		return nil, surge.Errorf(surge.EINVALID, "the token secret must be at least 32 bytes")
	}
	if now == nil {
		now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{users: users, ids: ids, counter: counter, sender: sender, cfg: cfg, now: now, hash: newHasher(), verified: newVerified()}
	s.macs.New = func() any { return hmac.New(sha256.New, cfg.Secret) }
	decoy, err := s.hash.Hash(context.Background(), "decoy password")
	if err != nil {
		return nil, err
	}
	s.decoyPHC = decoy
	return s, nil
}

// Tokens is what a successful login returns.
type Tokens struct {
	AccessToken  string      `json:"access_token"`
	RefreshToken string      `json:"refresh_token"`
	TokenType    string      `json:"token_type"`
	ExpiresIn    int64       `json:"expires_in"` // seconds until the access token expires
	User         *surge.User `json:"user"`
}

// NewUser is a request to create an account with a password. There is no phone: a phone joins
// an account only by proving it with a one-time code, or anyone could claim someone else's
// number and receive their logins.
type NewUser struct {
	Username string     `json:"username"`
	Email    string     `json:"email"`
	Password string     `json:"password"`
	Role     surge.Role `json:"role"` // only admins may set it; self-registration is always shopper
}

// normalize lower-cases the identities that are matched case-insensitively.
func (n *NewUser) normalize() {
	n.Username, n.Email = strings.ToLower(n.Username), strings.ToLower(n.Email)
}

// Register creates a shopper account with a password and logs it in.
func (s *Service) Register(ctx context.Context, req NewUser) (*Tokens, error) {
	req.Role = surge.RoleShopper
	u, err := s.create(ctx, req)
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, u)
}

// CreateUser lets an admin create an account with any role. Returns EFORBIDDEN for others.
func (s *Service) CreateUser(ctx context.Context, actor surge.Actor, req NewUser) (*surge.User, error) {
	if actor.Role != surge.RoleAdmin {
		return nil, surge.Errorf(surge.EFORBIDDEN, "only admins create accounts with roles")
	}
	return s.create(ctx, req)
}

func (s *Service) create(ctx context.Context, req NewUser) (*surge.User, error) {
	req.normalize()
	if req.Username == "" && req.Email == "" {
		return nil, surge.Errorf(surge.EINVALID, "a username or email is required")
	}
	if err := ValidatePassword(req.Password); err != nil {
		return nil, err
	}
	u := &surge.User{Username: req.Username, Email: req.Email, Role: req.Role, CreatedAt: s.now().UTC()}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	var err error
	if u.PasswordHash, err = s.hash.Hash(ctx, req.Password); err != nil {
		return nil, err
	}
	if u.ID, err = s.ids(); err != nil {
		return nil, err
	}
	if err := s.users.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// Login checks a username or email and password. After MaxLoginFailuresPerAccount wrong
// passwords for one account, or MaxLoginFailuresPerIP from one IP, within LoginFailureWindow,
// further attempts get ERATELIMIT without being checked.
func (s *Service) Login(ctx context.Context, login, password, ip string) (*Tokens, error) {
	login = strings.ToLower(login)
	if err := surge.ValidateText("login", login, 1, 254); err != nil {
		return nil, err
	}
	if len(password) > surge.MaxPasswordBytes {
		return nil, surge.Errorf(surge.EINVALID, "password must be at most %d bytes", surge.MaxPasswordBytes)
	}
	acct := quota{"login:acct:" + login, MaxLoginFailuresPerAccount, LoginFailureWindow}
	fromIP := quota{"login:ip:" + ip, MaxLoginFailuresPerIP, LoginFailureWindow}
	if err := s.take(ctx, acct, fromIP); err != nil {
		return nil, err
	}
	u, err := s.users.UserByLogin(ctx, login)
	phc := s.decoyPHC
	switch {
	case err == nil && u.PasswordHash != "":
		phc = u.PasswordHash
	case err != nil && surge.ErrorCode(err) != surge.ENOTFOUND:
		return nil, err
	}
	ok, err := s.hash.Verify(ctx, phc, password)
	if err != nil {
		return nil, err
	}
	if !ok || u == nil || u.PasswordHash == "" {
		return nil, surge.Errorf(surge.EUNAUTHORIZED, "wrong login or password")
	}
	s.giveBack(ctx, acct, fromIP)
	return s.issue(ctx, u)
}

// quota is a throttle key, the count past which it refuses, and its window.
type quota struct {
	key    string
	max    int64
	window time.Duration
}

// take counts one attempt against every quota before the attempt runs, and refuses with
// ERATELIMIT if any is used up. Counting first means concurrent attempts cannot all slip past
// one read of the count. A counter that fails lets the attempt through and logs: a broken
// throttle must not lock every user out.
func (s *Service) take(ctx context.Context, qs ...quota) error {
	over := false
	for _, q := range qs {
		n, err := s.counter.Add(ctx, q.key, 1, q.window)
		if err != nil {
			s.cfg.Log.WarnContext(ctx, "throttle counter failed; letting the attempt through", "key", q.key, "err", err)
			continue
		}
		over = over || n > q.max
	}
	if over {
		return surge.Errorf(surge.ERATELIMIT, "too many attempts; try again later")
	}
	return nil
}

// give back uncounts an attempt that succeeded, so only failures use up a quota.
func (s *Service) giveBack(ctx context.Context, qs ...quota) {
	for _, q := range qs {
		if _, err := s.counter.Add(ctx, q.key, -1, q.window); err != nil {
			s.cfg.Log.WarnContext(ctx, "throttle counter failed", "key", q.key, "err", err)
		}
	}
}

// SendOTP sends a fresh one-time code to a phone, at most MaxOTPSendsPerPhone per phone and
// MaxOTPSendsPerIP per IP within OTPSendWindow.
func (s *Service) SendOTP(ctx context.Context, phone, ip string) error {
	if err := surge.ValidatePhone(phone); err != nil {
		return err
	}
	perPhone := quota{"otp:phone:" + phone, MaxOTPSendsPerPhone, OTPSendWindow}
	fromIP := quota{"otp:ip:" + ip, MaxOTPSendsPerIP, OTPSendWindow}
	if err := s.take(ctx, perPhone, fromIP); err != nil { // every send counts, not just failures
		return err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return err
	}
	code := fmt.Sprintf("%0*d", otpDigits, n.Int64())
	otp := surge.OTP{Phone: phone, CodeHash: hashSecret(phone + ":" + code), ExpiresAt: s.now().Add(s.cfg.OTPTTL)}
	if err := s.users.SaveOTP(ctx, otp); err != nil {
		return err
	}
	return s.sender.Send(ctx, phone, code)
}

// LoginOTP logs in with a phone and the code sent to it. A phone without an account gets a new
// shopper account: for phone login, signing up and logging in are one step.
func (s *Service) LoginOTP(ctx context.Context, phone, code, ip string) (*Tokens, error) {
	if err := surge.ValidatePhone(phone); err != nil {
		return nil, err
	}
	if len(code) != otpDigits {
		return nil, surge.Errorf(surge.EINVALID, "code must be %d digits", otpDigits)
	}
	// Wrong codes per phone are capped by the store (MaxOTPAttempts); this caps one IP
	// guessing across many phones.
	fromIP := quota{"login:ip:" + ip, MaxLoginFailuresPerIP, LoginFailureWindow}
	if err := s.take(ctx, fromIP); err != nil {
		return nil, err
	}
	if err := s.users.ConsumeOTP(ctx, phone, hashSecret(phone+":"+code), s.now()); err != nil {
		if surge.ErrorCode(err) != surge.EUNAUTHORIZED {
			s.giveBack(ctx, fromIP) // not a wrong guess
		}
		return nil, err
	}
	s.giveBack(ctx, fromIP)
	u, err := s.users.UserByPhone(ctx, phone)
	if surge.ErrorCode(err) == surge.ENOTFOUND {
		u = &surge.User{Phone: phone, Role: surge.RoleShopper, CreatedAt: s.now().UTC()}
		if u.ID, err = s.ids(); err != nil {
			return nil, err
		}
		if err = s.users.CreateUser(ctx, u); surge.ErrorCode(err) == surge.ECONFLICT {
			u, err = s.users.UserByPhone(ctx, phone) // a concurrent first login created it
		}
	}
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, u)
}

// Refresh swaps a refresh token, once, for a new access and refresh token.
func (s *Service) Refresh(ctx context.Context, refresh string) (*Tokens, error) {
	if len(refresh) == 0 || len(refresh) > 128 {
		return nil, surge.Errorf(surge.EUNAUTHORIZED, "refresh token is not valid")
	}
	t, err := s.users.TakeRefreshToken(ctx, hashSecret(refresh), s.now())
	if err != nil {
		return nil, err
	}
	u, err := s.users.UserByID(ctx, t.UserID)
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, u)
}

// Logout revokes a refresh token; with everywhere, every refresh token of its user. Access
// tokens already issued stay valid until they expire (AccessTTL), which is why it is short.
func (s *Service) Logout(ctx context.Context, refresh string, everywhere bool) error {
	if len(refresh) == 0 || len(refresh) > 128 {
		return surge.Errorf(surge.EUNAUTHORIZED, "refresh token is not valid")
	}
	t, err := s.users.TakeRefreshToken(ctx, hashSecret(refresh), s.now())
	if err != nil && surge.ErrorCode(err) != surge.EUNAUTHORIZED {
		return err
	}
	if err == nil && everywhere {
		return s.users.DeleteUserRefreshTokens(ctx, t.UserID)
	}
	return nil
}

// Me returns the actor's account.
func (s *Service) Me(ctx context.Context, actor surge.Actor) (*surge.User, error) {
	return s.users.UserByID(ctx, actor.UserID)
}

// Bootstrap creates the first admin account if no user has that username yet. It is how a new
// deployment gets its first operator; the password can be changed afterwards.
func (s *Service) Bootstrap(ctx context.Context, username, password string) (created bool, err error) {
	u, err := s.users.UserByLogin(ctx, strings.ToLower(username))
	if err == nil && u.Role != surge.RoleAdmin {
		return false, surge.Errorf(surge.ECONFLICT, "the bootstrap admin name %q belongs to a %s account; choose another admin-user", username, u.Role)
	}
	if err == nil || surge.ErrorCode(err) != surge.ENOTFOUND {
		return false, err
	}
	_, err = s.create(ctx, NewUser{Username: username, Password: password, Role: surge.RoleAdmin})
	if surge.ErrorCode(err) == surge.ECONFLICT { // another node created it first
		return false, nil
	}
	return err == nil, err
}

func (s *Service) issue(ctx context.Context, u *surge.User) (*Tokens, error) {
	now := s.now()
	access, err := s.signAccess(u, now)
	if err != nil {
		return nil, err
	}
	refresh, hash, err := newSecret()
	if err != nil {
		return nil, err
	}
	if err := s.users.SaveRefreshToken(ctx, surge.RefreshToken{Hash: hash, UserID: u.ID, ExpiresAt: now.Add(s.cfg.RefreshTTL)}); err != nil {
		return nil, err
	}
	return &Tokens{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int64(s.cfg.AccessTTL / time.Second), User: u}, nil
}
