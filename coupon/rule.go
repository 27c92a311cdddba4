// Package coupon provides coupons: the rules of a batch (what its coupons take off, and from
// which lines of an order), the pricing of an order with up to MaxPerOrder coupons, and the
// issuance ledger that never hands out more coupons of a batch than its total.
package coupon

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/surgecommerce/surge"
)

// The kinds of discount.
const (
	Fixed     = "fixed"     // Value minor units off the lines in scope
	Percent   = "percent"   // Value percent (1-99) off the lines in scope, at most Cap
	Threshold = "threshold" // Value off once the lines in scope reach Threshold ("¥X off ¥Y")
	// Envelope is a red envelope: a budget's batch, whose Total and PerUser are amounts, not
	// counts. Each claim draws its amount from the budget (Value, or at random from Min to Max)
	// and takes that much off the lines in scope, as a fixed coupon of that value would.
	Envelope = "red_envelope"
)

// The kinds of scope: which lines of an order a coupon applies to.
const (
	ScopePlatform = "platform" // every line
	ScopeShop     = "shop"     // the lines of one merchant
	ScopeCategory = "category" // the lines of one top-level category
	ScopeSKUs     = "skus"     // the lines of listed SKUs
)

// Bounds of a rule.
const (
	MaxValue     = 100_000_000 // minor units a coupon may take off (1,000,000.00)
	MaxScopeSKUs = 1000        // SKUs one scope may list
	MaxGroup     = 64          // bytes of a stacking group's name
	MaxThreshold = surge.MaxPriceMinor * MaxLines
)

// Rule is what a batch's coupons take off, and where. It is decoded from outside input
// (DecodeRule) and validated before a batch is stored.
type Rule struct {
	Kind      string `json:"kind"`
	Value     int64  `json:"value"`               // minor units off, or percent for Percent
	Threshold int64  `json:"threshold,omitempty"` // Threshold: the amount in scope that unlocks it
	Cap       int64  `json:"cap,omitempty"`       // Percent: the most it takes off (0: no cap)
	Min       int64  `json:"min,omitempty"`       // Envelope of random amounts: the least one holds
	Max       int64  `json:"max,omitempty"`       // Envelope of random amounts: the most one holds
	Currency  string `json:"currency"`
	Scope     Scope  `json:"scope"`
	// Group is the stacking group: an order takes at most one coupon of a group; coupons of
	// no group stack with any.
	Group string `json:"group,omitempty"`
}

// Scope says which lines of an order a coupon applies to.
type Scope struct {
	Kind     string  `json:"kind"`
	Shop     int64   `json:"shop,string,omitempty"`
	Category string  `json:"category,omitempty"`
	SKUs     []int64 `json:"skus,omitempty"`
}

// DecodeRule reads a rule from JSON (no unknown fields) and validates it.
func DecodeRule(data []byte) (Rule, error) {
	var r Rule
	if err := surge.DecodeJSONBytes(data, &r); err != nil {
		return Rule{}, err
	}
	return r, r.Validate()
}

// Validate checks a rule; the error names the field.
func (r Rule) Validate() error {
	switch r.Kind {
	case Fixed, Threshold:
		if r.Value < 1 || r.Value > MaxValue {
			return surge.Errorf(surge.EINVALID, "value must be from 1 to %d minor units", MaxValue)
		}
		if r.Cap != 0 {
			return surge.Errorf(surge.EINVALID, "cap is for percent coupons only")
		}
	case Percent:
		if r.Value < 1 || r.Value > 99 {
			return surge.Errorf(surge.EINVALID, "a percent coupon's value must be from 1 to 99")
		}
		if r.Cap < 0 || r.Cap > MaxValue {
			return surge.Errorf(surge.EINVALID, "cap must be from 0 (none) to %d minor units", MaxValue)
		}
	case Envelope:
		switch {
		case r.Value != 0 && (r.Value < 0 || r.Value > MaxValue || r.Min != 0 || r.Max != 0):
			return surge.Errorf(surge.EINVALID, "a red envelope of a fixed amount has a value from 1 to %d minor units, and no min or max", MaxValue)
		case r.Value == 0 && (r.Min < 1 || r.Max <= r.Min || r.Max > MaxValue):
			return surge.Errorf(surge.EINVALID, "a red envelope has a value, or a random amount from min (at least 1) to max (above min, at most %d minor units)", MaxValue)
		case r.Cap != 0:
			return surge.Errorf(surge.EINVALID, "cap is for percent coupons only")
		}
	default:
		return surge.Errorf(surge.EINVALID, "kind must be fixed, percent, threshold or red_envelope")
	}
	if r.Kind != Envelope && (r.Min != 0 || r.Max != 0) {
		return surge.Errorf(surge.EINVALID, "min and max are for red envelopes only")
	}
	switch {
	case r.Kind == Threshold && (r.Threshold <= r.Value || r.Threshold > MaxThreshold):
		return surge.Errorf(surge.EINVALID, "a threshold coupon's threshold must be above its value and at most %d", int64(MaxThreshold))
	case r.Kind != Threshold && r.Threshold != 0:
		return surge.Errorf(surge.EINVALID, "threshold is for threshold coupons only")
	case len(r.Group) > MaxGroup || !utf8.ValidString(r.Group) || strings.TrimSpace(r.Group) != r.Group:
		return surge.Errorf(surge.EINVALID, "group must be up to %d bytes, without surrounding spaces", MaxGroup)
	}
	if err := surge.ValidateCurrency("currency", r.Currency); err != nil {
		return err
	}
	return r.Scope.Validate()
}

// Validate checks a scope.
func (s Scope) Validate() error {
	extra := func(ok bool) error {
		if !ok {
			return surge.Errorf(surge.EINVALID, "a %s scope names only what it is for", s.Kind)
		}
		return nil
	}
	switch s.Kind {
	case ScopePlatform:
		return extra(s.Shop == 0 && s.Category == "" && len(s.SKUs) == 0)
	case ScopeShop:
		if s.Shop <= 0 {
			return surge.Errorf(surge.EINVALID, "a shop scope needs its shop")
		}
		return extra(s.Category == "" && len(s.SKUs) == 0)
	case ScopeCategory:
		if c := strings.TrimSpace(s.Category); c == "" || c != s.Category || utf8.RuneCountInString(c) > surge.MaxNameRunes || !utf8.ValidString(c) {
			return surge.Errorf(surge.EINVALID, "a category scope needs its category, up to %d characters", surge.MaxNameRunes)
		}
		return extra(s.Shop == 0 && len(s.SKUs) == 0)
	case ScopeSKUs:
		if len(s.SKUs) == 0 || len(s.SKUs) > MaxScopeSKUs {
			return surge.Errorf(surge.EINVALID, "an SKU scope lists 1 to %d SKUs", MaxScopeSKUs)
		}
		for _, id := range s.SKUs {
			if id <= 0 {
				return surge.Errorf(surge.EINVALID, "SKU ids are positive")
			}
		}
		return extra(s.Shop == 0 && s.Category == "")
	}
	return surge.Errorf(surge.EINVALID, "scope kind must be platform, shop, category or skus")
}

// covers says whether the scope takes a line.
func (s Scope) covers(l Line) bool {
	switch s.Kind {
	case ScopePlatform:
		return true
	case ScopeShop:
		return l.Shop == s.Shop
	case ScopeCategory:
		return l.Category == s.Category
	case ScopeSKUs:
		return slices.Contains(s.SKUs, l.SKU)
	}
	return false
}

// Most is the largest amount one claim of a red envelope's budget takes.
func (r Rule) Most() int64 { return max(r.Value, r.Max) }

// Draw is the amount of a red envelope: its value, or one drawn from Min to Max by the coupon's
// id (which the platform picks, so a shopper cannot pick the amount, and a retry that finds
// the first claim's coupon finds its amount too).
func (r Rule) Draw(batch, coupon int64) int64 {
	if r.Value > 0 {
		return r.Value
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(batch))
	binary.BigEndian.PutUint64(b[8:], uint64(coupon))
	sum := sha256.Sum256(b[:])
	return r.Min + int64(binary.BigEndian.Uint64(sum[:8])%uint64(r.Max-r.Min+1))
}

// on is the rule a coupon applies by: a red envelope takes its own value off, as a fixed coupon.
func (r Rule) on(c *surge.Coupon) (Rule, error) {
	if r.Kind != Envelope {
		return r, nil
	}
	if c.Value < 1 || c.Value > MaxValue {
		return Rule{}, surge.Errorf(surge.EINTERNAL, "red envelope %d holds %d minor units", c.ID, c.Value)
	}
	r.Kind, r.Value, r.Min, r.Max = Fixed, c.Value, 0, 0
	return r, nil
}
