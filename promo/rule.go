// Package promo provides promotion activities: their rules (what an activity takes off, from
// which lines, for whom, and what it stacks with), the pricing of a cart with activities and
// coupons at the best legal combination, the in-memory index of live activities every node
// keeps, and the locks orders take on activities with caps.
package promo

import (
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/coupon"
)

// The kinds of activity. Unit-price kinds (Direct, MemberPrice, FlashPrice) lower each unit of a
// line; a line takes the lowest such price of the activities applied. Order kinds apply after
// them, to what the lines in scope still cost, in order of priority.
const (
	Direct      = "direct"       // Value off each unit, or Percent off each unit
	MemberPrice = "member_price" // each unit at Price (for signed-in shoppers)
	FlashPrice  = "flash_price"  // each unit at Price (a sale session's item is one)
	Threshold   = "threshold"    // Value off once the scope reaches Threshold; with Repeat, off every full Threshold ("¥20 off every ¥200"), at most MaxOff
	Rebate      = "rebate"       // reaching Threshold gives a coupon of RebateBatch once the order is paid
	Tiered      = "tiered"       // the highest tier reached: its Percent off the scope, at most MaxOff
	BuyXGetY    = "buy_x_get_y"  // of every Buy+Get units in scope, the Get cheapest are free
	Bundle      = "bundle"       // every Units units in scope (the dearest first) for Price
)

// The audiences of an activity: who may have it.
const (
	Everyone    = ""              // every shopper
	NewShoppers = "new_shoppers"  // shoppers with no order yet (one not cancelled), once each
	FirstInShop = "first_in_shop" // a shopper's first order in the activity's shop, once each
)

// The kinds of scope: which lines an activity applies to. A merchant's activity applies only
// to its own shop's lines, whatever its scope.
const (
	ScopePlatform   = "platform"   // every line
	ScopeCategories = "categories" // lines of the listed top-level categories
	ScopeShops      = "shops"      // lines of the listed shops
	ScopeSKUs       = "skus"       // lines of the listed SKUs
)

// Bounds of a rule.
const (
	MaxValue      = coupon.MaxValue // minor units an activity may take off one unit, or in all
	MaxScopeItems = 10_000          // SKUs, shops or categories one scope may list
	MaxExcluded   = 1000            // SKUs a scope may leave out
	MaxGroup      = coupon.MaxGroup // bytes of a stacking group's name
	MaxExcludes   = 32              // groups one activity may exclude
	MaxTiers      = 10
	MaxUnits      = surge.MaxPerUserLimit // Buy, Get and a bundle's Units
	MaxCategory   = 128                   // bytes of a category's name
)

// Rule is what an activity takes off, where, for whom, and with what it stacks. It is decoded
// from outside input (DecodeRule) and validated before an activity is stored.
type Rule struct {
	Kind        string `json:"kind"`
	Currency    string `json:"currency"`
	Value       int64  `json:"value,omitempty"`
	Percent     int64  `json:"percent,omitempty"`
	Price       int64  `json:"price,omitempty"`
	Threshold   int64  `json:"threshold,omitempty"`
	Repeat      bool   `json:"repeat,omitempty"`
	MaxOff      int64  `json:"max_off,omitempty"`
	Tiers       []Tier `json:"tiers,omitempty"`
	Buy         int64  `json:"buy,omitempty"`
	Get         int64  `json:"get,omitempty"`
	Units       int64  `json:"units,omitempty"`
	RebateBatch int64  `json:"rebate_batch_id,string,omitempty"`
	// Floor is the least a unit of a line may cost after this activity (minor units): it never
	// takes a line below Floor times its quantity, nor below 0.
	Floor    int64  `json:"floor,omitempty"`
	Scope    Scope  `json:"scope"`
	Audience string `json:"audience,omitempty"`
	// Stacking: a cart takes at most one activity of a Group (none: it stacks with any); an
	// activity takes no activity of the groups it Excludes (their activities give way to it);
	// Exclusive stacks with no other activity; NoCoupons keeps coupons off an order it is on,
	// NoEnvelopes red envelopes.
	Group       string   `json:"group,omitempty"`
	Excludes    []string `json:"excludes,omitempty"`
	Exclusive   bool     `json:"exclusive,omitempty"`
	NoCoupons   bool     `json:"no_coupons,omitempty"`
	NoEnvelopes bool     `json:"no_envelopes,omitempty"`
}

// Tier is a step of a tiered activity: Percent off once the scope reaches Min.
type Tier struct {
	Min     int64 `json:"min"`
	Percent int64 `json:"percent"`
}

// Scope says which lines an activity applies to.
type Scope struct {
	Kind       string   `json:"kind"`
	Categories []string `json:"categories,omitempty"`
	Shops      []int64  `json:"shops,omitempty"`
	SKUs       []int64  `json:"skus,omitempty"`
	Exclude    []int64  `json:"exclude_skus,omitempty"`
}

// DecodeRule reads a rule from JSON (no unknown fields) and validates it.
func DecodeRule(data []byte) (Rule, error) {
	var r Rule
	if err := surge.DecodeJSONBytes(data, &r); err != nil {
		return Rule{}, err
	}
	return r, r.Validate()
}

// unitKind says whether a kind sets each unit's price (applied before the order kinds).
func unitKind(kind string) bool { return kind == Direct || kind == MemberPrice || kind == FlashPrice }

// Validate checks a rule; the error names the field.
func (r Rule) Validate() error {
	if err := surge.ValidateCurrency("currency", r.Currency); err != nil {
		return err
	}
	amount := func(name string, v int64) error {
		if v < 1 || v > MaxValue {
			return surge.Errorf(surge.EINVALID, "%s must be from 1 to %d minor units", name, MaxValue)
		}
		return nil
	}
	unused := func(names ...string) error {
		fields := map[string]bool{"value": r.Value != 0, "percent": r.Percent != 0, "price": r.Price != 0, "threshold": r.Threshold != 0,
			"repeat": r.Repeat, "max_off": r.MaxOff != 0, "tiers": len(r.Tiers) > 0, "buy": r.Buy != 0, "get": r.Get != 0,
			"units": r.Units != 0, "rebate_batch_id": r.RebateBatch != 0}
		for _, n := range names {
			delete(fields, n)
		}
		for _, n := range slices.Sorted(func(yield func(string) bool) {
			for n := range fields {
				if !yield(n) {
					return
				}
			}
		}) {
			if fields[n] {
				return surge.Errorf(surge.EINVALID, "%s is not a field of a %s activity", n, r.Kind)
			}
		}
		return nil
	}
	var err error
	switch r.Kind {
	case Direct:
		switch {
		case (r.Value == 0) == (r.Percent == 0):
			return surge.Errorf(surge.EINVALID, "a direct discount has a value (off each unit) or a percent (1-99), not both")
		case r.Value != 0:
			err = amount("value", r.Value)
		case r.Percent < 1 || r.Percent > 99:
			return surge.Errorf(surge.EINVALID, "percent must be from 1 to 99")
		}
		if err == nil {
			err = unused("value", "percent")
		}
	case MemberPrice, FlashPrice:
		if r.Price < 0 || r.Price > MaxValue {
			return surge.Errorf(surge.EINVALID, "price must be from 0 to %d minor units", MaxValue)
		}
		err = unused("price")
	case Threshold:
		if err = amount("value", r.Value); err == nil {
			err = amount("threshold", r.Threshold)
		}
		switch {
		case err != nil:
		case r.Threshold <= r.Value:
			return surge.Errorf(surge.EINVALID, "a threshold discount's threshold must be above its value")
		case r.MaxOff < 0 || r.MaxOff > MaxValue || (r.MaxOff != 0 && !r.Repeat):
			return surge.Errorf(surge.EINVALID, "max_off (0: none, up to %d) caps a repeated threshold discount", MaxValue)
		default:
			err = unused("value", "threshold", "repeat", "max_off")
		}
	case Rebate:
		if err = amount("threshold", r.Threshold); err == nil && r.RebateBatch <= 0 {
			return surge.Errorf(surge.EINVALID, "a rebate names the coupon batch it gives back (rebate_batch_id)")
		}
		if err == nil {
			err = unused("threshold", "rebate_batch_id")
		}
	case Tiered:
		if len(r.Tiers) == 0 || len(r.Tiers) > MaxTiers {
			return surge.Errorf(surge.EINVALID, "a tiered discount has 1 to %d tiers", MaxTiers)
		}
		for i, t := range r.Tiers {
			switch {
			case t.Min < 1 || t.Min > MaxValue:
				return surge.Errorf(surge.EINVALID, "tier %d: min must be from 1 to %d minor units", i+1, MaxValue)
			case t.Percent < 1 || t.Percent > 99:
				return surge.Errorf(surge.EINVALID, "tier %d: percent must be from 1 to 99", i+1)
			case i > 0 && (t.Min <= r.Tiers[i-1].Min || t.Percent <= r.Tiers[i-1].Percent):
				return surge.Errorf(surge.EINVALID, "tier %d: tiers rise in min and in percent", i+1)
			}
		}
		if r.MaxOff < 0 || r.MaxOff > MaxValue {
			return surge.Errorf(surge.EINVALID, "max_off must be from 0 (none) to %d minor units", MaxValue)
		}
		err = unused("tiers", "max_off")
	case BuyXGetY:
		if r.Buy < 1 || r.Get < 1 || r.Buy > MaxUnits || r.Get > MaxUnits {
			return surge.Errorf(surge.EINVALID, "buy and get must be from 1 to %d units", MaxUnits)
		}
		err = unused("buy", "get")
	case Bundle:
		if r.Units < 2 || r.Units > MaxUnits {
			return surge.Errorf(surge.EINVALID, "a bundle has 2 to %d units", MaxUnits)
		}
		if r.Price < 1 || r.Price > MaxValue {
			return surge.Errorf(surge.EINVALID, "a bundle's price must be from 1 to %d minor units", MaxValue)
		}
		err = unused("units", "price")
	default:
		return surge.Errorf(surge.EINVALID, "kind must be one of direct, member_price, flash_price, threshold, rebate, tiered, buy_x_get_y, bundle")
	}
	if err != nil {
		return err
	}
	switch {
	case r.Floor < 0 || r.Floor > MaxValue:
		return surge.Errorf(surge.EINVALID, "floor must be from 0 to %d minor units", MaxValue)
	case (r.Kind == MemberPrice || r.Kind == FlashPrice) && r.Floor > r.Price:
		return surge.Errorf(surge.EINVALID, "floor must not be above the price")
	case r.Audience != Everyone && r.Audience != NewShoppers && r.Audience != FirstInShop:
		return surge.Errorf(surge.EINVALID, "audience must be absent (everyone), new_shoppers or first_in_shop")
	case !groupName(r.Group):
		return surge.Errorf(surge.EINVALID, "group must be up to %d bytes, without surrounding spaces", MaxGroup)
	case len(r.Excludes) > MaxExcludes:
		return surge.Errorf(surge.EINVALID, "an activity excludes at most %d groups", MaxExcludes)
	case r.Exclusive && len(r.Excludes) > 0:
		return surge.Errorf(surge.EINVALID, "an exclusive activity stacks with no other; it lists no groups to exclude")
	}
	for i, g := range r.Excludes {
		switch {
		case g == "" || !groupName(g):
			return surge.Errorf(surge.EINVALID, "excludes[%d] must be a group's name, up to %d bytes", i, MaxGroup)
		case g == r.Group:
			return surge.Errorf(surge.EINVALID, "an activity does not exclude its own group %q (a cart takes one of a group anyway)", g)
		case slices.Contains(r.Excludes[:i], g):
			return surge.Errorf(surge.EINVALID, "excludes lists %q twice", g)
		}
	}
	return r.Scope.Validate()
}

func groupName(g string) bool {
	return len(g) <= MaxGroup && utf8.ValidString(g) && strings.TrimSpace(g) == g
}

// Validate checks a scope.
func (s Scope) Validate() error {
	ids := func(name string, list []int64, least int, most int) error {
		if len(list) < least || len(list) > most {
			return surge.Errorf(surge.EINVALID, "scope.%s lists %d to %d ids", name, least, most)
		}
		seen := make(map[int64]bool, len(list))
		for _, id := range list {
			if id <= 0 || seen[id] {
				return surge.Errorf(surge.EINVALID, "scope.%s: ids are positive and listed once each", name)
			}
			seen[id] = true
		}
		return nil
	}
	var err error
	switch s.Kind {
	case ScopePlatform:
		if len(s.Categories)+len(s.Shops)+len(s.SKUs) > 0 {
			return surge.Errorf(surge.EINVALID, "a platform scope lists no categories, shops or SKUs")
		}
	case ScopeCategories:
		if len(s.Categories) == 0 || len(s.Categories) > MaxScopeItems || len(s.Shops)+len(s.SKUs) > 0 {
			return surge.Errorf(surge.EINVALID, "a categories scope lists 1 to %d categories, and nothing else", MaxScopeItems)
		}
		for i, c := range s.Categories {
			if c == "" || len(c) > MaxCategory || !utf8.ValidString(c) || slices.Contains(s.Categories[:i], c) {
				return surge.Errorf(surge.EINVALID, "scope.categories: names of 1 to %d bytes, each once", MaxCategory)
			}
		}
	case ScopeShops:
		if len(s.Categories)+len(s.SKUs) > 0 {
			return surge.Errorf(surge.EINVALID, "a shops scope lists shops only")
		}
		err = ids("shops", s.Shops, 1, MaxScopeItems)
	case ScopeSKUs:
		if len(s.Categories)+len(s.Shops) > 0 || len(s.Exclude) > 0 {
			return surge.Errorf(surge.EINVALID, "an SKUs scope lists SKUs only (nothing to exclude)")
		}
		err = ids("skus", s.SKUs, 1, MaxScopeItems)
	default:
		return surge.Errorf(surge.EINVALID, "scope.kind must be platform, categories, shops or skus")
	}
	if err == nil && len(s.Exclude) > 0 {
		err = ids("exclude_skus", s.Exclude, 0, MaxExcluded)
	}
	return err
}

// covers says whether the scope takes a line of an SKU, shop and top-level category.
func (s Scope) covers(sku, shop int64, category string) bool {
	if slices.Contains(s.Exclude, sku) {
		return false
	}
	switch s.Kind {
	case ScopePlatform:
		return true
	case ScopeCategories:
		return slices.Contains(s.Categories, category)
	case ScopeShops:
		return slices.Contains(s.Shops, shop)
	case ScopeSKUs:
		return slices.Contains(s.SKUs, sku)
	}
	return false
}
