// Package client is the Go client of the Surge HTTP API. Tests and the load generator use it.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/sale"
)

// Client calls one Surge deployment. Copies made by As share the connection pool.
type Client struct {
	base   string
	http   *http.Client
	token  string
	header http.Header // sent with every request
	idem   string      // an Idempotency-Key for this copy's request (Purchase's own)
}

// New returns a client for the API at base (http://host:port).
func New(base string) *Client {
	return &Client{base: base, http: &http.Client{Timeout: 30 * time.Second}}
}

// WithHTTP returns a copy of the client that sends its requests through hc (a load generator's
// pool of connections, say).
func (c *Client) WithHTTP(hc *http.Client) *Client {
	cp := *c
	cp.http = hc
	return &cp
}

// WithHeader returns a copy of the client that also sends this header with every request.
func (c *Client) WithHeader(key, value string) *Client {
	cp := *c
	cp.header = c.header.Clone()
	if cp.header == nil {
		cp.header = http.Header{}
	}
	cp.header.Set(key, value)
	return &cp
}

// Token is the access token the client sends ("" for none).
func (c *Client) Token() string { return c.token }

// As returns a copy of the client that sends an access token.
func (c *Client) As(accessToken string) *Client {
	cp := *c
	cp.token = accessToken
	return &cp
}

// Error is an API error: the HTTP status and the error envelope. It unwraps to a
// *surge.Error, so surge.ErrorCode works on it.
type Error struct {
	Status    int
	Code      string
	Message   string
	RequestID string
	Report    *surge.ImportReport   // set when a catalog import was refused
	Quote     *surge.PriceBreakdown // set when a checkout was refused with EPRICECHANGED
	// Reason is the code of the risk rule that refused or challenged an attempt; Challenge the
	// proof of work asked for with ECHALLENGE (solve it with risk.Solve and send it again in the
	// X-Surge-Proof header).
	Reason    string
	Challenge *surgehttp.Challenge
	// RetryAfterMs is the answer's hint of when to try again (Retry-After-Ms, or Retry-After
	// in seconds); 0 without one.
	RetryAfterMs int64
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s (request %s)", e.Status, e.Code, e.Message, e.RequestID)
}

// Unwrap returns the domain error.
func (e *Error) Unwrap() error {
	return &surge.Error{Code: e.Code, Message: e.Message, RetryAfterMs: e.RetryAfterMs}
}

// retryAfterMs reads an answer's retry hint: Retry-After-Ms, else Retry-After in seconds.
func retryAfterMs(h http.Header) int64 {
	if ms, err := strconv.ParseInt(h.Get(surge.RetryAfterMsHeader), 10, 64); err == nil && ms > 0 {
		return ms
	}
	if s, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64); err == nil && s > 0 {
		return s * 1000
	}
	return 0
}

// errorOf reads an error answer's envelope.
func errorOf(resp *http.Response, fallback string) *Error {
	var eb surgehttp.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error.Code == "" {
		return &Error{Status: resp.StatusCode, Code: surge.EINTERNAL, Message: fallback, RetryAfterMs: retryAfterMs(resp.Header)}
	}
	return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, RequestID: eb.Error.RequestID,
		Report: eb.Error.Report, Quote: eb.Error.Quote, Reason: eb.Error.Reason, Challenge: eb.Error.Challenge,
		RetryAfterMs: retryAfterMs(resp.Header)}
}

// Do sends a request with an optional JSON body and decodes a JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.send(ctx, method, path, "application/json", body, out)
}

func (c *Client) send(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.idem != "" {
		req.Header.Set(IdempotencyKeyHeader, c.idem)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return errorOf(resp, "answer without an error envelope")
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func call[T any](ctx context.Context, c *Client, method, path string, in any) (*T, error) {
	var out T
	if err := c.Do(ctx, method, path, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func id(n int64) string { return strconv.FormatInt(n, 10) }

// Ready asks /readyz.
func (c *Client) Ready(ctx context.Context) (*surgehttp.Readiness, error) {
	return call[surgehttp.Readiness](ctx, c, "GET", "/readyz", nil)
}

// Register creates a shopper account and logs it in.
func (c *Client) Register(ctx context.Context, u auth.NewUser) (*auth.Tokens, error) {
	return call[auth.Tokens](ctx, c, "POST", "/v1/auth/register", u)
}

// Login logs in with a username or email and password.
func (c *Client) Login(ctx context.Context, login, password string) (*auth.Tokens, error) {
	return call[auth.Tokens](ctx, c, "POST", "/v1/auth/login", surgehttp.LoginRequest{Login: login, Password: password})
}

// SendOTP asks for a one-time code for a phone.
func (c *Client) SendOTP(ctx context.Context, phone string) error {
	return c.Do(ctx, "POST", "/v1/auth/otp", surgehttp.OTPRequest{Phone: phone}, nil)
}

// LoginOTP logs in with a phone and its one-time code.
func (c *Client) LoginOTP(ctx context.Context, phone, code string) (*auth.Tokens, error) {
	return call[auth.Tokens](ctx, c, "POST", "/v1/auth/otp/login", surgehttp.OTPLoginRequest{Phone: phone, Code: code})
}

// DevOTP reads the last code sent to a phone (only on a server started with --dev).
func (c *Client) DevOTP(ctx context.Context, phone string) (string, error) {
	out, err := call[surgehttp.OTPCode](ctx, c, "GET", "/v1/dev/otp?phone="+url.QueryEscape(phone), nil)
	if err != nil {
		return "", err
	}
	return out.Code, nil
}

// Refresh swaps a refresh token for new tokens.
func (c *Client) Refresh(ctx context.Context, refresh string) (*auth.Tokens, error) {
	return call[auth.Tokens](ctx, c, "POST", "/v1/auth/refresh", surgehttp.RefreshRequest{RefreshToken: refresh})
}

// Logout revokes a refresh token, or with everywhere all of its user's.
func (c *Client) Logout(ctx context.Context, refresh string, everywhere bool) error {
	return c.Do(ctx, "POST", "/v1/auth/logout", surgehttp.LogoutRequest{RefreshToken: refresh, Everywhere: everywhere}, nil)
}

// Me returns the signed-in account.
func (c *Client) Me(ctx context.Context) (*surge.User, error) {
	return call[surge.User](ctx, c, "GET", "/v1/me", nil)
}

// CreateUser creates an account with a role (admins).
func (c *Client) CreateUser(ctx context.Context, u auth.NewUser) (*surge.User, error) {
	return call[surge.User](ctx, c, "POST", "/v1/users", u)
}

// CreateSPU creates an SPU.
func (c *Client) CreateSPU(ctx context.Context, in catalog.SPUInput) (*surge.SPU, error) {
	return call[surge.SPU](ctx, c, "POST", "/v1/spus", in)
}

// SPU gets an SPU.
func (c *Client) SPU(ctx context.Context, spuID int64) (*surge.SPU, error) {
	return call[surge.SPU](ctx, c, "GET", "/v1/spus/"+id(spuID), nil)
}

// UpdateSPU changes an SPU.
func (c *Client) UpdateSPU(ctx context.Context, spuID int64, p catalog.SPUPatch) (*surge.SPU, error) {
	return call[surge.SPU](ctx, c, "PATCH", "/v1/spus/"+id(spuID), p)
}

// SPUs lists SPUs.
func (c *Client) SPUs(ctx context.Context, f surge.CatalogFilter) ([]*surge.SPU, error) {
	out, err := call[surgehttp.SPUList](ctx, c, "GET", "/v1/spus?"+filterQuery(f), nil)
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

// CreateSKU creates an SKU.
func (c *Client) CreateSKU(ctx context.Context, in catalog.SKUInput) (*surge.SKU, error) {
	return call[surge.SKU](ctx, c, "POST", "/v1/skus", in)
}

// SKU gets an SKU.
func (c *Client) SKU(ctx context.Context, skuID int64) (*surge.SKU, error) {
	return call[surge.SKU](ctx, c, "GET", "/v1/skus/"+id(skuID), nil)
}

// UpdateSKU changes an SKU.
func (c *Client) UpdateSKU(ctx context.Context, skuID int64, p catalog.SKUPatch) (*surge.SKU, error) {
	return call[surge.SKU](ctx, c, "PATCH", "/v1/skus/"+id(skuID), p)
}

// SKUs lists SKUs.
func (c *Client) SKUs(ctx context.Context, f surge.CatalogFilter) ([]*surge.SKU, error) {
	out, err := call[surgehttp.SKUList](ctx, c, "GET", "/v1/skus?"+filterQuery(f), nil)
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

func filterQuery(f surge.CatalogFilter) string {
	q := url.Values{}
	for k, v := range map[string]int64{"merchant_id": f.MerchantID, "spu_id": f.SPUID, "after": f.AfterID, "limit": int64(f.Limit)} {
		if v != 0 {
			q.Set(k, id(v))
		}
	}
	return q.Encode()
}

// Import uploads a catalog file; contentType is text/csv or application/x-ndjson. A refused
// file returns its report (with Applied false and the line errors) and no error.
func (c *Client) Import(ctx context.Context, merchantID int64, contentType string, file io.Reader) (*surge.ImportReport, error) {
	var rep surge.ImportReport
	path := "/v1/catalog/import"
	if merchantID != 0 {
		path += "?merchant_id=" + id(merchantID)
	}
	if err := c.send(ctx, "POST", path, contentType, file, &rep); err != nil {
		var ce *Error
		if errors.As(err, &ce) && ce.Report != nil {
			return ce.Report, nil
		}
		return nil, err
	}
	return &rep, nil
}

// CreateSession plans a sale session.
func (c *Client) CreateSession(ctx context.Context, in sale.SessionInput) (*surge.Session, error) {
	return call[surge.Session](ctx, c, "POST", "/v1/sessions", in)
}

// Session gets a session with its items.
func (c *Client) Session(ctx context.Context, sessionID int64) (*surge.Session, error) {
	return call[surge.Session](ctx, c, "GET", "/v1/sessions/"+id(sessionID), nil)
}

// UpdateSession changes a session before it starts.
func (c *Client) UpdateSession(ctx context.Context, sessionID int64, p sale.SessionPatch) (*surge.Session, error) {
	return call[surge.Session](ctx, c, "PATCH", "/v1/sessions/"+id(sessionID), p)
}

// Sessions lists live and upcoming sessions.
func (c *Client) Sessions(ctx context.Context) ([]*surge.Session, error) {
	out, err := call[surgehttp.SessionList](ctx, c, "GET", "/v1/sessions", nil)
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Publish publishes a session: its stock goes into the stock engine and it freezes.
func (c *Client) Publish(ctx context.Context, sessionID int64) (*surge.Session, error) {
	return call[surge.Session](ctx, c, "POST", "/v1/sessions/"+id(sessionID)+"/publish", nil)
}

// AddItem puts a SKU on sale in a session.
func (c *Client) AddItem(ctx context.Context, sessionID int64, in sale.ItemInput) (*surge.SessionItem, error) {
	return call[surge.SessionItem](ctx, c, "POST", "/v1/sessions/"+id(sessionID)+"/items", in)
}

// UpdateItem changes a session item.
func (c *Client) UpdateItem(ctx context.Context, sessionID, itemID int64, p sale.ItemPatch) (*surge.SessionItem, error) {
	return call[surge.SessionItem](ctx, c, "PATCH", "/v1/sessions/"+id(sessionID)+"/items/"+id(itemID), p)
}

// DeleteItem takes an item out of a session.
func (c *Client) DeleteItem(ctx context.Context, sessionID, itemID int64) error {
	return c.Do(ctx, "DELETE", "/v1/sessions/"+id(sessionID)+"/items/"+id(itemID), nil, nil)
}

// BaseURL is the address the client calls.
func (c *Client) BaseURL() string { return c.base }

// Item returns an item on sale with a purchase token.
func (c *Client) Item(ctx context.Context, itemID int64) (*purchase.Detail, error) {
	return call[purchase.Detail](ctx, c, "GET", "/v1/items/"+id(itemID), nil)
}

// Purchase attempts a purchase. A refusal is an error with its code (ESOLDOUT, ELIMIT, …);
// a queued attempt returns Status "queued" and a ticket for PollPurchase.
//
// A purchase is idempotent by its request id, and says so in an Idempotency-Key header, so Go's
// transport sends it again on a new connection when the server closes a kept-alive one under it
// (which HTTP/1.1 allows) instead of failing it. The server may have received the attempt, and
// acted on it, before the connection broke: the second sending gets the first one's answer,
// because Surge keeps each reservation under its request id. Only for servers that do.
func (c *Client) Purchase(ctx context.Context, r purchase.Request) (*purchase.Result, error) {
	cp := *c // not WithHeader: a copy of the headers per attempt was a load generator's cost
	cp.idem = r.RequestID
	return call[purchase.Result](ctx, &cp, "POST", "/v1/purchases", r)
}

// IdempotencyKeyHeader marks a request that may be sent twice with the same effect; Go's HTTP
// transport then resends it when the connection it went out on broke before an answer came.
const IdempotencyKeyHeader = "Idempotency-Key"

// PollPurchase returns the answer to a queued purchase.
func (c *Client) PollPurchase(ctx context.Context, ticket string) (*purchase.Result, error) {
	return call[purchase.Result](ctx, c, "GET", "/v1/purchases/"+url.PathEscape(ticket), nil)
}

// Orders lists the signed-in shopper's orders.
func (c *Client) Orders(ctx context.Context) ([]*surge.Order, error) {
	out, err := call[surgehttp.OrderList](ctx, c, "GET", "/v1/orders?limit=500", nil)
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Order returns an order.
func (c *Client) Order(ctx context.Context, orderID int64) (*surge.Order, error) {
	return call[surge.Order](ctx, c, "GET", "/v1/orders/"+id(orderID), nil)
}

// PayTicket asks for a payment ticket for a pending order.
func (c *Client) PayTicket(ctx context.Context, orderID int64) (*order.PayTicket, error) {
	return call[order.PayTicket](ctx, c, "POST", "/v1/orders/"+id(orderID)+"/pay", nil)
}

// CancelOrder cancels a pending order.
func (c *Client) CancelOrder(ctx context.Context, orderID int64) (*surge.Order, error) {
	return call[surge.Order](ctx, c, "POST", "/v1/orders/"+id(orderID)+"/cancel", nil)
}

// Pay takes a ticket to the payment page (the simulated provider's pay endpoint). The request
// carries an Idempotency-Key made of its body, so Go's transport sends it again when the kept-alive
// connection it went out on broke before an answer came; the provider answers a repeat as it
// answered the first.
func (c *Client) Pay(ctx context.Context, payURL string, r paysim.PayRequest) (*paysim.PayResponse, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", payURL, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(b) // the request's key: the same request sent again, not another charge
	req.Header.Set(paysim.IdempotencyKeyHeader, hex.EncodeToString(sum[:16]))
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errorOf(resp, "payment refused") // the provider answers in the same envelope
	}
	var out paysim.PayResponse
	return &out, json.NewDecoder(resp.Body).Decode(&out)
}

// Block blocks a user from buying (operators).
func (c *Client) Block(ctx context.Context, in risk.BlockInput) (*surge.Block, error) {
	return call[surge.Block](ctx, c, "POST", "/v1/blacklist", in)
}

// Unblock lifts a user's block (operators).
func (c *Client) Unblock(ctx context.Context, userID int64) error {
	return c.Do(ctx, "DELETE", "/v1/blacklist/"+id(userID), nil, nil)
}

// Authorize adds the client's access token to a request made by hand (streams, raw calls).
func (c *Client) Authorize(r *http.Request) *http.Request {
	if c.token != "" {
		r.Header.Set("Authorization", "Bearer "+c.token)
	}
	return r
}

// Audit checks a session against the platform's invariants (operators).
func (c *Client) Audit(ctx context.Context, sessionID int64) (*audit.Report, error) {
	return call[audit.Report](ctx, c, "GET", "/v1/sessions/"+id(sessionID)+"/audit", nil)
}

// SessionStock reads a session's stock levels from the stock engine (operators).
func (c *Client) SessionStock(ctx context.Context, sessionID int64) (*sale.SessionStock, error) {
	return call[sale.SessionStock](ctx, c, "GET", "/v1/sessions/"+id(sessionID)+"/stock", nil)
}

// TestShoppers provisions synthetic shoppers for a load test (operators).
func (c *Client) TestShoppers(ctx context.Context, count int) ([]auth.TestShopper, error) {
	out, err := call[surgehttp.TestShopperList](ctx, c, "POST", "/v1/loadtest/shoppers", surgehttp.TestShoppersInput{Count: count})
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}
