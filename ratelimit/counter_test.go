package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/surgecommerce/surge/ratelimit"
	"github.com/surgecommerce/surge/ratelimit/countertest"
)

func TestCounterConformance(t *testing.T) {
	countertest.Run(t, ratelimit.NewCounter(nil))
}

func TestCounterStaysBounded(t *testing.T) {
	c := ratelimit.NewCounter(nil)
	ctx := context.Background()
	for i := range ratelimit.MaxCounterKeys + 10 {
		c.Add(ctx, fmt.Sprint(i), 1, time.Hour)
	}
	if c.Len() > ratelimit.MaxCounterKeys {
		t.Fatalf("Len() = %d; want at most %d", c.Len(), ratelimit.MaxCounterKeys)
	}
	// The newest key must be counted even though the counter was full.
	if n, _ := c.Count(ctx, fmt.Sprint(ratelimit.MaxCounterKeys+9)); n != 1 {
		t.Fatalf("Count(newest) = %d; want 1", n)
	}
}
