package stock

import (
	"testing"

	"github.com/surgecommerce/surge"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []record{
		{kind: recLoad, item: 1, qty: 1 << 40, limit: 1000},
		{kind: recReserve, item: 9, user: 1<<62 + 5, qty: 3, reqH1: 1, reqH2: 1 << 63, order: 77, reqID: "req-77"},
		{kind: recConfirm, item: 2, reqH1: 42, reqH2: 43},
		{kind: recRelease, item: 2, reqH1: 42, reqH2: 43},
	} {
		b := appendRecord(nil, &r)
		got, rest, err := decodeRecord(b)
		if err != nil || len(rest) != 0 || got != r {
			t.Fatalf("decodeRecord(appendRecord(%+v)) = %+v, %d left, %v", r, got, len(rest), err)
		}
	}
}

func TestReservationsSpillOnSlotCollision(t *testing.T) {
	rs := newReservations()
	a := key{item: 1, h1: 77, h2: 1}
	b := key{item: 1, h1: 77, h2: 2} // same slot as a
	rs.set(a, reservation{user: 1, qty: 1, state: resReserved})
	rs.set(b, reservation{user: 2, qty: 2, state: resReserved})
	if ra, ok := rs.get(a); !ok || ra.user != 1 {
		t.Fatalf("get(a) = %+v, %v", ra, ok)
	}
	if rb, ok := rs.get(b); !ok || rb.user != 2 {
		t.Fatalf("get(b) = %+v, %v", rb, ok)
	}
	rs.set(b, reservation{user: 2, qty: 2, state: resSold})
	if rb, _ := rs.get(b); rb.state != resSold || rs.len() != 2 {
		t.Fatalf("after updating b: %+v, len %d", rb, rs.len())
	}
	seen := map[key]bool{}
	rs.each(func(k key, _ reservation) { seen[k] = true })
	if !seen[a] || !seen[b] || len(seen) != 2 {
		t.Fatalf("each visited %v", seen)
	}
	if _, ok := rs.get(key{item: 2, h1: 77, h2: 1}); ok {
		t.Fatal("a key of another item was found")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, &record{kind: recReserve, item: 1, user: 2, qty: 3, reqH1: 4, reqH2: 5}))
	f.Add(appendRecord(nil, &record{kind: recLoad, item: 1, qty: 10, limit: 2}))
	f.Add([]byte{9, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		st := newState(nil)
		for len(b) > 0 {
			r, rest, err := decodeRecord(b)
			if err != nil {
				return
			}
			if len(rest) >= len(b) {
				t.Fatal("decodeRecord consumed nothing")
			}
			if st.apply(&r) == nil {
				if err := st.check(); err != nil {
					t.Fatalf("applying decoded records broke an invariant: %v", err)
				}
			}
			b = rest
		}
	})
}

func FuzzLoadSnapshot(f *testing.F) {
	st := newState(nil)
	r, _ := st.load(surgeItem(1, 10, 2))
	_ = r
	f.Add(appendSnapshot(nil, st))
	f.Add([]byte("SNP2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		into := newState(nil)
		if loadSnapshot(b, func(int64) *state { return into }) == nil {
			if err := into.check(); err != nil {
				t.Fatalf("a snapshot that loaded breaks an invariant: %v", err)
			}
		}
	})
}

func surgeItem(id, allotted, limit int64) surge.StockItem {
	return surge.StockItem{ID: id, Allotted: allotted, PerUserLimit: limit}
}
