// Package live computes the live metrics of the real-time platform from business events, on the
// stream engine, and serves them: one metric catalog, running totals with per-second
// series per platform, live room, shop, SKU and sale session, top items and the
// conversion funnel, for dashboards and the live-room big screen.
package live

import (
	"fmt"
	"slices"
	"strings"

	"github.com/surgecommerce/surge"
)

// Dimensions a metric can be broken down by. A series is a metric with at most one dimension
// set, or units_sold by room and SKU (the top items of a live room).
const (
	DimPlatform = "platform"
	DimRoom     = "room"
	DimShop     = "shop"
	DimSKU      = "sku"
	DimSession  = "session"
)

// Kinds of metric.
const (
	KindSum      = "sum"      // adds a value per event
	KindDistinct = "distinct" // counts distinct users
	KindGauge    = "gauge"    // a level that goes up and down (online viewers)
)

// Metric is one metric's definition: the single source of its meaning for every consumer.
type Metric struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Definition  string   `json:"definition"`
	Unit        string   `json:"unit"`
	Kind        string   `json:"kind"`
	Dimensions  []string `json:"dimensions"`
	Window      string   `json:"window"`
	// value is what one event adds (0: the event does not count).
	value func(m measure) int64 `json:"-"`
}

// measure is what a metric's value reads of an event: the event itself, passed by pointer to
// a function in a table, would be moved to the heap for every event counted.
type measure struct {
	typ           string
	units, amount int64
}

// SeriesSeconds is how many recent seconds a series keeps.
const SeriesSeconds = 120

const cumulative = "running total since the platform started counting, with the last 120 seconds per second (event time)"

var (
	commerceDims = []string{DimPlatform, DimRoom, DimShop, DimSKU, DimSession}
	roomDims     = []string{DimPlatform, DimRoom}
)

func count(typ string) func(measure) int64 {
	return func(e measure) int64 {
		if e.typ == typ {
			return 1
		}
		return 0
	}
}

// unitsOf and amountOf are what events of a type add: their units, their amount.
func unitsOf(typ string) func(measure) int64 {
	return func(e measure) int64 {
		if e.typ == typ {
			return e.units
		}
		return 0
	}
}

func amountOf(typ string) func(measure) int64 {
	return func(e measure) int64 {
		if e.typ == typ {
			return e.amount
		}
		return 0
	}
}

// catalog is every metric, defined once.
var catalog = []Metric{
	{Name: "gmv", Description: "Gross merchandise value paid", Definition: "sum of amount over pay events, less refund events",
		Unit: "minor currency units", Kind: KindSum, Dimensions: commerceDims, Window: cumulative,
		value: func(e measure) int64 {
			switch e.typ {
			case surge.BizPay:
				return e.amount
			case surge.BizRefund:
				return -e.amount
			}
			return 0
		}},
	{Name: "orders", Description: "Orders placed", Definition: "count of order events", Unit: "orders", Kind: KindSum,
		Dimensions: commerceDims, Window: cumulative, value: count(surge.BizOrder)},
	{Name: "payments", Description: "Orders paid", Definition: "count of pay events", Unit: "orders", Kind: KindSum,
		Dimensions: commerceDims, Window: cumulative, value: count(surge.BizPay)},
	{Name: "units_sold", Description: "Units paid for", Definition: "sum of units over pay events", Unit: "units", Kind: KindSum,
		Dimensions: commerceDims, Window: cumulative, value: unitsOf(surge.BizPay)},
	{Name: "paying_users", Description: "Distinct users who paid", Definition: "count of distinct users over pay events, per UTC day of event time, summed over the days",
		Unit: "users", Kind: KindDistinct, Dimensions: commerceDims, Window: cumulative, value: count(surge.BizPay)},
	{Name: "refunds", Description: "Amount refunded", Definition: "sum of amount over refund events", Unit: "minor currency units",
		Kind: KindSum, Dimensions: commerceDims, Window: cumulative, value: amountOf(surge.BizRefund)},
	{Name: "coupons_used", Description: "Coupons used on paid orders", Definition: "sum of units over coupon_use events (Surge sends one per paid order that coupons took something off)",
		Unit: "coupons", Kind: KindSum, Dimensions: commerceDims, Window: cumulative, value: unitsOf(surge.BizCouponUse)},
	{Name: "coupon_discount", Description: "Amount coupons took off paid orders", Definition: "sum of amount over coupon_use events",
		Unit: "minor currency units", Kind: KindSum, Dimensions: commerceDims, Window: cumulative, value: amountOf(surge.BizCouponUse)},
	{Name: "promotions_used", Description: "Promotion activities on paid checkouts", Definition: "sum of units over promo_use events (Surge sends one per paid checkout that activities took something off)",
		Unit: "activities", Kind: KindSum, Dimensions: commerceDims, Window: cumulative, value: unitsOf(surge.BizPromoUse)},
	{Name: "promotion_discount", Description: "Amount promotion activities took off paid checkouts", Definition: "sum of amount over promo_use events",
		Unit: "minor currency units", Kind: KindSum, Dimensions: commerceDims, Window: cumulative, value: amountOf(surge.BizPromoUse)},
	{Name: "attempts_blocked", Description: "Purchase attempts risk control refused", Definition: "sum of units over risk_block events (each gate sends its refusals by session every second)",
		Unit: "attempts", Kind: KindSum, Dimensions: []string{DimSession}, Window: cumulative, value: unitsOf(surge.BizRiskBlock)},
	{Name: "attempts_challenged", Description: "Purchase attempts risk control asked a proof of work of", Definition: "sum of units over risk_challenge events",
		Unit: "attempts", Kind: KindSum, Dimensions: []string{DimSession}, Window: cumulative, value: unitsOf(surge.BizRiskChallenge)},
	{Name: "bot_attempts", Description: "Purchase attempts from users, devices, IPs or networks risk rules flagged",
		Definition: "sum of units over risk_block, risk_challenge and risk_dry_run events: refused, challenged, or a dry-run rule would have refused",
		Unit:       "attempts", Kind: KindSum, Dimensions: []string{DimSession}, Window: cumulative,
		value: func(e measure) int64 {
			switch e.typ {
			case surge.BizRiskBlock, surge.BizRiskChallenge, surge.BizRiskDryRun:
				return e.units
			}
			return 0
		}},
	{Name: "exposures", Description: "Items shown", Definition: "count of exposure events", Unit: "events", Kind: KindSum,
		Dimensions: commerceDims, Window: cumulative, value: count(surge.BizExposure)},
	{Name: "clicks", Description: "Items clicked", Definition: "count of click events", Unit: "events", Kind: KindSum,
		Dimensions: commerceDims, Window: cumulative, value: count(surge.BizClick)},
	{Name: "add_to_carts", Description: "Items added to carts", Definition: "count of add_to_cart events", Unit: "events",
		Kind: KindSum, Dimensions: commerceDims, Window: cumulative, value: count(surge.BizAddToCart)},
	{Name: "online_viewers", Description: "Viewers in live rooms now",
		Definition: "users who entered a room or sent a heartbeat, and have neither left nor gone 60 s without a heartbeat, by the time Surge received their events (never the sender's clock)",
		Unit:       "viewers", Kind: KindGauge, Dimensions: roomDims, Window: "current level, with the level at the end of each of the last 120 seconds (Surge's clock)"},
	{Name: "likes", Description: "Likes in live rooms", Definition: "count of like events", Unit: "events", Kind: KindSum,
		Dimensions: roomDims, Window: cumulative, value: count(surge.BizLike)},
	{Name: "comments", Description: "Comments in live rooms", Definition: "count of comment events", Unit: "events", Kind: KindSum,
		Dimensions: roomDims, Window: cumulative, value: count(surge.BizComment)},
	{Name: "shares", Description: "Shares of live rooms", Definition: "count of share events", Unit: "events", Kind: KindSum,
		Dimensions: roomDims, Window: cumulative, value: count(surge.BizShare)},
}

// Catalog returns every metric's definition.
func Catalog() []Metric { return slices.Clone(catalog) }

// Lookup finds a metric by name.
func Lookup(name string) (Metric, bool) {
	for _, m := range catalog {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// Series names one series: a metric and its dimension values, in the catalog's order.
type Series struct {
	Metric string
	Dims   [][2]string // (dimension, value) pairs
}

// Key is the series' key, usable as a JetStream KV key: "gmv", "gmv.room=r1",
// "units_sold.room=r1.sku=s9".
func (s Series) Key() string {
	var b strings.Builder
	b.WriteString(s.Metric)
	for _, d := range s.Dims {
		b.WriteByte('.')
		b.WriteString(d[0])
		b.WriteByte('=')
		b.WriteString(d[1])
	}
	return b.String()
}

// dimMap is the series' dimensions as a map (nil when it has none).
func (s Series) dimMap() map[string]string {
	if len(s.Dims) == 0 {
		return nil
	}
	m := make(map[string]string, len(s.Dims))
	for _, d := range s.Dims {
		m[d[0]] = d[1]
	}
	return m
}

// ParseKey reads a series key back.
func ParseKey(key string) (Series, bool) {
	parts := strings.Split(key, ".")
	if _, ok := Lookup(parts[0]); !ok {
		return Series{}, false
	}
	s := Series{Metric: parts[0]}
	for _, p := range parts[1:] {
		d, v, ok := strings.Cut(p, "=")
		if !ok || !surge.ValidDim(v) {
			return Series{}, false
		}
		s.Dims = append(s.Dims, [2]string{d, v})
	}
	return s, true
}

// SeriesKey is the key of a metric's series with the given dimension filter (dimension →
// value). Returns ENOTFOUND for an unknown metric, EINVALID for a dimension the metric does not
// have or a filter on more than one dimension (except room and sku of units_sold).
func SeriesKey(metric string, filter map[string]string) (string, error) {
	m, ok := Lookup(metric)
	if !ok {
		return "", surge.Errorf(surge.ENOTFOUND, "no metric %q", metric)
	}
	for d, v := range filter {
		if !slices.Contains(m.Dimensions, d) {
			return "", surge.Errorf(surge.EINVALID, "metric %s has no dimension %q", metric, d)
		}
		if !surge.ValidDim(v) {
			return "", surge.Errorf(surge.EINVALID, "%s must be 1 to %d letters, digits, '-' or '_'", d, surge.MaxDimLen)
		}
	}
	s := Series{Metric: metric}
	for _, d := range m.Dimensions {
		if v, ok := filter[d]; ok {
			s.Dims = append(s.Dims, [2]string{d, v})
		}
	}
	if len(s.Dims) > 1 && !(metric == roomSKUMetric && len(s.Dims) == 2 && s.Dims[0][0] == DimRoom && s.Dims[1][0] == DimSKU) {
		return "", surge.Errorf(surge.EINVALID, "filter by one dimension (or by room and sku for %s)", roomSKUMetric)
	}
	return s.Key(), nil
}

// roomSKUMetric is also kept per room and SKU: the top items of a live room.
const roomSKUMetric = "units_sold"

// EventTypesTable is the documentation's table of the business event types (README.md, "The
// real-time platform"), made from the schema ingestion enforces (surge.BizRequired) and the
// catalog: what each type requires, who may send it and the metrics it counts in.
func EventTypesTable() string {
	var b strings.Builder
	b.WriteString("| type | requires, besides `id`, `type` and `time` | sent by | counts in |\n|---|---|---|---|\n")
	for _, typ := range surge.BizTypes() {
		var required []string
		for _, f := range surge.BizRequired(typ)[3:] {
			required = append(required, "`"+f+"`")
		}
		senders := "apps (their own user), merchants (their own shop), staff"
		if !surge.Behavioural(typ) {
			senders = "merchants (their own shop), staff, Surge's own orders"
			if typ == surge.BizRefund || typ == surge.BizLogistics {
				senders = "merchants (their own shop), staff"
			}
		}
		var metrics []string
		for i := range catalog {
			m := &catalog[i]
			if m.value != nil && m.value(measure{typ: typ, units: 1, amount: 1}) != 0 ||
				m.Name == "online_viewers" && (typ == surge.BizLiveEnter || typ == surge.BizLiveHeartbeat || typ == surge.BizLiveLeave) {
				metrics = append(metrics, "`"+m.Name+"`")
			}
		}
		if len(metrics) == 0 {
			metrics = []string{"none yet"}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", typ, strings.Join(required, ", "), senders, strings.Join(metrics, ", "))
	}
	return b.String()
}
