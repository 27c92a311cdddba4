package payment_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/payment"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestTicket(t *testing.T) {
	now := time.Now()
	tk := payment.Ticket{TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: 100, Currency: "CNY"}, ExpiresAt: now.Add(time.Minute), NotifyURL: "http://x/cb"}
	s, err := payment.SignTicket(key, tk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := payment.VerifyTicket(key, s, now)
	if err != nil || got.TxnID != "T1" || got.Amount != tk.Amount {
		t.Fatalf("VerifyTicket = %+v, %v", got, err)
	}
	if _, err := payment.VerifyTicket(key, s, now.Add(2*time.Minute)); surge.ErrorCode(err) != surge.EFORBIDDEN {
		t.Fatalf("VerifyTicket(expired) = %v; want EFORBIDDEN", err)
	}
	if _, err := payment.VerifyTicket([]byte("another key of thirty-two bytes!"), s, now); surge.ErrorCode(err) != surge.EFORBIDDEN {
		t.Fatalf("VerifyTicket(other key) = %v; want EFORBIDDEN", err)
	}
	body, sig, _ := strings.Cut(s, ".")
	tampered := strings.ToUpper(body[:3]) + body[3:] + "." + sig
	if _, err := payment.VerifyTicket(key, tampered, now); err == nil {
		t.Fatal("a tampered ticket verified")
	}
	for _, bad := range []string{"", ".", "abc", "a.b.c", "!!.!!"} {
		if _, err := payment.VerifyTicket(key, bad, now); err == nil {
			t.Errorf("VerifyTicket(%q) verified", bad)
		}
	}
}

func TestNotificationSignature(t *testing.T) {
	now := time.Now()
	n := payment.Notification{NotifyID: "n1", TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: 100, Currency: "CNY"},
		Status: payment.StatusPaid, PaidAt: now}
	body, _ := json.Marshal(n)
	h := payment.Sign(key, body, now)
	if got, err := payment.Decode(key, body, h, now); err != nil || got.NotifyID != "n1" {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	for name, c := range map[string]struct {
		body   []byte
		header string
		at     time.Time
	}{
		"tampered body":  {append([]byte(nil), strings.Replace(string(body), "100", "1", 1)...), h, now},
		"stale":          {body, h, now.Add(payment.SignatureTolerance + time.Minute)},
		"no header":      {body, "", now},
		"garbage header": {body, "t=x,v1=zz", now},
		"other key":      {body, payment.Sign([]byte("x"), body, now), now},
	} {
		if _, err := payment.Decode(key, c.body, c.header, c.at); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
			t.Errorf("Decode(%s) = %v; want EUNAUTHORIZED", name, err)
		}
	}
	bad := []byte(`{"notify_id":"n","txn_id":"T","order_id":"1","amount":{"amount":1,"currency":"CNY"},"status":"refunded","paid_at":"2026-01-01T00:00:00Z"}`)
	if _, err := payment.Decode(key, bad, payment.Sign(key, bad, now), now); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("Decode(unknown status) = %v; want EINVALID", err)
	}
}

// FuzzVerify: whatever arrives at the callback endpoint, verification answers with a domain
// error, or with a notification whose signature and fields check out.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good := []byte(`{"notify_id":"n","txn_id":"T","order_id":"1","amount":{"amount":1,"currency":"CNY"},"status":"paid","paid_at":"2026-01-01T00:00:00Z"}`)
	f.Add(good, payment.Sign(key, good, now))
	f.Add([]byte("{}"), "t=1,v1=00")
	f.Add([]byte(""), "")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		n, err := payment.Decode(key, body, header, now)
		if err != nil {
			if code := surge.ErrorCode(err); code == surge.EINTERNAL {
				t.Fatalf("Decode = %v; want a domain error", err)
			}
			return
		}
		if payment.Verify(key, body, header, now) != nil || n.Validate() != nil {
			t.Fatal("Decode accepted what Verify or Validate refuses")
		}
	})
}

func TestRefundRequest(t *testing.T) {
	now := time.Now()
	r := payment.Refund{RefundID: "R1", TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: 50, Currency: "CNY"}, NotifyURL: "http://x/cb"}
	body, _ := json.Marshal(r)
	if got, err := payment.DecodeRefund(key, body, payment.Sign(key, body, now), now); err != nil || got != r {
		t.Fatalf("DecodeRefund = %+v, %v", got, err)
	}
	if _, err := payment.DecodeRefund([]byte("another key of thirty-two bytes!"), body, payment.Sign(key, body, now), now); surge.ErrorCode(err) != surge.EUNAUTHORIZED {
		t.Fatalf("DecodeRefund(other key) = %v; want EUNAUTHORIZED", err)
	}
	for name, bad := range map[string]func(r *payment.Refund){
		"no refund id":  func(r *payment.Refund) { r.RefundID = "" },
		"no txn":        func(r *payment.Refund) { r.TxnID = "" },
		"no order":      func(r *payment.Refund) { r.OrderID = 0 },
		"zero amount":   func(r *payment.Refund) { r.Amount.Amount = 0 },
		"bad currency":  func(r *payment.Refund) { r.Amount.Currency = "cny" },
		"long reason":   func(r *payment.Refund) { r.Reason = strings.Repeat("x", payment.MaxRefundReasonBytes+1) },
		"no notify url": func(r *payment.Refund) { r.NotifyURL = "" },
	} {
		c := r
		bad(&c)
		b, _ := json.Marshal(c)
		if _, err := payment.DecodeRefund(key, b, payment.Sign(key, b, now), now); surge.ErrorCode(err) != surge.EINVALID {
			t.Errorf("%s: DecodeRefund = %v; want EINVALID", name, err)
		}
	}
}

func TestRefundedNotificationNamesItsRefund(t *testing.T) {
	n := payment.Notification{NotifyID: "R1-n", TxnID: "T1", OrderID: 1, Amount: surge.Money{Amount: 50, Currency: "CNY"},
		Status: payment.StatusRefunded, RefundID: "R1", PaidAt: time.Now()}
	if err := n.Validate(); err != nil {
		t.Fatalf("Validate(refunded) = %v", err)
	}
	n.RefundID = ""
	if err := n.Validate(); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("Validate(refunded without refund_id) = %v; want EINVALID", err)
	}
	n.Status, n.RefundID = payment.StatusPaid, "R1"
	if err := n.Validate(); surge.ErrorCode(err) != surge.EINVALID {
		t.Fatalf("Validate(paid with refund_id) = %v; want EINVALID", err)
	}
}

func FuzzDecodeRefund(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good := []byte(`{"refund_id":"R1","txn_id":"T","order_id":"1","amount":{"amount":1,"currency":"CNY"},"notify_url":"http://x/cb"}`)
	f.Add(good, payment.Sign(key, good, now))
	f.Add([]byte("{}"), "t=1,v1=00")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		r, err := payment.DecodeRefund(key, body, header, now)
		if err != nil {
			if code := surge.ErrorCode(err); code == surge.EINTERNAL {
				t.Fatalf("DecodeRefund = %v; want a domain error", err)
			}
			return
		}
		if payment.Verify(key, body, header, now) != nil || r.Validate() != nil {
			t.Fatal("DecodeRefund accepted what Verify or Validate refuses")
		}
	})
}
