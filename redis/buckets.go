package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/surgecommerce/surge"
)

// A bucketed item keeps its allotment in a main bucket and N stock buckets, each in its own hash
// slot. A user always reserves in the bucket picked by a hash of the user id, where the user's
// holdings and request ids live too, so the per-user limit and idempotency stay atomic in one
// script. Stock moves between slots in two idempotent steps, each named by a transfer id: the
// giving side records the transfer as it debits, the receiving side credits it once, then the
// record is dropped. Reconcile finishes any transfer a crashed node left half done, so a unit
// is never lost or counted twice: it is available in exactly one bucket, or in transit.
//
// When a user's bucket is empty it borrows a chunk from the main bucket; when the main bucket
// is empty too, it takes what the other buckets hold (reclaiming near-empty buckets' fragments
// for whoever still needs them). Only when no unit is anywhere is the answer "sold out".

// layout is how an item is split: n buckets (0: not split) and the chunk a bucket borrows.
type layout struct {
	n     int
	chunk int64
}

var (
	initMainScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'allotted', ARGV[1], 'available', ARGV[1], 'limit', ARGV[2], 'buckets', ARGV[3], 'chunk', ARGV[4])
return 1`)

	initBucketScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'available', 0, 'reserved', 0, 'sold', 0)
end
redis.call('HSET', KEYS[1], 'limit', ARGV[1])
return 1`)

	// debit takes up to ARGV[3] units out of a bucket (KEYS[1]) and records the transfer
	// ARGV[1] to ARGV[2] in KEYS[2]; repeating it returns the recorded amount. ARGV[3] = 0
	// takes everything.
	debitScript = redis.NewScript(`
local prior = redis.call('HGET', KEYS[2], ARGV[1])
if prior then return tonumber(string.match(prior, ':(%d+)$')) end
local avail = tonumber(redis.call('HGET', KEYS[1], 'available') or '0')
local k = avail
if tonumber(ARGV[3]) > 0 then k = math.min(avail, tonumber(ARGV[3])) end
if k <= 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'available', -k)
redis.call('HINCRBY', KEYS[1], 'moves', 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. k)
return k`)

	// credit adds a transfer's units to a bucket (KEYS[1]) once, remembering it in KEYS[2] (a
	// sorted set by time, ARGV[3] ms). The memory is kept for the item's life: a transfer record
	// whose removal failed may come back to be finished at any time, and must credit nothing.
	// Transfers move chunks, so an item has few.
	creditScript = redis.NewScript(`
if redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'available', tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[1], 'moves', 1)
end
return 1`)

	adjustMainScript = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 'allotted', 'available', 'limit')
local allotted, avail, limit = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
local want, wantLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
if avail + want - allotted < 0 then return 'below' end
if wantLimit < limit and allotted - avail > 0 then return 'limit' end
redis.call('HSET', KEYS[1], 'allotted', want, 'available', avail + want - allotted, 'limit', wantLimit)
return 'ok'`)
)

// Keys: the main bucket is {stk:ID}, bucket b is {stk:ID:b}. Each has counters, held, res,
// in (credited transfers) and out (transfers it gave, not yet settled).
func (s *Stock) bucketKeys(item int64, b int) (counters, held, res, in, out string) {
	tag := s.c.prefix + ":stk:{" + strconv.FormatInt(item, 10)
	if b > 0 {
		tag += ":" + strconv.Itoa(b)
	}
	tag += "}"
	return tag, tag + ":held", tag + ":res", tag + ":in", tag + ":out"
}

// layoutOf reads (once) how an item is split. Returns ENOTFOUND for an unknown item.
func (s *Stock) layoutOf(ctx context.Context, item int64) (layout, error) {
	if l, ok := s.buckets.Load(item); ok {
		return l.(layout), nil
	}
	main, _, _, _, _ := s.bucketKeys(item, 0)
	vals, err := s.c.rdb.HMGet(ctx, main, "allotted", "buckets", "chunk").Result()
	if err != nil {
		return layout{}, unavailable(err)
	}
	if vals[0] == nil {
		return layout{}, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", item)
	}
	var l layout
	if str, ok := vals[1].(string); ok {
		l.n, _ = strconv.Atoi(str)
	}
	if str, ok := vals[2].(string); ok {
		l.chunk, _ = strconv.ParseInt(str, 10, 64)
	}
	s.buckets.Store(item, l)
	return l, nil
}

func (l layout) bucketOf(user int64) int {
	x := uint64(user) * 0x9e3779b97f4a7c15
	return 1 + int((x>>32)%uint64(l.n))
}

func transferID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// loadBucketed creates a split item, or adjusts one.
func (s *Stock) loadBucketed(ctx context.Context, it surge.StockItem, l layout) error {
	main, _, _, _, _ := s.bucketKeys(it.ID, 0)
	created, err := initMainScript.Run(ctx, s.c.rdb, []string{main}, it.Allotted, it.PerUserLimit, l.n, l.chunk).Int()
	if err != nil {
		return unavailable(err)
	}
	if created == 0 { // adjusting: bring all unsold stock home first, so the main bucket can judge
		if err := s.Reconcile(ctx, it.ID); err != nil {
			return err
		}
		if _, err := s.reclaim(ctx, it.ID, l, 0); err != nil {
			return err
		}
		res, err := adjustMainScript.Run(ctx, s.c.rdb, []string{main}, it.Allotted, it.PerUserLimit).Text()
		if err := loadAnswer(it, res, err); err != nil {
			return err
		}
	}
	for b := 1; b <= l.n; b++ {
		counters, _, _, _, _ := s.bucketKeys(it.ID, b)
		if err := initBucketScript.Run(ctx, s.c.rdb, []string{counters}, it.PerUserLimit).Err(); err != nil {
			return unavailable(err)
		}
	}
	s.buckets.Store(it.ID, l)
	return nil
}

// transfer moves up to want units (0: all) from bucket from to bucket to, and returns how many.
func (s *Stock) transfer(ctx context.Context, item int64, from, to int, want int64) (int64, error) {
	fc, _, _, _, fout := s.bucketKeys(item, from)
	tc, _, _, tin, _ := s.bucketKeys(item, to)
	id := transferID()
	k, err := debitScript.Run(ctx, s.c.rdb, []string{fc, fout}, id, to, want).Int64()
	if err != nil || k == 0 {
		return 0, unavailable(err)
	}
	return k, s.finish(ctx, fout, tc, tin, id, k)
}

// finish credits a recorded transfer and drops the record; each step may be repeated.
func (s *Stock) finish(ctx context.Context, fromOut, toCounters, toIn, id string, k int64) error {
	err := creditScript.Run(ctx, s.c.rdb, []string{toCounters, toIn}, id, k, time.Now().UnixMilli()).Err()
	if err != nil {
		return unavailable(err)
	}
	return unavailable(s.c.rdb.HDel(ctx, fromOut, id).Err())
}

// reclaim moves the stock of every bucket but except back to the main bucket (before an
// allotment change, so the main bucket can judge it).
func (s *Stock) reclaim(ctx context.Context, item int64, l layout, except int) (int64, error) {
	var total int64
	for b := 1; b <= l.n; b++ {
		if b == except {
			continue
		}
		k, err := s.transfer(ctx, item, b, 0, 0)
		if err != nil {
			return total, err
		}
		total += k
	}
	return total, nil
}

// Reconcile finishes every transfer of a split item that a crashed node left half done. It is
// safe to run at any time, on any node, concurrently with reservations.
func (s *Stock) Reconcile(ctx context.Context, item int64) error {
	l, err := s.layoutOf(ctx, item)
	if err != nil || l.n == 0 {
		return err
	}
	for from := 0; from <= l.n; from++ {
		_, _, _, _, out := s.bucketKeys(item, from)
		pending, err := s.c.rdb.HGetAll(ctx, out).Result()
		if err != nil {
			return unavailable(err)
		}
		for id, rec := range pending {
			to, k, err := parseTransfer(rec)
			if err != nil {
				return err
			}
			tc, _, _, tin, _ := s.bucketKeys(item, to)
			if err := s.finish(ctx, out, tc, tin, id, k); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseTransfer(rec string) (to int, k int64, err error) {
	for i := 0; i < len(rec); i++ {
		if rec[i] == ':' {
			to, err1 := strconv.Atoi(rec[:i])
			k, err2 := strconv.ParseInt(rec[i+1:], 10, 64)
			if err1 == nil && err2 == nil {
				return to, k, nil
			}
		}
	}
	return 0, 0, surge.Errorf(surge.EINTERNAL, "redis: bad transfer record %q", rec)
}

// maxRefills bounds how often one reservation refills its bucket before it gives up.
const maxRefills = 4

// reserveBucketed reserves in the user's bucket. When the bucket cannot serve the request, one
// goroutine per node and bucket refills it — from the main bucket, or else by taking from the
// other buckets — while the others wait and then try again. "Sold out" is answered only when
// no bucket and no transfer in flight holds a unit.
func (s *Stock) reserveBucketed(ctx context.Context, r surge.ReserveRequest, l layout) (surge.ReserveResult, error) {
	began := time.Now()
	b := l.bucketOf(r.UserID)
	counters, held, res, _, _ := s.bucketKeys(r.ItemID, b)
	try := func() (string, surge.ReserveResult, error) {
		vals, err := reserveScript.Run(ctx, s.c.rdb, []string{counters, held, res}, r.UserID, r.Quantity, r.RequestID, r.OrderID).Slice()
		if err != nil {
			return "", surge.ReserveResult{}, unavailable(err)
		}
		status, _ := vals[0].(string)
		if status == "soldout" {
			vals = vals[:2] // an empty bucket says nothing of the item
		}
		out, err := s.reserveResult(r, vals, began, b)
		return status, out, err
	}
	lock := s.refillLock(r.ItemID, b)
	for range maxRefills {
		status, out, err := try()
		if err != nil || status != "soldout" {
			return out, err
		}
		lock.Lock()
		status, out, err = try() // another caller may have refilled the bucket meanwhile
		if err != nil || status != "soldout" {
			lock.Unlock()
			return out, err
		}
		k, err := s.refill(ctx, r.ItemID, l, b, r.Quantity)
		lock.Unlock()
		if err != nil {
			return surge.ReserveResult{}, err
		}
		if k > 0 {
			continue
		}
		if err := s.Reconcile(ctx, r.ItemID); err != nil {
			return surge.ReserveResult{}, err
		}
		lv, stable, err := s.levelsBucketed(ctx, r.ItemID, l)
		if err != nil {
			return surge.ReserveResult{}, err
		}
		if lv.Available < r.Quantity {
			if lv.Available == 0 && stable { // a read taken while stock moved may miss some
				s.raiseFlag(r.ItemID, began)
			}
			return out, nil
		}
	}
	_, out, err := try() // stock exists but kept moving away: answer as the bucket stands
	return out, err
}

// refill moves stock into bucket b: a chunk from the main bucket, or else whatever the other
// buckets can spare, starting at a random one so that refills spread.
func (s *Stock) refill(ctx context.Context, item int64, l layout, b int, qty int64) (int64, error) {
	want := max(l.chunk, qty)
	if k, err := s.transfer(ctx, item, 0, b, want); err != nil || k > 0 {
		return k, err
	}
	start := mrand.IntN(l.n)
	var got int64
	for i := range l.n {
		c := 1 + (start+i)%l.n
		if c == b {
			continue
		}
		k, err := s.transfer(ctx, item, c, b, want-got)
		if err != nil {
			return got, err
		}
		if got += k; got >= qty {
			break
		}
	}
	return got, nil
}

// refillLock is the per-node lock for refilling one bucket of one item.
func (s *Stock) refillLock(item int64, b int) *sync.Mutex {
	key := [2]int64{item, int64(b)}
	if m, ok := s.refills.Load(key); ok {
		return m.(*sync.Mutex)
	}
	m, _ := s.refills.LoadOrStore(key, new(sync.Mutex))
	return m.(*sync.Mutex)
}

// settleBucketed confirms or releases a reservation in whichever bucket holds it: the one this
// node noted when it reserved, or else asking every bucket at once.
func (s *Stock) settleBucketed(ctx context.Context, itemID int64, requestID, state string, l layout) (string, error) {
	if b := s.placedIn(itemID, requestID); b > 0 && b <= l.n {
		counters, held, res, _, _ := s.bucketKeys(itemID, b)
		v, err := settleScript.Run(ctx, s.c.rdb, []string{counters, held, res}, requestID, state).Text()
		if err != nil && !errors.Is(err, redis.Nil) {
			return "", unavailable(err)
		}
		if v != "nf" {
			return v, nil
		}
	}
	cmds := make([]*redis.Cmd, l.n)
	_, err := s.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := 1; b <= l.n; b++ {
			counters, held, res, _, _ := s.bucketKeys(itemID, b)
			cmds[b-1] = settleScript.Run(ctx, p, []string{counters, held, res}, requestID, state)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", unavailable(err)
	}
	for _, c := range cmds {
		if v, _ := c.Text(); v != "nf" {
			return v, nil
		}
	}
	return "nf", nil
}

// maxLevelReads bounds the reads of a split item's levels while transfers keep moving stock.
const maxLevelReads = 8

// levelsBucketed adds up the buckets, counting units in transit as available. The buckets are
// read one after another while transfers may move stock between them, so a read can miss a
// transfer credited to a bucket already read, or count one twice: the read is repeated until
// no bucket was debited or credited during it (each counts its moves), which makes it exact
// (stable). An unstable read is the last one taken.
func (s *Stock) levelsBucketed(ctx context.Context, itemID int64, l layout) (lv surge.StockLevels, stable bool, err error) {
	for range maxLevelReads {
		if lv, stable, err = s.readLevels(ctx, itemID, l); err != nil || stable {
			return lv, stable, err
		}
	}
	return lv, false, nil
}

// levelsScript reads a bucket's counters and how many transfers moved its stock, at once.
var levelsScript = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 'available', 'reserved', 'sold', 'moves')
return {tonumber(c[1] or '0'), tonumber(c[2] or '0'), tonumber(c[3] or '0'), tonumber(c[4] or '0')}`)

// readLevels reads every bucket once; stable says no transfer moved stock meanwhile.
func (s *Stock) readLevels(ctx context.Context, itemID int64, l layout) (surge.StockLevels, bool, error) {
	var lv surge.StockLevels
	main, _, _, _, _ := s.bucketKeys(itemID, 0)
	allotted, err := s.c.rdb.HGet(ctx, main, "allotted").Int64()
	if err != nil {
		return lv, false, unavailable(err)
	}
	lv.Allotted = allotted
	moves := make([]int64, l.n+1) // transfers that moved each bucket's stock, as it was read
	type transit struct {
		to int
		id string
	}
	var moving []transit // transfers counted as in transit
	for b := 0; b <= l.n; b++ {
		counters, _, _, _, out := s.bucketKeys(itemID, b)
		n, err := levelsScript.Run(ctx, s.c.rdb, []string{counters}).Int64Slice()
		if err != nil {
			return lv, false, unavailable(err)
		}
		if len(n) != 4 {
			return lv, false, surge.Errorf(surge.EINTERNAL, "redis: bad levels answer %v", n)
		}
		lv.Available += n[0]
		lv.Reserved += n[1]
		lv.Sold += n[2]
		moves[b] = n[3]
		pending, err := s.c.rdb.HGetAll(ctx, out).Result()
		if err != nil {
			return lv, false, unavailable(err)
		}
		for id, rec := range pending { // debited here; count it unless already credited there
			to, k, err := parseTransfer(rec)
			if err != nil {
				return lv, false, err
			}
			_, _, _, in, _ := s.bucketKeys(itemID, to)
			err = s.c.rdb.ZScore(ctx, in, id).Err()
			if errors.Is(err, redis.Nil) {
				lv.Available += k
				moving = append(moving, transit{to, id})
			} else if err != nil {
				return lv, false, unavailable(err)
			}
		}
	}
	// Stable if no bucket's stock moved since it was read (a transfer finished meanwhile may be
	// counted at both ends, or at neither), and no transfer counted in transit was credited
	// since (its units may be counted at both ends).
	for b := 0; b <= l.n; b++ {
		counters, _, _, _, _ := s.bucketKeys(itemID, b)
		n, err := s.c.rdb.HGet(ctx, counters, "moves").Int64()
		if errors.Is(err, redis.Nil) {
			n, err = 0, nil
		}
		if err != nil {
			return lv, false, unavailable(err)
		}
		if n != moves[b] {
			return lv, false, nil
		}
	}
	for _, m := range moving {
		_, _, _, in, _ := s.bucketKeys(itemID, m.to)
		err := s.c.rdb.ZScore(ctx, in, m.id).Err()
		if err == nil {
			return lv, false, nil
		}
		if !errors.Is(err, redis.Nil) {
			return lv, false, unavailable(err)
		}
	}
	return lv, true, nil
}
