package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/client"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/promo"
)

// PromoBenchResult is what surge bench promo measured.
type PromoBenchResult struct {
	SKUs        int     `json:"skus"`
	Categories  int     `json:"categories"`
	Shops       int     `json:"shops"`
	Activities  int     `json:"activities"`
	CatalogSec  float64 `json:"catalog_seconds"`
	IndexLoadMs float64 `json:"index_load_ms"`
	// IndexBytes is the heap the node's index holds (the live activities as read, compiled, and
	// filed under their keys), measured as the heap's growth when it is built.
	IndexBytes            int64        `json:"index_bytes"`
	IndexBytesPerActivity float64      `json:"index_bytes_per_activity"`
	Postings              int          `json:"postings"`
	InProcess             QuoteFigures `json:"in_process_single_sku"`
	InProcessCart         QuoteFigures `json:"in_process_cart"`
	HTTP                  QuoteFigures `json:"http_single_sku"`
	HTTPCart              QuoteFigures `json:"http_cart"`
	// Change is the time from an activity's publish (its answer) to the first quote that shows
	// it, on the node that published it, and on a second node (AcrossNodes) when the bench runs
	// two on shared backends.
	Change      ChangeFigures `json:"change"`
	AcrossNodes bool          `json:"across_nodes"`
}

// QuoteFigures are one kind of quote's figures.
type QuoteFigures struct {
	Lines       int     `json:"lines"`
	Quotes      int     `json:"quotes"`
	Workers     int     `json:"workers"`
	PerSec      float64 `json:"quotes_per_sec"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
	P999Us      float64 `json:"p999_us"`
	Candidates  float64 `json:"activities_taken_per_quote"`
	Errors      int64   `json:"errors"`
	Exhaustive  float64 `json:"exhaustive_share"`
	MeanSavings float64 `json:"mean_discount_minor"`
}

// ChangeFigures are the times of changes to reach quotes.
type ChangeFigures struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// benchPromo fills a node's catalog and activities, and measures quotes in process and over
// HTTP, the index's memory, and the time a change takes to reach the quotes.
func benchPromo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := command{name: "bench promo",
		about: `Starts a node in process, imports --skus SKUs (10 to a product) in --categories top-level
categories across --shops shops, writes --activities live activities straight to the store (60%
on lists of SKUs, 30% on categories, 10% on shops, one in a thousand on the whole platform, all
of those in one group; a quarter of the rest in stacking groups), and measures quotes of one
SKU and of --cart-lines lines: in process (the
promotion service) and over HTTP (POST /v1/prices/quote), each with p50, p99 and p999; the heap
the index takes; and the time from an activity's publish to the first quote that shows it.
--postgres-url and --nats-url run two nodes on those backends, and the change is timed on the
second.`,
		examples: []string{"surge bench promo", "surge bench promo --activities 100000 --json"}}.flagSet(stderr)
	skus := fs.Int("skus", 1_000_000, "SKUs in the catalog")
	categories := fs.Int("categories", 10_000, "top-level categories")
	shops := fs.Int("shops", 1000, "shops (merchants)")
	activities := fs.Int("activities", 10_000, "live activities")
	quotes := fs.Int("quotes", 20_000, "quotes of each kind")
	cartLines := fs.Int("cart-lines", 20, "lines of a cart quote")
	workers := fs.Int("workers", 4, "concurrent quotes")
	changes := fs.Int("changes", 20, "activities published and timed to the quotes")
	pgURL := fs.String("postgres-url", "", "run on this PostgreSQL (an empty database)")
	natsURL := fs.String("nats-url", "", "run on this external NATS; with --postgres-url, two nodes")
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the quotes to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *skus < 10 || *categories < 1 || *shops < 1 || *activities < 1 || *quotes < 1 || *cartLines < 1 || *cartLines > promo.MaxLines ||
		*workers < 1 || *changes < 1 || *categories > *skus/10 || *shops > *skus/10 {
		return fmt.Errorf("skus at least 10, categories and shops from 1 to skus/10, activities, quotes, workers and changes positive, cart-lines 1 to %d", promo.MaxLines)
	}
	var secret string
	adjust := func(c *Config) {
		secret = c.TokenSecret
		c.IPRate, c.UserRate = 1e9, 1e9
		c.PostgresURL, c.NATSURL = *pgURL, *natsURL
	}
	m, _, closeNode, err := benchNode(ctx, stderr, adjust)
	if err != nil {
		return err
	}
	defer closeNode()
	other := m
	across := *pgURL != "" && *natsURL != ""
	if across {
		m2, _, close2, err := benchNode(ctx, stderr, func(c *Config) {
			adjust(c)
			c.TokenSecret, c.WorkerID, c.AdminPassword = secret, 1, ""
		})
		if err != nil {
			return err
		}
		defer close2()
		other = m2
	}
	res := PromoBenchResult{SKUs: *skus, Categories: *categories, Shops: *shops, Activities: *activities, AcrossNodes: across}

	// The catalog: SKU i is of product i/10, in category (i/10) mod categories, of shop
	// (i/10) mod shops + 1.
	start := time.Now()
	stop := progress(stderr, "bench promo: importing the catalog")
	ids, err := promoCatalog(ctx, m.db, *skus, *categories, *shops)
	stop()
	if err != nil {
		return err
	}
	res.CatalogSec = time.Since(start).Seconds()
	fmt.Fprintf(stderr, "bench promo: %d SKUs imported in %.1f s\n", len(ids), res.CatalogSec)
	stop = progress(stderr, "bench promo: writing the activities")
	err = promoActivities(ctx, m.db, ids, *activities, *categories, *shops)
	stop()
	if err != nil {
		return err
	}
	before := heapInUse()
	start = time.Now()
	if err := m.promo.Load(ctx); err != nil {
		return err
	}
	res.IndexLoadMs = float64(time.Since(start).Microseconds()) / 1000
	res.IndexBytes = heapInUse() - before
	n, postings := m.promo.Index().Size()
	res.IndexBytesPerActivity, res.Postings = float64(res.IndexBytes)/float64(max(n, 1)), postings
	if other != m {
		if err := other.promo.Load(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "bench promo: index of %d activities, %d postings, %d bytes, loaded in %.0f ms\n", n, postings, res.IndexBytes, res.IndexLoadMs)

	cart := func(r *rand.Rand, lines int) []coupon.CartLine {
		out := make([]coupon.CartLine, 0, lines)
		for len(out) < lines {
			k := ids[r.IntN(len(ids))]
			if !slices.ContainsFunc(out, func(l coupon.CartLine) bool { return l.SKU == k }) {
				out = append(out, coupon.CartLine{SKU: k, Quantity: 1 + r.Int64N(3)})
			}
		}
		return out
	}
	users := 1000
	stopProfile, err := startProfile(*profile)
	if err != nil {
		return err
	}
	for _, lines := range []int{1, *cartLines} {
		fig := &res.InProcess
		if lines > 1 {
			fig = &res.InProcessCart
		}
		*fig = timeQuotes(*quotes, *workers, lines, func(i int, r *rand.Rand) (*promo.Quote, error) {
			return m.promo.Quote(ctx, surge.Actor{UserID: int64(20_000_000 + i%users), Role: surge.RoleShopper}, promo.QuoteRequest{Lines: cart(r, lines)})
		})
		fmt.Fprintf(stderr, "bench promo: in process, %d lines: %.0f quotes/s, p50 %.0f µs, p99 %.0f µs, p999 %.0f µs\n", lines, fig.PerSec, fig.P50Us, fig.P99Us, fig.P999Us)
	}
	stopProfile()
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers, MaxConnsPerHost: *workers}, Timeout: 30 * time.Second}
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = mintShopper(secret, int64(20_000_000+i))
	}
	for _, lines := range []int{1, *cartLines} {
		fig := &res.HTTP
		if lines > 1 {
			fig = &res.HTTPCart
		}
		*fig = timeQuotes(*quotes, *workers, lines, func(i int, r *rand.Rand) (*promo.Quote, error) {
			return quoteHTTP(ctx, httpc, "http://"+m.Addr, tokens[i%users], cart(r, lines))
		})
		fmt.Fprintf(stderr, "bench promo: over HTTP, %d lines: %.0f quotes/s, p50 %.0f µs, p99 %.0f µs, p999 %.0f µs\n", lines, fig.PerSec, fig.P50Us, fig.P99Us, fig.P999Us)
	}

	// Changes: an operator publishes a flash price of ¥0.01 on an SKU no list of SKUs names (one
	// of the last, which the bench left alone) and the quote of that SKU is watched.
	tok, err := client.New("http://"+m.Addr).Login(ctx, "admin", benchAdminPassword)
	if err != nil {
		return err
	}
	op := client.New("http://" + m.Addr).As(tok.AccessToken)
	shopper := client.New("http://" + other.Addr).As(tokens[0]).WithHTTP(httpc)
	var took []float64
	for i := range *changes {
		k := ids[len(ids)-1-i]
		was, err := shopper.Quote(ctx, promo.QuoteRequest{Lines: []coupon.CartLine{{SKU: k, Quantity: 1}}})
		if err != nil {
			return err
		}
		now := time.Now()
		a, err := op.CreateActivity(ctx, promo.ActivityInput{Name: "change " + strconv.Itoa(i), Priority: 1,
			Rule:     promo.Rule{Kind: promo.FlashPrice, Price: 1, Currency: "CNY", Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: []int64{k}}},
			StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour)})
		if err != nil {
			return err
		}
		if _, err := op.PublishActivity(ctx, a.ID); err != nil {
			return err
		}
		published := time.Now()
		for {
			q, err := shopper.Quote(ctx, promo.QuoteRequest{Lines: []coupon.CartLine{{SKU: k, Quantity: 1}}})
			if err != nil {
				return err
			}
			if q.Price.Payable < was.Price.Payable {
				took = append(took, float64(time.Since(published).Microseconds())/1000)
				break
			}
			if time.Since(published) > 2*promo.ReloadEvery {
				return fmt.Errorf("activity %d did not reach the quotes within %v", a.ID, 2*promo.ReloadEvery)
			}
			time.Sleep(time.Millisecond)
		}
	}
	slices.Sort(took)
	res.Change = ChangeFigures{Samples: len(took), P50Ms: took[len(took)/2], MaxMs: took[len(took)-1]}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "catalog       %d SKUs in %d categories, %d shops (imported in %.1f s)\n", res.SKUs, res.Categories, res.Shops, res.CatalogSec)
	fmt.Fprintf(stdout, "index         %d activities, %d postings, %.0f bytes per activity (%d in all), loaded in %.0f ms\n",
		res.Activities, res.Postings, res.IndexBytesPerActivity, res.IndexBytes, res.IndexLoadMs)
	for _, q := range []struct {
		name string
		f    QuoteFigures
	}{{"in process", res.InProcess}, {"in process", res.InProcessCart}, {"over HTTP", res.HTTP}, {"over HTTP", res.HTTPCart}} {
		fmt.Fprintf(stdout, "%-11s %3d lines  %8.0f quotes/s  p50 %6.0f µs  p99 %6.0f µs  p999 %6.0f µs  (%d workers; %.2f activities a quote; errors %d)\n",
			q.name, q.f.Lines, q.f.PerSec, q.f.P50Us, q.f.P99Us, q.f.P999Us, q.f.Workers, q.f.Candidates, q.f.Errors)
	}
	where := "the same node"
	if across {
		where = "another node"
	}
	fmt.Fprintf(stdout, "change        publish to quote on %s: p50 %.1f ms, max %.1f ms (%d changes)\n", where, res.Change.P50Ms, res.Change.MaxMs, res.Change.Samples)
	return nil
}

// promoCatalog imports skus SKUs and returns their ids in order.
func promoCatalog(ctx context.Context, db relational, skus, categories, shops int) ([]int64, error) {
	now := time.Now()
	byShop := make([][]surge.ImportRow, shops)
	for i := range skus {
		p := i / 10
		shop := p % shops
		byShop[shop] = append(byShop[shop], surge.ImportRow{Line: len(byShop[shop]) + 1, SPUCode: "P" + strconv.Itoa(p), SPUTitle: "Product " + strconv.Itoa(p),
			CategoryL1: "c" + strconv.Itoa(p%categories), SKUCode: "K" + strconv.Itoa(i), SKUTitle: "SKU " + strconv.Itoa(i),
			PriceMinor: 1000 + int64(i%50_000)*10, CostMinor: 500, Currency: "CNY", Stock: 1000})
	}
	const chunk = 20_000
	for shop, rows := range byShop {
		for len(rows) > 0 {
			n := min(len(rows), chunk)
			rep, err := db.Import(ctx, int64(shop+1), rows[:n], now)
			if err != nil {
				return nil, err
			}
			if !rep.Applied {
				return nil, fmt.Errorf("catalog import refused: %+v", rep.Errors)
			}
			rows = rows[n:]
		}
	}
	ids := make([]int64, skus)
	var after int64
	for {
		list, err := db.ListSKUs(ctx, surge.CatalogFilter{AfterID: after, Limit: 500})
		if err != nil {
			return nil, err
		}
		if len(list) == 0 {
			break
		}
		for _, k := range list {
			i, err := strconv.Atoi(strings.TrimPrefix(k.Code, "K"))
			if err == nil && i < skus {
				ids[i] = k.ID
			}
			after = k.ID
		}
	}
	for i, id := range ids {
		if id == 0 {
			return nil, fmt.Errorf("SKU %d was not imported", i)
		}
	}
	return ids, nil
}

// promoActivities writes n live activities straight to the store. Their rules: direct
// discounts and flash prices on lists of 10 to 100 SKUs (60%), threshold and tiered discounts on
// 1 to 5 categories (30%) or on a shop (10%), and one in a thousand on the whole platform (in
// one stacking group: a cross-shop discount, one to an order); a quarter of the others are in
// one of 20 stacking groups. The last 100 SKUs are left out of every list (the
// changes are timed on them).
func promoActivities(ctx context.Context, db relational, ids []int64, n, categories, shops int) error {
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UTC().Truncate(time.Millisecond)
	usable := ids[:len(ids)-min(100, len(ids)/2)]
	for i := range n {
		var rule promo.Rule
		switch x := r.IntN(1000); {
		case x == 0: // cross-shop discounts: one to an order
			rule = promo.Rule{Kind: promo.Threshold, Value: 500, Threshold: 20000, Repeat: true, MaxOff: 5000, Scope: promo.Scope{Kind: promo.ScopePlatform},
				Group: "platform"}
		case x < 600:
			list := make([]int64, 10+r.IntN(91))
			for j := range list {
				list[j] = usable[r.IntN(len(usable))]
			}
			slices.Sort(list)
			list = slices.Compact(list)
			if x%2 == 0 {
				rule = promo.Rule{Kind: promo.Direct, Percent: 5 + int64(r.IntN(20)), Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: list}}
			} else {
				rule = promo.Rule{Kind: promo.Direct, Value: 100 + int64(r.IntN(500)), Floor: 500, Scope: promo.Scope{Kind: promo.ScopeSKUs, SKUs: list}}
			}
		case x < 900:
			cats := make([]string, 1+r.IntN(5))
			for j := range cats {
				cats[j] = "c" + strconv.Itoa(r.IntN(categories))
			}
			slices.Sort(cats)
			cats = slices.Compact(cats)
			if x%2 == 0 {
				rule = promo.Rule{Kind: promo.Threshold, Value: 1000, Threshold: 10000, Scope: promo.Scope{Kind: promo.ScopeCategories, Categories: cats}}
			} else {
				rule = promo.Rule{Kind: promo.Tiered, Tiers: []promo.Tier{{Min: 5000, Percent: 3}, {Min: 20000, Percent: 8}}, MaxOff: 10000,
					Scope: promo.Scope{Kind: promo.ScopeCategories, Categories: cats}}
			}
		default:
			shop := int64(1 + r.IntN(shops))
			rule = promo.Rule{Kind: promo.Threshold, Value: 2000, Threshold: 20000, Repeat: true, Scope: promo.Scope{Kind: promo.ScopeShops, Shops: []int64{shop}}}
		}
		rule.Currency = "CNY"
		if rule.Group == "" && r.IntN(4) == 0 {
			rule.Group = "g" + strconv.Itoa(r.IntN(20))
		}
		raw, err := json.Marshal(rule)
		if err != nil {
			return err
		}
		if _, err := promo.DecodeRule(raw); err != nil {
			return fmt.Errorf("activity %d: %w", i, err)
		}
		a := &surge.Activity{ID: int64(1_000_000_000 + i), Name: "activity " + strconv.Itoa(i), Rule: raw, Priority: int64(r.IntN(10)),
			StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour), State: surge.ActivityLive, CreatedBy: 1, CreatedAt: now, UpdatedAt: now}
		if err := db.CreateActivity(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// timeQuotes runs n quotes on workers goroutines and sums up their times.
func timeQuotes(n, workers, lines int, quote func(i int, r *rand.Rand) (*promo.Quote, error)) QuoteFigures {
	took := make([]float64, n)
	var errs, exhaustive, taken, saved atomic.Int64
	start := time.Now()
	parallel(n, workers, func(i int) error {
		r := rand.New(rand.NewPCG(uint64(i), 7))
		t := time.Now()
		q, err := quote(i, r)
		took[i] = float64(time.Since(t).Nanoseconds()) / 1000
		if err != nil {
			errs.Add(1)
			return nil
		}
		if q.Exhaustive {
			exhaustive.Add(1)
		}
		taken.Add(int64(len(q.Price.Activities)))
		saved.Add(q.Price.Discount)
		return nil
	})
	elapsed := time.Since(start).Seconds()
	slices.Sort(took)
	at := func(p float64) float64 { return took[min(int(p*float64(n)), n-1)] }
	ok := max(float64(int64(n)-errs.Load()), 1)
	return QuoteFigures{Lines: lines, Quotes: n, Workers: workers, PerSec: float64(n) / elapsed, P50Us: at(0.50), P99Us: at(0.99), P999Us: at(0.999),
		Candidates: float64(taken.Load()) / ok, Errors: errs.Load(), Exhaustive: float64(exhaustive.Load()) / ok, MeanSavings: float64(saved.Load()) / ok}
}

// quoteHTTP asks a node for a quote.
func quoteHTTP(ctx context.Context, c *http.Client, base, token string, lines []coupon.CartLine) (*promo.Quote, error) {
	body, err := json.Marshal(promo.QuoteRequest{Lines: lines})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/prices/quote", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("quote: %d %s", resp.StatusCode, b)
	}
	var q promo.Quote
	return &q, json.NewDecoder(resp.Body).Decode(&q)
}
