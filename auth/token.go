package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/surgecommerce/surge"
)

// claims are what an access token carries.
type claims struct {
	Role string `json:"role"`
	Test bool   `json:"test,omitempty"` // a load test's synthetic shopper
	jwt.RegisteredClaims
}

// signAccess issues a short-lived HS256 access token for a user.
func (s *Service) signAccess(u *surge.User, now time.Time) (string, error) {
	return s.sign(u, false, now)
}

func (s *Service) sign(u *surge.User, test bool, now time.Time) (string, error) {
	c := claims{Role: string(u.Role), Test: test, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   strconv.FormatInt(u.ID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTTL)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.cfg.Secret)
}

// Authenticate checks an access token's signature, issuer and expiry and returns who it names.
// Returns EUNAUTHORIZED for any token that is not valid.
func (s *Service) Authenticate(token string) (surge.Actor, error) {
	now := s.now()
	if a, ok := s.verified.get(token, now); ok {
		return a, nil
	}
	if a, w, err, ok := s.authenticateIssued(token); ok {
		if err == nil {
			s.verified.put(token, a, w)
		}
		return a, err
	}
	return s.authenticateAny(token)
}

// authenticateAny checks a token of any form with the JWT library.
func (s *Service) authenticateAny(token string) (surge.Actor, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.cfg.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now))
	if err != nil {
		return surge.Actor{}, errBadToken
	}
	return actorOf(c.Subject, c.Role, c.Test)
}

var errBadToken = surge.Errorf(surge.EUNAUTHORIZED, "access token is not valid")

func actorOf(subject, r string, test bool) (surge.Actor, error) {
	id, err := strconv.ParseInt(subject, 10, 64)
	role := surge.Role(r)
	if err != nil || id <= 0 || !role.Valid() {
		return surge.Actor{}, errBadToken
	}
	return surge.Actor{UserID: id, Role: role, Test: test}, nil
}

// issuedHeader is the header segment of every token signAccess makes.
var issuedHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// issuedClaims are the claims authenticateIssued reads. The registered claims the library also
// decodes are typed here too, so that a claim of the wrong type fails decoding and the token
// goes to the library; an audience, which the library reads in two shapes, always does.
// Claims of nobody's are ignored, as the library does.
type issuedClaims struct {
	Issuer    string          `json:"iss"`
	Subject   string          `json:"sub"`
	Role      string          `json:"role"`
	Test      bool            `json:"test"`
	ExpiresAt *float64        `json:"exp"`
	NotBefore *float64        `json:"nbf"`
	IssuedAt  *float64        `json:"iat"`
	ID        *string         `json:"jti"`
	Audience  json.RawMessage `json:"aud"`
}

// readPlain reads the claims in the plain form signAccess writes (see surge.ReadPlainObject):
// each named once and exactly, with a value of its type. For anything else (an audience, an id,
// a claim of nobody's, a name in other letter case, a fraction) it reports false, and
// encoding/json reads them, as the library would.
func (c *issuedClaims) readPlain(b []byte) bool {
	var seen uint8
	return surge.ReadPlainObject(b, func(name []byte, v surge.PlainValue) bool {
		var str *string
		var date **float64
		var bit uint8
		switch string(name) {
		case "iss":
			str, bit = &c.Issuer, 1
		case "sub":
			str, bit = &c.Subject, 2
		case "role":
			str, bit = &c.Role, 4
		case "exp":
			date, bit = &c.ExpiresAt, 8
		case "nbf":
			date, bit = &c.NotBefore, 16
		case "iat":
			date, bit = &c.IssuedAt, 32
		case "test":
			bit = 64
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		switch {
		case str != nil && v.Kind == '"':
			*str = string(v.Str)
		case date != nil && v.Kind == '0':
			f := float64(v.Num)
			*date = &f
		case bit == 64 && (v.Kind == 't' || v.Kind == 'f'):
			c.Test = v.Kind == 't'
		default:
			return false // null, or the wrong type: encoding/json's rules apply
		}
		return true
	})
}

// maxIssuedPayload bounds the claims authenticateIssued decodes on the stack's behalf.
const maxIssuedPayload = 1024

// authenticateIssued checks a token in the exact form signAccess makes (every request on the
// purchase path carries one) without the library's general parsing, which cost more than the
// rest of a sold-out answer. ok is false for a token of any other form; the library then
// decides. The two agree on every token (FuzzAuthenticateAgrees).
func (s *Service) authenticateIssued(token string) (a surge.Actor, w window, err error, ok bool) {
	header, rest, found := strings.Cut(token, ".")
	if !found || header != issuedHeader {
		return a, w, nil, false
	}
	payload, sig, found := strings.Cut(rest, ".")
	if !found || base64.RawURLEncoding.DecodedLen(len(payload)) > maxIssuedPayload || len(sig) != 43 {
		return a, w, nil, false
	}
	var want, got [sha256.Size]byte
	if n, err := base64.RawURLEncoding.Decode(got[:], []byte(sig)); err != nil || n != len(got) {
		return a, w, nil, false
	}
	mac := s.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte(token[:len(header)+1+len(payload)]))
	mac.Sum(want[:0])
	s.macs.Put(mac)
	if !hmac.Equal(want[:], got[:]) {
		return a, w, errBadToken, true
	}
	var buf [maxIssuedPayload]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], []byte(payload))
	if err != nil {
		return a, w, nil, false
	}
	var c issuedClaims
	if !c.readPlain(buf[:n]) {
		c = issuedClaims{}
		if json.Unmarshal(buf[:n], &c) != nil || c.Audience != nil {
			return a, w, nil, false
		}
	}
	if c.Issuer != issuer || c.ExpiresAt == nil {
		return a, w, errBadToken, true
	}
	w.until = numericDate(*c.ExpiresAt)
	if c.NotBefore != nil {
		w.from = numericDate(*c.NotBefore)
	}
	if !w.holds(s.now()) {
		return a, w, errBadToken, true
	}
	a, err = actorOf(c.Subject, c.Role, c.Test)
	return a, w, err, true
}

// numericDate reads a JWT NumericDate (seconds, possibly fractional) as the library does: to
// the whole second below.
func numericDate(f float64) time.Time {
	return time.Unix(int64(math.Floor(f)), 0)
}

// newSecret returns a random URL-safe secret and the hash under which it is stored.
func newSecret() (secret, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, hashSecret(secret), nil
}

// hashSecret is how refresh tokens and one-time codes are stored: a leaked table holds no usable
// credential. The inputs have high entropy (or a short life and few tries), so a fast hash fits.
func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// MaxTestShoppers bounds the synthetic shoppers one call provisions.
const MaxTestShoppers = 10_000

// TestShopper is a load test's synthetic shopper: an id no account has, and its access token.
type TestShopper struct {
	UserID      int64  `json:"user_id,string"`
	AccessToken string `json:"access_token"`
}

// TestShoppers provisions n synthetic shoppers for a load test (operators and admins). They
// have no account, so they cannot log in or refresh; their tokens are marked as test traffic,
// which the metrics count apart, and last --access-ttl.
func (s *Service) TestShoppers(ctx context.Context, actor surge.Actor, n int) ([]TestShopper, error) {
	if !actor.Role.Staff() {
		return nil, surge.Errorf(surge.EFORBIDDEN, "only operators and admins provision test shoppers")
	}
	if n < 1 || n > MaxTestShoppers {
		return nil, surge.Errorf(surge.EINVALID, "count must be between 1 and %d", MaxTestShoppers)
	}
	now := s.now()
	out := make([]TestShopper, n)
	for i := range out {
		id, err := s.ids()
		if err != nil {
			return nil, err
		}
		tok, err := s.sign(&surge.User{ID: id, Role: surge.RoleShopper}, true, now)
		if err != nil {
			return nil, err
		}
		out[i] = TestShopper{UserID: id, AccessToken: tok}
	}
	return out, nil
}
