package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/auth"
	"github.com/surgecommerce/surge/catalog"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/purchase"
	"github.com/surgecommerce/surge/risk"
	"github.com/surgecommerce/surge/sale"
)

// API is a Surge deployment: one or several nodes, reached through the Go client. Shoppers are
// spread over the nodes; every request is marked as test traffic and carries the shopper's
// address in X-Forwarded-For (which a node believes only from its --trusted-proxies).
type API struct {
	Nodes   []*client.Client // one per node
	Admin   *client.Client   // an operator or admin, on the first node
	Session int64            // a published session to reuse; 0 creates one
	// For a new session:
	Items      int
	Units      int64 // per item
	Limit      int64 // per shopper
	PayTimeout time.Duration
	Duration   time.Duration // how long the session stays open after it opens
	OpensIn    time.Duration // from setup to the opening

	session     int64
	names       map[int64]string // item id → its SKU's title, from Setup
	clients     sync.Map         // shopperKey → its *client.Client, with its token and address
	fast        []*fastNode      // per node, for the crowd's own requests (nil: through the Go client)
	metricsHTTP http.Client      // reads the nodes' /metrics
}

// fastFor is the fasthttp client of a shopper's node, or nil.
func (a *API) fastFor(sh Shopper) *fastNode {
	if len(a.fast) == 0 {
		return nil
	}
	return a.fast[int(sh.UserID%int64(len(a.fast)))]
}

type shopperKey struct {
	user   int64
	ip     string
	device string
}

// NewAPI returns the deployment at the given base URLs, with HTTP clients sized for inFlight
// attempts at once.
func NewAPI(targets []string, inFlight int) *API {
	hc := crowdHTTP(inFlight)
	a := &API{}
	for _, t := range targets {
		a.Nodes = append(a.Nodes, client.New(t).WithHTTP(hc).WithHeader(surgehttp.TestTrafficHeader, "1"))
		fn, err := newFastNode(t, inFlight)
		if err != nil {
			fn = nil // an address fasthttp cannot take: the Go client serves the crowd too
		}
		a.fast = append(a.fast, fn)
	}
	return a
}

// crowdHTTP is the crowd's HTTP client: a connection for each attempt in flight, and as many
// again for winners reading their orders and paying and shoppers polling or coming back,
// kept between requests; past that, a request waits for a connection, and its wait counts. A client-wide
// Timeout would add a deadline context to every request: in a profile of a crowd, 0.88 s of
// the 6.8 s its attempts spent in their own goroutines. Instead every read and write of a
// connection is bounded (deadlineConn), so that a stalled server fails an attempt rather than
// holding a shopper for good.
func crowdHTTP(inFlight int) *http.Client {
	const idle = time.Minute
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// A pooled connection waits for its next answer in one read that began when it
			// went idle: the bound is the idle time allowed plus 30 s for the answer.
			return deadlineConn{Conn: c, bound: idle + 30*time.Second}, nil
		},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConns:          inFlight * 4, MaxIdleConnsPerHost: inFlight * 2, IdleConnTimeout: idle}}
}

// deadlineConn sets a deadline before each read and write.
type deadlineConn struct {
	net.Conn
	bound time.Duration
}

func (c deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.bound)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.bound)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Setup implements Target.
func (a *API) Setup(ctx context.Context) ([]int64, time.Time, error) {
	if a.Session > 0 {
		se, err := a.Admin.Session(ctx, a.Session)
		if err != nil {
			return nil, time.Time{}, err
		}
		a.session = se.ID
		var ids []int64
		a.names = map[int64]string{}
		for _, it := range se.Items {
			ids = append(ids, it.ID)
			a.names[it.ID] = it.Title
		}
		return ids, se.StartAt, nil
	}
	suffix := time.Now().UnixNano()
	m, err := a.Admin.CreateUser(ctx, auth.NewUser{Username: fmt.Sprint("loadgen-shop-", suffix),
		Password: fmt.Sprint("loadgen-", suffix), Role: surge.RoleMerchant})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("creating the merchant: %w", err)
	}
	spu, err := a.Admin.CreateSPU(ctx, catalog.SPUInput{MerchantID: m.ID, Code: fmt.Sprint("LG-", suffix), Title: "Flash-sale picks", CategoryL1: "Digital"})
	if err != nil {
		return nil, time.Time{}, err
	}
	opens := time.Now().Add(a.OpensIn).UTC()
	se, err := a.Admin.CreateSession(ctx, sale.SessionInput{Name: fmt.Sprint("load test ", suffix), StartAt: opens,
		EndAt: opens.Add(a.Duration), PayTimeoutSec: int64(a.PayTimeout / time.Second)})
	if err != nil {
		return nil, time.Time{}, err
	}
	var ids []int64
	a.names = map[int64]string{}
	for i := range a.Items {
		name, price := Product(i)
		sku, err := a.Admin.CreateSKU(ctx, catalog.SKUInput{SPUID: spu.ID, Code: fmt.Sprint("LG-", suffix, "-", i), Title: name,
			Stock: a.Units, Price: surge.Money{Amount: price * 3 / 2, Currency: "CNY"}, CostPrice: surge.Money{Amount: price / 2, Currency: "CNY"}})
		if err != nil {
			return nil, time.Time{}, err
		}
		it, err := a.Admin.AddItem(ctx, se.ID, sale.ItemInput{SKUID: sku.ID, Allotted: a.Units,
			SalePrice: surge.Money{Amount: price, Currency: "CNY"}, PerUserLimit: a.Limit})
		if err != nil {
			return nil, time.Time{}, err
		}
		ids = append(ids, it.ID)
		a.names[it.ID] = sku.Title
	}
	if _, err := a.Admin.Publish(ctx, se.ID); err != nil {
		return nil, time.Time{}, err
	}
	a.session = se.ID
	return ids, opens, nil
}

// CouponValue is what the coupon a load test gives its shoppers takes off (minor units).
const CouponValue = 500

// GiveCoupons implements CouponIssuer: a platform batch of one ¥5 coupon for each shopper,
// published, and claimed by each (workers at a time).
func (a *API) GiveCoupons(ctx context.Context, shoppers []Shopper, workers int) ([]int64, error) {
	now := time.Now().UTC()
	b, err := a.Admin.CreateCouponBatch(ctx, coupon.BatchInput{Name: fmt.Sprint("load test ¥5 off ", now.UnixNano()),
		Rule:  coupon.Rule{Kind: coupon.Fixed, Value: CouponValue, Currency: "CNY", Scope: coupon.Scope{Kind: coupon.ScopePlatform}},
		Total: int64(len(shoppers)), PerUser: 1, ClaimFrom: now.Add(-time.Minute), ClaimUntil: now.Add(24 * time.Hour), ValidDays: 1})
	if err != nil {
		return nil, fmt.Errorf("creating the coupon batch: %w", err)
	}
	if _, err := a.Admin.PublishCouponBatch(ctx, b.ID); err != nil {
		return nil, fmt.Errorf("publishing the coupon batch: %w", err)
	}
	ids := make([]int64, len(shoppers))
	var g errgroup.Group
	g.SetLimit(max(min(workers, 256), 1))
	for i, sh := range shoppers {
		g.Go(func() error {
			c, err := a.as(sh).ClaimCoupon(ctx, b.ID, "loadgen")
			if err != nil {
				return fmt.Errorf("shopper %d claiming a coupon: %w", sh.UserID, err)
			}
			ids[i] = c.ID
			return nil
		})
	}
	return ids, g.Wait()
}

// ItemName is an item's SKU title (after Setup).
func (a *API) ItemName(id int64) string { return a.names[id] }

// Product is a new sale's i-th item (hottest first): a product a flash sale would sell, and
// its sale price in minor units, so that screens and reports read like a sale's.
func Product(i int) (name string, salePrice int64) {
	products := [...]struct {
		name  string
		price int64
	}{{"Phone X 256GB", 399900}, {"Noise-cancelling earbuds", 29900}, {"West Lake Longjing tea 250 g", 19900},
		{"Down jacket, black", 49900}, {"Robot vacuum S8", 199900}, {"Running shoes 42", 39900}, {"Air fryer 5 L", 24900},
		{"Smart watch GT", 99900}, {"Silk scarf", 15900}, {"Espresso beans 1 kg", 12900}}
	p := products[i%len(products)]
	if i >= len(products) {
		return fmt.Sprintf("%s (%d)", p.name, i/len(products)+1), p.price
	}
	return p.name, p.price
}

// SessionID is the session the crowd bought from (after Setup).
func (a *API) SessionID() int64 { return a.session }

// Shoppers implements Target.
func (a *API) Shoppers(ctx context.Context, n int) ([]Shopper, error) {
	out := make([]Shopper, 0, n)
	for len(out) < n {
		list, err := a.Admin.TestShoppers(ctx, min(n-len(out), auth.MaxTestShoppers))
		if err != nil {
			return nil, err
		}
		for _, s := range list {
			out = append(out, Shopper{UserID: s.UserID, Token: s.AccessToken})
		}
	}
	return out, nil
}

// as is a shopper's client, made once: a copy of the headers for every request was a tenth of
// the crowd's own work.
func (a *API) as(sh Shopper) *client.Client {
	key := shopperKey{sh.UserID, sh.IP, sh.Device}
	if c, ok := a.clients.Load(key); ok {
		return c.(*client.Client)
	}
	c := a.Nodes[int(sh.UserID%int64(len(a.Nodes)))].As(sh.Token).WithHeader("X-Forwarded-For", sh.IP)
	if sh.Device != "" {
		c = c.WithHeader(surgehttp.DeviceHeader, sh.Device)
	}
	a.clients.Store(key, c)
	return c
}

// answer makes a request with call and returns its decoded answer, or nil and the error.
func answer[T any](ctx context.Context, call func(context.Context, Shopper, string, string, string, any, any) error,
	sh Shopper, method, path, idem string, in any) (*T, error) {
	var out T
	if err := call(ctx, sh, method, path, idem, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Page implements Target.
func (a *API) Page(ctx context.Context, sh Shopper, item int64) (string, int64, error) {
	var d purchase.Detail
	var err error
	if f := a.fastFor(sh); f != nil {
		err = f.call(ctx, sh, "GET", "/v1/items/"+strconv.FormatInt(item, 10), "", nil, &d)
	} else {
		var p *purchase.Detail
		if p, err = a.as(sh).Item(ctx, item); err == nil {
			d = *p
		}
	}
	if err != nil {
		return "", 0, err
	}
	return d.Token, d.Remaining, nil
}

// Buy implements Target. The attempt says it is idempotent by its request id.
func (a *API) Buy(ctx context.Context, sh Shopper, req purchase.Request) (*purchase.Result, error) {
	if f := a.fastFor(sh); f != nil {
		return answer[purchase.Result](ctx, f.call, sh, "POST", "/v1/purchases", req.RequestID, req)
	}
	return a.as(sh).Purchase(ctx, req)
}

// BuyWithProof implements Target: the attempt again, with its proof in X-Surge-Proof.
func (a *API) BuyWithProof(ctx context.Context, sh Shopper, req purchase.Request, proof string) (*purchase.Result, error) {
	if f := a.fastFor(sh); f != nil {
		var res purchase.Result
		if err := f.send(ctx, sh, "POST", "/v1/purchases", req.RequestID, proof, req, &res); err != nil {
			return nil, err
		}
		return &res, nil
	}
	return a.as(sh).WithHeader(surgehttp.ProofHeader, proof).Purchase(ctx, req) // a copy of the headers: only a challenged attempt pays for it
}

// Poll implements Target.
func (a *API) Poll(ctx context.Context, sh Shopper, ticket string) (*purchase.Result, error) {
	if f := a.fastFor(sh); f != nil {
		return answer[purchase.Result](ctx, f.call, sh, "GET", "/v1/purchases/"+url.PathEscape(ticket), "", nil)
	}
	return a.as(sh).PollPurchase(ctx, ticket)
}

// Order implements Target.
func (a *API) Order(ctx context.Context, sh Shopper, orderID int64) (*surge.Order, error) {
	if f := a.fastFor(sh); f != nil {
		return answer[surge.Order](ctx, f.call, sh, "GET", "/v1/orders/"+strconv.FormatInt(orderID, 10), "", nil)
	}
	return a.as(sh).Order(ctx, orderID)
}

// PayTicket implements Target.
func (a *API) PayTicket(ctx context.Context, sh Shopper, orderID int64) (*order.PayTicket, error) {
	if f := a.fastFor(sh); f != nil {
		return answer[order.PayTicket](ctx, f.call, sh, "POST", "/v1/orders/"+strconv.FormatInt(orderID, 10)+"/pay", "", nil)
	}
	return a.as(sh).PayTicket(ctx, orderID)
}

// PayProvider implements Target.
func (a *API) PayProvider(ctx context.Context, sh Shopper, tk *order.PayTicket) error {
	_, err := a.as(sh).Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket})
	return err
}

// Audit implements Target.
func (a *API) Audit(ctx context.Context) (*audit.Report, error) {
	return a.Admin.Audit(ctx, a.session)
}

// Remaining implements Target, from the session's stock levels: the session and the stock
// engine's counters, where an audit would read every order each second, mid-crowd.
func (a *API) Remaining(ctx context.Context) (int64, error) {
	st, err := a.Admin.SessionStock(ctx, a.session)
	if err != nil {
		return 0, err
	}
	var left int64
	for _, it := range st.Items {
		left += it.Stock.Available
	}
	return left, nil
}

// EnableRule implements Target, as the admin.
func (a *API) EnableRule(ctx context.Context, rule surge.RiskRule) (*surge.RiskRule, error) {
	return a.Admin.CreateRiskRule(ctx, rule)
}

// DisableRule implements Target, as the admin.
func (a *API) DisableRule(ctx context.Context, id int64) error {
	_, err := a.Admin.SetRiskMode(ctx, id, risk.ModeInput{Mode: surge.ModeOff})
	return err
}

// NodeRequests implements requestCounter: the requests the nodes have answered so far, by
// route, summed over the nodes, from their /metrics (surge_http_requests_total). The crowd
// sees only its own requests; the nodes also answer the payment provider's callbacks.
func (a *API) NodeRequests(ctx context.Context) (map[string]float64, error) {
	out := map[string]float64{}
	for _, n := range a.Nodes {
		req, err := http.NewRequestWithContext(ctx, "GET", n.BaseURL()+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := a.metricsHTTP.Do(req)
		if err != nil {
			return nil, err
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", n.BaseURL(), err)
		}
		for _, m := range fams["surge_http_requests_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out, nil
}
