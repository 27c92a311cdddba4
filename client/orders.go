package client

import (
	"context"
	"net/url"
	"time"

	"github.com/surgecommerce/surge"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/reconcile"
	"github.com/surgecommerce/surge/settlement"
	"github.com/surgecommerce/surge/voucher"
)

// Refund asks for a refund of a paid or consumed order through the payment provider: whole
// (in.Lines empty) or units of lines. The refund is requested until the provider calls back.
func (c *Client) Refund(ctx context.Context, orderID int64, in order.RefundInput) (*surge.Refund, error) {
	return call[surge.Refund](ctx, c, "POST", "/v1/orders/"+id(orderID)+"/refunds", in)
}

// Refunds lists an order's refunds.
func (c *Client) Refunds(ctx context.Context, orderID int64) ([]*surge.Refund, error) {
	list, err := call[surgehttp.RefundList](ctx, c, "GET", "/v1/orders/"+id(orderID)+"/refunds", nil)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// RefundOrder refunds the whole of what is left of an order and waits up to wait for the
// provider's callback: it returns the order as it stands once refunded, or the refund's
// error. A refund asked while the payment is still being settled (EUNAVAILABLE) is asked
// again until wait runs out.
func (c *Client) RefundOrder(ctx context.Context, orderID int64, requestID string, wait time.Duration) (*surge.Order, error) {
	deadline := time.Now().Add(wait)
	for {
		_, err := c.Refund(ctx, orderID, order.RefundInput{RequestID: requestID})
		if surge.ErrorCode(err) == surge.EUNAVAILABLE && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	for {
		o, err := c.Order(ctx, orderID)
		if err != nil || o.State == surge.OrderRefunded || !time.Now().Before(deadline) {
			return o, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Review records the shopper's review of their consumed order.
func (c *Client) Review(ctx context.Context, orderID int64, in order.ReviewInput) (*surge.Order, error) {
	return call[surge.Order](ctx, c, "POST", "/v1/orders/"+id(orderID)+"/review", in)
}

// Vouchers lists an order's voucher codes.
func (c *Client) Vouchers(ctx context.Context, orderID int64) ([]surge.Voucher, error) {
	list, err := call[surgehttp.VoucherList](ctx, c, "GET", "/v1/orders/"+id(orderID)+"/vouchers", nil)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Redeem redeems a voucher code at the merchant's till.
func (c *Client) Redeem(ctx context.Context, in voucher.RedeemInput) (*voucher.Redeemed, error) {
	return call[voucher.Redeemed](ctx, c, "POST", "/v1/vouchers/redeem", in)
}

// Mismatches lists what the real-time reconciliation raised since (the last day when zero),
// of one kind or all.
func (c *Client) Mismatches(ctx context.Context, since time.Time, kind string) ([]surge.Mismatch, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.Format(time.RFC3339Nano))
	}
	if kind != "" {
		q.Set("kind", kind)
	}
	list, err := call[surgehttp.MismatchList](ctx, c, "GET", "/v1/reconcile/mismatches?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// ReconcileDay reconciles a day against the payment provider's ledger and returns the report.
func (c *Client) ReconcileDay(ctx context.Context, day string) (*reconcile.Report, error) {
	return call[reconcile.Report](ctx, c, "POST", "/v1/reconcile/days/"+url.PathEscape(day)+"/run", nil)
}

// Reconciliation returns a reconciled day's report.
func (c *Client) Reconciliation(ctx context.Context, day string) (*reconcile.Report, error) {
	return call[reconcile.Report](ctx, c, "GET", "/v1/reconcile/days/"+url.PathEscape(day), nil)
}

// Repair makes the repair a finding of a day calls for.
func (c *Client) Repair(ctx context.Context, day, finding string) (*surge.Repair, error) {
	return call[surge.Repair](ctx, c, "POST", "/v1/reconcile/days/"+url.PathEscape(day)+"/findings/"+url.PathEscape(finding)+"/repair", nil)
}

// Settlement returns a shop's settlement of a day.
func (c *Client) Settlement(ctx context.Context, merchantID int64, day string) (*settlement.Settlement, error) {
	return call[settlement.Settlement](ctx, c, "GET", "/v1/merchants/"+id(merchantID)+"/settlements/"+url.PathEscape(day), nil)
}
