package redis

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/surgecommerce/surge"
)

// Bounds of the Redis stock engine.
const (
	// SoldOutFlagTTL is how long a node answers "sold out" from its own flag before asking Redis
	// again: stock released on another node shows up here within this time.
	SoldOutFlagTTL = 200 * time.Millisecond
	// maxRememberedReservations bounds the request ids a node remembers reserving, so that a
	// retry to the same node gets its first answer even after the flag went up.
	maxRememberedReservations = 1 << 20
)

// Ids travel in and out of the scripts as strings: Lua numbers are doubles, exact only to 2^53.
//
// Each item's keys share the hash tag {stk:ID}, so one Lua script touches them atomically on a
// single Redis or a Redis Cluster: KEYS[1] the counters (hash), KEYS[2] the holdings (hash:
// user → units), KEYS[3] the reservations (hash: request id → "user:qty:state").
var (
	loadScript = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 'allotted', 'reserved', 'sold', 'limit')
local allotted, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if not c[1] then
  redis.call('HSET', KEYS[1], 'allotted', allotted, 'available', allotted, 'reserved', 0, 'sold', 0, 'limit', limit)
  return 'ok'
end
local taken = tonumber(c[2]) + tonumber(c[3])
if allotted < taken then return 'below' end
if limit < tonumber(c[4]) and taken > 0 then return 'limit' end
redis.call('HSET', KEYS[1], 'allotted', allotted, 'available', allotted - taken, 'limit', limit)
return 'ok'`)

	reserveScript = redis.NewScript(`
local prior = redis.call('HGET', KEYS[3], ARGV[3])
if prior then
  local user, order = string.match(prior, '^(%d+):%d+:%a:(%d+)$')
  if user ~= ARGV[1] then return {'other', 0} end
  return {'dup', tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'), order}
end
local c = redis.call('HMGET', KEYS[1], 'available', 'limit')
if not c[1] then return {'nf', 0} end
local qty = tonumber(ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(c[1]) < qty then return {'soldout', held, tonumber(c[1])} end
if held + qty > tonumber(c[2]) then return {'limit', held} end
redis.call('HINCRBY', KEYS[1], 'available', -qty)
redis.call('HINCRBY', KEYS[1], 'reserved', qty)
redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1] .. ':' .. ARGV[2] .. ':r:' .. ARGV[4])
return {'ok', held + qty, ARGV[4]}`)

	settleScript = redis.NewScript(`
local prior = redis.call('HGET', KEYS[3], ARGV[1])
if not prior then return 'nf' end
local user, qty, state, order = string.match(prior, '^(%d+):(%d+):(%a):(%d+)$')
local want = ARGV[2]
if state == want then return 'ok' end
if state ~= 'r' then return state end
qty = tonumber(qty)
redis.call('HINCRBY', KEYS[1], 'reserved', -qty)
if want == 's' then
  redis.call('HINCRBY', KEYS[1], 'sold', qty)
else
  redis.call('HINCRBY', KEYS[1], 'available', qty)
  if redis.call('HINCRBY', KEYS[2], user, -qty) <= 0 then redis.call('HDEL', KEYS[2], user) end
end
redis.call('HSET', KEYS[3], ARGV[1], user .. ':' .. qty .. ':' .. want .. ':' .. order)
return 'ok'`)
)

// Stock is the surge.StockEngine on Redis: every decision is one Lua script, atomic on the
// server. Durability is Redis's: run it with appendonly yes and appendfsync always (or
// everysec, accepting up to a second of loss on a crash of Redis itself).
type Stock struct {
	c    *Client
	opts StockOptions

	flags   sync.Map // item id → *flag: until when the item is known sold out
	buckets sync.Map // item id → layout, once read from Redis
	refills sync.Map // [item, bucket] → *sync.Mutex: one refill per bucket at a time on a node

	mu       sync.Mutex
	reserved map[string]int // "item:request" this node reserved → the bucket it is in (0: not split)
}

// StockOptions configure the Redis stock engine.
type StockOptions struct {
	// Buckets splits each item allotted at least BucketMinAllotment units into this many stock
	// buckets, each in its own hash slot, so that on Redis Cluster one hot item spreads over
	// several nodes. 0 or 1 keeps every item in one slot.
	Buckets            int
	BucketMinAllotment int64
}

// MaxBuckets bounds the buckets of one item.
const MaxBuckets = 64

// Stock returns the stock engine on this Redis.
func (c *Client) Stock(opts StockOptions) *Stock {
	opts.Buckets = min(max(opts.Buckets, 0), MaxBuckets)
	return &Stock{c: c, opts: opts, reserved: make(map[string]int)}
}

func (s *Stock) keys(item int64) []string {
	tag := s.c.prefix + ":stk:{" + strconv.FormatInt(item, 10) + "}"
	return []string{tag, tag + ":held", tag + ":res"}
}

// unavailable turns a Redis failure into a domain error: the call may or may not have been
// applied, and a retry with the same request id settles which.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	var de *surge.Error
	if errors.As(err, &de) {
		return err
	}
	return surge.Errorf(surge.EUNAVAILABLE, "redis: %v", err)
}

// Load implements surge.StockEngine.
func (s *Stock) Load(ctx context.Context, it surge.StockItem) error {
	if err := it.Validate(); err != nil {
		return err
	}
	defer s.lowerFlag(it.ID)
	l, err := s.layoutOf(ctx, it.ID)
	switch {
	case surge.ErrorCode(err) == surge.ENOTFOUND && s.opts.Buckets > 1 && it.Allotted >= s.opts.BucketMinAllotment:
		return s.loadBucketed(ctx, it, layout{n: s.opts.Buckets, chunk: max(1, it.Allotted/int64(4*s.opts.Buckets))})
	case err == nil && l.n > 0:
		return s.loadBucketed(ctx, it, l)
	case err != nil && surge.ErrorCode(err) != surge.ENOTFOUND:
		return err
	}
	res, err := loadScript.Run(ctx, s.c.rdb, s.keys(it.ID), it.Allotted, it.PerUserLimit).Text()
	return loadAnswer(it, res, err)
}

// loadAnswer turns a load script's answer into the port's errors.
func loadAnswer(it surge.StockItem, res string, err error) error {
	switch {
	case err != nil:
		return unavailable(err)
	case res == "below":
		return surge.Errorf(surge.ECONFLICT, "allotment %d is below the units already reserved or sold", it.Allotted)
	case res == "limit":
		return surge.Errorf(surge.ECONFLICT, "the per-user limit cannot drop once units are reserved")
	}
	return nil
}

// Reserve implements surge.StockEngine.
func (s *Stock) Reserve(ctx context.Context, r surge.ReserveRequest) (surge.ReserveResult, error) {
	began := time.Now()
	if err := r.Validate(); err != nil {
		return surge.ReserveResult{}, err
	}
	if s.flagged(r) {
		return surge.ReserveResult{Outcome: surge.SoldOut}, nil
	}
	if s.opts.Buckets > 1 {
		l, err := s.layoutOf(ctx, r.ItemID)
		if err != nil {
			return surge.ReserveResult{}, err
		}
		if l.n > 0 {
			return s.reserveBucketed(ctx, r, l)
		}
	}
	vals, err := reserveScript.Run(ctx, s.c.rdb, s.keys(r.ItemID), r.UserID, r.Quantity, r.RequestID, r.OrderID).Slice()
	if err != nil {
		return surge.ReserveResult{}, unavailable(err)
	}
	return s.reserveResult(r, vals, began, 0)
}

// flagged reports whether the item is known sold out and the request is not one this node
// reserved (a retry of which must get its first answer).
func (s *Stock) flagged(r surge.ReserveRequest) bool {
	v, ok := s.flags.Load(r.ItemID)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Now().After(v.(*flag).until) {
		return false
	}
	_, mine := s.reserved[reservedKey(r)]
	return !mine
}

// flag says an item is sold out until a time. A release on this node puts the item's stock back
// and drops the flag; a sold-out answer computed before that release (but arriving after it)
// must not raise the flag again, so each flag notes when the answer's request started.
type flag struct {
	until, releasedAt time.Time
}

// raiseFlag marks an item sold out, unless a release on this node came after the request began.
func (s *Stock) raiseFlag(item int64, began time.Time) {
	v, _ := s.flags.LoadOrStore(item, &flag{})
	f := v.(*flag)
	s.mu.Lock()
	defer s.mu.Unlock()
	if began.After(f.releasedAt) {
		f.until = time.Now().Add(SoldOutFlagTTL)
	}
}

// lowerFlag marks stock back for an item.
func (s *Stock) lowerFlag(item int64) {
	v, _ := s.flags.LoadOrStore(item, &flag{})
	f := v.(*flag)
	s.mu.Lock()
	defer s.mu.Unlock()
	f.until, f.releasedAt = time.Time{}, time.Now()
}

func reservedKey(r surge.ReserveRequest) string {
	return strconv.FormatInt(r.ItemID, 10) + ":" + r.RequestID
}

// placedIn is the bucket this node noted for a reservation, 0 when it knows none.
func (s *Stock) placedIn(itemID int64, requestID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserved[reservedKey(surge.ReserveRequest{ItemID: itemID, RequestID: requestID})]
}

// reserveResult reads a reserve script's answer. A reservation is remembered with its bucket
// (0: the item is not split), so that settling it asks that bucket alone.
func (s *Stock) reserveResult(r surge.ReserveRequest, vals []any, began time.Time, bucket int) (surge.ReserveResult, error) {
	if len(vals) < 2 {
		return surge.ReserveResult{}, surge.Errorf(surge.EINTERNAL, "redis: unexpected reserve answer %v", vals)
	}
	status, _ := vals[0].(string)
	held, _ := vals[1].(int64)
	var order int64
	if len(vals) > 2 { // a string: Lua numbers are doubles and would round a 64-bit id
		if str, ok := vals[2].(string); ok {
			order, _ = strconv.ParseInt(str, 10, 64)
		}
	}
	switch status {
	case "ok", "dup":
		s.mu.Lock()
		if len(s.reserved) >= maxRememberedReservations {
			clear(s.reserved)
		}
		s.reserved[reservedKey(r)] = bucket
		s.mu.Unlock()
		return surge.ReserveResult{Outcome: surge.Reserved, Held: held, OrderID: order, Replayed: status == "dup"}, nil
	case "soldout":
		if len(vals) > 2 && vals[2] == int64(0) {
			s.raiseFlag(r.ItemID, began)
		}
		return surge.ReserveResult{Outcome: surge.SoldOut, Held: held}, nil
	case "limit":
		return surge.ReserveResult{Outcome: surge.LimitReached, Held: held}, nil
	case "nf":
		return surge.ReserveResult{}, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", r.ItemID)
	case "other":
		return surge.ReserveResult{}, surge.Errorf(surge.ECONFLICT, "request id already used by another user")
	}
	return surge.ReserveResult{}, surge.Errorf(surge.EINTERNAL, "redis: unexpected reserve answer %q", status)
}

// ReserveBatch decides many reservations in one pipelined round trip; each is still its own
// atomic script. The returned error is a failure of the whole round trip.
func (s *Stock) ReserveBatch(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) error {
	began := time.Now()
	if s.opts.Buckets > 1 { // split items take several steps each
		for i, r := range reqs {
			res, err := s.Reserve(ctx, r)
			out[i] = surge.BatchResult{ReserveResult: res, Err: err}
		}
		return nil
	}
	cmds := make([]*redis.Cmd, len(reqs))
	_, err := s.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range reqs {
			if err := r.Validate(); err != nil {
				out[i] = surge.BatchResult{Err: err}
				continue
			}
			cmds[i] = reserveScript.EvalSha(ctx, p, s.keys(r.ItemID), r.UserID, r.Quantity, r.RequestID, r.OrderID)
		}
		return nil
	})
	if err != nil && !isNoScript(err) {
		return unavailable(err)
	}
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		vals, err := cmd.Slice()
		if isNoScript(err) { // the script cache was flushed: run this one the slow way
			res, err := s.Reserve(ctx, reqs[i])
			out[i] = surge.BatchResult{ReserveResult: res, Err: err}
			continue
		}
		if err != nil {
			out[i] = surge.BatchResult{Err: unavailable(err)}
			continue
		}
		res, err := s.reserveResult(reqs[i], vals, began, 0)
		out[i] = surge.BatchResult{ReserveResult: res, Err: err}
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && len(err.Error()) >= 8 && err.Error()[:8] == "NOSCRIPT"
}

func (s *Stock) settle(ctx context.Context, itemID int64, requestID, state string) error {
	if err := surge.ValidateRequestID(requestID); err != nil {
		return err
	}
	l, err := s.layoutOf(ctx, itemID)
	if err != nil {
		return err
	}
	var res string
	if l.n > 0 {
		res, err = s.settleBucketed(ctx, itemID, requestID, state, l)
	} else {
		res, err = settleScript.Run(ctx, s.c.rdb, s.keys(itemID), requestID, state).Text()
	}
	if err != nil {
		return unavailable(err)
	}
	switch res {
	case "ok":
		if state == "x" {
			s.lowerFlag(itemID) // stock came back
		}
		return nil
	case "nf":
		return surge.Errorf(surge.ENOTFOUND, "no such reservation")
	case "s":
		return surge.Errorf(surge.ECONFLICT, "the reservation was confirmed; it cannot be released")
	case "x":
		return surge.Errorf(surge.ECONFLICT, "the reservation was released; it cannot be confirmed")
	}
	return surge.Errorf(surge.EINTERNAL, "redis: unexpected settle answer %q", res)
}

// Confirm implements surge.StockEngine.
func (s *Stock) Confirm(ctx context.Context, itemID int64, requestID string) error {
	return s.settle(ctx, itemID, requestID, "s")
}

// Release implements surge.StockEngine.
func (s *Stock) Release(ctx context.Context, itemID int64, requestID string) error {
	return s.settle(ctx, itemID, requestID, "x")
}

// Levels implements surge.StockEngine.
func (s *Stock) Levels(ctx context.Context, itemID int64) (surge.StockLevels, error) {
	l, err := s.layoutOf(ctx, itemID)
	if err != nil {
		return surge.StockLevels{}, err
	}
	if l.n > 0 {
		lv, _, err := s.levelsBucketed(ctx, itemID, l)
		return lv, err
	}
	vals, err := s.c.rdb.HMGet(ctx, s.keys(itemID)[0], "allotted", "available", "reserved", "sold").Result()
	if err != nil {
		return surge.StockLevels{}, unavailable(err)
	}
	if vals[0] == nil {
		return surge.StockLevels{}, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", itemID)
	}
	n := make([]int64, 4)
	for i, v := range vals {
		str, _ := v.(string)
		if n[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			return surge.StockLevels{}, surge.Errorf(surge.EINTERNAL, "redis: bad counter %q", str)
		}
	}
	return surge.StockLevels{Allotted: n[0], Available: n[1], Reserved: n[2], Sold: n[3]}, nil
}

// Held implements surge.StockEngine.
func (s *Stock) Held(ctx context.Context, itemID, userID int64) (int64, error) {
	l, err := s.layoutOf(ctx, itemID)
	if err != nil {
		return 0, err
	}
	keys := s.keys(itemID)
	if l.n > 0 {
		counters, held, res, _, _ := s.bucketKeys(itemID, l.bucketOf(userID))
		keys = []string{counters, held, res}
	}
	pipe := s.c.rdb.Pipeline()
	exists := pipe.Exists(ctx, keys[0])
	held := pipe.HGet(ctx, keys[1], strconv.FormatInt(userID, 10))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, unavailable(err)
	}
	if exists.Val() == 0 {
		return 0, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", itemID)
	}
	n, err := held.Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

// OpenReservations implements surge.StockEngine: a scan of the item's reservation hashes.
func (s *Stock) OpenReservations(ctx context.Context, itemID int64) ([]surge.OpenReservation, error) {
	l, err := s.layoutOf(ctx, itemID)
	if err != nil {
		return nil, err
	}
	hashes := []string{s.keys(itemID)[2]}
	if l.n > 0 {
		hashes = hashes[:0]
		for b := 1; b <= l.n; b++ {
			_, _, res, _, _ := s.bucketKeys(itemID, b)
			hashes = append(hashes, res)
		}
	}
	var out []surge.OpenReservation
	for _, h := range hashes {
		iter := s.c.rdb.HScan(ctx, h, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			req := iter.Val()
			if !iter.Next(ctx) {
				break
			}
			parts := strings.Split(iter.Val(), ":") // user:qty:state:order
			if len(parts) != 4 || parts[2] != "r" {
				continue
			}
			user, _ := strconv.ParseInt(parts[0], 10, 64)
			qty, _ := strconv.ParseInt(parts[1], 10, 64)
			order, _ := strconv.ParseInt(parts[3], 10, 64)
			out = append(out, surge.OpenReservation{RequestID: req, UserID: user, OrderID: order, Quantity: qty})
		}
		if err := iter.Err(); err != nil {
			return nil, unavailable(err)
		}
	}
	return out, nil
}

// Reservation implements surge.StockEngine.
func (s *Stock) Reservation(ctx context.Context, itemID, userID int64, requestID string) (surge.ReserveResult, bool, error) {
	out := []surge.BatchResult{{}}
	if err := s.Reservations(ctx, []surge.ReserveRequest{{ItemID: itemID, UserID: userID, RequestID: requestID}}, out); err != nil {
		return surge.ReserveResult{}, false, err
	}
	return out[0].ReserveResult, out[0].Outcome == surge.Reserved, out[0].Err
}

// Reservations looks up many reservations in one round trip, as Reservation does each: out[i]
// is the answer to reqs[i], a zero result when there is none, or its own error (a bad request
// id, an unknown item, Redis failing it). The error returned is Redis's when reading an item's
// layout fails, for the whole batch. A sale's sold-out answers each need one, and one round trip
// per attempt cost more than the rest of the answer.
func (s *Stock) Reservations(ctx context.Context, reqs []surge.ReserveRequest, out []surge.BatchResult) error {
	type lookup struct{ rec, held *redis.StringCmd }
	looked := make([]lookup, len(reqs))
	pipe := s.c.rdb.Pipeline()
	for i, r := range reqs {
		out[i] = surge.BatchResult{}
		if err := surge.ValidateRequestID(r.RequestID); err != nil {
			out[i].Err = err
			continue
		}
		l, err := s.layoutOf(ctx, r.ItemID)
		if err != nil {
			if surge.ErrorCode(err) != surge.ENOTFOUND {
				return err
			}
			out[i].Err = err
			continue
		}
		keys := s.keys(r.ItemID)
		if l.n > 0 {
			_, held, res, _, _ := s.bucketKeys(r.ItemID, l.bucketOf(r.UserID))
			keys = []string{"", held, res}
		}
		looked[i] = lookup{rec: pipe.HGet(ctx, keys[2], r.RequestID), held: pipe.HGet(ctx, keys[1], strconv.FormatInt(r.UserID, 10))}
	}
	if pipe.Len() == 0 {
		return nil
	}
	pipe.Exec(ctx) // each command's error is its own lookup's, checked below
	for i, r := range reqs {
		if looked[i].rec == nil {
			continue
		}
		if err := errors.Join(notNil(looked[i].rec.Err()), notNil(looked[i].held.Err())); err != nil {
			out[i].Err = unavailable(err)
			continue
		}
		parts := strings.Split(looked[i].rec.Val(), ":") // user:qty:state:order
		if len(parts) != 4 || parts[0] != strconv.FormatInt(r.UserID, 10) {
			continue
		}
		order, _ := strconv.ParseInt(parts[3], 10, 64)
		h, _ := looked[i].held.Int64()
		out[i].ReserveResult = surge.ReserveResult{Outcome: surge.Reserved, Held: h, OrderID: order, Replayed: true}
	}
	return nil
}

// notNil is err, except that a missing key or field (redis.Nil) is no error.
func notNil(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// LoadScripts puts the scripts in Redis's cache, so pipelined calls can use EVALSHA.
func (s *Stock) LoadScripts(ctx context.Context) error {
	for _, sc := range []*redis.Script{loadScript, reserveScript, settleScript, initMainScript, initBucketScript,
		debitScript, creditScript, adjustMainScript} {
		if err := sc.Load(ctx, s.c.rdb).Err(); err != nil {
			return unavailable(err)
		}
	}
	return nil
}
