package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A small purchase bench sells exactly its units and answers everyone else "sold out", with
// either load generator. wrk runs where it is installed; CI installs it and sets
// SURGE_TEST_REQUIRE_WRK so that its absence fails the run rather than skipping.
func TestBenchPurchase(t *testing.T) {
	for _, driver := range []string{"go", "wrk"} {
		t.Run(driver, func(t *testing.T) {
			if _, err := exec.LookPath(driver); driver == "wrk" && err != nil {
				if os.Getenv("SURGE_TEST_REQUIRE_WRK") != "" {
					t.Fatal("wrk is required (SURGE_TEST_REQUIRE_WRK) but not on PATH")
				}
				t.Skip("wrk is not installed")
			}
			var out, errOut bytes.Buffer
			profile := filepath.Join(t.TempDir(), "cpu")
			args := []string{"bench", "purchase", "--shoppers", "600", "--units", "150", "--workers", "8", "--driver", driver, "--json",
				"--cpuprofile", profile}
			if code := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 0 {
				t.Fatalf("bench purchase = %d: %s", code, errOut.String())
			}
			var res PurchaseBenchResult
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatalf("output %q: %v", out.String(), err)
			}
			if res.Successes != 150 || res.SoldOut != 450 || res.Errors != 0 || res.BeforeSelloutPerS <= 0 ||
				res.AfterSelloutPerS <= 0 || res.BaselinePerS <= 0 || res.Driver != driver {
				t.Fatalf("bench purchase = %+v; want 150 orders, 450 sold out, no errors, rates", res)
			}
			profiles := []string{profile} // the go driver's run is one
			if driver == "wrk" {
				profiles = []string{profile + "-purchase", profile + "-sold-out", profile + "-trivial"}
			}
			for _, p := range profiles {
				if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
					t.Errorf("CPU profile %s: %v", p, err)
				}
			}
		})
	}
}
