package surge

import (
	"unicode"
	"unicode/utf8"
)

// ValidateText checks a user-supplied string: valid UTF-8, no control characters, no leading or
// trailing space, and a length in runes within [min, max].
func ValidateText(field, s string, min, max int) error {
	if !utf8.ValidString(s) {
		return Errorf(EINVALID, "%s is not valid UTF-8", field)
	}
	n := utf8.RuneCountInString(s)
	if n < min {
		if min == 1 {
			return Errorf(EINVALID, "%s is required", field)
		}
		return Errorf(EINVALID, "%s must be at least %d characters", field, min)
	}
	if n > max {
		return Errorf(EINVALID, "%s must be at most %d characters", field, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return Errorf(EINVALID, "%s contains control characters", field)
		}
	}
	if n > 0 {
		first, _ := utf8.DecodeRuneInString(s)
		last, _ := utf8.DecodeLastRuneInString(s)
		if unicode.IsSpace(first) || unicode.IsSpace(last) {
			return Errorf(EINVALID, "%s must not start or end with spaces", field)
		}
	}
	return nil
}
