package redis

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/surgecommerce/surge"
)

// Plain is flash-sale stock the way it is commonly built: one Lua script per purchase that
// checks the buyer's count and decrements the item's stock, with nothing held back (a
// decrement is a sale) and no batching. surge loadgen --reference measures Surge against it.
type Plain struct{ c *Client }

// Plain returns the common per-request stock store.
func (c *Client) Plain() *Plain { return &Plain{c: c} }

func (p *Plain) keys(item int64) (stock, buyers string) {
	tag := p.tag(item)
	return tag + ":stock", tag + ":buyers"
}

func (p *Plain) tag(item int64) string { return fmt.Sprintf("%s:plain:{%d}", p.c.prefix, item) }

// Load sets an item's stock and forgets its buyers and payments.
func (p *Plain) Load(ctx context.Context, item, units int64) error {
	stock, buyers := p.keys(item)
	_, err := p.c.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		tx.Set(ctx, stock, units, 0)
		tx.Del(ctx, buyers, p.tag(item)+":paid", p.tag(item)+":paid-orders")
		return nil
	})
	return unavailable(err)
}

// Confirm records the qty units of an item's order as paid for, once per order: a callback
// sent again after its confirmation was lost confirms again, and counts once.
func (p *Plain) Confirm(ctx context.Context, item, orderID, qty int64) error {
	return unavailable(plainConfirm.Run(ctx, p.c.rdb, []string{p.tag(item) + ":paid-orders", p.tag(item) + ":paid"}, orderID, qty).Err())
}

// plainConfirm: KEYS orders confirmed, units paid; ARGV order, qty.
var plainConfirm = redis.NewScript(`
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then redis.call('INCRBY', KEYS[2], ARGV[2]) end
return 1`)

// Paid is how many units of an item were confirmed paid.
func (p *Plain) Paid(ctx context.Context, item int64) (int64, error) {
	n, err := p.c.rdb.Get(ctx, p.tag(item)+":paid").Int64()
	if err == redis.Nil {
		return 0, nil
	}
	return n, unavailable(err)
}

// plainBuy: KEYS stock, buyers; ARGV user, qty, limit. Returns 1 bought, 0 sold out, -1 limit.
var plainBuy = redis.NewScript(`
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local had = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if had + qty > limit then return -1 end
if left < qty then return 0 end
redis.call('DECRBY', KEYS[1], qty)
redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
return 1`)

// plainUndo gives a purchase back (its order could not be written).
var plainUndo = redis.NewScript(`
redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
return 1`)

// Buy decrements the stock for user if it has qty left and the user stays within limit.
func (p *Plain) Buy(ctx context.Context, item, user, qty, limit int64) (surge.Outcome, error) {
	stock, buyers := p.keys(item)
	n, err := plainBuy.Run(ctx, p.c.rdb, []string{stock, buyers}, strconv.FormatInt(user, 10), qty, limit).Int64()
	switch {
	case err != nil:
		return 0, unavailable(err)
	case n == 1:
		return surge.Reserved, nil
	case n == -1:
		return surge.LimitReached, nil
	}
	return surge.SoldOut, nil
}

// Undo gives back what Buy took.
func (p *Plain) Undo(ctx context.Context, item, user, qty int64) error {
	stock, buyers := p.keys(item)
	return unavailable(plainUndo.Run(ctx, p.c.rdb, []string{stock, buyers}, strconv.FormatInt(user, 10), qty).Err())
}

// Left is an item's stock.
func (p *Plain) Left(ctx context.Context, item int64) (int64, error) {
	stock, _ := p.keys(item)
	n, err := p.c.rdb.Get(ctx, stock).Int64()
	if err == redis.Nil {
		return 0, nil
	}
	return n, unavailable(err)
}
