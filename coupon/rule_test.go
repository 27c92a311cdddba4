package coupon

import (
	"strings"
	"testing"

	"github.com/surgecommerce/surge"
)

// Each field's bounds, each scope's needs, and malformed JSON: EINVALID naming the problem.
func TestDecodeRule(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"kind":"fixed","value":500,"currency":"CNY","scope":{"kind":"platform"}}`, ""},
		{`{"kind":"percent","value":15,"cap":2000,"currency":"CNY","scope":{"kind":"shop","shop":"42"},"group":"shop-42"}`, ""},
		{`{"kind":"threshold","value":3000,"threshold":20000,"currency":"CNY","scope":{"kind":"category","category":"Tea"}}`, ""},
		{`{"kind":"fixed","value":100,"currency":"CNY","scope":{"kind":"skus","skus":[7,8]}}`, ""},
		{`{"kind":"gift","value":1,"currency":"CNY","scope":{"kind":"platform"}}`, "kind must be"},
		{`{"kind":"fixed","value":0,"currency":"CNY","scope":{"kind":"platform"}}`, "value must be from 1"},
		{`{"kind":"fixed","value":-5,"currency":"CNY","scope":{"kind":"platform"}}`, "value must be from 1"},
		{`{"kind":"fixed","value":100000001,"currency":"CNY","scope":{"kind":"platform"}}`, "value must be from 1"},
		{`{"kind":"fixed","value":9223372036854775808,"currency":"CNY","scope":{"kind":"platform"}}`, "!"}, // overflow: a JSON error
		{`{"kind":"percent","value":100,"currency":"CNY","scope":{"kind":"platform"}}`, "from 1 to 99"},
		{`{"kind":"percent","value":10,"cap":-1,"currency":"CNY","scope":{"kind":"platform"}}`, "cap must be"},
		{`{"kind":"fixed","value":10,"cap":5,"currency":"CNY","scope":{"kind":"platform"}}`, "cap is for percent"},
		{`{"kind":"threshold","value":3000,"threshold":3000,"currency":"CNY","scope":{"kind":"platform"}}`, "threshold must be above"},
		{`{"kind":"fixed","value":10,"threshold":50,"currency":"CNY","scope":{"kind":"platform"}}`, "threshold is for threshold"},
		{`{"kind":"fixed","value":10,"currency":"cny","scope":{"kind":"platform"}}`, "currency"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"shop"}}`, "needs its shop"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"platform","shop":"3"}}`, "names only what it is for"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"category","category":" Tea"}}`, "needs its category"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"skus","skus":[]}}`, "lists 1 to"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"skus","skus":[0]}}`, "positive"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"everything"}}`, "scope kind"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"platform"},"group":"` + strings.Repeat("g", 65) + `"}`, "group must be"},
		{`{"kind":"fixed","value":10,"currency":"CNY","scope":{"kind":"platform"},"extra":1}`, "unknown field"},
		{`{"kind":"fixed"`, "!"},
	} {
		_, err := DecodeRule([]byte(tc.in))
		switch {
		case tc.want == "!": // refused by the JSON decoder, in its words
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Errorf("DecodeRule(%s) = %v; want EINVALID", tc.in, err)
			}
		case tc.want == "":
			if err != nil {
				t.Errorf("DecodeRule(%s) = %v; want it taken", tc.in, err)
			}
		case surge.ErrorCode(err) != surge.EINVALID || !strings.Contains(err.Error(), tc.want):
			t.Errorf("DecodeRule(%s) = %v; want EINVALID saying %q", tc.in, err, tc.want)
		}
	}
}

// Any input: a rule that validates, or EINVALID; never a panic, never a rule that breaks its
// bounds.
func FuzzDecodeRule(f *testing.F) {
	f.Add([]byte(`{"kind":"percent","value":15,"cap":2000,"currency":"CNY","scope":{"kind":"shop","shop":"42"},"group":"g"}`))
	f.Add([]byte(`{"kind":"threshold","value":3000,"threshold":20000,"currency":"CNY","scope":{"kind":"skus","skus":[1,2,3]}}`))
	f.Add([]byte(`{"kind":"fixed","value":1,"currency":"USD","scope":{"kind":"category","category":"茶"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRule(data)
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("DecodeRule = %v; want EINVALID", err)
			}
			return
		}
		if r.Value < 1 || r.Value > MaxValue || r.Cap < 0 || (r.Kind == Percent && r.Value > 99) {
			t.Fatalf("DecodeRule took %+v", r)
		}
		lines := []Line{{SKU: 1, Shop: 1, Category: "Tea", Unit: 12345, Quantity: 3}}
		b, err := Price(r.Currency, lines, []Applied{{ID: 1, Rule: r}})
		if err == nil && (b.Payable < 1 || b.Payable+b.Discount != b.List) {
			t.Fatalf("Price with %+v = %+v", r, b)
		}
	})
}
