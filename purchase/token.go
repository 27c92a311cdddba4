package purchase

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/surgecommerce/surge"
)

// tokens issue and check purchase tokens: proof that a user fetched an item's detail page
// recently, bound to that user and item. No token, no purchase.
type tokens struct {
	key []byte
	ttl time.Duration
}

const tokenMACBytes = 16

func (t tokens) mac(user, item, expMs int64) []byte {
	var msg [25]byte
	msg[0] = 'P'
	binary.BigEndian.PutUint64(msg[1:], uint64(user))
	binary.BigEndian.PutUint64(msg[9:], uint64(item))
	binary.BigEndian.PutUint64(msg[17:], uint64(expMs))
	m := hmac.New(sha256.New, t.key)
	m.Write(msg[:])
	return m.Sum(nil)[:tokenMACBytes]
}

// issue returns a token for user and item and when it expires.
func (t tokens) issue(user, item int64, now time.Time) (string, time.Time) {
	exp := now.Add(t.ttl).Truncate(time.Millisecond)
	b := binary.BigEndian.AppendUint64(nil, uint64(exp.UnixMilli()))
	b = append(b, t.mac(user, item, exp.UnixMilli())...)
	return base64.RawURLEncoding.EncodeToString(b), exp
}

// verify checks a token for user and item at now. Returns EFORBIDDEN for a missing, forged,
// foreign or expired token.
func (t tokens) verify(token string, user, item int64, now time.Time) error {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != 8+tokenMACBytes {
		return surge.Errorf(surge.EFORBIDDEN, "a valid purchase token is required (fetch the item first)")
	}
	exp := int64(binary.BigEndian.Uint64(b))
	if !hmac.Equal(b[8:], t.mac(user, item, exp)) {
		return surge.Errorf(surge.EFORBIDDEN, "the purchase token is not valid for this user and item")
	}
	if now.UnixMilli() >= exp {
		return surge.Errorf(surge.EFORBIDDEN, "the purchase token expired; fetch the item again")
	}
	return nil
}
