package surge

import (
	"fmt"
	"strings"
)

// Business event types the real-time platform ingests.
const (
	BizClick         = "click"
	BizExposure      = "exposure"
	BizAddToCart     = "add_to_cart"
	BizOrder         = "order"
	BizPay           = "pay"
	BizRefund        = "refund"
	BizLiveEnter     = "live_enter"
	BizLiveHeartbeat = "live_heartbeat"
	BizLiveLeave     = "live_leave"
	BizLike          = "like"
	BizComment       = "comment"
	BizShare         = "share"
	BizLogistics     = "logistics_update"
	// BizCouponUse is a paid order's coupons: units is how many, amount what they took off.
	BizCouponUse = "coupon_use"
	// BizPromoUse is a paid checkout's promotion activities: units is how many, amount what
	// they took off.
	BizPromoUse = "promo_use"
	// Risk control's gate, per session and second: units is how many attempts verdicts refused
	// (risk_block), challenged (risk_challenge), or dry-run rules would have refused
	// (risk_dry_run). Only Surge's gates make them (risk.outcomes): ingestion refuses the types.
	BizRiskBlock     = "risk_block"
	BizRiskChallenge = "risk_challenge"
	BizRiskDryRun    = "risk_dry_run"
)

// Bounds of a business event.
const (
	MaxBizIDLen    = 128
	MaxDimLen      = 64 // platform, user, room, shop, sku, session, order, status
	MaxCommentLen  = 500
	MaxBizUnits    = 1_000_000
	MaxBizAmount   = 1_000_000_000_000 // minor units
	minBizTimeMs   = 1_000_000_000_000 // 2001-09-09: an event time in seconds, not milliseconds, is refused
	maxBizTimeMs   = 9_999_999_999_999 // 2286
	defaultBizPlat = "unknown"
)

// BusinessEvent is one event from an app, the web, a merchant back-office, payment or
// logistics. ID is unique per event: copies are counted once.
type BusinessEvent struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Time     int64  `json:"time"` // event time, milliseconds since the Unix epoch
	Platform string `json:"platform,omitempty"`
	User     string `json:"user,omitempty"`
	Room     string `json:"room,omitempty"` // live room
	Shop     string `json:"shop,omitempty"` // the merchant's id
	SKU      string `json:"sku,omitempty"`
	Session  string `json:"session,omitempty"` // flash-sale session
	Order    string `json:"order,omitempty"`
	Units    int64  `json:"units,omitzero"`
	Amount   int64  `json:"amount,omitzero"`  // minor units of the platform currency
	Status   string `json:"status,omitempty"` // logistics status
	Text     string `json:"text,omitempty"`   // comment text
	// Received is when Surge took the event into its events log, in milliseconds since the Unix
	// epoch: the time the live metrics run on (viewers' timeouts, the window of copies). It is
	// Surge's clock, never the sender's, and is not part of the event's JSON.
	Received int64 `json:"-"`
}

// bizSchema says which fields an event type requires.
type bizSchema struct {
	sku, shop, user, room, order, units, amount, status bool
}

var bizSchemas = map[string]bizSchema{
	BizClick:         {sku: true},
	BizExposure:      {sku: true},
	BizAddToCart:     {sku: true, units: true},
	BizOrder:         {order: true, sku: true, shop: true, user: true, units: true, amount: true},
	BizPay:           {order: true, sku: true, shop: true, user: true, units: true, amount: true},
	BizRefund:        {order: true, shop: true, amount: true},
	BizLiveEnter:     {room: true, user: true},
	BizLiveHeartbeat: {room: true, user: true},
	BizLiveLeave:     {room: true, user: true},
	BizLike:          {room: true, user: true},
	BizComment:       {room: true, user: true},
	BizShare:         {room: true, user: true},
	BizLogistics:     {order: true, status: true},
	BizCouponUse:     {order: true, sku: true, shop: true, user: true, units: true, amount: true},
	BizPromoUse:      {order: true, sku: true, shop: true, user: true, units: true, amount: true},
}

// BizRequired lists the fields an event of type typ must carry, in the order of the event's
// JSON: id, type and time, then the type's own. It is the schema Validate enforces, and what the
// documentation lists.
func BizRequired(typ string) []string {
	s, ok := bizSchemas[typ]
	if !ok {
		return nil
	}
	out := []string{"id", "type", "time"}
	for _, f := range s.fields() {
		if f.required {
			out = append(out, f.name)
		}
	}
	return out
}

// bizField is one field of the schema, with whether a type requires it.
type bizField struct {
	name     string
	required bool
}

// fields lists the schema's fields in the order of the event's JSON.
func (s bizSchema) fields() [8]bizField {
	return [...]bizField{{"user", s.user}, {"room", s.room}, {"shop", s.shop}, {"sku", s.sku}, {"order", s.order},
		{"units", s.units}, {"amount", s.amount}, {"status", s.status}}
}

// BizTypes lists the business event types.
func BizTypes() []string {
	t := bizTypes()
	return t[:]
}

func bizTypes() [15]string {
	return [...]string{BizClick, BizExposure, BizAddToCart, BizOrder, BizPay, BizRefund, BizLiveEnter, BizLiveHeartbeat,
		BizLiveLeave, BizLike, BizComment, BizShare, BizLogistics, BizCouponUse, BizPromoUse}
}

// Behavioural reports whether shoppers' apps may send events of this type themselves; money
// and logistics events come from Surge, merchants' back-offices and operators' integrations.
func Behavioural(typ string) bool {
	switch typ {
	case BizOrder, BizPay, BizRefund, BizLogistics, BizCouponUse, BizPromoUse:
		return false
	}
	return true
}

// Validate checks an event against its type's schema and fills the defaults. Returns EINVALID.
func (e *BusinessEvent) Validate() error {
	if e.ID == "" || len(e.ID) > MaxBizIDLen || strings.ContainsFunc(e.ID, isControl) {
		return Errorf(EINVALID, "id must be 1 to %d printable characters", MaxBizIDLen)
	}
	s, ok := bizSchemas[e.Type]
	if !ok {
		return Errorf(EINVALID, "unknown event type %q", truncate(e.Type, 32))
	}
	if e.Time < minBizTimeMs || e.Time > maxBizTimeMs {
		return Errorf(EINVALID, "time must be milliseconds since the Unix epoch")
	}
	if e.Platform == "" {
		e.Platform = defaultBizPlat
	}
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"platform", e.Platform, true}, {"user", e.User, s.user}, {"room", e.Room, s.room}, {"shop", e.Shop, s.shop},
		{"sku", e.SKU, s.sku}, {"session", e.Session, false}, {"order", e.Order, s.order}, {"status", e.Status, s.status},
	} {
		if f.v == "" {
			if f.required {
				return Errorf(EINVALID, "%s event needs %s", e.Type, f.name)
			}
			continue
		}
		if !validDim(f.v) {
			return Errorf(EINVALID, "%s must be 1 to %d letters, digits, '-' or '_'", f.name, MaxDimLen)
		}
	}
	if s.units && (e.Units < 1 || e.Units > MaxBizUnits) {
		return Errorf(EINVALID, "%s event needs units from 1 to %d", e.Type, MaxBizUnits)
	}
	// A required amount is at least one minor unit: a payment, order or refund of nothing is a
	// half-filled event (an amount of 0 is written as no amount at all), which would count in
	// payments, orders and paying users while adding nothing to GMV.
	if s.amount && (e.Amount < 1 || e.Amount > MaxBizAmount) {
		return Errorf(EINVALID, "%s event needs amount from 1 to %d minor units", e.Type, int64(MaxBizAmount))
	}
	if !s.units && e.Units != 0 && (e.Units < 0 || e.Units > MaxBizUnits) {
		return Errorf(EINVALID, "units must be from 0 to %d", MaxBizUnits)
	}
	if e.Amount < 0 || e.Amount > MaxBizAmount {
		return Errorf(EINVALID, "amount must be from 0 to %d minor units", int64(MaxBizAmount))
	}
	if len(e.Text) > MaxCommentLen {
		return Errorf(EINVALID, "text is longer than %d bytes", MaxCommentLen)
	}
	return nil
}

// validDim reports whether v can be a metric dimension value: it goes into series keys.
func validDim(v string) bool {
	if len(v) == 0 || len(v) > MaxDimLen {
		return false
	}
	for _, c := range []byte(v) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidDim reports whether v is a valid dimension value (platform, room, shop, sku, session).
func ValidDim(v string) bool { return validDim(v) }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s…", s[:n])
}
