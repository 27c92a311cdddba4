package reconcile

import (
	"html/template"
	"io"
	"slices"
	"strconv"
	"strings"
)

var page = template.Must(template.New("report").Funcs(template.FuncMap{"minor": minor}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reconciliation of {{.Day}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00}.ok{color:#070}
</style></head><body>
<h1>Reconciliation of {{.Day}}</h1>
<p>Generated {{.GeneratedAt.Format "2006-01-02 15:04:05 MST"}} in {{printf "%.1f" .Seconds}} s.
{{if .Clean}}<strong class="ok">Clean: nothing to look at.</strong>{{else}}<strong class="bad">{{len .Findings}} findings{{if .Unlisted}} listed, {{.Unlisted}} more counted{{end}}; refunds due {{minor .RefundsDue}}.</strong>{{end}}</p>
<table><tr><th></th><th>payments</th><th>amount</th><th>refunds</th><th>amount</th></tr>
<tr><th>provider's ledger</th><td class="n">{{.Ledger.Payments}}</td><td class="n">{{minor .Ledger.PaymentsMinor}}</td><td class="n">{{.Ledger.Refunds}}</td><td class="n">{{minor .Ledger.RefundsMinor}}</td></tr>
<tr><th>Surge</th><td class="n">{{.Surge.Payments}}</td><td class="n">{{minor .Surge.PaymentsMinor}}</td><td class="n">{{.Surge.Refunds}}</td><td class="n">{{minor .Surge.RefundsMinor}}</td></tr>
<tr><th>difference</th><td class="n">{{.PaymentCountDiff}}</td><td class="n">{{minor .PaymentAmountDiff}}</td><td class="n">{{.RefundCountDiff}}</td><td class="n">{{minor .RefundAmountDiff}}</td></tr></table>
{{if .Kinds}}<h2>By kind</h2><table><tr><th>kind</th><th>findings</th><th>at stake</th></tr>
{{range .KindList}}<tr><td>{{.Kind}}</td><td class="n">{{.Count}}</td><td class="n">{{minor .Amount}}</td></tr>{{end}}</table>{{end}}
{{if .Findings}}<h2>Findings</h2><table><tr><th>kind</th><th>transaction</th><th>order</th><th>amount</th><th>what</th><th>repair</th><th>repaired</th></tr>
{{range .Findings}}<tr><td>{{.Kind}}</td><td>{{.TxnID}}</td><td>{{.OrderID}}</td><td class="n">{{minor .Amount}} {{.Currency}}</td><td>{{.Detail}}</td><td>{{.Action}}</td>
<td>{{with .Repaired}}{{.At.Format "2006-01-02 15:04"}} by {{.By}}: {{.Result}}{{end}}</td></tr>{{end}}</table>{{end}}
</body></html>
`))

// kindRow is a line of the report's table by kind.
type kindRow struct {
	Kind string
	KindSum
}

// KindList is the report's kinds in name order, for its HTML.
func (r *Report) KindList() []kindRow {
	out := make([]kindRow, 0, len(r.Kinds))
	for k, v := range r.Kinds {
		out = append(out, kindRow{k, v})
	}
	slices.SortFunc(out, func(a, b kindRow) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}

// WriteHTML writes the report as a page for people.
func (r *Report) WriteHTML(w io.Writer) error { return page.Execute(w, r) }

// minor shows minor units as major ones: 12900 as 129.00.
func minor(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return sign + strconv.FormatInt(v/100, 10) + "." + string([]byte{byte('0' + v%100/10), byte('0' + v%10)})
}
