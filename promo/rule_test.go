package promo

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

func TestDecodeRuleRefusesImpossibleRules(t *testing.T) {
	for _, c := range []struct{ rule, says string }{
		{`{"kind":"direct","currency":"CNY","scope":{"kind":"platform"}}`, "value"},
		{`{"kind":"direct","value":100,"percent":10,"currency":"CNY","scope":{"kind":"platform"}}`, "not both"},
		{`{"kind":"direct","value":100,"threshold":5,"currency":"CNY","scope":{"kind":"platform"}}`, "threshold is not a field"},
		{`{"kind":"threshold","value":300,"threshold":200,"currency":"CNY","scope":{"kind":"platform"}}`, "above its value"},
		{`{"kind":"threshold","value":100,"threshold":200,"max_off":50,"currency":"CNY","scope":{"kind":"platform"}}`, "repeated"},
		{`{"kind":"tiered","tiers":[{"min":100,"percent":10},{"min":50,"percent":20}],"currency":"CNY","scope":{"kind":"platform"}}`, "rise"},
		{`{"kind":"flash_price","price":100,"floor":200,"currency":"CNY","scope":{"kind":"platform"}}`, "floor"},
		{`{"kind":"buy_x_get_y","buy":0,"get":1,"currency":"CNY","scope":{"kind":"platform"}}`, "buy and get"},
		{`{"kind":"bundle","units":1,"price":100,"currency":"CNY","scope":{"kind":"platform"}}`, "2 to"},
		{`{"kind":"rebate","threshold":100,"currency":"CNY","scope":{"kind":"platform"}}`, "rebate_batch_id"},
		{`{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"skus"}}`, "scope.skus"},
		{`{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"skus","skus":["1","1"]}}`, ""},
		{`{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"skus","skus":[1,1]}}`, "once each"},
		{`{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"platform"},"group":"a","excludes":["a"]}`, "own group"},
		{`{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"platform"},"exclusive":true,"excludes":["b"]}`, "exclusive"},
		{`{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"platform"},"audience":"vips"}`, "audience"},
		{`{"kind":"direct","value":100,"currency":"XX","scope":{"kind":"platform"}}`, "currency"},
		{`{"kind":"free","currency":"CNY","scope":{"kind":"platform"}}`, "kind must be"},
		{`{"kind":"direct","value":100,"currency":"CNY","scope":{"kind":"platform"},"extra":1}`, "extra"},
	} {
		_, err := DecodeRule([]byte(c.rule))
		if surge.ErrorCode(err) != surge.EINVALID || !strings.Contains(surge.ErrorMessage(err), c.says) {
			t.Errorf("%s: %v; want EINVALID saying %q", c.rule, err, c.says)
		}
	}
	if _, err := DecodeRule([]byte(`{"kind":"threshold","value":2000,"threshold":20000,"repeat":true,"max_off":10000,"currency":"CNY",
		"scope":{"kind":"categories","categories":["shoes"],"exclude_skus":[5]},"group":"shop","excludes":["platform"]}`)); err != nil {
		t.Fatalf("a good rule: %v", err)
	}
}

func TestFindCycle(t *testing.T) {
	if c := findCycle(map[string][]string{"a": {"b"}, "b": {"c"}}); c != nil {
		t.Fatalf("a chain is no cycle: %v", c)
	}
	c := findCycle(map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}})
	if !slices.Equal(c, []string{"a", "b", "c", "a"}) {
		t.Fatalf("cycle = %v", c)
	}
}

func TestIndexFindsActivitiesByKey(t *testing.T) {
	now := time.Now()
	mk := func(id, merchant int64, r Rule, state string) *surge.Activity {
		r.Currency = "CNY"
		raw, _ := json.Marshal(r)
		return &surge.Activity{ID: id, MerchantID: merchant, Name: "a", Rule: raw, State: state, Version: 1,
			StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)}
	}
	ix := NewIndex()
	d := Rule{Kind: Direct, Value: 1}
	bySKU, byShop, byCat, everywhere := d, d, d, d
	bySKU.Scope = Scope{Kind: ScopeSKUs, SKUs: []int64{10}}
	byShop.Scope = Scope{Kind: ScopeShops, Shops: []int64{7}}
	byCat.Scope = Scope{Kind: ScopeCategories, Categories: []string{"shoes"}}
	everywhere.Scope = Scope{Kind: ScopePlatform}
	ix.Replace([]*surge.Activity{mk(1, 0, bySKU, surge.ActivityLive), mk(2, 0, byShop, surge.ActivityLive), mk(3, 0, byCat, surge.ActivityLive),
		mk(4, 0, everywhere, surge.ActivityLive), mk(5, 8, everywhere, surge.ActivityLive), mk(6, 0, everywhere, surge.ActivityDraft)}, ix.Generation())
	ids := func(lines ...Line) []int64 {
		var out []int64
		for _, c := range ix.Candidates("CNY", lines, now) {
			out = append(out, c.Activity.ID)
		}
		slices.Sort(out)
		return out
	}
	if got := ids(Line{SKU: 10, Shop: 7, Category: "shoes", Unit: 1, Quantity: 1}); !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Fatalf("candidates %v", got)
	}
	if got := ids(Line{SKU: 11, Shop: 8, Category: "hats", Unit: 1, Quantity: 1}); !slices.Equal(got, []int64{4, 5}) {
		t.Fatalf("candidates %v; want the platform's and shop 8's own", got)
	}
	if n, p := ix.Size(); n != 5 || p != 5 {
		t.Fatalf("size %d, %d", n, p)
	}
	off := mk(1, 0, bySKU, surge.ActivityOffline)
	off.Version = 2
	if err := ix.Put(off); err != nil {
		t.Fatal(err)
	}
	stale := mk(1, 0, bySKU, surge.ActivityLive) // version 1: older than what the index saw
	if err := ix.Put(stale); err != nil {
		t.Fatal(err)
	}
	if got := ids(Line{SKU: 10, Shop: 9, Unit: 1, Quantity: 1}); !slices.Equal(got, []int64{4}) {
		t.Fatalf("after going offline: %v", got)
	}
	used := mk(2, 0, byShop, surge.ActivityLive)
	used.Cap, used.Used = 5, 5
	ix.Put(used)
	ended := mk(3, 0, byCat, surge.ActivityLive)
	ended.EndsAt = now
	ix.Put(ended)
	if got := ids(Line{SKU: 10, Shop: 7, Category: "shoes", Unit: 1, Quantity: 1}); !slices.Equal(got, []int64{4}) {
		t.Fatalf("used up and ended activities are candidates: %v", got)
	}
	if n, p := ix.Size(); n != 4 || p != 4 {
		t.Fatalf("size %d, %d", n, p)
	}
}

// A reload drops what went offline without a note, keeps what a change put in after the reload
// read the store, and moves the counters of what it holds at the same version.
func TestReloadTakesTheStoreAsItWas(t *testing.T) {
	now := time.Now()
	mk := func(id, version, spent int64) *surge.Activity {
		return &surge.Activity{ID: id, Name: "a", Version: version, State: surge.ActivityLive, Budget: 1000, Spent: spent,
			StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour),
			Rule: []byte(`{"kind":"direct","value":1,"currency":"CNY","scope":{"kind":"skus","skus":[1]}}`)}
	}
	ix := NewIndex()
	ix.Replace([]*surge.Activity{mk(1, 2, 0), mk(2, 2, 0)}, ix.Generation())
	since := ix.Generation()                    // a reload starts reading
	if err := ix.Put(mk(3, 2, 0)); err != nil { // published meanwhile
		t.Fatal(err)
	}
	// the store read: 1 went offline (no note came), 2 moved its counters, 3 not yet live
	ix.Replace([]*surge.Activity{mk(2, 2, 1000)}, since)
	got := map[int64]int64{}
	for _, c := range ix.Candidates("CNY", []Line{{SKU: 1, Unit: 10, Quantity: 1}}, now) {
		got[c.Activity.ID] = c.Activity.Spent
	}
	if _, ok := got[1]; ok || len(got) != 1 || got[3] != 0 {
		t.Fatalf("candidates %v; want 3 alone (1 offline, 2 used up)", got)
	}
	if a, ok := ix.Get(2); !ok || a.Spent != 1000 {
		t.Fatalf("activity 2 after the reload: %+v", a)
	}
}

// The index is read while it changes: quotes, changes and reloads at once (run with -race).
func TestIndexIsReadWhileItChanges(t *testing.T) {
	now := time.Now()
	mk := func(id, version int64, state string) *surge.Activity {
		return &surge.Activity{ID: id, Name: "a", Version: version, State: state, StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour),
			Rule: []byte(`{"kind":"direct","value":1,"currency":"CNY","scope":{"kind":"skus","skus":[1,2,3]}}`)}
	}
	ix := NewIndex()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, c := range ix.Candidates("CNY", []Line{{SKU: 2, Unit: 10, Quantity: 1}}, now) {
					if c.Act == nil || c.Activity.State != surge.ActivityLive {
						t.Error("a candidate that is not live")
					}
				}
				ix.Size()
				ix.Excluding()
			}
		}()
	}
	for i := range 2000 {
		id := int64(i%50 + 1)
		state := surge.ActivityLive
		if i%3 == 0 {
			state = surge.ActivityOffline
		}
		if err := ix.Put(mk(id, int64(i+1), state)); err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 {
			ix.Replace([]*surge.Activity{mk(1, int64(i+1), surge.ActivityLive)}, ix.Generation())
		}
	}
	close(stop)
	wg.Wait()
}

func FuzzDecodeRule(f *testing.F) {
	for _, s := range []string{
		`{"kind":"threshold","value":2000,"threshold":20000,"repeat":true,"currency":"CNY","scope":{"kind":"platform"}}`,
		`{"kind":"tiered","tiers":[{"min":100,"percent":10}],"currency":"CNY","scope":{"kind":"categories","categories":["a"]}}`,
		`{"kind":"bundle","units":3,"price":9900,"currency":"CNY","scope":{"kind":"skus","skus":[1,2]},"group":"g","excludes":["h"]}`,
		`{"kind":"buy_x_get_y","buy":2,"get":1,"currency":"CNY","scope":{"kind":"shops","shops":[1]},"floor":10}`,
		`{"kind":"flash_price","price":0,"currency":"CNY","scope":{"kind":"platform"},"exclusive":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRule(data)
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("a bad rule: %v; want EINVALID", err)
			}
			return
		}
		// a rule that decodes prices any cart without breaking its sums
		x := compileRule(1, 1, 0, "x", 0, r)
		lines := []Line{{SKU: 1, Shop: 1, Category: "a", Unit: 12345, Quantity: 3}, {SKU: 2, Shop: 2, Unit: 999, Quantity: 1}}
		p, err := Best(r.Currency, lines, []*Act{x}, nil, false)
		if err != nil {
			t.Fatalf("pricing with a valid rule: %v", err)
		}
		checkAddsUp(t, p.Price)
	})
}
