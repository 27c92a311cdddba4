package stock

// reservations maps request keys to reservations. Nearly every key lives in one map keyed by a
// 64-bit slot, which Go serves on its fast integer path; the rest of the key sits in the value,
// and the rare key whose slot another key already holds lives in a small spill map.
type reservations struct {
	main  map[uint64]slotted
	spill map[key]reservation
}

// slotted is a reservation stored under its slot, with what recovers the full key.
type slotted struct {
	item int64
	h2   uint64
	reservation
}

func newReservations() reservations {
	return reservations{main: make(map[uint64]slotted), spill: make(map[key]reservation)}
}

func (k key) slot() uint64 { return k.h1 ^ uint64(k.item)*0x9e3779b97f4a7c15 }

func (rs *reservations) get(k key) (reservation, bool) {
	r, ok, _ := rs.find(k)
	return r, ok
}

// find looks a key up and also tells whether its slot is held by another key, so that a new
// reservation can be inserted without probing again.
func (rs *reservations) find(k key) (r reservation, ok, slotTaken bool) {
	s, taken := rs.main[k.slot()]
	if taken && s.item == k.item && s.h2 == k.h2 {
		return s.reservation, true, false
	}
	if !taken || len(rs.spill) == 0 {
		return reservation{}, false, taken
	}
	r, ok = rs.spill[k]
	return r, ok, taken
}

// insert adds a key that find reported absent, with find's slotTaken.
func (rs *reservations) insert(k key, r reservation, slotTaken bool) {
	if slotTaken {
		rs.spill[k] = r
		return
	}
	rs.main[k.slot()] = slotted{item: k.item, h2: k.h2, reservation: r}
}

// set replaces an existing key's reservation, or adds a new one.
func (rs *reservations) set(k key, r reservation) {
	_, ok, taken := rs.find(k)
	if ok && !taken {
		rs.main[k.slot()] = slotted{item: k.item, h2: k.h2, reservation: r}
		return
	}
	if ok {
		rs.spill[k] = r
		return
	}
	rs.insert(k, r, taken)
}

func (rs *reservations) len() int { return len(rs.main) + len(rs.spill) }

// each calls fn for every reservation, in no order.
func (rs *reservations) each(fn func(key, reservation)) {
	for slot, s := range rs.main {
		fn(key{item: s.item, h1: slot ^ uint64(s.item)*0x9e3779b97f4a7c15, h2: s.h2}, s.reservation)
	}
	for k, r := range rs.spill {
		fn(k, r)
	}
}
