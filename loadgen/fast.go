package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/client"
	surgehttp "github.com/surgecommerce/surge/http"
)

// crowdConn bounds: a connection waits for its answer, and a request for a free connection,
// at most this long, so that a stalled target fails an attempt rather than holding a shopper.
const (
	crowdAnswerWait = 30 * time.Second
	crowdIdle       = time.Minute
)

// fastNode sends the crowd's own requests (the item page, attempts, polls, order pages and
// payment tickets) to one node with fasthttp, which serves a request on its caller's goroutine
// with buffers it reuses. The crowd shares its machine with the target in most runs, and
// through Go's net/http it spent as much CPU per request as the node did to answer (80 µs a
// request in a 12,000 a second crowd), falling behind its own schedule and measuring its lag
// as the target's latency. Setup and the payment provider's page go through the Go client.
type fastNode struct {
	base string
	hc   *fasthttp.HostClient
}

func newFastNode(base string, inFlight int) (*fastNode, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return nil, fmt.Errorf("target %q: want http://host:port", base)
	}
	return &fastNode{base: base, hc: &fasthttp.HostClient{Addr: u.Host, Name: "surge-loadgen", MaxConns: 2 * inFlight,
		MaxConnWaitTimeout: crowdAnswerWait, ReadTimeout: crowdIdle + crowdAnswerWait, WriteTimeout: crowdAnswerWait,
		MaxIdleConnDuration: crowdIdle, DisablePathNormalizing: true,
		// A purchase says it is idempotent (its request id, as Idempotency-Key): like a GET, it
		// may go again on a new connection when a kept-alive one broke under it.
		RetryIfErr: func(r *fasthttp.Request, attempts int, _ error) (bool, bool) {
			return false, attempts < 2 && (r.Header.IsGet() || len(r.Header.Peek(client.IdempotencyKeyHeader)) > 0)
		}}}, nil
}

// call sends a request as sh (its token, address and device) with an optional JSON body, and
// decodes a JSON answer into out; an error answer is a *client.Error with its code, retry hint
// and, from risk control, the rule's reason and challenge.
func (n *fastNode) call(ctx context.Context, sh Shopper, method, path, idem string, in, out any) error {
	return n.send(ctx, sh, method, path, idem, "", in, out)
}

// send is call with a solved challenge to send in X-Surge-Proof ("": none).
func (n *fastNode) send(ctx context.Context, sh Shopper, method, path, idem, proof string, in, out any) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(n.base + path)
	req.Header.SetMethod(method)
	req.Header.Set("Authorization", "Bearer "+sh.Token)
	req.Header.Set("X-Forwarded-For", sh.IP)
	req.Header.Set(surgehttp.TestTrafficHeader, "1")
	if sh.Device != "" {
		req.Header.Set(surgehttp.DeviceHeader, sh.Device)
	}
	if proof != "" {
		req.Header.Set(surgehttp.ProofHeader, proof)
	}
	if idem != "" {
		req.Header.Set(client.IdempotencyKeyHeader, idem)
	}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(b)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.hc.Do(req, resp); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if code := resp.StatusCode(); code >= 400 {
		e := &client.Error{Status: code, Code: surge.EINTERNAL, Message: "answer without an error envelope"}
		var eb surgehttp.ErrorBody
		if json.Unmarshal(resp.Body(), &eb) == nil && eb.Error.Code != "" {
			e.Code, e.Message, e.RequestID = eb.Error.Code, eb.Error.Message, eb.Error.RequestID
			e.Reason, e.Challenge = eb.Error.Reason, eb.Error.Challenge
		}
		if ms, err := strconv.ParseInt(string(resp.Header.Peek(surge.RetryAfterMsHeader)), 10, 64); err == nil && ms > 0 {
			e.RetryAfterMs = ms
		} else if s, err := strconv.ParseInt(string(resp.Header.Peek("Retry-After")), 10, 64); err == nil && s > 0 {
			e.RetryAfterMs = s * 1000
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Body(), out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}
