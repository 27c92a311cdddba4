package main

import (
	"context"
	"testing"
	"time"

	"github.com/surgecommerce/surge/audit"
	"github.com/surgecommerce/surge/loadgen"
)

// A short crowd against a test server passes every invariant, on both shapes: shoppers and
// bots, Zipf popularity, payments and abandoned orders that expire before the check.
func TestLoadgenPassesTheInvariants(t *testing.T) {
	for _, sh := range shapes() {
		t.Run(sh.name, func(t *testing.T) {
			c := saleConfig(t)
			c.Proxies, c.IPRate = "127.0.0.1/32", 50 // the crowd's own addresses count, so bots get throttled
			sh.setup(t, &c)
			_, cl := start(t, c)
			tm := newTeam(t, cl)
			api := loadgen.NewAPI([]string{cl.BaseURL()}, 128)
			api.Admin, api.Items, api.Units, api.Limit = tm.admin, 3, 40, 1
			api.PayTimeout, api.Duration, api.OpensIn = 2*time.Second, time.Hour, 1500*time.Millisecond
			cfg := loadgen.Config{Shoppers: 300, Duration: 2 * time.Second, Rate: 150, Spike: 4, SpikeFor: 500 * time.Millisecond,
				Zipf: 1.2, BotShare: 0.2, Bots: 3, BotIPs: 1, PayShare: 0.5, PayDelay: 100 * time.Millisecond,
				MaxInFlight: 64, Seed: 7, Settle: 20 * time.Second, PayTimeout: api.PayTimeout + time.Second}
			res, err := loadgen.Run(context.Background(), api, cfg, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Passed {
				t.Fatalf("invariants failed: %+v", res.Invariants)
			}
			got := map[string]string{}
			for _, r := range res.Invariants {
				got[r.Invariant] = r.Status
			}
			for _, name := range []string{audit.StockBalance, audit.PerUserLimit, audit.OneOrderEach, audit.ReleasedOnce, loadgen.AcknowledgedOrders} {
				if got[name] != audit.Pass {
					t.Errorf("%s = %s; want PASS", name, got[name])
				}
			}
			o := res.Outcomes
			if res.Orders == 0 || res.Orders > 3*40 || o[loadgen.OutSuccess] < res.Orders || o[loadgen.OutError] > 0 ||
				res.Paid == 0 || res.Abandoned == 0 || res.PayErrors > 0 || res.Attempts == 0 || len(res.Series) == 0 {
				t.Fatalf("result = %+v", res)
			}
		})
	}
}
