package http

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/voucher"
)

// FuzzRequestBodies feeds every route's request body type the same inputs: decoding must never
// panic, and must fail only with a domain error a client can act on.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		`{"username":"alice","password":"correct horse"}`,
		`{"login":"alice","password":"x"}`,
		`{"phone":"+8613800138000","code":"123456"}`,
		`{"spu_id":"123","code":"K","title":"T","price":{"amount":1,"currency":"CNY"},"cost_price":{"amount":1,"currency":"CNY"},"stock":5}`,
		`{"name":"s","start_at":"2030-01-01T00:00:00Z","end_at":"2030-01-01T01:00:00Z"}`,
		`{"sku_id":"1","allotted":1,"sale_price":{"amount":1,"currency":"CNY"},"per_user_limit":1}`,
		`{"images":["a","b"],"title":null}`,
		`{"stock":99999999999999999999}`, `[]`, `null`, `{"a":1} {}`, "\xff", ``,
		`{"item_id":"123","quantity":1,"request_id":"r-1","token":"AAAA"}`,
		`{"user_id":"9","reason":"bot","ttl_sec":60}`,
		`{"request_id":"c-1","lines":[{"sku_id":"5","quantity":2}],"coupon_ids":["7"]}`,
		`{"request_id":"g-1","users":["1","2"]}`,
		`{"request_id":"rf-1","lines":[{"line":0,"quantity":1}],"reason":"damaged"}`,
		`{"code":"7KQ2-M9XD-40TF-HC3R","till":"front"}`, `{"rating":5,"text":"fine"}`,
	} {
		f.Add([]byte(seed))
	}
	var types []reflect.Type
	routes := append((&Server{}).table(), (&Server{deps: Deps{Purchase: &purchase.Service{}}}).purchaseRoutes()...)
	routes = append(routes, (&Server{deps: Deps{Vouchers: &voucher.Service{}}}).voucherRoutes()...)
	for _, rt := range append(routes, (&Server{deps: Deps{Coupons: &coupon.Service{}, Checkout: &checkout.Service{}}}).couponRoutes()...) {
		if rt.in != nil {
			types = append(types, reflect.TypeOf(rt.in))
		}
	}
	// The payment callback reads its body itself: its decoder is payment.Decode, fuzzed there.
	types = append(types, reflect.TypeOf(payment.Notification{}))
	if len(types) < 10 {
		f.Fatalf("found %d request body types; the route table should have more", len(types))
	}
	// The domain types the services build from those bodies validate whatever was decoded.
	validated := []func() interface{ Validate() error }{
		func() interface{ Validate() error } { return &surge.SPU{} },
		func() interface{ Validate() error } { return &surge.SKU{} },
		func() interface{ Validate() error } { return &surge.Session{} },
		func() interface{ Validate() error } { return &surge.SessionItem{} },
		func() interface{ Validate() error } { return &surge.User{} },
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, typ := range types {
			v := reflect.New(typ).Interface()
			err := surge.DecodeJSONBytes(body, v)
			if err == nil {
				continue
			}
			var de *surge.Error
			if code := surge.ErrorCode(err); code != surge.EINVALID && code != surge.ETOOLARGE {
				t.Fatalf("DecodeJSON(%q) into %s = %v; want EINVALID", body, typ, err)
			}
			if !asDomain(err, &de) || de.Message == "" {
				t.Fatalf("DecodeJSON(%q) into %s = %v; want a message", body, typ, err)
			}
		}
		for _, mk := range validated {
			v := mk()
			if surge.DecodeJSONBytes(body, v) != nil {
				continue
			}
			if err := v.Validate(); err != nil && surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("Validate(%q) as %T = %v; want nil or EINVALID", body, v, err)
			}
		}
	})
}

func asDomain(err error, de **surge.Error) bool {
	e, ok := err.(*surge.Error)
	*de = e
	return ok
}

// FuzzErrorBodyJSON: the error envelope written by hand is byte for byte what json.Encoder
// writes, whatever the message holds (quotes, HTML, control characters, bad UTF-8, U+2028).
func FuzzErrorBodyJSON(f *testing.F) {
	f.Add("ESOLDOUT", "sold out", "3f2a9c")
	f.Add("EINVALID", `field "x" <must> be & a "string"`, "a\u2028b")
	f.Add("E\x00", "caf\xc3\xa9 \xff\t\n~\x7f", "")
	f.Fuzz(func(t *testing.T, code, msg, id string) {
		body := ErrorBody{Error: ErrorDetail{Code: code, Message: msg, RequestID: id}}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(body); err != nil {
			t.Fatal(err)
		}
		if got := body.appendJSON(nil); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("appendJSON = %s; json.Encoder writes %s", got, want.Bytes())
		}
	})
}
