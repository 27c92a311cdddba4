package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/client"
)

// loadAPI reads a node's /openapi.json and checks it with kin-openapi's validator (OpenAPI 3.1
// and JSON Schema).
func loadAPI(t testing.TB, base string) *openapi3.T {
	t.Helper()
	resp, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/openapi.json = %d, %v", resp.StatusCode, err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatalf("/openapi.json does not load: %v", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableSchemaPatternValidation()); err != nil {
		t.Fatalf("/openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// apiCheck is an http.RoundTripper that holds every exchange with a node to the node's own API
// description: each answer (its status among the operation's, its body against the schema),
// and each request the node accepted (2xx) against the operation's parameters and body. A
// request the node refused may break the description: refusing it is the node's job. Each
// operation's answers of each status are checked up to maxAPIChecks times per node: a load
// test's thousands of purchases are the same exchange, and checking them all took the CPU the
// node under test needed.
type apiCheck struct {
	t      testing.TB
	next   http.RoundTripper
	router routers.Router

	mu       sync.Mutex
	failures int
	checked  map[string]int // "METHOD path status" → exchanges checked
}

// maxAPIChecks bounds the exchanges of one operation and status that a node's check validates.
const maxAPIChecks = 50

func newAPICheck(t testing.TB, base string) *apiCheck {
	doc := loadAPI(t, base)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("routing /openapi.json: %v", err)
	}
	return &apiCheck{t: t, next: http.DefaultTransport, router: router, checked: map[string]int{}}
}

// maxAPIFailures bounds what one test reports: the first few say what is wrong.
const maxAPIFailures = 10

func (c *apiCheck) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures++; c.failures <= maxAPIFailures {
		c.t.Errorf("API description: "+format, args...)
	}
}

func (c *apiCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	what := req.Method + " " + req.URL.Path
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.fail("%s (answered %d) is in no operation: %v", what, resp.StatusCode, err)
		return resp, nil
	}
	c.mu.Lock()
	key := req.Method + " " + route.Path + " " + strconv.Itoa(resp.StatusCode)
	c.checked[key]++
	enough := c.checked[key] > maxAPIChecks
	c.mu.Unlock()
	if enough {
		return resp, nil
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req.Clone(req.Context()), PathParams: params, Route: route, Options: opts}
	in.Request.Body = io.NopCloser(bytes.NewReader(reqBody))
	if resp.StatusCode/100 == 2 {
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			c.fail("%s was accepted (%d) but breaks its description: %s\nbody: %.300s", what, resp.StatusCode, trimErr(err), reqBody)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		opts.ExcludeResponseBody = true // a stream is read as it comes, not here
		out.Body = io.NopCloser(strings.NewReader(""))
	} else {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out.SetBodyBytes(body)
	}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		c.fail("%s answered %d against its description: %v", what, resp.StatusCode, trimErr(err))
	}
	return resp, nil
}

// trimErr keeps a validator's message readable: its schema dumps run to pages.
func trimErr(err error) string {
	s := fmt.Sprint(err)
	if len(s) > 1500 {
		s = s[:1500] + "…"
	}
	return s
}

// tbRecorder is a testing.TB that keeps what it is told instead of failing.
type tbRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *tbRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// rewrite answers one path with a status and a body of its own, as a server drifting from its
// description.
type rewrite struct {
	path, body string
	status     int
	next       http.RoundTripper
}

func (rw rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rw.next.RoundTrip(req)
	if err == nil && req.URL.Path == rw.path {
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(rw.body))
		resp.StatusCode = cmp.Or(rw.status, resp.StatusCode)
	}
	return resp, err
}

// The check itself: an answer that breaks its schema, an undocumented status and a route the
// description lacks are each caught, and a true exchange is not.
func TestAPICheckCatchesADrift(t *testing.T) {
	m, cl := start(t, testConfig(t))
	ctx := context.Background()
	tok := ok[*auth.Tokens](t, "Login")(cl.Login(ctx, "admin", "admin-password")).AccessToken
	me := func(c *client.Client) error { c.Me(ctx); return nil }
	for _, tc := range []struct {
		name, path, body string
		status           int
		call             func(c *client.Client) error
		want             string
	}{
		{"true", "", "", 0, func(c *client.Client) error { _, err := c.Me(ctx); return err }, ""},
		{"schema", "/v1/me", `{"id":"not a number","role":"admin","created_at":"2026-01-01T00:00:00Z"}`, 0, me,
			"answered 200 against its description"},
		{"missing field", "/v1/me", `{"id":"1","created_at":"2026-01-01T00:00:00Z"}`, 0, me, "missing property 'role'"},
		{"unknown field", "/v1/me", `{"id":"1","role":"admin","created_at":"2026-01-01T00:00:00Z","nickname":"x"}`, 0, me,
			"additional properties 'nickname' not allowed"},
		{"status", "/v1/me", `{"id":"1","role":"admin","created_at":"2026-01-01T00:00:00Z"}`, 202, me, "answered 202 against its description"},
		{"route", "", "", 0, func(c *client.Client) error {
			c.Do(ctx, "GET", "/no/such/route", nil, nil) // 404, as it should be; the check still must say
			return nil
		}, "is in no operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &tbRecorder{TB: t}
			chk := newAPICheck(rec, "http://"+m.Addr)
			chk.next = rewrite{path: tc.path, body: tc.body, status: tc.status, next: http.DefaultTransport}
			c := cl.As(tok).WithHTTP(&http.Client{Transport: chk})
			if err := tc.call(c); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(rec.errs, "\n")
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("the check said %q; want %q", got, tc.want)
			}
		})
	}
}
