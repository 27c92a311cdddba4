package loadgen

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/surgecommerce/surge"
)

// Summary writes a run's report for people.
func Summary(w io.Writer, r *Result) {
	fmt.Fprintf(w, "target %s: %d attempts in %.1fs: %.0f attempts/s, p50 %.2f ms, p99 %.2f ms (from the intended send time)\n",
		r.Target, r.Attempts, r.DurationSec, r.AttemptsPerSec, r.P50Ms, r.P99Ms)
	fmt.Fprintf(w, "  the crowd's own lag in sending: p50 %.2f ms, p99 %.2f ms (part of the latency)\n", r.SendLagP50Ms, r.SendLagP99Ms)
	fmt.Fprintf(w, "  before sell-out: %d attempts, %.0f/s, p50 %.2f ms, p99 %.2f ms\n", r.BeforeSellout.Attempts,
		r.BeforeSellout.AttemptsPerSec, r.BeforeSellout.P50Ms, r.BeforeSellout.P99Ms)
	fmt.Fprintf(w, "  after sell-out:  %d attempts, %.0f/s, p50 %.2f ms, p99 %.2f ms\n", r.AfterSellout.Attempts,
		r.AfterSellout.AttemptsPerSec, r.AfterSellout.P50Ms, r.AfterSellout.P99Ms)
	fmt.Fprintf(w, "  outcomes: %s\n", outcomeList(r.Outcomes))
	fmt.Fprintf(w, "  shed: %d attempts (%.1f%%) refused for load, %d with a retry hint; each shopper came back after it (up to 3 times)\n",
		r.Shed, 100*r.ShedShare, r.ShedHinted)
	fmt.Fprintf(w, "  requests: %.0f/s of every kind over %.1fs (%s)\n", r.RequestsPerSec, r.CrowdSec, outcomeList(r.Requests))
	if r.NodeRequests != nil {
		fmt.Fprintf(w, "  the nodes answered %.0f requests/s of every kind, the provider's callbacks included (%s)\n", r.NodeRequestsPerSec,
			routeList(r.NodeRequests))
	}
	fmt.Fprintf(w, "  orders %d: readable after success p50 %.1f ms, p99 %.1f ms, not within 5 s %d\n", r.Orders,
		r.OrderVisibleP50Ms, r.OrderVisibleP99Ms, r.OrdersNotVisible)
	fmt.Fprintf(w, "  paid %d, abandoned %d, refused after expiry %d, payment errors %d\n", r.Paid, r.Abandoned, r.PayExpired, r.PayErrors)
	for _, f := range payFailures(r) {
		fmt.Fprintf(w, "    %s\n", f)
	}
	riskSummary(w, r)
	if len(r.Items) > 0 {
		fmt.Fprintln(w, "items:")
		for _, it := range r.Items {
			fmt.Fprintf(w, "  %-32s allotted %6d, sold %6d, reserved %5d, left %6d, paid %s\n", it.Name, it.Stock.Allotted,
				it.Stock.Sold, it.Stock.Reserved, it.Stock.Available, money(it.PaidAmount))
		}
	}
	fmt.Fprintln(w, "invariants:")
	for _, inv := range r.Invariants {
		fmt.Fprintf(w, "  %-4s %-30s checked %d, violations %d", inv.Status, inv.Invariant, inv.Checked, inv.Violations)
		if len(inv.Details) > 0 {
			fmt.Fprintf(w, "  (%s)", strings.Join(inv.Details, "; "))
		}
		fmt.Fprintln(w)
	}
	if r.Passed {
		fmt.Fprintln(w, "PASSED")
	} else {
		fmt.Fprintln(w, "FAILED")
	}
}

// riskSummary writes who made the orders over the run, what risk control refused, and what the
// run's rule changed.
func riskSummary(w io.Writer, r *Result) {
	fmt.Fprintf(w, "  orders made per second, by when the attempt was sent:\n    bots      %s\n    shoppers  %s\n",
		curve(r.BotSuccessesPerSec), curve(r.ShopperSuccessesPerSec))
	fmt.Fprintf(w, "  refused by risk control: bots %d, shoppers %d", r.BotRiskRefused, r.ShopperRiskRefused)
	if len(r.RiskReasons) > 0 {
		fmt.Fprintf(w, " (%s)", outcomeList(r.RiskReasons))
	}
	fmt.Fprintln(w)
	if r.ChallengesMet > 0 {
		fmt.Fprintf(w, "  challenges: %d met, %d solved, solving p50 %.1f ms\n", r.ChallengesMet, r.ChallengesSolved, r.ChallengeSolveP50Ms)
	}
	if r.RiskRule == nil {
		return
	}
	fmt.Fprintf(w, "  risk rule %s", ruleText(r.RiskRule))
	if r.RiskRuleAtMs >= 0 {
		fmt.Fprintf(w, ", enabled at %.2f s; orders of attempts sent after %.2f s: bots %d, shoppers %d", r.RiskRuleAtMs/1000,
			r.RiskRuleAtMs/1000+ruleGrace.Seconds(), r.BotSuccessesAfterRule, r.ShopperSuccessesAfterRule)
	}
	if r.RiskRuleError != "" {
		fmt.Fprintf(w, " (%s)", r.RiskRuleError)
	}
	fmt.Fprintln(w)
}

// ruleText is a rule in a few words: what it does to which subject, when.
func ruleText(rule *surge.RiskRule) string {
	action := rule.Action
	if rule.Action == surge.ActionChallenge {
		action = fmt.Sprintf("challenge (%d bits)", rule.Bits)
	}
	return fmt.Sprintf("%q: %s by %s", rule.Expr, action, rule.On)
}

// maxCurveSecs bounds the seconds of a curve the summary writes out.
const maxCurveSecs = 120

// curve writes a count per second compactly, the first maxCurveSecs of them.
func curve(vs []int64) string {
	if len(vs) == 0 {
		return "(none)"
	}
	parts := make([]string, 0, min(len(vs), maxCurveSecs)+1)
	for _, v := range vs[:min(len(vs), maxCurveSecs)] {
		parts = append(parts, strconv.FormatInt(v, 10))
	}
	if len(vs) > maxCurveSecs {
		parts = append(parts, fmt.Sprintf("… (%d s in all)", len(vs)))
	}
	return strings.Join(parts, " ")
}

// payFailures says, for each code of the payment errors, how many and what the first said.
func payFailures(r *Result) []string {
	var out []string
	for _, code := range slices.Sorted(maps.Keys(r.PayFailures)) {
		out = append(out, fmt.Sprintf("%s × %d: %s", code, r.PayFailures[code], cmp.Or(r.PayFailureReasons[code], "(no message)")))
	}
	return out
}

// money writes minor units as a decimal amount.
func money(minor int64) string { return fmt.Sprintf("%d.%02d", minor/100, minor%100) }

func routeList(m map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func outcomeList(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// chart is one SVG line chart: a series per line, over seconds.
type chart struct {
	Title string
	Unit  string
	Lines []line
	Max   float64
	Ticks []float64
	Secs  int
	Marks []mark
}

// mark is a moment the chart points out: a vertical line at X (SVG units).
type mark struct {
	X     float64
	Label string
}

type line struct {
	Name   string
	Color  string
	Points string // SVG polyline points
}

const chartW, chartH = 640.0, 200.0

func newChart(title, unit string, secs int, series map[string][]float64, colors map[string]string) chart {
	c := chart{Title: title, Unit: unit, Secs: secs}
	for _, vs := range series {
		for _, v := range vs {
			c.Max = max(c.Max, v)
		}
	}
	if c.Max <= 0 {
		c.Max = 1
	}
	for i := 0; i <= 4; i++ {
		c.Ticks = append(c.Ticks, c.Max*float64(i)/4)
	}
	for _, name := range slices.Sorted(maps.Keys(series)) {
		var pts []string
		for i, v := range series[name] {
			if v < 0 {
				continue // not measured that second
			}
			x := chartW * float64(i) / float64(max(secs-1, 1))
			y := chartH - chartH*v/c.Max
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
		}
		c.Lines = append(c.Lines, line{Name: name, Color: colors[name], Points: strings.Join(pts, " ")})
	}
	return c
}

// successChart draws the orders bots and shoppers made, by the second their attempt was sent,
// with the moment the run's rule was enabled.
func successChart(r *Result, colors map[string]string) chart {
	secs := max(len(r.BotSuccessesPerSec), len(r.ShopperSuccessesPerSec))
	series := map[string][]float64{"bots": make([]float64, secs), "shoppers": make([]float64, secs)}
	for i, v := range r.BotSuccessesPerSec {
		series["bots"][i] = float64(v)
	}
	for i, v := range r.ShopperSuccessesPerSec {
		series["shoppers"][i] = float64(v)
	}
	c := newChart("Orders made per second by bots and shoppers (by when the attempt was sent)", "per second", secs, series, colors)
	if r.RiskRule != nil && r.RiskRuleAtMs >= 0 {
		x := min(chartW*r.RiskRuleAtMs/1000/float64(max(secs-1, 1)), chartW)
		c.Marks = append(c.Marks, mark{X: x, Label: "rule enabled"})
	}
	return c
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"y":     func(c chart, v float64) float64 { return chartH - chartH*v/c.Max },
	"num":   func(v float64) string { return fmt.Sprintf("%.4g", v) },
	"pct":   func(v float64) float64 { return 100 * v },
	"sec":   func(ms float64) float64 { return ms / 1000 },
	"money": money,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Surge load test</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}
.PASS{color:#15803d;font-weight:bold}.FAIL{color:#b91c1c;font-weight:bold}.NA{color:#777}
svg{background:#fff;border:1px solid #ddd}.legend span{margin-right:14px}
</style></head><body>
<h1>Surge load test</h1>
{{range .Runs}}
<h2>{{.R.Target}}: {{if .R.Passed}}<span class="PASS">PASSED</span>{{else}}<span class="FAIL">FAILED</span>{{end}}</h2>
<table>
<tr><th>attempts</th><td>{{.R.Attempts}} in {{num .R.DurationSec}} s ({{num .R.AttemptsPerSec}}/s)</td></tr>
<tr><th>latency from intended send</th><td>p50 {{num .R.P50Ms}} ms, p99 {{num .R.P99Ms}} ms</td></tr>
<tr><th>the crowd's own lag in sending</th><td>p50 {{num .R.SendLagP50Ms}} ms, p99 {{num .R.SendLagP99Ms}} ms (part of the latency)</td></tr>
<tr><th>before sell-out</th><td>{{.R.BeforeSellout.Attempts}} attempts, {{num .R.BeforeSellout.AttemptsPerSec}}/s, p50 {{num .R.BeforeSellout.P50Ms}} ms, p99 {{num .R.BeforeSellout.P99Ms}} ms</td></tr>
<tr><th>after sell-out</th><td>{{.R.AfterSellout.Attempts}} attempts, {{num .R.AfterSellout.AttemptsPerSec}}/s, p50 {{num .R.AfterSellout.P50Ms}} ms, p99 {{num .R.AfterSellout.P99Ms}} ms</td></tr>
<tr><th>outcomes</th><td>{{.Outcomes}}</td></tr>
<tr><th>shed</th><td>{{.R.Shed}} attempts refused for load ({{num (pct .R.ShedShare)}}%), {{.R.ShedHinted}} with a retry hint; each shopper came back after it (up to 3 times)</td></tr>
<tr><th>requests</th><td>{{num .R.RequestsPerSec}}/s of every kind over {{num .R.CrowdSec}} s: {{.Requests}}</td></tr>
{{if .R.NodeRequests}}<tr><th>the nodes answered</th><td>{{num .R.NodeRequestsPerSec}}/s of every kind, the provider's callbacks included: {{.NodeRequests}}</td></tr>{{end}}
<tr><th>orders</th><td>{{.R.Orders}}: readable after success p50 {{num .R.OrderVisibleP50Ms}} ms, p99 {{num .R.OrderVisibleP99Ms}} ms; not within 5 s {{.R.OrdersNotVisible}}</td></tr>
<tr><th>payments</th><td>paid {{.R.Paid}}, abandoned {{.R.Abandoned}}, refused after expiry {{.R.PayExpired}}, payment errors {{.R.PayErrors}}{{range .PayFailures}}<br>{{.}}{{end}}</td></tr>
<tr><th>refused by risk control</th><td>bots {{.R.BotRiskRefused}}, shoppers {{.R.ShopperRiskRefused}}{{if .R.RiskReasons}} ({{.RiskReasons}}){{end}}</td></tr>
{{if .R.ChallengesMet}}<tr><th>challenges</th><td>{{.R.ChallengesMet}} met, {{.R.ChallengesSolved}} solved, solving p50 {{num .R.ChallengeSolveP50Ms}} ms</td></tr>{{end}}
{{if .R.RiskRule}}<tr><th>risk rule</th><td>{{.Rule}}{{if ge .R.RiskRuleAtMs 0.0}}, enabled at {{num (sec .R.RiskRuleAtMs)}} s; orders of attempts sent more than 1 s later: bots {{.R.BotSuccessesAfterRule}}, shoppers {{.R.ShopperSuccessesAfterRule}}{{end}}{{if .R.RiskRuleError}} ({{.R.RiskRuleError}}){{end}}</td></tr>{{end}}
</table>
{{if .R.Items}}<h2>Items</h2>
<table><tr><th>product</th><th>allotted</th><th>sold</th><th>reserved</th><th>left</th><th>paid</th></tr>
{{range .R.Items}}<tr><td>{{.Name}}</td><td>{{.Stock.Allotted}}</td><td>{{.Stock.Sold}}</td><td>{{.Stock.Reserved}}</td><td>{{.Stock.Available}}</td><td>{{money .PaidAmount}}</td></tr>
{{end}}</table>{{end}}
<h2>Invariants</h2>
<table><tr><th>invariant</th><th>verdict</th><th>checked</th><th>violations</th><th>details</th></tr>
{{range .R.Invariants}}<tr><td>{{.Invariant}}</td><td class="{{.Status}}">{{.Status}}</td><td>{{.Checked}}</td><td>{{.Violations}}</td><td>{{range .Details}}{{.}} {{end}}</td></tr>
{{end}}</table>
{{range .Charts}}
<h2>{{.Title}}</h2>
<div class="legend">{{range .Lines}}<span style="color:{{.Color}}">&#9632; {{.Name}}</span>{{end}}</div>
<svg width="700" height="230" viewBox="-50 -10 700 230" role="img" aria-label="{{.Title}}">
{{$c := .}}{{range .Ticks}}<line x1="0" x2="640" y1="{{y $c .}}" y2="{{y $c .}}" stroke="#eee"/><text x="-6" y="{{y $c .}}" font-size="10" text-anchor="end" dominant-baseline="middle">{{num .}}</text>
{{end}}<text x="640" y="215" font-size="10" text-anchor="end">{{.Secs}} s</text><text x="0" y="215" font-size="10">0 s ({{.Unit}})</text>
{{range .Lines}}<polyline fill="none" stroke="{{.Color}}" stroke-width="2" points="{{.Points}}"/>
{{end}}{{range .Marks}}<line x1="{{.X}}" x2="{{.X}}" y1="0" y2="200" stroke="#334155" stroke-dasharray="4 3"/><text x="{{.X}}" y="-2" font-size="10" text-anchor="middle">{{.Label}}</text>
{{end}}</svg>
{{end}}
{{end}}
</body></html>
`))

// WriteHTML writes a self-contained page (no external assets) with each run's figures,
// invariants, and charts of rate, latency and stock over time.
func WriteHTML(w io.Writer, runs ...*Result) error {
	type run struct {
		R            *Result
		Outcomes     string
		Requests     string
		NodeRequests string
		PayFailures  []string
		RiskReasons  string
		Rule         string
		Charts       []chart
	}
	var data struct{ Runs []run }
	for _, r := range runs {
		n := len(r.Series)
		rate := map[string][]float64{"requests of every kind": make([]float64, n)}
		lat := map[string][]float64{"p50": make([]float64, n), "p99": make([]float64, n)}
		stock := map[string][]float64{"units left (all items)": make([]float64, n)}
		for i, p := range r.Series {
			for k := range r.Outcomes {
				if rate[k] == nil {
					rate[k] = make([]float64, n)
				}
				rate[k][i] = float64(p.Outcomes[k])
			}
			rate["requests of every kind"][i] = float64(p.Requests)
			lat["p50"][i], lat["p99"][i] = p.P50Ms, p.P99Ms
			stock["units left (all items)"][i] = float64(p.Remaining)
		}
		colors := map[string]string{OutSuccess: "#15803d", OutSoldOut: "#6b7280", OutLimit: "#ca8a04", OutRateLimited: "#9333ea",
			OutRejected: "#b91c1c", OutUnavailable: "#ea580c", OutChallenged: "#0891b2", OutError: "#000", "p50": "#2563eb", "p99": "#b91c1c",
			"units left (all items)": "#0f766e", "requests of every kind": "#64748b", "bots": "#b91c1c", "shoppers": "#15803d"}
		rn := run{R: r, Outcomes: outcomeList(r.Outcomes), Requests: outcomeList(r.Requests), NodeRequests: routeList(r.NodeRequests),
			PayFailures: payFailures(r), RiskReasons: outcomeList(r.RiskReasons), Charts: []chart{
				newChart("Attempts per second by outcome, and requests of every kind", "per second", n, rate, colors),
				newChart("Latency per second (ms, from the intended send time)", "ms", n, lat, colors),
				newChart("Stock left (all items)", "units", n, stock, colors),
				successChart(r, colors),
			}}
		if r.RiskRule != nil {
			rn.Rule = ruleText(r.RiskRule)
		}
		data.Runs = append(data.Runs, rn)
	}
	return page.Execute(w, data)
}
