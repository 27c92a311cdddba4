package client

import (
	"context"
	"io"
	"net/url"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
)

// CreateCouponBatch creates a draft coupon batch.
func (c *Client) CreateCouponBatch(ctx context.Context, in coupon.BatchInput) (*surge.CouponBatch, error) {
	return call[surge.CouponBatch](ctx, c, "POST", "/v1/coupon-batches", in)
}

// CouponBatch gets a batch and its issuance.
func (c *Client) CouponBatch(ctx context.Context, batchID int64) (*coupon.Batch, error) {
	return call[coupon.Batch](ctx, c, "GET", "/v1/coupon-batches/"+id(batchID), nil)
}

// CouponBatches lists batches; state may be empty.
func (c *Client) CouponBatches(ctx context.Context, state string) ([]*surge.CouponBatch, error) {
	path := "/v1/coupon-batches"
	if state != "" {
		path += "?state=" + state
	}
	list, err := call[struct {
		Items []*surge.CouponBatch `json:"items"`
	}](ctx, c, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// UpdateCouponBatch changes a batch.
func (c *Client) UpdateCouponBatch(ctx context.Context, batchID int64, p coupon.BatchPatch) (*surge.CouponBatch, error) {
	return call[surge.CouponBatch](ctx, c, "PATCH", "/v1/coupon-batches/"+id(batchID), p)
}

// PublishCouponBatch makes a draft batch live.
func (c *Client) PublishCouponBatch(ctx context.Context, batchID int64) (*surge.CouponBatch, error) {
	return call[surge.CouponBatch](ctx, c, "POST", "/v1/coupon-batches/"+id(batchID)+"/publish", nil)
}

// OfflineCouponBatch takes a batch offline.
func (c *Client) OfflineCouponBatch(ctx context.Context, batchID int64) (*surge.CouponBatch, error) {
	return call[surge.CouponBatch](ctx, c, "POST", "/v1/coupon-batches/"+id(batchID)+"/offline", nil)
}

// ClaimCoupon claims a coupon of a live batch; the request id makes a retry return the same coupon.
func (c *Client) ClaimCoupon(ctx context.Context, batchID int64, requestID string) (*surge.Coupon, error) {
	return call[surge.Coupon](ctx, c, "POST", "/v1/coupon-batches/"+id(batchID)+"/claims", coupon.ClaimRequest{RequestID: requestID})
}

// MyCoupons lists the signed-in shopper's coupons.
func (c *Client) MyCoupons(ctx context.Context) ([]coupon.WalletCoupon, error) {
	list, err := call[struct {
		Items []coupon.WalletCoupon `json:"items"`
	}](ctx, c, "GET", "/v1/me/coupons", nil)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// GrantCoupons grants one coupon of a live batch to each user, in the background.
func (c *Client) GrantCoupons(ctx context.Context, batchID int64, requestID string, users []int64) (*surge.CouponGrant, error) {
	return call[surge.CouponGrant](ctx, c, "POST", "/v1/coupon-batches/"+id(batchID)+"/grants", coupon.GrantInput{RequestID: requestID, Users: users})
}

// GrantCouponsFile grants one coupon of a live batch to each user of a file (one id a line,
// or a CSV whose first column is the id), in the background.
func (c *Client) GrantCouponsFile(ctx context.Context, batchID int64, requestID string, file io.Reader) (*surge.CouponGrant, error) {
	var g surge.CouponGrant
	path := "/v1/coupon-batches/" + id(batchID) + "/grants?request_id=" + url.QueryEscape(requestID)
	if err := c.send(ctx, "POST", path, "text/csv", file, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// CouponGrant gets a bulk grant and its progress.
func (c *Client) CouponGrant(ctx context.Context, batchID, grantID int64) (*surge.CouponGrant, error) {
	return call[surge.CouponGrant](ctx, c, "GET", "/v1/coupon-batches/"+id(batchID)+"/grants/"+id(grantID), nil)
}

// UsableCoupons lists the signed-in shopper's coupons a cart can use, the most off first.
func (c *Client) UsableCoupons(ctx context.Context, lines []coupon.CartLine) ([]coupon.UsableCoupon, error) {
	list, err := call[struct {
		Items []coupon.UsableCoupon `json:"items"`
	}](ctx, c, "POST", "/v1/me/coupons/usable", coupon.Cart{Lines: lines})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Checkout makes an ordinary checkout's order.
func (c *Client) Checkout(ctx context.Context, in checkout.Request) (*surge.Order, error) {
	return call[surge.Order](ctx, c, "POST", "/v1/checkouts", in)
}
