package purchase

import (
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

func TestTokens(t *testing.T) {
	tk := tokens{key: []byte("0123456789abcdef0123456789abcdef"), ttl: time.Minute}
	now := time.Now()
	s, exp := tk.issue(1, 2, now)
	if !exp.After(now) {
		t.Fatalf("expiry %s not after %s", exp, now)
	}
	if err := tk.verify(s, 1, 2, now.Add(30*time.Second)); err != nil {
		t.Fatalf("verify = %v", err)
	}
	for name, c := range map[string]struct {
		token      string
		user, item int64
		at         time.Time
	}{
		"expired":    {s, 1, 2, now.Add(2 * time.Minute)},
		"other user": {s, 3, 2, now},
		"other item": {s, 1, 3, now},
		"garbage":    {"!!", 1, 2, now},
		"empty":      {"", 1, 2, now},
		"other key":  {func() string { x, _ := (tokens{key: []byte("k"), ttl: time.Minute}).issue(1, 2, now); return x }(), 1, 2, now},
		"truncated":  {s[:len(s)-2], 1, 2, now},
	} {
		if err := tk.verify(c.token, c.user, c.item, c.at); surge.ErrorCode(err) != surge.EFORBIDDEN {
			t.Errorf("verify(%s) = %v; want EFORBIDDEN", name, err)
		}
	}
}
