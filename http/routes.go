package http

import (
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/sale"
)

// access is who may call a route.
type access int

const (
	public   access = iota // anyone
	signedIn               // any valid access token; the handler checks the role
)

// route is one API endpoint: what the mux, the OpenAPI description and the handler need.
type route struct {
	method, path, summary string
	access                access
	in                    any   // request body type (a zero value), nil for none
	out                   any   // response body type, nil for none
	status                int   // success status
	also                  []int // other success statuses, answered with the same body type
	query                 []string
	maxBody               int64 // 0: MaxBodyBytes
	// bodyTypes, for a route that reads its own body (no in), are the media types it takes:
	// a request of another Content-Type is refused before the handler runs, and the API
	// description lists them.
	bodyTypes []string
	handle    func(r *http.Request, a surge.Actor) (any, error)
	// stream, instead of handle, writes its own response (server-sent events).
	stream func(w http.ResponseWriter, r *http.Request, a surge.Actor) error
	// produces, for a stream route that writes a document rather than events, is its media
	// type (text/html), for the API description.
	produces string
}

// table lists every /v1 route.
func (s *Server) table() []route {
	d := s.deps
	list := []route{
		{method: "POST", path: "/v1/auth/register", summary: "Register a shopper with a password and log in",
			in: auth.NewUser{}, out: auth.Tokens{}, status: 201,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				return withBody(r, func(in auth.NewUser) (any, error) { return d.Auth.Register(r.Context(), in) })
			}},
		{method: "POST", path: "/v1/auth/login", summary: "Log in with a username or email and password",
			in: LoginRequest{}, out: auth.Tokens{}, status: 200,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				return withBody(r, func(in LoginRequest) (any, error) {
					return d.Auth.Login(r.Context(), in.Login, in.Password, s.clientIP(r))
				})
			}},
		{method: "POST", path: "/v1/auth/otp", summary: "Send a one-time login code to a phone",
			in: OTPRequest{}, status: 202,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				return withBody(r, func(in OTPRequest) (any, error) {
					return nil, d.Auth.SendOTP(r.Context(), in.Phone, s.clientIP(r))
				})
			}},
		{method: "POST", path: "/v1/auth/otp/login", summary: "Log in (or sign up) with a phone and its one-time code",
			in: OTPLoginRequest{}, out: auth.Tokens{}, status: 200,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				return withBody(r, func(in OTPLoginRequest) (any, error) {
					return d.Auth.LoginOTP(r.Context(), in.Phone, in.Code, s.clientIP(r))
				})
			}},
		{method: "POST", path: "/v1/auth/refresh", summary: "Swap a refresh token, once, for new tokens",
			in: RefreshRequest{}, out: auth.Tokens{}, status: 200,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				return withBody(r, func(in RefreshRequest) (any, error) { return d.Auth.Refresh(r.Context(), in.RefreshToken) })
			}},
		{method: "POST", path: "/v1/auth/logout", summary: "Revoke a refresh token (or all of its user's)",
			in: LogoutRequest{}, status: 204,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				return withBody(r, func(in LogoutRequest) (any, error) {
					return nil, d.Auth.Logout(r.Context(), in.RefreshToken, in.Everywhere)
				})
			}},
		{method: "GET", path: "/v1/me", summary: "The signed-in account", access: signedIn, out: surge.User{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) { return d.Auth.Me(r.Context(), a) }},
		{method: "POST", path: "/v1/users", summary: "Create an account with a role (admins)", access: signedIn,
			in: auth.NewUser{}, out: surge.User{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in auth.NewUser) (any, error) { return d.Auth.CreateUser(r.Context(), a, in) })
			}},
		{method: "POST", path: "/v1/loadtest/shoppers", summary: "Provision synthetic shoppers for a load test, with access tokens marked as test traffic (operators)",
			access: signedIn, in: TestShoppersInput{}, out: TestShopperList{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in TestShoppersInput) (any, error) {
					list, err := d.Auth.TestShoppers(r.Context(), a, in.Count)
					return TestShopperList{Items: list}, err
				})
			}},
	}
	list = append(list, s.catalogRoutes()...)
	list = append(list, s.saleRoutes()...)
	list = append(list, s.purchaseRoutes()...)
	list = append(list, s.liveRoutes()...)
	list = append(list, s.couponRoutes()...)
	list = append(list, s.promoRoutes()...)
	list = append(list, s.riskRoutes()...)
	list = append(list, s.voucherRoutes()...)
	list = append(list, s.reconcileRoutes()...)
	list = append(list, s.settlementRoutes()...)
	list = append(list, s.orderViewRoutes()...)
	if d.DevCodes != nil {
		list = append(list, route{method: "GET", path: "/v1/dev/otp", summary: "Development only: the last code sent to a phone",
			query: []string{"phone"}, out: OTPCode{}, status: 200,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				phone := r.URL.Query().Get("phone")
				c, ok := d.DevCodes.LastCode(phone)
				if !ok {
					return nil, surge.Errorf(surge.ENOTFOUND, "no code was sent to that phone")
				}
				return OTPCode{Phone: phone, Code: c}, nil
			}})
	}
	return list
}

func (s *Server) catalogRoutes() []route {
	c := s.deps.Catalog
	return []route{
		{method: "POST", path: "/v1/spus", summary: "Create an SPU", access: signedIn, in: catalog.SPUInput{}, out: surge.SPU{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in catalog.SPUInput) (any, error) { return c.CreateSPU(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/spus", summary: "List SPUs (merchants see their own)", access: signedIn,
			query: []string{"merchant_id", "after", "limit"}, out: SPUList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				f, err := catalogFilter(r)
				if err != nil {
					return nil, err
				}
				items, err := c.SPUs(r.Context(), a, f)
				return SPUList{Items: nonNil(items)}, err
			}},
		{method: "GET", path: "/v1/spus/{id}", summary: "Get an SPU", access: signedIn, out: surge.SPU{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return c.SPU(r.Context(), a, id) })
			}},
		{method: "PATCH", path: "/v1/spus/{id}", summary: "Change an SPU", access: signedIn, in: catalog.SPUPatch{}, out: surge.SPU{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in catalog.SPUPatch) (any, error) { return c.UpdateSPU(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/skus", summary: "Create an SKU", access: signedIn, in: catalog.SKUInput{}, out: surge.SKU{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in catalog.SKUInput) (any, error) { return c.CreateSKU(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/skus", summary: "List SKUs (merchants see their own)", access: signedIn,
			query: []string{"merchant_id", "spu_id", "after", "limit"}, out: SKUList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				f, err := catalogFilter(r)
				if err != nil {
					return nil, err
				}
				items, err := c.SKUs(r.Context(), a, f)
				return SKUList{Items: nonNil(items)}, err
			}},
		{method: "GET", path: "/v1/skus/{id}", summary: "Get an SKU", access: signedIn, out: surge.SKU{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return c.SKU(r.Context(), a, id) })
			}},
		{method: "PATCH", path: "/v1/skus/{id}", summary: "Change an SKU (stock may not drop below live allotments)", access: signedIn,
			in: catalog.SKUPatch{}, out: surge.SKU{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in catalog.SKUPatch) (any, error) { return c.UpdateSKU(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/catalog/import", summary: "Import a CSV (text/csv) or JSON-lines (application/x-ndjson) file, all or nothing",
			access: signedIn, query: []string{"merchant_id"}, out: surge.ImportReport{}, status: 200, maxBody: surge.MaxImportBodyBytes,
			bodyTypes: []string{"text/csv", ndjsonType, jsonlType, jsonlinesType},
			handle:    func(r *http.Request, a surge.Actor) (any, error) { return s.importCatalog(r, a) }},
	}
}

func (s *Server) importCatalog(r *http.Request, a surge.Actor) (any, error) {
	merchant, err := queryInt(r, "merchant_id")
	if err != nil {
		return nil, err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var src catalog.Source
	switch mt {
	case "text/csv":
		if src, err = catalog.NewCSV(r.Body); err != nil {
			return nil, err
		}
	case ndjsonType, jsonlType, jsonlinesType:
		src = catalog.NewJSONL(r.Body)
	default:
		return nil, surge.Errorf(surge.EINVALID, "Content-Type must be text/csv or application/x-ndjson")
	}
	rep, err := s.deps.Catalog.Import(r.Context(), a, merchant, src)
	if err == nil && !rep.Applied {
		return nil, &refusedImport{err: surge.Errorf(surge.EINVALID, "the import was refused and nothing was written; see error.report"), report: rep}
	}
	return rep, err
}

func (s *Server) saleRoutes() []route {
	sv := s.deps.Sale
	return []route{
		{method: "POST", path: "/v1/sessions", summary: "Plan a sale session (operators)", access: signedIn,
			in: sale.SessionInput{}, out: surge.Session{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in sale.SessionInput) (any, error) { return sv.CreateSession(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/sessions", summary: "Live and upcoming sessions with their items, earliest first",
			query: []string{"limit"}, out: SessionList{}, status: 200,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				n, err := queryInt(r, "limit")
				if err != nil {
					return nil, err
				}
				items, err := sv.Sessions(r.Context(), int(n))
				return SessionList{Items: nonNil(items)}, err
			}},
		{method: "GET", path: "/v1/sessions/{id}", summary: "A session with its items", out: surge.Session{}, status: 200,
			handle: func(r *http.Request, _ surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return sv.Session(r.Context(), id) })
			}},
		{method: "PATCH", path: "/v1/sessions/{id}", summary: "Change a session before it starts (operators)", access: signedIn,
			in: sale.SessionPatch{}, out: surge.Session{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in sale.SessionPatch) (any, error) { return sv.UpdateSession(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/sessions/{id}/publish", summary: "Publish a session: freeze it and load its stock into the stock engine (operators)",
			access: signedIn, out: surge.Session{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return sv.Publish(r.Context(), a, id) })
			}},
		{method: "GET", path: "/v1/sessions/{id}/stock", summary: "What is left, held and sold of a session's items, from the stock engine (operators)",
			access: signedIn, out: sale.SessionStock{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return sv.Stock(r.Context(), a, id) })
			}},
		{method: "POST", path: "/v1/sessions/{id}/items", summary: "Put a SKU on sale in a session (operators)", access: signedIn,
			in: sale.ItemInput{}, out: surge.SessionItem{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in sale.ItemInput) (any, error) { return sv.AddItem(r.Context(), a, id, in) })
				})
			}},
		{method: "PATCH", path: "/v1/sessions/{id}/items/{item}", summary: "Change a session item before the session starts (operators)",
			access: signedIn, in: sale.ItemPatch{}, out: surge.SessionItem{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withID(r, "item", func(item int64) (any, error) {
						return withBody(r, func(in sale.ItemPatch) (any, error) { return sv.UpdateItem(r.Context(), a, id, item, in) })
					})
				})
			}},
		{method: "DELETE", path: "/v1/sessions/{id}/items/{item}", summary: "Take an item out of a session before it starts (operators)",
			access: signedIn, status: 204,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withID(r, "item", func(item int64) (any, error) { return nil, sv.DeleteItem(r.Context(), a, id, item) })
				})
			}},
	}
}

// endpoint wraps a route's handler: body limit, authentication, and the response.
func (s *Server) endpoint(rt route) http.Handler {
	limit := rt.maxBody
	if limit == 0 {
		limit = MaxBodyBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		var a surge.Actor
		if rt.access == signedIn {
			var err error
			if a, err = s.bearer(r); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		if err := checkBodyType(r, rt.bodyTypes); err != nil {
			s.fail(w, r, err)
			return
		}
		if rt.stream != nil {
			if err := rt.stream(w, r, a); err != nil {
				s.fail(w, r, err)
			}
			return
		}
		out, err := rt.handle(r, a)
		switch {
		case err != nil:
			s.fail(w, r, err)
		case rt.out == nil:
			reply(w, rt.status, nil)
		case answerStatus(out) != 0:
			reply(w, answerStatus(out), out)
		default:
			reply(w, rt.status, out)
		}
	})
}

// The media types of a body of JSON lines, one value per line.
const (
	ndjsonType    = "application/x-ndjson"
	jsonlType     = "application/jsonl"
	jsonlinesType = "application/jsonlines"
)

// checkBodyType refuses a request whose Content-Type is not one of types (any, when types is
// empty): a client that sends a form, or nothing said, learns of its bug rather than getting an
// answer about a body it did not mean.
func checkBodyType(r *http.Request, types []string) error {
	if len(types) == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && slices.Contains(types, mt) {
		return nil
	}
	return surge.Errorf(surge.EINVALID, "Content-Type must be %s, not %q", strings.Join(types, " or "), r.Header.Get("Content-Type"))
}

// plainReader is a request body type with a one-pass reader for the form clients usually send
// (purchase.Request): what it does not take, the JSON decoder reads.
type plainReader interface{ ReadPlain(body []byte) bool }

// withBody decodes the JSON body into T and calls fn with it.
func withBody[T any](r *http.Request, fn func(T) (any, error)) (any, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, surge.JSONError(err)
	}
	var in T
	if p, ok := any(&in).(plainReader); !ok || !p.ReadPlain(body) {
		var zero T // the decoder starts afresh, whatever the plain reading set before it stopped
		in = zero
		if err := surge.DecodeJSONBytes(body, &in); err != nil {
			return nil, err
		}
	}
	return fn(in)
}

// readBody reads a request's body whole. A body of announced length up to sizedBodyMax (a
// purchase is a few hundred bytes) is read into one slice of that length, in one call where the
// server has it buffered; any other is read as io.ReadAll does, which starts at 512 bytes and
// reads until it is told the body ended. The route's bound still applies (MaxBytesReader).
func readBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 || n > sizedBodyMax {
		return io.ReadAll(r.Body)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.Body, b); err != nil {
		return nil, err
	}
	return b, nil
}

// sizedBodyMax bounds what a body's announced length alone can make the server allocate.
const sizedBodyMax = 16 << 10

// withID parses a path id and calls fn with it.
func withID(r *http.Request, name string, fn func(int64) (any, error)) (any, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return nil, surge.Errorf(surge.EINVALID, "%s in the path must be a positive integer", name)
	}
	return fn(id)
}

func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, surge.Errorf(surge.EINVALID, "query parameter %s must be a non-negative integer", name)
	}
	return n, nil
}

func catalogFilter(r *http.Request) (surge.CatalogFilter, error) {
	var f surge.CatalogFilter
	var limit int64
	var err error
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"merchant_id", &f.MerchantID}, {"spu_id", &f.SPUID}, {"after", &f.AfterID}, {"limit", &limit}} {
		if *p.dst, err = queryInt(r, p.name); err != nil {
			return f, err
		}
	}
	if limit > surge.MaxListLimit {
		return f, surge.Errorf(surge.EINVALID, "limit must be at most %d", surge.MaxListLimit)
	}
	f.Limit = int(limit)
	return f, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// answerStatus lets an answer choose its own success status.
func answerStatus(v any) int {
	if h, ok := v.(interface{ HTTPStatus() int }); ok {
		return h.HTTPStatus()
	}
	return 0
}
