package purchase

import (
	"reflect"
	"testing"

	"github.com/surgecommerce/surge"
)

// FuzzRequestReadPlain: whatever the plain reading takes, the JSON decoder reads to the same
// request without an error; so a body is never read differently by taking the fast path.
func FuzzRequestReadPlain(f *testing.F) {
	for _, seed := range []string{
		`{"item_id":"123","quantity":1,"request_id":"r-1","token":"AAAA"}`,
		` { "token" : "t" , "request_id":"x", "quantity":-3 ,"item_id":"-0" } `,
		`{"item_id":"0123","quantity":1}`, `{"item_id":123}`, `{"item_id":"+1"}`, `{"item_id":"1e3"}`,
		`{"item_id":" 1"}`, `{"item_id":"12a"}`, `{"item_id":"9223372036854775807"}`, `{"item_id":null}`, `{"quantity":1.0}`,
		`{"Item_ID":"1"}`, `{"quantity":1,"quantity":2}`, `{"token":"caf\u00e9"}`, `{"token":"café"}`,
		`{"token":"\xff"}`, `{}`, `{"a":1}`, `{"quantity":1} {}`, `[]`, `null`, ``, `{"request_id":"a\tb"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var plain Request
		if !plain.ReadPlain(body) {
			return
		}
		var dec Request
		if err := surge.DecodeJSONBytes(body, &dec); err != nil {
			t.Fatalf("ReadPlain(%q) took it, the decoder says %v", body, err)
		}
		if !reflect.DeepEqual(plain, dec) {
			t.Fatalf("ReadPlain(%q) = %+v; the decoder reads %+v", body, plain, dec)
		}
	})
}

// The bodies clients send take the plain reading; the rest are the decoder's.
func TestRequestReadPlain(t *testing.T) {
	for body, want := range map[string]bool{
		`{"item_id":"123","quantity":1,"request_id":"r-1","token":"AAAA"}`: true,
		"{\n \"item_id\": \"-7\", \"quantity\": 2, \"token\": \"é\"\n}\n":  true,
		`{"request_id":"x"}`:          true,
		`{"item_id":123}`:             false, // not a string: the decoder explains
		`{"item_id":"01"}`:            false,
		`{"ITEM_ID":"1"}`:             false, // the decoder matches names without case
		`{"quantity":1,"quantity":2}`: false,
		`{"token":"a\"b"}`:            false,
		`{"item_id":null}`:            false,
		`{"quantity":1}x`:             false,
		`{"quantity":1,}`:             false,
		`{"quantity":true}`:           false,
		`{"coupon_ids":["1"]}`:        false, // coupons are the decoder's
	} {
		var r Request
		if got := r.ReadPlain([]byte(body)); got != want {
			t.Errorf("ReadPlain(%q) = %v; want %v", body, got, want)
		}
	}
	var r Request
	if !r.ReadPlain([]byte(`{"item_id":"42","quantity":3,"request_id":"abc","token":"tok"}`)) ||
		!reflect.DeepEqual(r, Request{ItemID: 42, Quantity: 3, RequestID: "abc", Token: "tok"}) {
		t.Fatalf("read %+v", r)
	}
}
