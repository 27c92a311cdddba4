package order

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
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

// Bounds of refunds.
const (
	refundCallTimeout = 10 * time.Second
	// resendAfter is how long a refund waits for the provider's callback before the sweep
	// sends it to the provider again (which pays each refund id back once).
	resendAfter = time.Minute
	resendEvery = 30 * time.Second
	resendBatch = 100
)

// RefundInput asks for a refund: of everything not yet refunded (no lines), or of units of
// lines. RequestID makes it idempotent: the same id again is the same refund.
type RefundInput struct {
	RequestID string            `json:"request_id"`
	Lines     []RefundLineInput `json:"lines,omitempty"`
	Reason    string            `json:"reason,omitempty"`
}

// RefundLineInput names units of an order line to refund: Line indexes the order's lines (a
// sale's order has the one line 0).
type RefundLineInput struct {
	Line     int   `json:"line"`
	Quantity int64 `json:"quantity"`
}

// RefundID is the id of an order's refund asked with a request id: the same every time, so
// that a refund asked again is the same refund everywhere, the provider included.
func RefundID(orderID int64, requestID string) string {
	h := sha256.Sum256([]byte(requestID))
	return "R" + strconv.FormatInt(orderID, 10) + "-" + hex.EncodeToString(h[:6])
}

// Refund asks the payment provider to pay back a paid or consumed order, whole or units of its
// lines, and returns the refund as recorded: requested, until the provider's signed
// "refunded" notification arrives (HandleRefunded). Operators refund any order, merchants
// their own shop's (EFORBIDDEN otherwise). EINVALID for a refund of more than is left to
// refund; ECONFLICT for an order that is not paid or consumed, or a redeemed voucher;
// EUNAVAILABLE while its payment is still being settled (retry in a moment); ECONFLICT when
// the provider refuses it for good (it is then failed, and a new request id asks again). The
// provider being unreachable is not an error: the refund is recorded and sent again within a
// minute (RunResends).
func (s *Service) Refund(ctx context.Context, a surge.Actor, id int64, in RefundInput) (*surge.Refund, error) {
	if s.cfg.Refunds == nil || s.cfg.RefundURL == "" {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "refunds are not configured on this node")
	}
	if !a.Role.Staff() && a.Role != surge.RoleMerchant {
		return nil, surge.Errorf(surge.EFORBIDDEN, "refunds are made by operators and by the shop that sold")
	}
	r := &surge.Refund{OrderID: id, RequestID: in.RequestID, Reason: in.Reason, By: a.UserID, CreatedAt: s.now().UTC()}
	for _, l := range in.Lines {
		r.Lines = append(r.Lines, surge.RefundLine{Line: l.Line, Quantity: l.Quantity})
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	o, err := s.stored(ctx, id)
	if err != nil {
		return nil, err
	}
	if !a.Role.Staff() && o.MerchantID != a.UserID {
		return nil, surge.Errorf(surge.ENOTFOUND, "order not found")
	}
	if o.State == surge.OrderPaid && !o.StockSettled {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "order %d's payment is still being settled; retry in a moment", id)
	}
	r.ID = RefundID(id, in.RequestID)
	created, err := s.cfg.Refunds.CreateRefund(ctx, r)
	if err != nil {
		return nil, err
	}
	if created {
		s.metrics.refunds.WithLabelValues("requested").Inc()
		s.emit(ctx, surge.EventRefundRequested, r.ID, r)
		if after, err := s.stored(ctx, id); err == nil && after.State == surge.OrderConsumed && o.State != surge.OrderConsumed {
			s.emit(ctx, surge.EventOrderConsumed, strconv.FormatInt(id, 10), after) // its last unused voucher was refunded
		}
	}
	if r.State == surge.RefundRequested {
		if err := s.send(ctx, r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// refusedError is the provider's final refusal of a refund (a 4xx answer).
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// send sends a requested refund to the provider. A final refusal makes it failed (its units
// refundable again, its vouchers usable again) and is returned as ECONFLICT; the provider
// unreachable or failing is logged and left for RunResends, which sends it again.
func (s *Service) send(ctx context.Context, r *surge.Refund) error {
	err := s.sendRefund(ctx, r)
	var refused *refusedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &refused):
		if _, ferr := s.cfg.Refunds.FailRefund(ctx, r.ID); ferr != nil {
			s.log.WarnContext(ctx, "a refund the provider refused is not marked failed yet; the sweep will try again", "refund", r.ID, "err", ferr)
			return surge.Errorf(surge.EUNAVAILABLE, "the provider refused the refund (%s); recording that failed: ask again", refused.msg)
		}
		r.State = surge.RefundFailed
		s.metrics.refunds.WithLabelValues("failed").Inc()
		s.log.WarnContext(ctx, "the provider refused a refund", "refund", r.ID, "err", err)
		return surge.Errorf(surge.ECONFLICT, "the payment provider refused refund %s: %s", r.ID, refused.msg)
	}
	s.log.WarnContext(ctx, "refund not yet taken by the provider; the sweep will send it again", "refund", r.ID, "err", err)
	return nil
}

// Refunds lists an order's refunds to whoever may see the order.
func (s *Service) Refunds(ctx context.Context, a surge.Actor, id int64) ([]*surge.Refund, error) {
	if _, err := s.Get(ctx, a, id); err != nil {
		return nil, err
	}
	if s.cfg.Refunds == nil {
		return nil, nil
	}
	return s.cfg.Refunds.RefundsByOrder(ctx, id)
}

// sendRefund posts a refund to the provider, signed. The provider pays a refund id back once,
// so sending it again is safe.
func (s *Service) sendRefund(ctx context.Context, r *surge.Refund) error {
	body, err := json.Marshal(payment.Refund{RefundID: r.ID, TxnID: r.TxnID, OrderID: r.OrderID, Amount: r.Amount,
		Reason: r.Reason, NotifyURL: s.cfg.NotifyURL})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, refundCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.RefundURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(payment.SignatureHeader, payment.Sign(s.cfg.PaymentKey, body, s.now()))
	client := s.cfg.Client
	if client == nil {
		client = &http.Client{Timeout: refundCallTimeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
		return &refusedError{msg: fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(msg))}
	}
	s.metrics.refunds.WithLabelValues("provider_unavailable").Inc()
	return fmt.Errorf("the provider answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
}

// ResendRefunds sends the provider again the refunds that have waited resendAfter for its
// callback, and returns how many it sent.
func (s *Service) ResendRefunds(ctx context.Context) (int, error) {
	if s.cfg.Refunds == nil || s.cfg.RefundURL == "" {
		return 0, nil
	}
	list, err := s.cfg.Refunds.RequestedRefunds(ctx, s.now().Add(-resendAfter), resendBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range list {
		err := s.sendRefund(ctx, r)
		var refused *refusedError
		switch {
		case errors.As(err, &refused):
			_ = s.send(ctx, r) // marks it failed
		case err != nil: // the provider is down: the rest waits for the next pass
			return n, err
		default:
			n++
		}
	}
	return n, nil
}

// RunResends sends the provider again, every resendEvery, the refunds that have waited for its
// callback, until ctx ends: apart from the sweep, so that a provider that hangs holds back no
// expiry or settling.
func (s *Service) RunResends(ctx context.Context) {
	t := time.NewTicker(resendEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.ResendRefunds(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.WarnContext(ctx, "refunds not sent again; next pass in a while", "err", err)
			}
		}
	}
}

// HandleRefunded applies the provider's report that a refund was paid back, once (a repeat is
// answered as the first). The order's refunded amount grows; a whole refund makes it
// refunded, and its coupons and promotion uses come back. ENOTFOUND for a refund Surge never
// asked for, EINVALID for one whose amount or transaction is not the refund's; EUNAVAILABLE
// (the provider sends it again) when its coupons could not be given back yet.
func (s *Service) HandleRefunded(ctx context.Context, n payment.Notification) (string, error) {
	if s.cfg.Refunds == nil {
		return "", surge.Errorf(surge.ENOTFOUND, "refund not found")
	}
	at := s.now().UTC()
	if !n.PaidAt.IsZero() && n.PaidAt.Sub(at).Abs() < 24*time.Hour { // the provider's time, as its ledger has it
		at = n.PaidAt.UTC()
	}
	r, o, fresh, err := s.cfg.Refunds.CompleteRefund(ctx, n.RefundID, n.NotifyID, n.TxnID, n.Amount, at)
	if err != nil {
		if surge.ErrorCode(err) == surge.EINVALID {
			s.metrics.refunds.WithLabelValues("mismatch").Inc()
		}
		return "", err
	}
	if r.Kind == surge.RefundPayment { // money no order kept: the order is as it was
		if fresh {
			s.metrics.refunds.WithLabelValues("succeeded").Inc()
			s.emit(ctx, surge.EventRefundSucceeded, r.ID, r)
			return surge.PaymentApplied, nil
		}
		return surge.PaymentDuplicate, nil
	}
	if !fresh {
		return surge.PaymentDuplicate, s.afterRefund(ctx, o)
	}
	s.metrics.refunds.WithLabelValues("succeeded").Inc()
	s.emit(ctx, surge.EventRefundSucceeded, r.ID, r)
	if o.State == surge.OrderRefunded {
		s.emit(ctx, surge.EventOrderRefunded, strconv.FormatInt(o.ID, 10), o)
	} else {
		s.emit(ctx, surge.EventOrderPartiallyRefunded, r.ID, o)
	}
	return surge.PaymentApplied, s.afterRefund(ctx, o)
}

// afterRefund gives a refunded order's coupons and promotion uses back, each once.
func (s *Service) afterRefund(ctx context.Context, o *surge.Order) error {
	if o.State != surge.OrderRefunded {
		return nil
	}
	if o.Checkout() && o.Price != nil && len(o.Price.Activities) > 0 { // the activities' uses come back
		err := s.store.SettleCheckout(ctx, o.ID)
		if err == nil && s.cfg.Activities != nil {
			err = s.cfg.Activities.Settled(ctx, o)
		}
		if err != nil {
			return surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "order %d is refunded; its activities are not back yet (%s)", o.ID, surge.ErrorMessage(err)), queueFullRetryMs)
		}
	}
	if s.cfg.Coupons != nil && o.Price != nil && len(o.Price.Coupons) > 0 {
		if err := s.cfg.Coupons.ReturnAll(ctx, []*surge.Order{o}); err != nil {
			return surge.RetryAfter(surge.Errorf(surge.EUNAVAILABLE, "order %d is refunded; its coupons are not back yet (%s)", o.ID, surge.ErrorMessage(err)), queueFullRetryMs)
		}
	}
	return nil
}

// ReviewInput is a shopper's review of an order they consumed.
type ReviewInput struct {
	Rating int    `json:"rating"`
	Text   string `json:"text,omitempty"`
}

// Review records the shopper's review of their own consumed order, which becomes reviewed.
// ENOTFOUND for another's order, ECONFLICT for one not consumed (or reviewed already).
func (s *Service) Review(ctx context.Context, a surge.Actor, id int64, in ReviewInput) (*surge.Order, error) {
	r := surge.Review{Rating: in.Rating, Text: in.Text, At: s.now().UTC()}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	o, err := s.store.ReviewOrder(ctx, id, a.UserID, r)
	if err != nil {
		return o, err
	}
	s.emit(ctx, surge.EventOrderReviewed, strconv.FormatInt(id, 10), o)
	return o, nil
}

// RefundPayment gives back, through the payment provider, money a payment took that no order
// kept: a second charge, a wrong amount, a payment of an order cancelled before it came
// (reconciliation's repairs). Its id is made from the request id, so that the same repair asked
// again is the same refund, at Surge and at the provider. The order is left as it is.
func (s *Service) RefundPayment(ctx context.Context, by int64, orderID int64, txnID string, amount surge.Money, requestID, reason string) (*surge.Refund, error) {
	if s.cfg.Refunds == nil || s.cfg.RefundURL == "" {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "refunds are not configured on this node")
	}
	if amount.Amount <= 0 {
		return nil, surge.Errorf(surge.EINVALID, "a refund's amount must be positive")
	}
	r := &surge.Refund{ID: surge.PaymentRefundID(orderID, requestID), OrderID: orderID, TxnID: txnID,
		RequestID: requestID, Amount: amount, By: by, Reason: reason, CreatedAt: s.now().UTC()}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	created, err := s.cfg.Refunds.CreatePaymentRefund(ctx, r)
	if err != nil {
		return nil, err
	}
	if created {
		s.metrics.refunds.WithLabelValues("requested").Inc()
		s.emit(ctx, surge.EventRefundRequested, r.ID, r)
	}
	if r.State == surge.RefundRequested {
		if err := s.send(ctx, r); err != nil {
			return r, err
		}
	}
	return r, nil
}
