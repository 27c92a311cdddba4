package stock

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/surgecommerce/surge"
)

// Record kinds: every change of stock state is one record in the write-ahead log.
const (
	recLoad    = 1 // item, allotted, per-user limit
	recReserve = 2 // item, user, quantity, request key, order id, request id
	recConfirm = 3 // item, request key
	recRelease = 4 // item, request key
)

// key names a reservation: its item and a 128-bit hash of its request id, so that memory per
// reservation does not depend on how long clients make their ids.
type key struct {
	item   int64
	h1, h2 uint64
}

// requestKey hashes a request id with two independent 64-bit hashes (xxHash and FNV-1a).
func requestKey(item int64, requestID string) key {
	h2 := uint64(14695981039346656037)
	for i := 0; i < len(requestID); i++ {
		h2 ^= uint64(requestID[i])
		h2 *= 1099511628211
	}
	return key{item: item, h1: xxhash.Sum64String(requestID), h2: h2}
}

// record is one decoded log record.
type record struct {
	kind  byte
	item  int64
	user  int64
	qty   int64 // reserve: quantity; load: allotted
	limit int64 // load
	reqH1 uint64
	reqH2 uint64
	order int64  // reserve: the order the reservation belongs to, 0 if none
	reqID string // reserve: the request id itself, kept while the reservation is open
}

func (r *record) key() key { return key{item: r.item, h1: r.reqH1, h2: r.reqH2} }

// appendRecord encodes r onto b.
func appendRecord(b []byte, r *record) []byte {
	b = append(b, r.kind)
	b = binary.AppendUvarint(b, uint64(r.item))
	switch r.kind {
	case recLoad:
		b = binary.AppendUvarint(b, uint64(r.qty))
		b = binary.AppendUvarint(b, uint64(r.limit))
	case recReserve:
		b = binary.AppendUvarint(b, uint64(r.user))
		b = binary.AppendUvarint(b, uint64(r.qty))
		b = binary.LittleEndian.AppendUint64(b, r.reqH1)
		b = binary.LittleEndian.AppendUint64(b, r.reqH2)
		b = binary.AppendUvarint(b, uint64(r.order))
		b = binary.AppendUvarint(b, uint64(len(r.reqID)))
		b = append(b, r.reqID...)
	case recConfirm, recRelease:
		b = binary.LittleEndian.AppendUint64(b, r.reqH1)
		b = binary.LittleEndian.AppendUint64(b, r.reqH2)
	}
	return b
}

var errShort = errors.New("record cut short")

// decodeRecord decodes the record at the start of b and returns the rest.
func decodeRecord(b []byte) (record, []byte, error) {
	d := decoder{b: b}
	r := record{kind: d.byte(), item: d.uv()}
	switch r.kind {
	case recLoad:
		r.qty, r.limit = d.uv(), d.uv()
	case recReserve:
		r.user, r.qty = d.uv(), d.uv()
		r.reqH1, r.reqH2 = d.fixed(), d.fixed()
		r.order = d.uv()
		r.reqID = d.str(surge.MaxRequestIDBytes)
	case recConfirm, recRelease:
		r.reqH1, r.reqH2 = d.fixed(), d.fixed()
	default:
		if d.err == nil {
			return r, nil, fmt.Errorf("unknown record kind %d", r.kind)
		}
	}
	if d.err != nil {
		return r, nil, d.err
	}
	return r, d.b, nil
}
