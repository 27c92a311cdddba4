package stock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync/atomic"

	"github.com/surgecommerce/surge"
)

// Reservation states.
const (
	resReserved = 1
	resSold     = 2
	resReleased = 3
)

// reservation is what the engine remembers of one: 24 bytes besides its key.
type reservation struct {
	user  int64
	order int64
	qty   int32
	state uint8
}

// item is one session item's stock.
type item struct {
	id, allotted, available, reserved, sold, limit int64
	held                                           map[int64]int64 // user → units reserved or sold
	soldOut                                        *atomic.Bool    // read by callers without the writer
}

func (it *item) levels() surge.StockLevels {
	return surge.StockLevels{Allotted: it.allotted, Available: it.available, Reserved: it.reserved, Sold: it.sold}
}

// state is the deterministic stock state machine: decisions produce records, and applying the
// same records in the same order always yields the same state. It is not safe for concurrent
// use; the engine gives each shard its own.
type state struct {
	items map[int64]*item
	res   reservations
	// open holds the request ids of reservations neither confirmed nor released: few at any
	// time, and what finds a reservation whose order never got recorded.
	open map[key]string
	// newItem, if set, is called for each item created, so the engine can publish its flag.
	newItem func(*item)
}

func newState(newItem func(*item)) *state {
	return &state{items: make(map[int64]*item), res: newReservations(), open: make(map[key]string), newItem: newItem}
}

// load decides a load of an item and returns the record to log, nil if nothing changes.
func (s *state) load(in surge.StockItem) (*record, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if it := s.items[in.ID]; it != nil {
		switch {
		case in.Allotted == it.allotted && in.PerUserLimit == it.limit:
			return nil, nil
		case in.Allotted < it.reserved+it.sold:
			return nil, surge.Errorf(surge.ECONFLICT, "allotment %d is below the %d units already reserved or sold",
				in.Allotted, it.reserved+it.sold)
		case in.PerUserLimit < it.limit && it.reserved+it.sold > 0:
			return nil, surge.Errorf(surge.ECONFLICT, "the per-user limit cannot drop once units are reserved")
		}
	}
	r := &record{kind: recLoad, item: in.ID, qty: in.Allotted, limit: in.PerUserLimit}
	return r, s.apply(r)
}

// reserve decides a reservation. A known request key returns its first answer, no record.
func (s *state) reserve(in surge.ReserveRequest, k key) (surge.ReserveResult, *record, error) {
	it := s.items[in.ItemID]
	if it == nil {
		return surge.ReserveResult{}, nil, surge.Errorf(surge.ENOTFOUND, "item %d is not loaded", in.ItemID)
	}
	res, known, slotTaken := s.res.find(k)
	if known {
		if res.user != in.UserID {
			return surge.ReserveResult{}, nil, surge.Errorf(surge.ECONFLICT, "request id already used by another user")
		}
		return surge.ReserveResult{Outcome: surge.Reserved, Held: it.held[in.UserID], OrderID: res.order, Replayed: true}, nil, nil
	}
	held := it.held[in.UserID]
	switch {
	case in.Quantity > it.available:
		return surge.ReserveResult{Outcome: surge.SoldOut, Held: held}, nil, nil
	case held+in.Quantity > it.limit:
		return surge.ReserveResult{Outcome: surge.LimitReached, Held: held}, nil, nil
	}
	r := &record{kind: recReserve, item: in.ItemID, user: in.UserID, qty: in.Quantity, reqH1: k.h1, reqH2: k.h2,
		order: in.OrderID, reqID: in.RequestID}
	s.take(it, k, r, held, slotTaken)
	return surge.ReserveResult{Outcome: surge.Reserved, Held: held + in.Quantity, OrderID: in.OrderID}, r, nil
}

// take records a reservation already checked to fit: the one place stock leaves available.
func (s *state) take(it *item, k key, r *record, held int64, slotTaken bool) {
	user, qty := r.user, r.qty
	if qty <= 0 || qty > it.available || held+qty > it.limit {
		// The checks before this call make it impossible; if it happens, the state is not to
		// be trusted, and stopping beats selling stock that is not there.
		panic(fmt.Sprintf("stock: item %d: taking %d of %d available, holding %d of %d", it.id, qty, it.available, held, it.limit))
	}
	s.res.insert(k, reservation{user: user, order: r.order, qty: int32(qty), state: resReserved}, slotTaken)
	if r.reqID != "" {
		s.open[k] = r.reqID
	}
	it.available -= qty
	it.reserved += qty
	it.held[user] = held + qty
	it.soldOut.Store(it.available == 0)
}

// settle decides a confirm or release of a reservation. Repeating the same settlement is a
// no-op; the other one is refused.
func (s *state) settle(kind byte, k key) (*record, error) {
	res, ok := s.res.get(k)
	if !ok {
		return nil, surge.Errorf(surge.ENOTFOUND, "no such reservation")
	}
	want := uint8(resSold)
	if kind == recRelease {
		want = resReleased
	}
	switch res.state {
	case want:
		return nil, nil
	case resSold:
		return nil, surge.Errorf(surge.ECONFLICT, "the reservation was confirmed; it cannot be released")
	case resReleased:
		return nil, surge.Errorf(surge.ECONFLICT, "the reservation was released; it cannot be confirmed")
	}
	r := &record{kind: kind, item: k.item, reqH1: k.h1, reqH2: k.h2}
	return r, s.apply(r)
}

// errInconsistent means a record does not fit the state: the log or snapshot is damaged.
var errInconsistent = errors.New("stock record does not fit the state")

// apply changes the state by one record. Decisions call it after checking; replay calls it with
// logged records and treats an error as corruption.
func (s *state) apply(r *record) error {
	it := s.items[r.item]
	if r.kind == recLoad {
		var taken, limit int64
		if it != nil {
			taken, limit = it.reserved+it.sold, it.limit
		}
		if r.qty < taken || r.limit < limit && taken > 0 || r.limit <= 0 || r.qty > surge.MaxStock {
			return fmt.Errorf("%w: load does not fit item %d", errInconsistent, r.item)
		}
		if it == nil {
			it = &item{id: r.item, held: make(map[int64]int64), soldOut: new(atomic.Bool)}
			s.items[r.item] = it
			if s.newItem != nil {
				s.newItem(it)
			}
		}
		it.allotted, it.limit = r.qty, r.limit
		it.available = it.allotted - it.reserved - it.sold
		it.soldOut.Store(it.available == 0)
		return nil
	}
	if it == nil {
		return fmt.Errorf("%w: record for unknown item %d", errInconsistent, r.item)
	}
	k := r.key()
	switch r.kind {
	case recReserve:
		_, dup, slotTaken := s.res.find(k)
		held := it.held[r.user]
		if dup || r.qty <= 0 || r.qty > it.available || r.qty > math.MaxInt32 || held+r.qty > it.limit {
			return fmt.Errorf("%w: reservation does not fit item %d", errInconsistent, r.item)
		}
		s.take(it, k, r, held, slotTaken)
		return nil
	case recConfirm, recRelease:
		res, ok := s.res.get(k)
		if !ok || res.state != resReserved {
			return fmt.Errorf("%w: settling a reservation that is not open", errInconsistent)
		}
		q := int64(res.qty)
		delete(s.open, k)
		it.reserved -= q
		if r.kind == recConfirm {
			res.state = resSold
			it.sold += q
		} else {
			res.state = resReleased
			it.available += q
			if it.held[res.user] -= q; it.held[res.user] == 0 {
				delete(it.held, res.user)
			}
		}
		s.res.set(k, res)
	default:
		return fmt.Errorf("%w: unknown record kind %d", errInconsistent, r.kind)
	}
	it.soldOut.Store(it.available == 0)
	return nil
}

// check verifies every invariant over the whole state. It is O(state): for tests, recovery and
// the bench's final check, not the hot path.
func (s *state) check() error {
	type sums struct{ reserved, sold int64 }
	perItem := map[int64]*sums{}
	perHolder := map[[2]int64]int64{}
	var orphan error
	s.res.each(func(k key, r reservation) {
		it := s.items[k.item]
		if it == nil {
			orphan = fmt.Errorf("reservation for unknown item %d", k.item)
			return
		}
		if perItem[k.item] == nil {
			perItem[k.item] = &sums{}
		}
		switch r.state {
		case resReserved:
			perItem[k.item].reserved += int64(r.qty)
			perHolder[[2]int64{k.item, r.user}] += int64(r.qty)
		case resSold:
			perItem[k.item].sold += int64(r.qty)
			perHolder[[2]int64{k.item, r.user}] += int64(r.qty)
		}
	})
	if orphan != nil {
		return orphan
	}
	for k := range s.open {
		if r, ok := s.res.get(k); !ok || r.state != resReserved {
			return fmt.Errorf("item %d: a request id is kept for a reservation that is not open", k.item)
		}
	}
	for id, it := range s.items {
		if err := it.levels().Check(); err != nil {
			return fmt.Errorf("item %d: %w", id, err)
		}
		sum := perItem[id]
		if sum == nil {
			sum = &sums{}
		}
		if sum.reserved != it.reserved || sum.sold != it.sold {
			return fmt.Errorf("item %d: counters %d reserved / %d sold, reservations say %d / %d",
				id, it.reserved, it.sold, sum.reserved, sum.sold)
		}
		var total int64
		for user, h := range it.held {
			if h <= 0 || h > it.limit {
				return fmt.Errorf("item %d: user %d holds %d (limit %d)", id, user, h, it.limit)
			}
			if perHolder[[2]int64{id, user}] != h {
				return fmt.Errorf("item %d: user %d holds %d, reservations say %d", id, user, h, perHolder[[2]int64{id, user}])
			}
			total += h
		}
		if total != it.reserved+it.sold {
			return fmt.Errorf("item %d: holdings sum to %d, want %d", id, total, it.reserved+it.sold)
		}
		if it.soldOut.Load() != (it.available == 0) {
			return fmt.Errorf("item %d: sold-out flag is %v with %d available", id, it.soldOut.Load(), it.available)
		}
	}
	return nil
}

// Snapshot layout: "SNP3" | items | reservations | CRC-32C of everything before it.
var snapMagic = []byte("SNP3")

// appendSnapshot encodes the states of all shards as one snapshot. Available and holdings are
// derived on decode, so a snapshot cannot hold counters that disagree with its reservations.
func appendSnapshot(b []byte, states ...*state) []byte {
	start := len(b)
	b = append(b, snapMagic...)
	var items, res int
	for _, s := range states {
		items += len(s.items)
		res += s.res.len()
	}
	b = binary.AppendUvarint(b, uint64(items))
	for _, s := range states {
		for _, it := range s.items {
			b = binary.AppendUvarint(b, uint64(it.id))
			b = binary.AppendUvarint(b, uint64(it.allotted))
			b = binary.AppendUvarint(b, uint64(it.limit))
		}
	}
	b = binary.AppendUvarint(b, uint64(res))
	for _, s := range states {
		s.res.each(func(k key, r reservation) {
			b = binary.AppendUvarint(b, uint64(k.item))
			b = binary.LittleEndian.AppendUint64(b, k.h1)
			b = binary.LittleEndian.AppendUint64(b, k.h2)
			b = binary.AppendUvarint(b, uint64(r.user))
			b = binary.AppendUvarint(b, uint64(r.order))
			b = binary.AppendUvarint(b, uint64(r.qty))
			b = append(b, r.state)
			id := s.open[k]
			b = binary.AppendUvarint(b, uint64(len(id)))
			b = append(b, id...)
		})
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// loadSnapshot adds a snapshot's contents to empty states, each item to the state route picks
// for it, and checks their invariants.
func loadSnapshot(b []byte, route func(item int64) *state) error {
	if len(b) < len(snapMagic)+4 || string(b[:len(snapMagic)]) != string(snapMagic) {
		return errors.New("not a stock snapshot")
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return errors.New("snapshot checksum mismatch")
	}
	d := decoder{b: body[len(snapMagic):]}
	visited := map[*state]bool{}
	route0 := route
	route = func(id int64) *state {
		s := route0(id)
		visited[s] = true
		return s
	}
	for n := d.uv(); n > 0 && d.err == nil; n-- {
		r := &record{kind: recLoad, item: d.uv(), qty: d.uv(), limit: d.uv()}
		if d.err == nil {
			it := &item{id: r.item, allotted: r.qty, limit: r.limit, available: r.qty, held: make(map[int64]int64), soldOut: new(atomic.Bool)}
			s := route(r.item)
			if _, dup := s.items[r.item]; dup {
				return errors.New("snapshot repeats an item")
			}
			s.items[r.item] = it
			if s.newItem != nil {
				s.newItem(it)
			}
		}
	}
	for n := d.uv(); n > 0 && d.err == nil; n-- {
		k := key{item: d.uv(), h1: d.fixed(), h2: d.fixed()}
		user, order, qty, st, id := d.uv(), d.uv(), d.uv(), d.byte(), d.str(surge.MaxRequestIDBytes)
		if d.err != nil {
			break
		}
		s := route(k.item)
		it := s.items[k.item]
		if it == nil || qty <= 0 || qty > math.MaxInt32 || st < resReserved || st > resReleased {
			return errors.New("snapshot reservation does not fit")
		}
		if _, dup := s.res.get(k); dup {
			return errors.New("snapshot repeats a reservation")
		}
		s.res.set(k, reservation{user: user, order: order, qty: int32(qty), state: st})
		if id != "" {
			if st != resReserved {
				return errors.New("snapshot keeps a request id of a closed reservation")
			}
			s.open[k] = id
		}
		switch st {
		case resReserved:
			it.reserved += qty
		case resSold:
			it.sold += qty
		}
		if st != resReleased {
			it.available -= qty
			it.held[user] += qty
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return errors.New("snapshot cut short")
	}
	for s := range visited {
		for _, it := range s.items {
			it.soldOut.Store(it.available == 0)
		}
		if err := s.check(); err != nil {
			return err
		}
	}
	return nil
}

// decoder reads varints from a byte slice, remembering the first failure.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uv() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > math.MaxInt64 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return int64(v)
}

func (d *decoder) fixed() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errShort
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// str reads a length-prefixed string of at most max bytes.
func (d *decoder) str(max int) string {
	n := d.uv()
	if d.err != nil {
		return ""
	}
	if n > int64(max) || n > int64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) byte() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}
