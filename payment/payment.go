// Package payment is the protocol between Surge and a third-party payment provider: the signed,
// expiring payment ticket Surge hands to the payment page, and the signed notifications the
// provider calls back with. The simulated provider (package paysim) and Surge both use it.
package payment

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
)

// Bounds of the protocol.
const (
	// SignatureTolerance is how far a notification's signing time may be from now: an old
	// signed notification cannot be replayed later.
	SignatureTolerance = 5 * time.Minute
	// MaxNotificationBytes bounds a notification body.
	MaxNotificationBytes = 16 << 10
	// SignatureHeader carries a notification's signature: "t=<unix seconds>,v1=<hex hmac>".
	SignatureHeader = "Surge-Pay-Signature"
)

// Ticket is what the payment page needs to take a payment: which transaction, how much, until
// when, and where to report it.
type Ticket struct {
	TxnID     string      `json:"txn_id"`
	OrderID   int64       `json:"order_id,string"`
	Amount    surge.Money `json:"amount"`
	ExpiresAt time.Time   `json:"expires_at"`
	NotifyURL string      `json:"notify_url"`
}

// SignTicket encodes and signs a ticket: base64url(JSON) "." base64url(HMAC-SHA256).
func SignTicket(key []byte, t Ticket) (string, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(body) + "." + enc.EncodeToString(mac(key, body)), nil
}

// VerifyTicket checks a ticket's signature and expiry and decodes it. Returns EFORBIDDEN for a
// forged or expired ticket, EINVALID for a malformed one.
func VerifyTicket(key []byte, s string, now time.Time) (Ticket, error) {
	var t Ticket
	body64, sig64, ok := strings.Cut(s, ".")
	enc := base64.RawURLEncoding
	body, err1 := enc.DecodeString(body64)
	sig, err2 := enc.DecodeString(sig64)
	if !ok || err1 != nil || err2 != nil || len(s) > 4096 {
		return t, surge.Errorf(surge.EINVALID, "malformed payment ticket")
	}
	if !hmac.Equal(sig, mac(key, body)) {
		return t, surge.Errorf(surge.EFORBIDDEN, "payment ticket signature does not match")
	}
	if err := surge.DecodeJSONBytes(body, &t); err != nil {
		return t, err
	}
	if !now.Before(t.ExpiresAt) {
		return t, surge.Errorf(surge.EFORBIDDEN, "payment ticket expired")
	}
	return t, nil
}

// Notification is the provider's report about a transaction: a payment ("processing", then
// "paid"), or a refund of part or all of it ("refunded", naming the refund).
type Notification struct {
	NotifyID string      `json:"notify_id"` // unique per notification; a resend repeats it
	TxnID    string      `json:"txn_id"`
	OrderID  int64       `json:"order_id,string"`
	Amount   surge.Money `json:"amount"` // what was paid; for a refund, what was paid back
	Status   string      `json:"status"` // "processing", "paid" or "refunded"
	PaidAt   time.Time   `json:"paid_at"`
	// RefundID is Surge's id of the refund a "refunded" notification reports; empty otherwise.
	RefundID string `json:"refund_id,omitempty"`
}

// Notification statuses.
const (
	StatusProcessing = "processing"
	StatusPaid       = surge.PaymentStatusPaid
	StatusRefunded   = "refunded"
)

// Refund is what Surge asks the provider to pay back of a paid transaction, signed as a
// notification is (Sign, in SignatureHeader) and posted to the provider's refund address. The
// provider pays each RefundID back once (the same request sent again is answered as the first
// was), never more in all than the transaction took, and reports it with a "refunded"
// notification to NotifyURL.
type Refund struct {
	RefundID  string      `json:"refund_id"`
	TxnID     string      `json:"txn_id"`
	OrderID   int64       `json:"order_id,string"`
	Amount    surge.Money `json:"amount"`
	Reason    string      `json:"reason,omitempty"`
	NotifyURL string      `json:"notify_url"`
}

// MaxRefundReasonBytes bounds a refund's reason.
const MaxRefundReasonBytes = 200

// Validate checks a decoded refund request.
func (r *Refund) Validate() error {
	switch {
	case r.RefundID == "" || len(r.RefundID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "refund_id must be 1 to %d bytes", surge.MaxRequestIDBytes)
	case r.TxnID == "" || len(r.TxnID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "txn_id must be 1 to %d bytes", surge.MaxRequestIDBytes)
	case r.OrderID <= 0:
		return surge.Errorf(surge.EINVALID, "order_id is required")
	case r.Amount.Amount <= 0:
		return surge.Errorf(surge.EINVALID, "amount must be positive")
	case len(r.Reason) > MaxRefundReasonBytes:
		return surge.Errorf(surge.EINVALID, "reason must be at most %d bytes", MaxRefundReasonBytes)
	case r.NotifyURL == "" || len(r.NotifyURL) > 2048:
		return surge.Errorf(surge.EINVALID, "notify_url must be 1 to 2048 bytes")
	}
	return r.Amount.Validate("amount")
}

// DecodeRefund verifies and decodes a signed refund request, as Decode does a notification.
func DecodeRefund(key, body []byte, header string, now time.Time) (Refund, error) {
	var r Refund
	if len(body) > MaxNotificationBytes {
		return r, surge.Errorf(surge.ETOOLARGE, "refund request over %d bytes", MaxNotificationBytes)
	}
	if err := Verify(key, body, header, now); err != nil {
		return r, err
	}
	if err := surge.DecodeJSON(bytes.NewReader(body), &r); err != nil {
		return r, err
	}
	return r, r.Validate()
}

// Validate checks a decoded notification.
func (n *Notification) Validate() error {
	switch {
	case n.NotifyID == "" || len(n.NotifyID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "notify_id must be 1 to %d bytes", surge.MaxRequestIDBytes)
	case n.TxnID == "" || len(n.TxnID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "txn_id must be 1 to %d bytes", surge.MaxRequestIDBytes)
	case n.OrderID <= 0:
		return surge.Errorf(surge.EINVALID, "order_id is required")
	case n.Status != StatusProcessing && n.Status != StatusPaid && n.Status != StatusRefunded:
		return surge.Errorf(surge.EINVALID, "status must be processing, paid or refunded")
	case (n.Status == StatusRefunded) != (n.RefundID != ""):
		return surge.Errorf(surge.EINVALID, "refund_id is given with a refunded status, and only then")
	case len(n.RefundID) > surge.MaxRequestIDBytes:
		return surge.Errorf(surge.EINVALID, "refund_id must be at most %d bytes", surge.MaxRequestIDBytes)
	}
	return n.Amount.Validate("amount")
}

// Sign returns the signature header value for a notification body signed at now.
func Sign(key, body []byte, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(key, append([]byte(ts+"."), body...)))
}

// Verify checks a notification body against its signature header. Returns EUNAUTHORIZED for a
// missing, malformed, wrong or stale signature.
func Verify(key, body []byte, header string, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	want, herr := hex.DecodeString(sig)
	if err != nil || herr != nil || len(want) != sha256.Size {
		return surge.Errorf(surge.EUNAUTHORIZED, "missing or malformed %s header", SignatureHeader)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return surge.Errorf(surge.EUNAUTHORIZED, "notification signed too long ago (or in the future)")
	}
	if !hmac.Equal(want, mac(key, append([]byte(ts+"."), body...))) {
		return surge.Errorf(surge.EUNAUTHORIZED, "notification signature does not match")
	}
	return nil
}

// Decode verifies and decodes a notification.
func Decode(key, body []byte, header string, now time.Time) (Notification, error) {
	var n Notification
	if len(body) > MaxNotificationBytes {
		return n, surge.Errorf(surge.ETOOLARGE, "notification over %d bytes", MaxNotificationBytes)
	}
	if err := Verify(key, body, header, now); err != nil {
		return n, err
	}
	if err := surge.DecodeJSON(bytes.NewReader(body), &n); err != nil {
		return n, err
	}
	return n, n.Validate()
}

func mac(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}

// TxnID is the transaction id of an order's purchase journey.
func TxnID(orderID int64) string { return fmt.Sprintf("T%d", orderID) }
