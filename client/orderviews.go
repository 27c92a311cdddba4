package client

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
)

// MyOrders returns a page of the signed-in shopper's orders, newest first, after cursor ("":
// the first page); limit 0 is the server's default.
func (c *Client) MyOrders(ctx context.Context, cursor string, limit int) (*surge.OrderPage, error) {
	q := url.Values{}
	page(q, cursor, limit)
	return call[surge.OrderPage](ctx, c, "GET", "/v1/orders?"+q.Encode(), nil)
}

// MerchantOrders returns a page of a shop's orders that pass f, newest first: merchant 0 is the
// signed-in merchant's own shop (staff name one).
func (c *Client) MerchantOrders(ctx context.Context, merchant int64, f surge.OrderFilter, cursor string, limit int) (*surge.OrderPage, error) {
	q := url.Values{}
	if merchant != 0 {
		q.Set("merchant", id(merchant))
	}
	for _, s := range f.States {
		q.Add("state", string(s))
	}
	times(q, f.From, f.To)
	page(q, cursor, limit)
	return call[surge.OrderPage](ctx, c, "GET", "/v1/merchant/orders?"+q.Encode(), nil)
}

// SearchOrders returns a page of support's order search (staff), newest first.
func (c *Client) SearchOrders(ctx context.Context, s surge.OrderSearch, cursor string, limit int) (*surge.OrderPage, error) {
	q := url.Values{"q": {s.Text}}
	times(q, s.From, s.To)
	page(q, cursor, limit)
	return call[surge.OrderPage](ctx, c, "GET", "/v1/support/orders?"+q.Encode(), nil)
}

func page(q url.Values, cursor string, limit int) {
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
}

func times(q url.Values, from, to time.Time) {
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339Nano))
	}
}
