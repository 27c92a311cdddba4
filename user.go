package surge

import (
	"context"
	"strings"
	"time"
)

// Role is what a user may do on the platform.
type Role string

// The roles. A merchant owns one shop, identified by the merchant's user id.
const (
	RoleShopper  Role = "shopper"
	RoleMerchant Role = "merchant"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleShopper, RoleMerchant, RoleOperator, RoleAdmin:
		return true
	}
	return false
}

// Staff reports whether r runs the platform (operator or admin) and so may act for any merchant.
func (r Role) Staff() bool { return r == RoleOperator || r == RoleAdmin }

// User is an account. Username, email and phone are each unique when set; at least one is set.
type User struct {
	ID           int64     `json:"id,string"`
	Username     string    `json:"username,omitempty"`
	Email        string    `json:"email,omitempty"`
	Phone        string    `json:"phone,omitempty"`
	Role         Role      `json:"role"`
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
}

// MerchantID is the shop a user acts for: its own id for merchants, 0 for everyone else.
func (u *User) MerchantID() int64 {
	if u.Role == RoleMerchant {
		return u.ID
	}
	return 0
}

// Validate checks the user's fields; it does not look at the password hash.
func (u *User) Validate() error {
	if u.Username == "" && u.Email == "" && u.Phone == "" {
		return Errorf(EINVALID, "a username, email or phone is required")
	}
	if u.Username != "" {
		if err := ValidateUsername(u.Username); err != nil {
			return err
		}
	}
	if u.Email != "" {
		if err := ValidateEmail(u.Email); err != nil {
			return err
		}
	}
	if u.Phone != "" {
		if err := ValidatePhone(u.Phone); err != nil {
			return err
		}
	}
	if !u.Role.Valid() {
		return Errorf(EINVALID, "role must be shopper, merchant, operator or admin")
	}
	return nil
}

// ValidateUsername accepts 3 to 32 letters, digits, '_', '-' and '.', starting with a letter.
func ValidateUsername(s string) error {
	if len(s) < 3 || len(s) > 32 {
		return Errorf(EINVALID, "username must be 3 to 32 characters")
	}
	for i, c := range []byte(s) {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return Errorf(EINVALID, "username must start with a letter")
		}
		if !letter && !(c >= '0' && c <= '9') && c != '_' && c != '-' && c != '.' {
			return Errorf(EINVALID, "username may hold only letters, digits, '_', '-' and '.'")
		}
	}
	return nil
}

// ValidateEmail is deliberately loose: one '@' with text on both sides and a dot in the domain.
// Whether the mailbox exists is for a confirmation mail to find out, not a pattern.
func ValidateEmail(s string) error {
	if err := ValidateText("email", s, 3, 254); err != nil {
		return err
	}
	at := strings.IndexByte(s, '@')
	if at < 1 || at != strings.LastIndexByte(s, '@') || !strings.Contains(s[at+1:], ".") ||
		strings.ContainsAny(s, " \t\n") || strings.HasSuffix(s, ".") {
		return Errorf(EINVALID, "email is not a valid address")
	}
	return nil
}

// ValidatePhone accepts E.164 numbers: '+' then 8 to 15 digits.
func ValidatePhone(s string) error {
	if len(s) < 9 || len(s) > 16 || s[0] != '+' {
		return Errorf(EINVALID, "phone must be in E.164 form, such as +8613800138000")
	}
	for _, c := range []byte(s[1:]) {
		if c < '0' || c > '9' {
			return Errorf(EINVALID, "phone must be in E.164 form, such as +8613800138000")
		}
	}
	return nil
}

// RefreshToken is a long-lived credential that can be swapped, once, for new tokens. Only a hash
// of the secret is stored.
type RefreshToken struct {
	Hash      string
	UserID    int64
	ExpiresAt time.Time
}

// OTP is a one-time login code sent to a phone. Only a hash of the code is stored.
type OTP struct {
	Phone     string
	CodeHash  string
	ExpiresAt time.Time
}

// MaxOTPAttempts is how many wrong codes a phone may try before its code is burnt.
const MaxOTPAttempts = 5

// UserStore keeps accounts and their login credentials.
type UserStore interface {
	// CreateUser stores a new user with u.ID already set. Returns ECONFLICT if the username,
	// email or phone is taken.
	CreateUser(ctx context.Context, u *User) error
	// UserByID returns ENOTFOUND if there is no such user.
	UserByID(ctx context.Context, id int64) (*User, error)
	// UserByLogin finds a user by username or email (case-insensitive email). Returns ENOTFOUND.
	UserByLogin(ctx context.Context, login string) (*User, error)
	// UserByPhone returns ENOTFOUND if no user has this phone.
	UserByPhone(ctx context.Context, phone string) (*User, error)

	// SaveRefreshToken stores a new refresh token.
	SaveRefreshToken(ctx context.Context, t RefreshToken) error
	// TakeRefreshToken deletes the token with this hash and returns it, so it can be used only
	// once. Returns EUNAUTHORIZED if it does not exist or expired before now.
	TakeRefreshToken(ctx context.Context, hash string, now time.Time) (RefreshToken, error)
	// DeleteUserRefreshTokens revokes every refresh token of a user (logout everywhere).
	DeleteUserRefreshTokens(ctx context.Context, userID int64) error

	// SaveOTP stores a code for a phone, replacing any earlier one and its attempt count.
	SaveOTP(ctx context.Context, o OTP) error
	// ConsumeOTP checks a code hash for a phone. On a match the code is deleted. Returns
	// EUNAUTHORIZED if there is no live code or it does not match (and counts the attempt), and
	// ERATELIMIT once MaxOTPAttempts wrong codes were tried.
	ConsumeOTP(ctx context.Context, phone, codeHash string, now time.Time) error
}

// Actor is who makes a request: an authenticated user's id and role.
type Actor struct {
	UserID int64
	Role   Role
	Test   bool // a load test's synthetic shopper: its traffic is counted apart
}

// MerchantID is the shop the actor acts for: its own id for merchants, 0 for everyone else.
func (a Actor) MerchantID() int64 {
	if a.Role == RoleMerchant {
		return a.UserID
	}
	return 0
}
