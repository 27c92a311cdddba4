package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/surgecommerce/surge/ratelimit/countertest"
	"github.com/surgecommerce/surge/redis"
)

func open(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("SURGE_TEST_REDIS_URL")
	if url == "" {
		t.Skip("SURGE_TEST_REDIS_URL is not set")
	}
	c, err := redis.Open(context.Background(), url, fmt.Sprintf("surgetest%d", rand.Uint64()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Purge(context.Background())
		c.Close()
	})
	return c
}

func TestCounterConformance(t *testing.T) {
	countertest.Run(t, open(t).Counter())
}

func TestUnreachableFailsFast(t *testing.T) {
	if _, err := redis.Open(context.Background(), "redis://127.0.0.1:1/0", "t"); err == nil {
		t.Fatal("Open(closed port) = nil error; want a connection error")
	}
	if _, err := redis.Open(context.Background(), "http://nope", "t"); err == nil {
		t.Fatal("Open(bad url) = nil error")
	}
}
