package coupon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/surgecommerce/surge"
)

// Ledger issues a batch's coupons: never more than the batch's total under any concurrency,
// never more than its per-user limit to one shopper, and each claim once per request id (a
// retry gets the first answer, with the coupon id the first claim was given). It decides on the
// stock engine, embedded (its write-ahead log makes every decision durable before the answer)
// or on Redis (one Lua script per decision, the batch's keys in one hash slot): a batch is an
// item whose units are its coupons, claimed and at once confirmed.
type Ledger struct {
	stock surge.StockEngine
}

// NewLedger returns a ledger deciding on stock.
func NewLedger(stock surge.StockEngine) *Ledger { return &Ledger{stock: stock} }

// Open makes a batch claimable, or changes its total and per-user limit. The total may drop
// only down to what is issued (ECONFLICT otherwise).
func (l *Ledger) Open(ctx context.Context, batch, total, perUser int64) error {
	it := surge.StockItem{ID: batch, Allotted: total, PerUserLimit: perUser}
	if err := it.Validate(); err != nil {
		return err
	}
	return l.stock.Load(ctx, it)
}

// Claim is a claim's answer.
type Claim struct {
	Coupon   int64 // the coupon's id: the one the first claim with this request id was given
	Held     int64 // the shopper's coupons of the batch after the claim
	Replayed bool  // the answer repeats an earlier claim's
}

// Claim hands a shopper one coupon of a batch, taking units of it: 1 for a coupon, the
// amount for a red envelope (a budget's units are minor units of money); coupon is the id a new
// coupon takes. It answers ESOLDOUT when the batch has fewer units left, ELIMIT when the
// shopper would hold more than the per-user limit, ENOTFOUND for a batch not open. A granted claim is recorded (record, with the coupon's id and
// the claim's key, if not nil) before it is made final: if recording fails, or the answer is
// lost, a retry with the same request id is granted the same coupon and records it again.
func (l *Ledger) Claim(ctx context.Context, batch, user int64, requestID string, coupon, units int64, record func(coupon int64, key string) error) (Claim, error) {
	if coupon <= 0 {
		return Claim{}, surge.Errorf(surge.EINVALID, "coupon id must be positive")
	}
	if err := surge.ValidateRequestID(requestID); err != nil {
		return Claim{}, err
	}
	key := claimKey(user, requestID)
	res, err := l.stock.Reserve(ctx, surge.ReserveRequest{ItemID: batch, UserID: user, Quantity: units, RequestID: key, OrderID: coupon})
	if err != nil {
		return Claim{}, err
	}
	if res.Outcome != surge.Reserved {
		// A refusal may be the answer to a retry whose first claim was granted: an engine answers
		// "all issued" from a flag, without looking for the request (Redis, on another node).
		prev, found, err := l.stock.Reservation(ctx, batch, user, key)
		switch {
		case err != nil:
			return Claim{}, err
		case found:
			res = prev
		case res.Outcome == surge.SoldOut:
			return Claim{}, surge.Errorf(surge.ESOLDOUT, "every coupon of batch %d is issued", batch)
		default:
			return Claim{}, surge.Errorf(surge.ELIMIT, "you hold %d coupons of batch %d, its limit per shopper", res.Held, batch)
		}
	}
	return l.finish(ctx, batch, key, res, record)
}

// Retry finishes a claim granted before, found by its request id, without granting anything
// new: for a retry that comes when claims have stopped (the batch went offline, its window
// closed). found is false if the shopper has no such claim.
func (l *Ledger) Retry(ctx context.Context, batch, user int64, requestID string, record func(coupon int64, key string) error) (c Claim, found bool, err error) {
	if err := surge.ValidateRequestID(requestID); err != nil {
		return Claim{}, false, err
	}
	key := claimKey(user, requestID)
	prev, found, err := l.stock.Reservation(ctx, batch, user, key)
	if err != nil || !found {
		return Claim{}, false, err
	}
	c, err = l.finish(ctx, batch, key, prev, record)
	return c, err == nil, err
}

// finish records a granted claim and makes it final.
func (l *Ledger) finish(ctx context.Context, batch int64, key string, res surge.ReserveResult, record func(coupon int64, key string) error) (Claim, error) {
	if record != nil {
		if err := record(res.OrderID, key); err != nil {
			return Claim{}, err
		}
	}
	// Confirming makes the grant final; a grant not yet confirmed counts as issued all the
	// same (reserved), and a retry confirms it.
	if err := l.stock.Confirm(ctx, batch, key); err != nil {
		return Claim{}, err
	}
	return Claim{Coupon: res.OrderID, Held: res.Held, Replayed: res.Replayed}, nil
}

// claimKey is a claim's request id in the stock engine, where request ids are the item's: a
// shopper's own request id, made the shopper's (two shoppers may both send "claim-1").
func claimKey(user int64, requestID string) string {
	sum := sha256.Sum256([]byte(strconv.FormatInt(user, 10) + "\x00" + requestID))
	return hex.EncodeToString(sum[:16])
}

// Close stops a batch's claims for good: its total becomes what is issued, so a claim racing
// the close is either granted before it or refused after.
func (l *Ledger) Close(ctx context.Context, batch, perUser int64) error {
	for range 100 {
		is, err := l.Issuance(ctx, batch)
		if err != nil {
			return err
		}
		err = l.Open(ctx, batch, is.Issued, perUser)
		if surge.ErrorCode(err) != surge.ECONFLICT { // a claim was granted meanwhile: read again
			return err
		}
	}
	return surge.Errorf(surge.EUNAVAILABLE, "batch %d is claimed too fast to close; retry", batch)
}

// Issuance is a batch's count: Issued + Left = Total, always.
type Issuance struct {
	Total  int64 `json:"total"`
	Issued int64 `json:"issued"`
	Left   int64 `json:"left"`
}

// Issuance returns a batch's count, or ENOTFOUND.
func (l *Ledger) Issuance(ctx context.Context, batch int64) (Issuance, error) {
	lv, err := l.stock.Levels(ctx, batch)
	if err != nil {
		return Issuance{}, err
	}
	return Issuance{Total: lv.Allotted, Issued: lv.Reserved + lv.Sold, Left: lv.Available}, nil
}
