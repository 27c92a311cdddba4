package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/checkout"
	"github.com/surgecommerce/surge/coupon"
	"github.com/surgecommerce/surge/order"
	"github.com/surgecommerce/surge/payment"
	"github.com/surgecommerce/surge/paysim"
	"github.com/surgecommerce/surge/reconcile"
)

// The daily reconciliation on every shape, against the simulated provider's own ledger: a day
// with a payment whose callback never came, one of the wrong amount, one charged twice and one
// of an order cancelled before it came, besides clean payments and a refund, finds exactly
// those four with their amounts; each repair is made once (again: ECONFLICT), and a run after
// the repairs finds them resolved (what remains is their refunds, paid back after the day was
// closed early, in the next day's file).
func TestDailyReconciliationAndRepairs(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			sh.setup(t, &c)
			m, cl := start(t, c)
			ctx := context.Background()
			tm := newTeam(t, cl)
			kettle := shopSKU(t, tm, "Kettle", 2000, 50, false)
			s := shopper(t, cl, 6_300_001)
			buy := func(req string, n int64) *surge.Order {
				return ok[*surge.Order](t, "Checkout")(s.Checkout(ctx, checkout.Request{RequestID: req, Lines: []coupon.CartLine{{SKU: kettle.ID, Quantity: n}}}))
			}
			pay := func(o *surge.Order, fault string) {
				tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, o.ID))
				ok[*paysim.PayResponse](t, "Pay")(s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket, Fault: fault}))
			}
			outcomes := func(o *surge.Order) map[string]int {
				got := map[string]int{}
				list, err := m.db.PaymentsByOrder(ctx, o.ID)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range list {
					if p.Status == payment.StatusPaid {
						got[p.Outcome]++
					}
				}
				return got
			}
			clean, two := buy("clean", 1), buy("two", 2)
			pay(clean, "")
			pay(two, "")
			missing, wrong, twice := buy("missing", 1), buy("wrong", 1), buy("twice", 1)
			pay(missing, paysim.FaultMissingCallback)
			pay(wrong, paysim.FaultWrongAmount)
			pay(twice, paysim.FaultDuplicateCharge)
			late := buy("late", 1)
			tk := ok[*order.PayTicket](t, "PayTicket")(s.PayTicket(ctx, late.ID))
			ok[*surge.Order](t, "CancelOrder")(s.CancelOrder(ctx, late.ID))
			ok[*paysim.PayResponse](t, "Pay(late)")(s.Pay(ctx, tk.PayURL, paysim.PayRequest{Ticket: tk.Ticket}))
			waitFor(t, "every callback", func() bool {
				return outcomes(clean)[surge.PaymentApplied] == 1 && outcomes(two)[surge.PaymentApplied] == 1 && outcomes(wrong)[surge.PaymentMismatch] == 1 &&
					outcomes(twice)[surge.PaymentApplied] == 1 && outcomes(twice)[surge.PaymentDuplicate] == 1 && outcomes(late)[surge.PaymentRefundDue] == 1
			})
			if _, err := tm.op.RefundOrder(ctx, two.ID, "one", 10*time.Second); err != nil { // a clean refund: whole
				t.Fatal(err)
			}
			day := payment.LedgerDay(time.Now())
			closeLedger(t, cl.BaseURL(), day)

			_, err := s.ReconcileDay(ctx, day)
			wantCode(t, "a shopper reconciling", err, surge.EFORBIDDEN)
			_, err = tm.op.ReconcileDay(ctx, "2026-13-01")
			wantCode(t, "a day that is not one", err, surge.EINVALID)
			_, err = tm.op.ReconcileDay(ctx, payment.LedgerDay(time.Now().Add(48*time.Hour)))
			wantCode(t, "a day to come", err, surge.EINVALID)
			_, err = tm.op.ReconcileDay(ctx, "2020-01-01")
			wantCode(t, "a day the provider has no ledger of", err, surge.ENOTFOUND)
			_, err = tm.op.Reconciliation(ctx, "2020-01-01")
			wantCode(t, "the report of a day not reconciled", err, surge.ENOTFOUND)

			rep := ok[*reconcile.Report](t, "ReconcileDay")(tm.op.ReconcileDay(ctx, day))
			want := map[string]reconcile.KindSum{reconcile.FindMissingCallback: {Count: 1, Amount: 2000}, reconcile.FindAmountMismatch: {Count: 1, Amount: 2001},
				reconcile.FindDuplicateCharge: {Count: 1, Amount: 2000}, reconcile.FindPaidButCancelled: {Count: 1, Amount: 2000}}
			if len(rep.Kinds) != len(want) || len(rep.Findings) != 4 {
				t.Fatalf("findings %+v; want %v", rep.Findings, want)
			}
			for k, w := range want {
				if rep.Kinds[k] != w {
					t.Errorf("%s: %+v; want %+v", k, rep.Kinds[k], w)
				}
			}
			// the ledger: clean, two (4000), missing, wrong (2001), twice twice, late; the refund of two
			if rep.Ledger.Payments != 7 || rep.Ledger.PaymentsMinor != 2000+4000+2000+2001+4000+2000 || rep.Ledger.Refunds != 1 ||
				rep.Surge.Payments != 6 || rep.PaymentCountDiff != 1 || rep.PaymentAmountDiff != 2000 || rep.RefundCountDiff != 0 || rep.RefundsDue != 6001 {
				t.Errorf("totals: %s", rep.Summary())
			}

			// Repairs: each once.
			_, err = tm.op.Repair(ctx, day, "missing_callback:nope")
			wantCode(t, "a finding that is not there", err, surge.ENOTFOUND)
			_, err = s.Repair(ctx, day, rep.Findings[0].ID)
			wantCode(t, "a shopper repairing", err, surge.EFORBIDDEN)
			for _, f := range rep.Findings {
				r := ok[*surge.Repair](t, "Repair("+f.ID+")")(tm.op.Repair(ctx, day, f.ID))
				if r.Action != f.Action || r.Result == "" {
					t.Errorf("repair of %s: %+v", f.ID, r)
				}
				_, err := tm.op.Repair(ctx, day, f.ID)
				wantCode(t, "a repair made again", err, surge.ECONFLICT)
			}
			waitState(t, s, missing.ID, surge.OrderPaid) // its callback re-driven from the ledger
			again := ok[*reconcile.Report](t, "Reconciliation")(tm.op.Reconciliation(ctx, day))
			for _, f := range again.Findings {
				if f.Repaired == nil {
					t.Errorf("finding %s shows no repair", f.ID)
				}
			}
			page := get(t, cl.BaseURL()+"/v1/reconcile/days/"+day+"/page", tm.opToken)
			if !strings.Contains(page, "Reconciliation of "+day) || !strings.Contains(page, "duplicate_charge") {
				t.Errorf("the report's page: %.300s", page)
			}
			// Once repaired, the day's findings are resolved. The repairs' refunds were paid back
			// after the provider closed the day early, so they are in the next day's file: the
			// day's run names them as refunds the provider's ledger of the day does not have.
			var rerun *reconcile.Report
			waitFor(t, "the repairs' refunds", func() bool {
				rerun = ok[*reconcile.Report](t, "ReconcileDay again")(tm.op.ReconcileDay(ctx, day))
				return rerun.Kinds[reconcile.FindRefundNotAtProv].Count == 3
			})
			if len(rerun.Kinds) != 1 || rerun.Kinds[reconcile.FindRefundNotAtProv].Amount != 6001 {
				t.Errorf("after the repairs: %s%+v", rerun.Summary(), rerun.Findings)
			}
		})
	}
}

// closeLedger has the simulated provider close a day's ledger early, as an operator would.
func closeLedger(t *testing.T, base, day string) {
	t.Helper()
	path := "/paysim/v1/ledger/" + day + "/close"
	req, _ := http.NewRequest("POST", base+path, nil)
	req.Header.Set(payment.SignatureHeader, payment.LedgerRequestSignature([]byte(testPaymentKey), "POST", path, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("closing the ledger of %s: %d %s", day, resp.StatusCode, b)
	}
}

// get reads a page with a bearer token.
func get(t *testing.T, url, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// surge reconcile on a ledger file: the report's files and its summary; a truncated ledger is
// refused with its reason and exit 1.
func TestReconcileCommand(t *testing.T) {
	dir := t.TempDir()
	day := "2026-11-30"
	var ledger bytes.Buffer
	lw, err := payment.NewLedgerWriter(&ledger, day)
	if err != nil {
		t.Fatal(err)
	}
	if err := lw.Append(payment.LedgerEntry{ProviderID: "p1", Type: payment.LedgerTypePayment, TxnID: "T1", OrderID: 1,
		Amount: surge.Money{Amount: 500, Currency: "CNY"}, At: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, day+".csv")
	if err := os.WriteFile(path, ledger.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string { return map[string]string{"SURGE_DATA_DIR": dir}[k] }
	var out, errOut strings.Builder
	if code := run(context.Background(), []string{"reconcile", "--date", day, "--ledger", path, "--out", dir}, env, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "missing_callback") || !strings.Contains(out.String(), "refunds due: 0") {
		t.Fatalf("surge reconcile = %d, %q, %q", code, out.String(), errOut.String())
	}
	for _, ext := range []string{".json", ".html"} {
		if b, err := os.ReadFile(filepath.Join(dir, "reconcile-"+day+ext)); err != nil || !bytes.Contains(b, []byte("missing_callback")) {
			t.Errorf("the report's %s file: %v, %.200s", ext, err, b)
		}
	}
	if err := os.WriteFile(path, ledger.Bytes()[:ledger.Len()-10], 0o644); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"reconcile", "--date", day, "--ledger", path, "--out", dir}, env, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "truncated") {
		t.Fatalf("surge reconcile of a truncated ledger = %d, %q; want 1 and why", code, errOut.String())
	}
}
