package main

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/surgecommerce/surge/redis"
)

// openRedisBench opens the Redis stock engine under a fresh key prefix. Redis has no fsync
// count to report; its durability is its own append-only file's.
func openRedisBench(c stockBenchConfig) (batcher, func() int64, func() error, func(), error) {
	if c.redisURL == "" {
		return nil, nil, nil, nil, fmt.Errorf("the redis backend needs --redis-url or SURGE_REDIS_URL")
	}
	ctx := context.Background()
	rc, err := redis.Open(ctx, c.redisURL, fmt.Sprintf("surgebench%d", rand.Uint32()))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	s := rc.Stock(redis.StockOptions{Buckets: c.buckets})
	if err := s.LoadScripts(ctx); err != nil {
		rc.Close()
		return nil, nil, nil, nil, err
	}
	return s, func() int64 { return 0 }, func() error { return nil }, func() {
		rc.Purge(context.Background())
		rc.Close()
	}, nil
}
