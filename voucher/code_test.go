package voucher

import (
	"strings"
	"testing"

	"github.com/surgecommerce/surge"
)

func TestCodesAreCheckedAndReadAsTyped(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		c, err := NewCode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c] {
			t.Fatalf("code %s came twice", c)
		}
		seen[c] = true
		for _, typed := range []string{c, Format(c), strings.ToLower(Format(c)), " " + strings.Join(strings.Split(c, ""), " ")} {
			if got, err := Parse(typed); err != nil || got != c {
				t.Fatalf("Parse(%q) = %q, %v; want %s", typed, got, err, c)
			}
		}
		for i := range CodeLen { // every single mistyped symbol is caught
			for _, sub := range alphabet {
				if byte(sub) == c[i] {
					continue
				}
				typo := c[:i] + string(sub) + c[i+1:]
				if _, err := Parse(typo); surge.ErrorCode(err) != surge.EINVALID {
					t.Fatalf("Parse(%q), %s with symbol %d mistyped, = %v; want EINVALID", typo, c, i, err)
				}
			}
		}
		for i := range CodeLen - 1 { // and every two adjacent different symbols swapped
			if c[i] == c[i+1] {
				continue
			}
			swap := c[:i] + string(c[i+1]) + string(c[i]) + c[i+2:]
			if _, err := Parse(swap); err == nil && !luhnBlindSpot(c[i], c[i+1]) {
				t.Fatalf("Parse(%q), %s with %d and %d swapped, was accepted", swap, c, i, i+1)
			}
		}
	}
	for _, bad := range []string{"", "ABC", strings.Repeat("0", CodeLen+1), "UUUU-UUUU-UUUU-UUUU", "é" + strings.Repeat("0", 15), strings.Repeat("-", 100)} {
		if _, err := Parse(bad); surge.ErrorCode(err) != surge.EINVALID {
			t.Errorf("Parse(%q) = %v; want EINVALID", bad, err)
		}
	}
	if got, err := Parse("o" + strings.Repeat("0", 14) + "0"); err != nil || got != strings.Repeat("0", CodeLen) {
		t.Fatalf("O read as 0: %q, %v", got, err)
	}
}

// luhnBlindSpot reports the one pair of symbols whose swap Luhn mod 32 cannot see: the values
// 0 and 31 (0 and Z) double to the same digit sum as they stay.
func luhnBlindSpot(a, b byte) bool {
	pair := string([]byte{a, b})
	return pair == "0Z" || pair == "Z0"
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"7KQ2-M9XD-40TF-HC3R", "", "0000000000000000", "oooo-iiii-llll-0000", "ZZZZ ZZZZ ZZZZ ZZZZ"} {
		f.Add(s)
	}
	c, _ := NewCode(nil)
	f.Add(c)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("Parse(%q) = %v; want EINVALID", s, err)
			}
			return
		}
		if len(got) != CodeLen {
			t.Fatalf("Parse(%q) = %q", s, got)
		}
		if again, err := Parse(Format(got)); err != nil || again != got {
			t.Fatalf("Parse(Format(%q)) = %q, %v", got, again, err)
		}
	})
}
