// Package redis is the shared hot store of the scale-out shape. Keys start with a configured
// prefix and carry a {hash tag} so that everything one operation touches lands in one Redis Cluster slot.
package redis

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts: a slow Redis makes calls fail fast rather than pile up.
const (
	dialTimeout = 2 * time.Second
	ioTimeout   = 500 * time.Millisecond
	poolSize    = 64
)

// Client is a connection pool to Redis: one server, or a Redis Cluster.
type Client struct {
	rdb    redis.UniversalClient
	prefix string
}

// Open connects to the Redis at url and checks that it answers. redis://host:port/db is one
// server; redis://host1:port1,host2:port2,… (some of a cluster's nodes; the rest are found) is a
// Redis Cluster, whose client sends each command to the master of its key's slot and follows
// the cluster as slots move and replicas take over. The code is the same on both: every key
// carries a {hash tag}, so what one script or transaction touches is in one slot. Every key
// starts with prefix, so several deployments (or test runs) can share one Redis.
func Open(ctx context.Context, url, prefix string) (*Client, error) {
	rdb, err := connect(url)
	if err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, prefix: prefix}
	if err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func connect(url string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(url, "://")
	hosts, path, _ := strings.Cut(rest, "/")
	if !ok || !strings.Contains(hosts, ",") {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis: bad url: %w", err)
		}
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
		opts.PoolSize = poolSize
		return redis.NewClient(opts), nil
	}
	if path != "" && path != "0" {
		return nil, fmt.Errorf("redis: bad url: a Redis Cluster has database 0 alone, not %q", path)
	}
	addrs := strings.Split(hosts, ",")
	first, err := redis.ParseURL(scheme + "://" + addrs[0]) // credentials and TLS, as for one server
	if err != nil {
		return nil, fmt.Errorf("redis: bad url: %w", err)
	}
	for _, a := range addrs[1:] {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("redis: bad url: cluster node %q is not host:port", a)
		}
	}
	addrs[0] = first.Addr
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Username: first.Username, Password: first.Password,
		TLSConfig: first.TLSConfig, DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, PoolSize: poolSize}), nil
}

// Cluster reports whether the client talks to a Redis Cluster.
func (c *Client) Cluster() bool {
	_, ok := c.rdb.(*redis.ClusterClient)
	return ok
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
	if cc, ok := c.rdb.(*redis.ClusterClient); ok { // each master scans its own slots
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return purge(ctx, node, c.prefix) })
	}
	return purge(ctx, c.rdb, c.prefix)
}

func purge(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	for iter.Next(ctx) {
		// one key at a time in a cluster: the keys of one batch may be in several slots
		if batch = append(batch, iter.Val()); len(batch) == cap(batch) {
			if err := unlink(ctx, rdb, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return unlink(ctx, rdb, batch)
}

func unlink(ctx context.Context, rdb redis.UniversalClient, keys []string) error {
	pipe := rdb.Pipeline()
	for _, k := range keys {
		pipe.Unlink(ctx, k)
	}
	_, err := pipe.Exec(ctx)
	return err
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
