// Package redis is the shared hot store of the scale-out shape. Keys start with a configured
// prefix and carry a {hash tag} so that everything one operation touches lands in one Redis Cluster slot.
package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts: a slow Redis makes calls fail fast rather than pile up.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 500 * time.Millisecond
	poolSize    = 64
)

// Client is a connection pool to Redis.
type Client struct {
	rdb    *redis.Client
	prefix string
}

// Open connects to the Redis at url (redis://host:port/db) and checks that it answers. Every
// key starts with prefix, so several deployments (or test runs) can share one Redis.
func Open(ctx context.Context, url, prefix string) (*Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: bad url: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	opts.PoolSize = poolSize
	c := &Client{rdb: redis.NewClient(opts), prefix: prefix}
	if err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Ping checks that Redis answers.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Purge deletes every key under this client's prefix (for benchmarks and tests that used a
// prefix of their own).
func (c *Client) Purge(ctx context.Context) error {
	iter := c.rdb.Scan(ctx, 0, c.prefix+":*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := c.rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}

// Close closes the pool.
func (c *Client) Close() error { return c.rdb.Close() }

// Counter is a surge.Counter shared by every node that uses the same Redis.
type Counter struct{ c *Client }

// Counter returns the shared counter.
func (c *Client) Counter() *Counter { return &Counter{c: c} }

func (k *Counter) key(key string) string { return k.c.prefix + ":cnt:{" + key + "}" }

// Add implements surge.Counter. INCRBY and PEXPIRE NX go in one transaction, so a window always
// gets its expiry exactly once, at its first event.
func (k *Counter) Add(ctx context.Context, key string, delta int64, window time.Duration) (int64, error) {
	var incr *redis.IntCmd
	_, err := k.c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		incr = p.IncrBy(ctx, k.key(key), delta)
		p.Do(ctx, "PEXPIRE", k.key(key), window.Milliseconds(), "NX")
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("redis incr: %w", err)
	}
	return incr.Val(), nil
}

// Count implements surge.Counter.
func (k *Counter) Count(ctx context.Context, key string) (int64, error) {
	n, err := k.c.rdb.Get(ctx, k.key(key)).Int64()
	if err == redis.Nil {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redis get: %w", err)
	}
	return n, nil
}

// Reset implements surge.Counter.
func (k *Counter) Reset(ctx context.Context, key string) error {
	if err := k.c.rdb.Del(ctx, k.key(key)).Err(); err != nil {
		return fmt.Errorf("redis del: %w", err)
	}
	return nil
}
