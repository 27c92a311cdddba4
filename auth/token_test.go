package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/surgecommerce/surge"
)

var tokenSecret = []byte(strings.Repeat("k", 32))

func tokenService(t testing.TB, now time.Time) *Service {
	s, err := New(nil, nil, nil, nil, Config{Secret: tokenSecret, AccessTTL: time.Hour}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sign(t testing.TB, key []byte, c jwt.MapClaims) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The fast path takes the tokens the service issues and refuses the forged or stale ones in
// that same form; it leaves every other form to the library.
func TestIssuedTokensTakeTheFastPath(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := tokenService(t, now)
	issued, err := s.signAccess(&surge.User{ID: 42, Role: surge.RoleShopper}, now)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err, ok := s.authenticateIssued(issued)
	if !ok || err != nil || a != (surge.Actor{UserID: 42, Role: surge.RoleShopper}) {
		t.Fatalf("authenticateIssued(issued) = %v, %v, %v", a, err, ok)
	}
	exp := now.Add(time.Hour).Unix()
	refused := map[string]string{
		"wrong key":      sign(t, []byte(strings.Repeat("x", 32)), jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin", "exp": exp}),
		"expired":        sign(t, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin", "exp": now.Unix()}),
		"not yet valid":  sign(t, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin", "exp": exp, "nbf": now.Unix() + 1}),
		"other issuer":   sign(t, tokenSecret, jwt.MapClaims{"iss": "evil", "sub": "1", "role": "admin", "exp": exp}),
		"no expiry":      sign(t, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin"}),
		"unknown role":   sign(t, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "root", "exp": exp}),
		"bad subject":    sign(t, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "-1", "role": "admin", "exp": exp}),
		"tampered claim": issuedHeader + "." + strings.Split(sign(t, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "2", "role": "admin", "exp": exp}), ".")[1] + "." + strings.Split(issued, ".")[2],
	}
	for name, tok := range refused {
		if _, _, err, ok := s.authenticateIssued(tok); !ok || surge.ErrorCode(err) != surge.EUNAUTHORIZED {
			t.Errorf("authenticateIssued(%s) = %v, handled %v; want EUNAUTHORIZED on the fast path", name, err, ok)
		}
		if _, err := s.Authenticate(tok); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
			t.Errorf("Authenticate(%s) = %v; want EUNAUTHORIZED", name, err)
		}
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin", "exp": exp}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, _, _, ok := s.authenticateIssued(none); ok {
		t.Error("a token with another header took the fast path")
	}
}

// FuzzAuthenticateAgrees: on any token, the fast path (where it decides) and the library give
// the same actor or both refuse.
func FuzzAuthenticateAgrees(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s := tokenService(f, now)
	issued, _ := s.signAccess(&surge.User{ID: 7, Role: surge.RoleMerchant}, now)
	f.Add(issued)
	f.Add(sign(f, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "9", "role": "admin", "exp": float64(now.Unix()) + 0.5}))
	f.Add(sign(f, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "9", "role": "admin", "exp": now.Unix() + 5, "nbf": "soon"}))
	f.Add(sign(f, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "9", "role": "admin", "exp": "later"}))
	f.Add(sign(f, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "9", "role": "admin", "exp": now.Unix() + 5, "aud": []string{"x"}}))
	f.Add(issuedHeader + ".e30.AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		fast, _, ferr, ok := s.authenticateIssued(tok)
		if !ok {
			return
		}
		lib, lerr := s.authenticateAny(tok)
		if (ferr == nil) != (lerr == nil) || fast != lib {
			t.Fatalf("fast path %v, %v; library %v, %v", fast, ferr, lib, lerr)
		}
	})
}

// FuzzAuthenticateAgreesOnClaims signs whatever claims the fuzzer makes up, so that the two
// paths are compared past the signature: on the claims themselves.
func FuzzAuthenticateAgreesOnClaims(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s := tokenService(f, now)
	for _, c := range []string{
		`{"iss":"surge","sub":"7","role":"shopper","exp":1800000001}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1800000000.9}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1800000100,"nbf":1800000000.5}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":18e8,"iat":"x"}`,
		`{"iss":"surge","sub":" 7","role":"shopper","exp":1900000000,"iss":"other"}`,
		`{"ISS":"surge","sub":"7","role":"shopper","exp":1900000000}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1e400}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":-1,"nbf":null}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"iat":"x"}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"iat":1e400}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"aud":5}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"aud":["a"],"jti":"j"}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"jti":5}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"aud":null,"iat":null}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"test":true}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"test":"yes"}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"test":false}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"test":null,"role":"admin"}`,
		`{"iss":"surge","sub":"7","role":"shopper","exp":1900000000,"iat":1800000000,"test":true}`,
		` {"iss":"surge" ,"sub":"7","Role":"admin","role":"shopper","exp":1900000000} `,
	} {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		input := issuedHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
		mac := hmac.New(sha256.New, tokenSecret)
		mac.Write([]byte(input))
		tok := input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		fast, _, ferr, ok := s.authenticateIssued(tok)
		if !ok {
			fast, ferr = s.Authenticate(tok) // the library decides: Authenticate must agree with it
		}
		lib, lerr := s.authenticateAny(tok)
		if (ferr == nil) != (lerr == nil) || fast != lib {
			t.Fatalf("claims %q: fast path %v, %v; library %v, %v", payload, fast, ferr, lib, lerr)
		}
	})
}

// BenchmarkAuthenticate compares the fast path with the library on the same issued token.
func BenchmarkAuthenticate(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	s := tokenService(b, now)
	tok, _ := s.signAccess(&surge.User{ID: 42, Role: surge.RoleShopper}, now)
	b.Run("issued", func(b *testing.B) {
		for b.Loop() {
			if _, _, err, _ := s.authenticateIssued(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("library", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.authenticateAny(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Operators provision synthetic shoppers whose tokens authenticate as shoppers marked as test
// traffic; nobody else can, and the count is bounded.
func TestTestShoppers(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var next int64
	s, err := New(nil, func() (int64, error) { next++; return 1000 + next, nil }, nil, nil,
		Config{Secret: tokenSecret, AccessTTL: time.Hour}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.TestShoppers(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleOperator}, 3)
	if err != nil || len(list) != 3 || list[0].UserID == list[1].UserID {
		t.Fatalf("TestShoppers(3) = %v, %v", list, err)
	}
	for _, sh := range list {
		a, err := s.Authenticate(sh.AccessToken)
		if err != nil || a != (surge.Actor{UserID: sh.UserID, Role: surge.RoleShopper, Test: true}) {
			t.Fatalf("Authenticate(test shopper) = %+v, %v", a, err)
		}
		if lib, err := s.authenticateAny(sh.AccessToken); err != nil || lib != a {
			t.Fatalf("library on a test shopper = %+v, %v; want %+v", lib, err, a)
		}
	}
	issued, _ := s.signAccess(&surge.User{ID: 5, Role: surge.RoleShopper}, now)
	if a, err := s.Authenticate(issued); err != nil || a.Test {
		t.Fatalf("Authenticate(ordinary shopper) = %+v, %v; want not test", a, err)
	}
	if _, err := s.TestShoppers(context.Background(), surge.Actor{UserID: 2, Role: surge.RoleShopper}, 1); surge.ErrorCode(err) != surge.EFORBIDDEN {
		t.Fatalf("TestShoppers(as a shopper) = %v; want EFORBIDDEN", err)
	}
	for _, n := range []int{0, MaxTestShoppers + 1} {
		if _, err := s.TestShoppers(context.Background(), surge.Actor{UserID: 1, Role: surge.RoleAdmin}, n); surge.ErrorCode(err) != surge.EINVALID {
			t.Fatalf("TestShoppers(%d) = %v; want EINVALID", n, err)
		}
	}
}

// A token that passed is remembered with its window: it still expires on time, a token that
// differs from it is checked in full, and the memory stays bounded as shoppers come and go.
func TestVerifiedTokensKeepTheirWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, err := New(nil, nil, nil, nil, Config{Secret: tokenSecret, AccessTTL: time.Hour}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.signAccess(&surge.User{ID: 42, Role: surge.RoleShopper}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := surge.Actor{UserID: 42, Role: surge.RoleShopper}
	if a, err := s.Authenticate(tok); err != nil || a != want {
		t.Fatalf("Authenticate = %v, %v", a, err)
	}
	if a, ok := s.verified.get(tok, now); !ok || a != want {
		t.Fatalf("a checked token is not remembered: %v, %v", a, ok)
	}
	i := len(tok) - 10 // a byte of the signature
	flipped := byte('A')
	if tok[i] == 'A' {
		flipped = 'B'
	}
	forged := tok[:i] + string(flipped) + tok[i+1:]
	if _, err := s.Authenticate(forged); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
		t.Fatalf("Authenticate(a signature byte changed) = %v; want EUNAUTHORIZED", err)
	}
	now = now.Add(time.Hour - time.Second)
	if _, err := s.Authenticate(tok); err != nil {
		t.Fatalf("Authenticate a second before expiry = %v", err)
	}
	now = now.Add(time.Second)
	if _, err := s.Authenticate(tok); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
		t.Fatalf("Authenticate at expiry = %v; want EUNAUTHORIZED", err)
	}

	later := sign(t, tokenSecret, jwt.MapClaims{"iss": "surge", "sub": "7", "role": "shopper", "exp": now.Unix() + 60, "nbf": now.Unix() + 10})
	if _, err := s.Authenticate(later); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
		t.Fatalf("Authenticate before nbf = %v; want EUNAUTHORIZED", err)
	}
	now = now.Add(10 * time.Second)
	if a, err := s.Authenticate(later); err != nil || a.UserID != 7 {
		t.Fatalf("Authenticate at nbf = %v, %v", a, err)
	}

	// Past two generations the oldest are forgotten (and checked in full again); a token in
	// use moves forward and stays.
	for i := range 3 * maxVerified { // tokens spread over shards: enough to pass two generations in each
		s.verified.put(strconv.Itoa(i), want, window{until: now.Add(time.Hour)})
		if i%1000 == 0 {
			if _, ok := s.verified.get(later, now); !ok {
				t.Fatalf("a token in use was forgotten after %d others", i)
			}
		}
	}
	if n := s.verified.size(); n > 2*maxVerified {
		t.Fatalf("%d tokens remembered; at most %d", n, 2*maxVerified)
	}
	if _, ok := s.verified.get("0", now); ok {
		t.Fatal("the oldest token is still remembered")
	}
}
