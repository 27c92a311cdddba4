package http

import (
	"net/url"
	"testing"

	"github.com/surgecommerce/surge"
)

// FuzzOrderViewQueries feeds the order lists' query decoders outside input: they never panic,
// refuse with EINVALID alone, and what they accept validates.
func FuzzOrderViewQueries(f *testing.F) {
	for _, s := range []string{"state=paid,cancelled&from=2026-12-07T10:00:00Z&to=2026-12-08T00:00:00Z",
		"state=paid&state=refunded", "q=138123&from=2026-12-07T10:00:00.5+08:00", "q=%25%5F_", "from=yesterday", "state=,,",
		"cursor=MTc2NTEwMDAwMDAwMC4xMjM", "cursor=!!", "q=%ff%fe%fd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		check := func(what string, err error, valid func() error) {
			if err != nil {
				if surge.ErrorCode(err) != surge.EINVALID {
					t.Fatalf("%s(%q) = %v; want EINVALID or nil", what, raw, err)
				}
				return
			}
			if err := valid(); err != nil {
				t.Fatalf("%s(%q) accepted what does not validate: %v", what, raw, err)
			}
		}
		flt, err := orderFilter(q)
		check("orderFilter", err, flt.Validate)
		s, err := orderSearch(q)
		check("orderSearch", err, s.Validate)
		c, err := surge.ParseOrderCursor(q.Get("cursor"))
		check("ParseOrderCursor", err, func() error {
			if c != nil {
				if back, err := surge.ParseOrderCursor(c.Encode()); err != nil || *back != *c {
					return err
				}
			}
			return nil
		})
	})
}
