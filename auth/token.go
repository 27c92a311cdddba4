package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/surgecommerce/surge"
)

// claims are what an access token carries.
type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// signAccess issues a short-lived HS256 access token for a user.
func (s *Service) signAccess(u *surge.User, now time.Time) (string, error) {
	c := claims{Role: string(u.Role), RegisteredClaims: jwt.RegisteredClaims{
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
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.cfg.Secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now))
	if err != nil {
		return surge.Actor{}, surge.Errorf(surge.EUNAUTHORIZED, "access token is not valid")
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	role := surge.Role(c.Role)
	if err != nil || id <= 0 || !role.Valid() {
		return surge.Actor{}, surge.Errorf(surge.EUNAUTHORIZED, "access token is not valid")
	}
	return surge.Actor{UserID: id, Role: role}, nil
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
