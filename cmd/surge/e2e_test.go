package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/live"
	"github.com/surgecommerce/surge/sale"
)

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := surge.ErrorCode(err); got != code {
		t.Fatalf("%s = %v; want %s", what, err, code)
	}
}

func ok[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s = %v", what, err)
		}
		return v
	}
}

// team is a deployment with an admin, an operator, two merchants and a shopper signed in.
type team struct {
	anon, admin, op, m1, m2, shopper *client.Client
	m1ID, m2ID                       int64
	opToken, m1Token, shopperToken   string
}

func newTeam(t *testing.T, c *client.Client) *team {
	ctx := context.Background()
	tm := &team{anon: c}
	tm.admin = c.As(ok[*auth.Tokens](t, "Login(admin)")(c.Login(ctx, "admin", "admin-password")).AccessToken)
	login := func(name string, role surge.Role) (*client.Client, int64, string) {
		u := ok[*surge.User](t, "CreateUser("+name+")")(tm.admin.CreateUser(ctx, auth.NewUser{Username: name, Password: name + "-password", Role: role}))
		tok := ok[*auth.Tokens](t, "Login("+name+")")(c.Login(ctx, name, name+"-password")).AccessToken
		return c.As(tok), u.ID, tok
	}
	tm.op, _, tm.opToken = login("operator1", surge.RoleOperator)
	tm.m1, tm.m1ID, tm.m1Token = login("merchant1", surge.RoleMerchant)
	tm.m2, tm.m2ID, _ = login("merchant2", surge.RoleMerchant)
	tok := ok[*auth.Tokens](t, "Register")(c.Register(ctx, auth.NewUser{Username: "shopper1", Email: "s1@example.com", Password: "shopper-password"}))
	tm.shopper, tm.shopperToken = c.As(tok.AccessToken), tok.AccessToken
	return tm
}

func TestEndToEnd(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := testConfig(t)
			sh.setup(t, &c)
			_, cl := start(t, c)
			ctx := context.Background()
			if r, err := cl.Ready(ctx); err != nil || !r.Ready {
				t.Fatalf("Ready = %+v, %v", r, err)
			}
			tm := newTeam(t, cl)
			t.Run("Catalog", func(t *testing.T) { catalogFlow(t, tm) })
			t.Run("Import", func(t *testing.T) { importFlow(t, tm) })
			t.Run("Sessions", func(t *testing.T) { sessionFlow(t, tm) })
			t.Run("PhoneLogin", func(t *testing.T) { phoneFlow(t, cl) })
			t.Run("Tokens", func(t *testing.T) { tokenFlow(t, cl) })
		})
	}
}

func catalogFlow(t *testing.T, tm *team) {
	ctx := context.Background()
	spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: "PHONE-X", Title: "Phone X 手机",
		CategoryL1: "Digital", CategoryL2: "Phones", Images: []string{"https://img.example/x.jpg"}}))
	if spu.MerchantID != tm.m1ID {
		t.Fatalf("merchant's SPU belongs to %d; want %d", spu.MerchantID, tm.m1ID)
	}
	sku := ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: "PHONE-X-256",
		Title: "Phone X 256GB", Price: surge.Money{Amount: 599900, Currency: "CNY"},
		CostPrice: surge.Money{Amount: 400000, Currency: "CNY"}, Stock: 1000}))

	_, err := tm.m2.SPU(ctx, spu.ID)
	wantCode(t, "another merchant's SPU", err, surge.ENOTFOUND)
	_, err = tm.m2.UpdateSKU(ctx, sku.ID, catalog.SKUPatch{Stock: ptr[int64](1)})
	wantCode(t, "changing another merchant's SKU", err, surge.ENOTFOUND)
	list := ok[[]*surge.SPU](t, "SPUs(m2)")(tm.m2.SPUs(ctx, surge.CatalogFilter{MerchantID: tm.m1ID}))
	if len(list) != 0 {
		t.Fatalf("merchant 2 listed %d of merchant 1's SPUs; want 0", len(list))
	}
	_, err = tm.shopper.CreateSPU(ctx, catalog.SPUInput{Code: "X", Title: "X", CategoryL1: "X"})
	wantCode(t, "shopper creating an SPU", err, surge.EFORBIDDEN)
	_, err = tm.op.CreateSPU(ctx, catalog.SPUInput{Code: "OP-1", Title: "By operator", CategoryL1: "Food"})
	wantCode(t, "operator creating an SPU without merchant_id", err, surge.EINVALID)
	_, err = tm.op.CreateSPU(ctx, catalog.SPUInput{MerchantID: tm.m1ID + 12345, Code: "OP-1", Title: "By operator", CategoryL1: "Food"})
	wantCode(t, "operator creating an SPU for a non-merchant", err, surge.EINVALID)
	byOp := ok[*surge.SPU](t, "CreateSPU(operator)")(tm.op.CreateSPU(ctx, catalog.SPUInput{MerchantID: tm.m2ID, Code: "OP-1", Title: "By operator", CategoryL1: "Food"}))
	if byOp.MerchantID != tm.m2ID {
		t.Fatalf("operator's SPU belongs to %d; want %d", byOp.MerchantID, tm.m2ID)
	}
	up := ok[*surge.SPU](t, "UpdateSPU")(tm.m1.UpdateSPU(ctx, spu.ID, catalog.SPUPatch{Title: ptr("Phone X (2026)")}))
	if up.Title != "Phone X (2026)" || up.Code != "PHONE-X" {
		t.Fatalf("UpdateSPU = %+v; want only the title changed", up)
	}
	got := ok[*surge.SKU](t, "SKU")(tm.m1.SKU(ctx, sku.ID))
	if got.Price.Amount != 599900 || got.CostPrice == nil || got.CostPrice.Amount != 400000 {
		t.Fatalf("SKU = %+v", got)
	}
}

func importFlow(t *testing.T, tm *team) {
	ctx := context.Background()
	csv := "spu_code,spu_title,category_l1,category_l2,sku_code,sku_title,price_minor,cost_minor,currency,stock\n" +
		"TEA,Green tea,Food,Drinks,TEA-100G,Green tea 100g,2900,1200,CNY,500\n" +
		"TEA,Green tea,Food,Drinks,TEA-250G,Green tea 250g,5900,2500,CNY,300\n"
	rep := ok[*surge.ImportReport](t, "Import(csv)")(tm.m1.Import(ctx, 0, "text/csv", strings.NewReader(csv)))
	if !rep.Applied || rep.SKUsCreated != 2 || rep.SPUsCreated != 1 {
		t.Fatalf("Import(csv) = %+v", rep)
	}
	jsonl := `{"spu_code":"RICE","spu_title":"Rice","category_l1":"Food","category_l2":"Grain","sku_code":"RICE-5KG","sku_title":"Rice 5kg","price_minor":8900,"cost_minor":6000,"currency":"CNY","stock":50}` + "\n\n" +
		`{"spu_code":"RICE","spu_title":"Rice","category_l1":"Food","category_l2":"Grain","sku_code":"RICE-1KG","sku_title":"Rice 1kg","price_minor":-5,"cost_minor":6000,"currency":"CNY","stock":50}` + "\n" +
		`{"spu_code":"RICE","bogus":1}` + "\n"
	rep = ok[*surge.ImportReport](t, "Import(jsonl)")(tm.m1.Import(ctx, 0, "application/x-ndjson", strings.NewReader(jsonl)))
	if rep.Applied || len(rep.Errors) != 2 || rep.Errors[0].Line != 3 || rep.Errors[1].Line != 4 {
		t.Fatalf("Import(bad jsonl) = %+v; want refused with errors on lines 3 and 4", rep)
	}
	skus := ok[[]*surge.SKU](t, "SKUs")(tm.m1.SKUs(ctx, surge.CatalogFilter{}))
	for _, k := range skus {
		if strings.HasPrefix(k.Code, "RICE") {
			t.Fatalf("a refused import wrote %s", k.Code)
		}
	}
	_, err := tm.m1.Import(ctx, 0, "text/csv", strings.NewReader("spu_code,nope\n"))
	wantCode(t, "Import(bad header)", err, surge.EINVALID)
	_, err = tm.m1.Import(ctx, 0, "application/pdf", strings.NewReader("x"))
	wantCode(t, "Import(wrong type)", err, surge.EINVALID)
	_, err = tm.shopper.Import(ctx, 0, "text/csv", strings.NewReader(csv))
	wantCode(t, "Import(shopper)", err, surge.EFORBIDDEN)
}

func sessionFlow(t *testing.T, tm *team) {
	ctx := context.Background()
	spu := ok[*surge.SPU](t, "CreateSPU")(tm.m1.CreateSPU(ctx, catalog.SPUInput{Code: "SALE", Title: "Sale item", CategoryL1: "Food"}))
	sku := ok[*surge.SKU](t, "CreateSKU")(tm.m1.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: "SALE-1", Title: "Sale item",
		Price: surge.Money{Amount: 1000, Currency: "CNY"}, CostPrice: surge.Money{Amount: 500, Currency: "CNY"}, Stock: 100}))
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	in := sale.SessionInput{Name: "20:00 场", StartAt: start, EndAt: start.Add(time.Hour)}
	_, err := tm.m1.CreateSession(ctx, in)
	wantCode(t, "CreateSession(merchant)", err, surge.EFORBIDDEN)
	se := ok[*surge.Session](t, "CreateSession")(tm.op.CreateSession(ctx, in))
	if !se.StartAt.Equal(start) || se.Status != surge.SessionUpcoming {
		t.Fatalf("CreateSession = %+v", se)
	}
	item := sale.ItemInput{SKUID: sku.ID, Allotted: 101, SalePrice: surge.Money{Amount: 1, Currency: "CNY"}, PerUserLimit: 1}
	_, err = tm.op.AddItem(ctx, se.ID, item)
	wantCode(t, "AddItem(above stock)", err, surge.ECONFLICT)
	item.Allotted = 100
	it := ok[*surge.SessionItem](t, "AddItem")(tm.op.AddItem(ctx, se.ID, item))
	_, err = tm.m1.UpdateSKU(ctx, sku.ID, catalog.SKUPatch{Stock: ptr[int64](99)})
	wantCode(t, "UpdateSKU(stock below allotment)", err, surge.ECONFLICT)
	ok[*surge.SessionItem](t, "UpdateItem")(tm.op.UpdateItem(ctx, se.ID, it.ID, sale.ItemPatch{PerUserLimit: ptr[int64](2)}))

	list := ok[[]*surge.Session](t, "Sessions(anonymous)")(tm.anon.Sessions(ctx))
	var found *surge.Session
	for _, s := range list {
		if s.ID == se.ID {
			found = s
		}
	}
	if found == nil || len(found.Items) != 1 || found.Items[0].PerUserLimit != 2 || found.Items[0].Title != "Sale item" {
		t.Fatalf("Sessions = %+v; want the session with its item", list)
	}
	ok[*surge.Session](t, "UpdateSession")(tm.op.UpdateSession(ctx, se.ID, sale.SessionPatch{Name: ptr("21:00 场")}))
	if err := tm.op.DeleteItem(ctx, se.ID, it.ID); err != nil {
		t.Fatal(err)
	}
}

func phoneFlow(t *testing.T, c *client.Client) {
	ctx := context.Background()
	phone := "+8613900139000"
	if err := c.SendOTP(ctx, phone); err != nil {
		t.Fatal(err)
	}
	code := ok[string](t, "DevOTP")(c.DevOTP(ctx, phone))
	tok := ok[*auth.Tokens](t, "LoginOTP")(c.LoginOTP(ctx, phone, code))
	me := ok[*surge.User](t, "Me")(c.As(tok.AccessToken).Me(ctx))
	if me.Phone != phone || me.Role != surge.RoleShopper {
		t.Fatalf("Me = %+v", me)
	}
	_, err := c.LoginOTP(ctx, phone, code)
	wantCode(t, "LoginOTP(replayed)", err, surge.EUNAUTHORIZED)
}

func tokenFlow(t *testing.T, c *client.Client) {
	ctx := context.Background()
	tok := ok[*auth.Tokens](t, "Register")(c.Register(ctx, auth.NewUser{Email: "tok@example.com", Password: "token-password"}))
	next := ok[*auth.Tokens](t, "Refresh")(c.Refresh(ctx, tok.RefreshToken))
	_, err := c.Refresh(ctx, tok.RefreshToken)
	wantCode(t, "Refresh(reused)", err, surge.EUNAUTHORIZED)
	if err := c.Logout(ctx, next.RefreshToken, true); err != nil {
		t.Fatal(err)
	}
	_, err = c.Refresh(ctx, next.RefreshToken)
	wantCode(t, "Refresh(after logout)", err, surge.EUNAUTHORIZED)
}

func TestServiceEndpoints(t *testing.T) {
	_, cl := start(t, testConfig(t))
	base := cl.BaseURL()
	get := func(path string) (int, string, http.Header) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, _ := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	if code, body, _ := get("/readyz"); code != 200 || !strings.Contains(body, `"sqlite":"ok"`) || !strings.Contains(body, `"nats":"ok"`) {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	get("/v1/sessions")
	req, _ := http.NewRequest("GET", base+"/v1/sessions", nil)
	req.Header.Set("X-Surge-Test", "1") // a load test's request is counted apart
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	code, body, _ := get("/metrics")
	for _, want := range []string{`surge_http_requests_total{code="200",method="GET",route="GET /v1/sessions",traffic="live"} 1`,
		`surge_http_requests_total{code="200",method="GET",route="GET /v1/sessions",traffic="test"} 1`,
		"surge_http_request_duration_seconds_bucket", `surge_backend_up{backend="sqlite"} 1`, "go_goroutines"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	code, body, _ = get("/openapi.json")
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); code != 200 || err != nil {
		t.Fatalf("/openapi.json = %d, %v", code, err)
	}
	for _, p := range []string{"/v1/auth/login", "/v1/spus/{id}", "/v1/sessions/{id}/items/{item}", "/v1/catalog/import", "/paysim/v1/pay", "/live/{room}", "/v1/events"} {
		if doc.Paths[p] == nil {
			t.Errorf("/openapi.json lacks %s", p)
		}
	}
	checkOpenAPIOperations(t, []byte(body))
	_, _, h := get("/healthz")
	if h.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id in the response")
	}
}

func TestProfilingAndDevEndpointsAreOptIn(t *testing.T) {
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	c := testConfig(t)
	c.Dev = false
	m, cl := start(t, c)
	if m.AdminAddr != "" {
		t.Fatalf("a profiling listener started without --admin-addr: %s", m.AdminAddr)
	}
	for _, path := range []string{"/debug/pprof/", "/v1/dev/otp?phone=%2B8613800000000"} {
		if got := status(cl.BaseURL() + path); got != http.StatusNotFound {
			t.Errorf("GET %s without opting in = %d; want 404", path, got)
		}
	}
	c = testConfig(t)
	c.AdminAddr = "127.0.0.1:0"
	m, cl = start(t, c)
	if got := status("http://" + m.AdminAddr + "/debug/pprof/"); got != http.StatusOK {
		t.Fatalf("GET /debug/pprof/ on the admin listener = %d; want 200", got)
	}
	if got := status(cl.BaseURL() + "/debug/pprof/"); got != http.StatusNotFound {
		t.Fatalf("GET /debug/pprof/ on the API listener = %d; want 404", got)
	}
}

// checkOpenAPIOperations: every operation has an id of its own, made of lower-case letters,
// digits and '_'; every path parameter's pattern takes the values the server serves (each
// metric of the catalog, an id); a route's raw body lists the types the server takes.
func checkOpenAPIOperations(t *testing.T, body []byte) {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				Name, In string
				Schema   struct{ Pattern string }
			}
			RequestBody struct {
				Content map[string]any
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	idForm := regexp.MustCompile(`^[a-z0-9_]+$`)
	examples := map[string][]string{"id": {"123181676598657025"}, "item": {"7"}, "user": {"42"}}
	for _, m := range live.Catalog() {
		examples["name"] = append(examples["name"], m.Name)
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !idForm.MatchString(op.OperationID) || ids[op.OperationID] != "" {
				t.Errorf("%s %s: operationId %q is not an identifier of its own (also %s)", method, path, op.OperationID, ids[op.OperationID])
			}
			ids[op.OperationID] = method + " " + path
			for _, p := range op.Parameters {
				if p.In != "path" || p.Schema.Pattern == "" {
					continue
				}
				if len(examples[p.Name]) == 0 {
					t.Errorf("%s %s: parameter %s has a pattern no test checks", method, path, p.Name)
				}
				for _, v := range examples[p.Name] {
					if !regexp.MustCompile(p.Schema.Pattern).MatchString(v) {
						t.Errorf("%s %s: parameter %s's pattern %s refuses %q, which the server serves", method, path, p.Name, p.Schema.Pattern, v)
					}
				}
			}
		}
	}
	events := doc.Paths["/v1/events"]["post"].RequestBody.Content
	if events["application/x-ndjson"] == nil || events["text/csv"] != nil {
		t.Errorf("POST /v1/events takes %v; want JSON lines, not CSV", slices.Collect(maps.Keys(events)))
	}
}
