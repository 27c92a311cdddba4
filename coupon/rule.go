// Package coupon provides coupons: the rules of a batch (what its coupons take off, and from
// which lines of an order), the pricing of an order with up to MaxPerOrder coupons, and the
// issuance ledger that never hands out more coupons of a batch than its total.
package coupon

import (
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
	default:
		return surge.Errorf(surge.EINVALID, "kind must be fixed, percent or threshold")
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
