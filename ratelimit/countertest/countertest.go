// Package countertest is the conformance suite for surge.Counter backends.
package countertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
)

// Run checks the surge.Counter contract. Windows are real time, so the suite waits briefly.
func Run(t *testing.T, c surge.Counter) {
	ctx := context.Background()
	key := func() string { return fmt.Sprintf("test:%d", rand.Uint64()) }

	t.Run("CountsWithinWindow", func(t *testing.T) {
		k := key()
		for i := int64(1); i <= 3; i++ {
			if n, err := c.Add(ctx, k, 1, time.Minute); err != nil || n != i {
				t.Fatalf("Add #%d = %d, %v; want %d", i, n, err, i)
			}
		}
		if n, err := c.Count(ctx, k); err != nil || n != 3 {
			t.Fatalf("Count = %d, %v; want 3", n, err)
		}
		if n, err := c.Add(ctx, k, -2, time.Minute); err != nil || n != 1 {
			t.Fatalf("Add(-2) = %d, %v; want 1", n, err)
		}
		if err := c.Reset(ctx, k); err != nil {
			t.Fatal(err)
		}
		if n, _ := c.Count(ctx, k); n != 0 {
			t.Fatalf("Count after Reset = %d; want 0", n)
		}
	})

	t.Run("WindowExpires", func(t *testing.T) {
		k := key()
		c.Add(ctx, k, 1, 50*time.Millisecond)
		c.Add(ctx, k, 1, 50*time.Millisecond)
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := c.Count(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Count = %d long after the window; want 0", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n, _ := c.Add(ctx, k, 1, time.Minute); n != 1 {
			t.Fatalf("Add in a new window = %d; want 1", n)
		}
	})

	t.Run("ConcurrentIncrementsAllCount", func(t *testing.T) {
		k := key()
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					if _, err := c.Add(ctx, k, 1, time.Minute); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if n, _ := c.Count(ctx, k); n != 200 {
			t.Fatalf("Count after 200 concurrent Add = %d; want 200", n)
		}
	})
}
