package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/sale"
)

// raw sends a request with a literal body and returns the status and the error code.
func raw(t *testing.T, base, method, path, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb struct {
		Error struct{ Code, RequestID string } `json:"error"`
	}
	json.Unmarshal(b, &eb)
	return resp.StatusCode, eb.Error.Code
}

func sign(t *testing.T, claims jwt.MapClaims, key string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBadInputGetsClearErrors(t *testing.T) {
	_, cl := start(t, testConfig(t))
	base := cl.BaseURL()
	ctx := context.Background()
	tm := newTeam(t, cl)
	mTok, opTok, shopperTok := tm.m1Token, tm.opToken, tm.shopperToken

	spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: "P", Title: "P", CategoryL1: "C"}))
	sku := ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: "K", Title: "K",
		Price: surge.Money{Amount: 100, Currency: "CNY"}, CostPrice: surge.Money{Amount: 50, Currency: "CNY"}, Stock: 10}))
	future := time.Now().Add(time.Hour).UTC()
	se := ok[*surge.Session](t, "CreateSession")(tm.op.CreateSession(ctx, sale.SessionInput{Name: "S", StartAt: future, EndAt: future.Add(time.Hour)}))

	skuBody := func(field string) string {
		m := map[string]any{"spu_id": fmt.Sprint(spu.ID), "code": "K2", "title": "K2", "stock": 1,
			"price": map[string]any{"amount": 100, "currency": "CNY"}, "cost_price": map[string]any{"amount": 1, "currency": "CNY"}}
		b, _ := json.Marshal(m)
		s := string(b)
		if field != "" {
			s = strings.Replace(s, `"stock":1`, field, 1)
		}
		return s
	}
	expired := sign(t, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin", "exp": time.Now().Add(-time.Minute).Unix()}, testSecret)
	forged := sign(t, jwt.MapClaims{"iss": "surge", "sub": "1", "role": "admin", "exp": time.Now().Add(time.Hour).Unix()}, strings.Repeat("z", 32))
	items := fmt.Sprintf("/v1/sessions/%d/items", se.ID)

	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"malformed JSON", "POST", "/v1/auth/register", "", `{"username":`, 400, surge.EINVALID},
		{"empty body", "POST", "/v1/auth/register", "", ``, 400, surge.EINVALID},
		{"unknown field", "POST", "/v1/auth/register", "", `{"username":"eve","password":"12345678","role2":"admin"}`, 400, surge.EINVALID},
		{"trailing data", "POST", "/v1/auth/register", "", `{"username":"eve","password":"12345678"} {}`, 400, surge.EINVALID},
		{"oversize body", "POST", "/v1/auth/register", "", `{"username":"` + strings.Repeat("a", 2<<20) + `"}`, 413, surge.ETOOLARGE},
		{"invalid UTF-8", "POST", "/v1/spus", mTok, "{\"code\":\"X1\",\"title\":\"bad \xff\xfe\",\"category_l1\":\"C\"}", 400, surge.EINVALID},
		{"overlong name", "POST", "/v1/spus", mTok, `{"code":"X2","title":"` + strings.Repeat("长", surge.MaxNameRunes+1) + `","category_l1":"C"}`, 400, surge.EINVALID},
		{"control characters in name", "POST", "/v1/spus", mTok, `{"code":"X3","title":"a\u0000b","category_l1":"C"}`, 400, surge.EINVALID},
		{"negative price", "POST", "/v1/skus", mTok, strings.Replace(skuBody(""), `"amount":100`, `"amount":-100`, 1), 400, surge.EINVALID},
		{"price above bound", "POST", "/v1/skus", mTok, strings.Replace(skuBody(""), `"amount":100`, `"amount":9223372036854775807`, 1), 400, surge.EINVALID},
		{"overflowing quantity", "POST", "/v1/skus", mTok, skuBody(`"stock":99999999999999999999999`), 400, surge.EINVALID},
		{"fractional quantity", "POST", "/v1/skus", mTok, skuBody(`"stock":1.5`), 400, surge.EINVALID},
		{"negative quantity", "POST", "/v1/skus", mTok, skuBody(`"stock":-1`), 400, surge.EINVALID},
		{"lower-case currency", "POST", "/v1/skus", mTok, strings.Replace(skuBody(""), `"currency":"CNY"`, `"currency":"cny"`, 1), 400, surge.EINVALID},
		{"id as a number", "POST", "/v1/skus", mTok, strings.Replace(skuBody(""), fmt.Sprintf(`"%d"`, spu.ID), fmt.Sprint(spu.ID), 1), 400, surge.EINVALID},
		{"allotment above stock", "POST", items, opTok, fmt.Sprintf(`{"sku_id":"%d","allotted":11,"sale_price":{"amount":1,"currency":"CNY"},"per_user_limit":1}`, sku.ID), 409, surge.ECONFLICT},
		{"per-user limit zero", "POST", items, opTok, fmt.Sprintf(`{"sku_id":"%d","allotted":1,"sale_price":{"amount":1,"currency":"CNY"},"per_user_limit":0}`, sku.ID), 400, surge.EINVALID},
		{"session in the past", "POST", "/v1/sessions", opTok, `{"name":"old","start_at":"2020-01-01T00:00:00Z","end_at":"2020-01-01T01:00:00Z"}`, 400, surge.EINVALID},
		{"session ending before start", "POST", "/v1/sessions", opTok, fmt.Sprintf(`{"name":"x","start_at":%q,"end_at":%q}`, future.Add(time.Hour).Format(time.RFC3339), future.Format(time.RFC3339)), 400, surge.EINVALID},
		{"bad time", "POST", "/v1/sessions", opTok, `{"name":"x","start_at":"tomorrow","end_at":"later"}`, 400, surge.EINVALID},
		{"wrong role: shopper plans a session", "POST", "/v1/sessions", shopperTok, `{"name":"x"}`, 403, surge.EFORBIDDEN},
		{"wrong role: merchant creates a user", "POST", "/v1/users", mTok, `{"username":"evil","password":"12345678","role":"admin"}`, 403, surge.EFORBIDDEN},
		{"wrong role: operator creates a user", "POST", "/v1/users", opTok, `{"username":"evil","password":"12345678","role":"admin"}`, 403, surge.EFORBIDDEN},
		{"no token", "GET", "/v1/me", "", "", 401, surge.EUNAUTHORIZED},
		{"expired token", "GET", "/v1/me", expired, "", 401, surge.EUNAUTHORIZED},
		{"forged token", "GET", "/v1/me", forged, "", 401, surge.EUNAUTHORIZED},
		{"garbage token", "GET", "/v1/me", "not-a-token", "", 401, surge.EUNAUTHORIZED},
		{"bad path id", "GET", "/v1/spus/abc", mTok, "", 400, surge.EINVALID},
		{"negative path id", "GET", "/v1/spus/-5", mTok, "", 400, surge.EINVALID},
		{"unknown id", "GET", "/v1/spus/12345", mTok, "", 404, surge.ENOTFOUND},
		{"bad limit", "GET", "/v1/skus?limit=-1", mTok, "", 400, surge.EINVALID},
		{"limit above bound", "GET", "/v1/skus?limit=100000", mTok, "", 400, surge.EINVALID},
		{"unknown route", "GET", "/v1/nothing", "", "", 404, surge.ENOTFOUND},
		{"bad order cursor", "GET", "/v1/orders?cursor=!!!", shopperTok, "", 400, surge.EINVALID},
		{"order page above bound", "GET", "/v1/orders?limit=100000", shopperTok, "", 400, surge.EINVALID},
		{"unknown order state", "GET", "/v1/merchant/orders?state=shipped", mTok, "", 400, surge.EINVALID},
		{"bad order time", "GET", "/v1/merchant/orders?from=yesterday", mTok, "", 400, surge.EINVALID},
		{"order time range backwards", "GET", "/v1/merchant/orders?from=2026-12-08T00:00:00Z&to=2026-12-07T00:00:00Z", mTok, "", 400, surge.EINVALID},
		{"wrong role: shopper lists a shop's orders", "GET", "/v1/merchant/orders", shopperTok, "", 403, surge.EFORBIDDEN},
		{"wrong role: merchant lists another shop's orders", "GET", "/v1/merchant/orders?merchant=12345", mTok, "", 403, surge.EFORBIDDEN},
		{"short order search", "GET", "/v1/support/orders?q=ab", opTok, "", 400, surge.EINVALID},
		{"wrong role: shopper searches orders", "GET", "/v1/support/orders?q=13800", shopperTok, "", 403, surge.EFORBIDDEN},
		{"bad phone", "POST", "/v1/auth/otp", "", `{"phone":"12345"}`, 400, surge.EINVALID},
		{"bad otp format", "POST", "/v1/auth/otp/login", "", `{"phone":"+8613800000000","code":"12"}`, 400, surge.EINVALID},
		{"short password", "POST", "/v1/auth/register", "", `{"username":"eve","password":"short"}`, 400, surge.EINVALID},
		{"bad username", "POST", "/v1/auth/register", "", `{"username":"1eve","password":"long enough"}`, 400, surge.EINVALID},
		{"bad email", "POST", "/v1/auth/register", "", `{"email":"eve@","password":"long enough"}`, 400, surge.EINVALID},
		{"wrong password", "POST", "/v1/auth/login", "", `{"login":"admin","password":"nope"}`, 401, surge.EUNAUTHORIZED},
		{"forged refresh token", "POST", "/v1/auth/refresh", "", `{"refresh_token":"forged"}`, 401, surge.EUNAUTHORIZED},
		{"quote of no lines", "POST", "/v1/prices/quote", shopperTok, `{"lines":[]}`, 400, surge.EINVALID},
		{"quote of an unknown SKU", "POST", "/v1/prices/quote", shopperTok, `{"lines":[{"sku_id":"99999","quantity":1}]}`, 404, surge.ENOTFOUND},
		{"quote of a quantity of 0", "POST", "/v1/prices/quote", shopperTok, fmt.Sprintf(`{"lines":[{"sku_id":"%d","quantity":0}]}`, sku.ID), 400, surge.EINVALID},
		{"quote of an SKU twice", "POST", "/v1/prices/quote", shopperTok, fmt.Sprintf(`{"lines":[{"sku_id":"%d","quantity":1},{"sku_id":"%d","quantity":1}]}`, sku.ID, sku.ID), 400, surge.EINVALID},
		{"quote with someone else's coupon", "POST", "/v1/prices/quote", shopperTok, fmt.Sprintf(`{"lines":[{"sku_id":"%d","quantity":1}],"coupon_ids":["12345"]}`, sku.ID), 404, surge.ENOTFOUND},
		{"activity of an unknown kind", "POST", "/v1/activities", mTok, `{"name":"x","rule":{"kind":"free","currency":"CNY","scope":{"kind":"platform"}},"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`, 400, surge.EINVALID},
		{"activity whose price goes below its floor", "POST", "/v1/activities", mTok, `{"name":"x","rule":{"kind":"flash_price","price":100,"floor":200,"currency":"CNY","scope":{"kind":"platform"}},"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`, 400, surge.EINVALID},
		{"activity ending before it starts", "POST", "/v1/activities", mTok, `{"name":"x","rule":{"kind":"direct","value":1,"currency":"CNY","scope":{"kind":"platform"}},"starts_at":"2030-01-02T00:00:00Z","ends_at":"2030-01-01T00:00:00Z"}`, 400, surge.EINVALID},
		{"activity with a negative cap", "POST", "/v1/activities", mTok, `{"name":"x","cap":-1,"rule":{"kind":"direct","value":1,"currency":"CNY","scope":{"kind":"platform"}},"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T00:00:00Z"}`, 400, surge.EINVALID},
		{"wrong role: shopper creates an activity", "POST", "/v1/activities", shopperTok, `{"name":"x"}`, 403, surge.EFORBIDDEN},
		{"risk rule: not JSON", "POST", "/v1/risk/rules", opTok, `{"name":`, 400, surge.EINVALID},
		{"risk rule: unknown field", "POST", "/v1/risk/rules", opTok, `{"name":"x","expr":"accounts_1h.device > 3","on":"device","action":"block","ttl_sec":60,"reason":"R","colour":"red"}`, 400, surge.EINVALID},
		{"risk rule: expr not a string", "POST", "/v1/risk/rules", opTok, `{"name":"x","expr":3,"on":"device","action":"block","ttl_sec":60,"reason":"R"}`, 400, surge.EINVALID},
		{"risk rule: a macro on no list", "POST", "/v1/risk/rules", opTok, `{"name":"x","expr":"accounts_1h.device.all(x, x > 1)","on":"device","action":"block","ttl_sec":60,"reason":"R"}`, 400, surge.EINVALID},
		{"risk rule: a huge expression", "POST", "/v1/risk/rules", opTok, `{"name":"x","expr":"` + strings.Repeat("1 + ", 600) + `1 > 0","on":"device","action":"block","ttl_sec":60,"reason":"R"}`, 400, surge.EINVALID},
		{"risk rule: challenge too hard", "POST", "/v1/risk/rules", opTok, `{"name":"x","expr":"accounts_1h.device > 3","on":"device","action":"challenge","bits":40,"ttl_sec":60,"reason":"R"}`, 400, surge.EINVALID},
		{"risk rule: unknown", "GET", "/v1/risk/rules/12345", opTok, ``, 404, surge.ENOTFOUND},
		{"risk rule: mode of an unknown rule", "POST", "/v1/risk/rules/12345/mode", opTok, `{"mode":"enforcing"}`, 404, surge.ENOTFOUND},
		{"risk rule: bad id", "GET", "/v1/risk/rules/x", opTok, ``, 400, surge.EINVALID},
		{"wrong role: merchant reads risk rules", "GET", "/v1/risk/rules", mTok, ``, 403, surge.EFORBIDDEN},
		{"wrong role: merchant reads risk features", "GET", "/v1/risk/features", mTok, ``, 403, surge.EFORBIDDEN},
		{"wrong role: shopper reads verdicts", "GET", "/v1/risk/verdicts?user=1", shopperTok, ``, 403, surge.EFORBIDDEN},
		{"verdicts of no user", "GET", "/v1/risk/verdicts?user=abc", opTok, ``, 400, surge.EINVALID},
		{"allow-list: bad IP", "POST", "/v1/risk/allow", opTok, `{"subject":"ip","value":"300.1.1.1","reason":"r","ttl_sec":60}`, 400, surge.EINVALID},
		{"allow-list: too long", "POST", "/v1/risk/allow", opTok, `{"subject":"user","value":"5","reason":"r","ttl_sec":99999999}`, 400, surge.EINVALID},
		{"allow-list: nothing to remove", "DELETE", "/v1/risk/allow/device/nobody", opTok, ``, 404, surge.ENOTFOUND},
		{"replay of a rule that does not compile", "POST", "/v1/risk/replay", opTok, `{"rule":{"name":"x","expr":"(","on":"device","action":"block","ttl_sec":60,"reason":"R"}}`, 400, surge.EINVALID},
		{"refund: no request id", "POST", "/v1/orders/12345/refunds", opTok, `{"lines":[{"line":0,"quantity":1}]}`, 400, surge.EINVALID},
		{"refund: of an unknown order", "POST", "/v1/orders/12345/refunds", opTok, `{"request_id":"r"}`, 404, surge.ENOTFOUND},
		{"refund: quantity as text", "POST", "/v1/orders/12345/refunds", opTok, `{"request_id":"r","lines":[{"line":0,"quantity":"1"}]}`, 400, surge.EINVALID},
		{"refund: a reason too long", "POST", "/v1/orders/12345/refunds", opTok, `{"request_id":"r","reason":"` + strings.Repeat("退", 70) + `"}`, 400, surge.EINVALID},
		{"refund: by a shopper", "POST", "/v1/orders/12345/refunds", shopperTok, `{"request_id":"r"}`, 403, surge.EFORBIDDEN},
		{"review: rating 0", "POST", "/v1/orders/12345/review", shopperTok, `{"rating":0}`, 400, surge.EINVALID},
		{"review: of an order not there", "POST", "/v1/orders/12345/review", shopperTok, `{"rating":5}`, 404, surge.ENOTFOUND},
		{"voucher: not a code", "POST", "/v1/vouchers/redeem", mTok, `{"code":"hello"}`, 400, surge.EINVALID},
		{"voucher: a code made up", "POST", "/v1/vouchers/redeem", mTok, `{"code":"0000-0000-0000-0001"}`, 400, surge.EINVALID},
		{"voucher: a till name too long", "POST", "/v1/vouchers/redeem", mTok, `{"code":"0000-0000-0000-0000","till":"` + strings.Repeat("t", 65) + `"}`, 400, surge.EINVALID},
		{"voucher: an unknown code", "POST", "/v1/vouchers/redeem", mTok, `{"code":"0000-0000-0000-0000"}`, 404, surge.ENOTFOUND},
		{"voucher: by an operator", "POST", "/v1/vouchers/redeem", opTok, `{"code":"0000-0000-0000-0000"}`, 403, surge.EFORBIDDEN},
		{"reconcile: not a day", "POST", "/v1/reconcile/days/yesterday/run", opTok, ``, 400, surge.EINVALID},
		{"reconcile: a day to come", "POST", "/v1/reconcile/days/2999-01-01/run", opTok, ``, 400, surge.EINVALID},
		{"reconcile: by a merchant", "POST", "/v1/reconcile/days/2026-01-01/run", mTok, ``, 403, surge.EFORBIDDEN},
		{"reconcile: a repair of a day not reconciled", "POST", "/v1/reconcile/days/2026-01-01/findings/x/repair", opTok, ``, 404, surge.ENOTFOUND},
		{"mismatches: an unknown kind", "GET", "/v1/reconcile/mismatches?kind=lost", opTok, ``, 400, surge.EINVALID},
		{"mismatches: since not a time", "GET", "/v1/reconcile/mismatches?since=today", opTok, ``, 400, surge.EINVALID},
		{"settlement: not a day", "GET", "/v1/merchants/1/settlements/today", opTok, ``, 400, surge.EINVALID},
		{"settlement: another shop's", "GET", "/v1/merchants/1/settlements/2026-01-01", mTok, ``, 403, surge.EFORBIDDEN},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, code := raw(t, base, tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || code != tc.code {
				t.Fatalf("%s %s = %d %s; want %d %s", tc.method, tc.path, status, code, tc.status, tc.code)
			}
		})
	}

	t.Run("brute-force login is throttled", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			raw(t, base, "POST", "/v1/auth/login", "", `{"login":"merchant2","password":"guess"}`)
		}
		if status, code := raw(t, base, "POST", "/v1/auth/login", "", `{"login":"merchant2","password":"merchant2-password"}`); status != 429 || code != surge.ERATELIMIT {
			t.Fatalf("login after 5 failures = %d %s; want 429 ERATELIMIT", status, code)
		}
	})

	t.Run("editing a live session", func(t *testing.T) {
		soon := time.Now().Add(2 * time.Second).UTC()
		live := ok[*surge.Session](t, "CreateSession")(tm.op.CreateSession(ctx, sale.SessionInput{Name: "soon", StartAt: soon, EndAt: soon.Add(time.Hour)}))
		it := ok[*surge.SessionItem](t, "AddItem")(tm.op.AddItem(ctx, live.ID, sale.ItemInput{SKUID: sku.ID, Allotted: 1,
			SalePrice: surge.Money{Amount: 1, Currency: "CNY"}, PerUserLimit: 1}))
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			s, err := cl.Session(ctx, live.ID)
			if err == nil && s.Status == surge.SessionLive {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the session never went live")
			}
		}
		_, err := tm.op.UpdateSession(ctx, live.ID, sale.SessionPatch{Name: ptr("renamed")})
		wantCode(t, "UpdateSession(live)", err, surge.ECONFLICT)
		_, err = tm.op.UpdateItem(ctx, live.ID, it.ID, sale.ItemPatch{Allotted: ptr[int64](2)})
		wantCode(t, "UpdateItem(live)", err, surge.ECONFLICT)
		_, err = tm.op.AddItem(ctx, live.ID, sale.ItemInput{SKUID: sku.ID, Allotted: 1, SalePrice: surge.Money{Amount: 1, Currency: "CNY"}, PerUserLimit: 1})
		wantCode(t, "AddItem(live)", err, surge.ECONFLICT)
		wantCode(t, "DeleteItem(live)", tm.op.DeleteItem(ctx, live.ID, it.ID), surge.ECONFLICT)
	})

	t.Run("refused import reports lines", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/v1/catalog/import", bytes.NewReader([]byte(
			"spu_code,spu_title,category_l1,category_l2,sku_code,sku_title,price_minor,cost_minor,currency,stock\n"+
				"A,A,C,C,A1,A1,abc,1,CNY,1\n")))
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Authorization", "Bearer "+mTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error struct {
				Code, RequestID string
				Report          *surge.ImportReport
			}
		}
		json.NewDecoder(resp.Body).Decode(&body)
		rep := body.Error.Report
		if resp.StatusCode != 400 || body.Error.Code != surge.EINVALID || rep == nil || rep.Applied || len(rep.Errors) != 1 ||
			rep.Errors[0].Line != 2 || rep.Errors[0].Code != surge.EINVALID {
			t.Fatalf("import = %d %+v; want 400 EINVALID with a report of an error on line 2", resp.StatusCode, body)
		}
	})
}
