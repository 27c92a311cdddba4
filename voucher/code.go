// Package voucher issues the vouchers of paid voucher products and redeems them at the
// merchant's till: one code per unit, unguessable and checksummed, redeemed exactly
// once however many tills try at once.
package voucher

import (
	"crypto/rand"
	"io"
	"strings"

	"github.com/surgecommerce/surge"
)

// A code is CodeLen symbols of Crockford's base32: CodeLen-1 random ones (75 bits) and a check
// symbol (Luhn mod 32), which catches any one mistyped symbol and any two adjacent ones swapped
// (but 0 and Z, Luhn's one blind spot, as 09 and 90 are in base 10) before the store is asked.
// It is shown in groups of four: "7KQ2-M9XD-40TF-HC3R".
const (
	CodeLen      = 16
	alphabet     = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	maxCodeInput = 64 // what Parse looks at, spaces and hyphens included
)

// NewCode returns a fresh code from r (crypto/rand's reader when nil), in its canonical form.
func NewCode(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var raw [CodeLen - 1]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return "", err
	}
	var b [CodeLen]byte
	for i, v := range raw {
		b[i] = alphabet[v&31]
	}
	b[CodeLen-1] = alphabet[check(b[:CodeLen-1])]
	return string(b[:]), nil
}

// Format groups a canonical code in fours for people to read.
func Format(code string) string {
	var b strings.Builder
	for i := 0; i < len(code); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(code[i:min(len(code), i+4)])
	}
	return b.String()
}

// Parse reads a code as typed or scanned: case, spaces and hyphens do not matter, and O, I and
// L are read as 0, 1 and 1. It returns the canonical code, or EINVALID for anything that is not
// a code, a mistyped one included.
func Parse(s string) (string, error) {
	if len(s) > maxCodeInput {
		return "", surge.Errorf(surge.EINVALID, "a voucher code is %d characters", CodeLen)
	}
	var b [CodeLen]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '-':
			continue
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		switch c {
		case 'O':
			c = '0'
		case 'I', 'L':
			c = '1'
		}
		if strings.IndexByte(alphabet, c) < 0 {
			return "", surge.Errorf(surge.EINVALID, "a voucher code holds only digits and letters other than U")
		}
		if n == CodeLen {
			return "", surge.Errorf(surge.EINVALID, "a voucher code is %d characters", CodeLen)
		}
		b[n] = c
		n++
	}
	if n != CodeLen {
		return "", surge.Errorf(surge.EINVALID, "a voucher code is %d characters", CodeLen)
	}
	if alphabet[check(b[:CodeLen-1])] != b[CodeLen-1] {
		return "", surge.Errorf(surge.EINVALID, "this is not a voucher code: it is mistyped or made up")
	}
	return string(b[:]), nil
}

// check is the Luhn mod 32 check symbol's value of the symbols of body.
func check(body []byte) int {
	const n = 32
	sum, factor := 0, 2
	for i := len(body) - 1; i >= 0; i-- {
		v := strings.IndexByte(alphabet, body[i]) * factor
		sum += v/n + v%n
		factor = 3 - factor
	}
	return (n - sum%n) % n
}
