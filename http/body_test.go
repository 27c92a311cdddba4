package http

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/purchase"
)

// A body the one-pass reading starts and then leaves (a leading zero it does not take, a name
// in other letter case, an escape) is read by the decoder from the start; a plain body is read
// in one pass. The same answer either way.
func TestWithBodyFallsBackToTheDecoder(t *testing.T) {
	for body, want := range map[string]purchase.Request{
		`{"token":"a","request_id":"r","item_id":"0123","quantity":1}`: {ItemID: 123, Quantity: 1, RequestID: "r", Token: "a"},
		`{"item_id":"5","Item_Id":"6","quantity":2}`:                   {ItemID: 6, Quantity: 2},
		`{"item_id":"5","quantity":1,"request_id":"a\u0062"}`:          {ItemID: 5, Quantity: 1, RequestID: "ab"},
		`{"item_id":"5","quantity":1,"token":"t"}`:                     {ItemID: 5, Quantity: 1, Token: "t"},
		`{"item_id":"5","quantity":1,"coupon_ids":["7","8"]}`:          {ItemID: 5, Quantity: 1, Coupons: surge.IDList{7, 8}},
	} {
		var plain purchase.Request
		if isPlain := plain.ReadPlain([]byte(body)); isPlain != strings.Contains(body, `"token":"t"`) {
			t.Errorf("ReadPlain(%s) = %v; the case is meant to take the other path", body, isPlain)
		}
		r := httptest.NewRequest("POST", "/v1/purchases", strings.NewReader(body))
		got, err := withBody(r, func(in purchase.Request) (any, error) { return in, nil })
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("withBody(%s) = %+v, %v; want %+v", body, got, err, want)
		}
	}
	r := httptest.NewRequest("POST", "/v1/purchases", strings.NewReader(`{"item_id":"5","quantity":1.5}`))
	if _, err := withBody(r, func(in purchase.Request) (any, error) { return in, nil }); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("withBody(a fraction) = %v; want EINVALID", err)
	}
}

// A body is read whole whether its length is announced, announced wrong or not announced, and
// the route's bound holds either way.
func TestReadBody(t *testing.T) {
	const body = `{"item_id":"5","quantity":1}`
	for _, c := range []struct {
		name     string
		length   int64
		limit    int64
		want     string // the body read, or the error code
		wantCode string
	}{
		{"announced", int64(len(body)), 1 << 20, body, ""},
		{"not announced", -1, 1 << 20, body, ""},
		{"announced past the sized bound", sizedBodyMax + 1, 1 << 20, body, ""},
		{"announced longer than sent", int64(len(body)) + 10, 1 << 20, "", surge.EINVALID},
		{"past the route's bound", int64(len(body)), 8, "", surge.ETOOLARGE},
		{"past the route's bound, not announced", -1, 8, "", surge.ETOOLARGE},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("POST", "/v1/purchases", strings.NewReader(body))
			r.ContentLength = c.length
			r.Body = http.MaxBytesReader(w, r.Body, c.limit)
			got, err := withBody(r, func(in json.RawMessage) (any, error) { return string(in), nil })
			if c.wantCode != "" {
				if surge.ErrorCode(err) != c.wantCode {
					t.Fatalf("withBody = %v, %v; want %s", got, err, c.wantCode)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("withBody = %v, %v; want %s", got, err, c.want)
			}
		})
	}
}

// The metric series kept for reuse are counted right when requests of many kinds race to use
// them first (run with -race).
func TestMetricSeriesUnderConcurrency(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				m.observe("POST /v1/purchases", "POST", "live", 409+(g+i)%2, time.Millisecond)
			}
		}()
	}
	wg.Wait()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts, histograms := map[string]float64{}, 0
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			switch f.GetName() {
			case "surge_http_requests_total":
				for _, l := range mt.GetLabel() {
					if l.GetName() == "code" {
						counts[l.GetValue()] += mt.GetCounter().GetValue()
					}
				}
			case "surge_http_request_duration_seconds":
				histograms++
				if n := mt.GetHistogram().GetSampleCount(); n != 8000 {
					t.Errorf("latency samples = %d; want 8000", n)
				}
			}
		}
	}
	if counts["409"] != 4000 || counts["410"] != 4000 || len(counts) != 2 || histograms != 1 {
		t.Fatalf("requests by status %v, %d latency series; want 4000 each of 409 and 410, one series", counts, histograms)
	}
}
