package risk

import "encoding/binary"

// Windows of features. A count over the last 10 seconds is kept in ten slots of a second, over
// the last minute in six slots of ten seconds, over the last hour in twelve slots of five
// minutes: a window counts its slots, the current one included, so the minute counts the last
// 50 to 60 seconds and the hour the last 55 to 60 minutes. 88 bytes per count, whatever the rate.
const (
	secSlots  = 10
	tenSlots  = 6
	fiveSlots = 12
)

// window counts events over the last 10 seconds, minute and hour. at is the last second an
// event was added in: slots of seconds after it are empty.
type window struct {
	sec  [secSlots]uint16 // saturating: a count past 65,535 in a second stays there
	ten  [tenSlots]uint32
	five [fiveSlots]uint32
	at   int64
}

// add counts n events at second s. An event older than the window's newest second counts in
// the slots that still hold its time (a late one is not lost from the longer windows).
func (w *window) add(s int64, n uint32) {
	if s > w.at {
		w.advance(s)
	}
	if s > w.at-secSlots {
		i := mod(s, secSlots)
		w.sec[i] = uint16(min(uint32(w.sec[i])+n, 0xffff))
	}
	if s/10 > w.at/10-tenSlots {
		w.ten[mod(s/10, tenSlots)] += n
	}
	if s/300 > w.at/300-fiveSlots {
		w.five[mod(s/300, fiveSlots)] += n
	}
}

// advance empties the slots of the seconds between at and s.
func (w *window) advance(s int64) {
	clearSlots(w.sec[:], w.at, s)
	clearSlots(w.ten[:], w.at/10, s/10)
	clearSlots(w.five[:], w.at/300, s/300)
	w.at = s
}

func clearSlots[T uint16 | uint32](slots []T, from, to int64) {
	n := int64(len(slots))
	if to-from >= n || from == 0 {
		clear(slots)
		return
	}
	for t := from + 1; t <= to; t++ {
		slots[mod(t, n)] = 0
	}
}

func mod(a, n int64) int64 { return ((a % n) + n) % n }

// sum adds the slots of times in (now-n, now] that hold their own time, (at-n, at].
func sum[T uint16 | uint32](slots []T, at, now int64) int64 {
	n := int64(len(slots))
	var total int64
	for t := max(now, at) - n + 1; t <= min(now, at); t++ {
		total += int64(slots[mod(t, n)])
	}
	return total
}

// last10s, lastMinute and lastHour are the window's counts at second now.
func (w *window) last10s(now int64) int64    { return sum(w.sec[:], w.at, now) }
func (w *window) lastMinute(now int64) int64 { return sum(w.ten[:], w.at/10, now/10) }
func (w *window) lastHour(now int64) int64   { return sum(w.five[:], w.at/300, now/300) }

// windowBytes is the size of a window's encoding.
const windowBytes = 2*secSlots + 4*tenSlots + 4*fiveSlots + 8

func (w *window) appendTo(b []byte) []byte {
	for _, v := range w.sec {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	for _, v := range w.ten {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	for _, v := range w.five {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return binary.LittleEndian.AppendUint64(b, uint64(w.at))
}

// readFrom reads what appendTo wrote; the caller checked there are windowBytes.
func (w *window) readFrom(b []byte) []byte {
	for i := range w.sec {
		w.sec[i] = binary.LittleEndian.Uint16(b)
		b = b[2:]
	}
	for i := range w.ten {
		w.ten[i] = binary.LittleEndian.Uint32(b)
		b = b[4:]
	}
	for i := range w.five {
		w.five[i] = binary.LittleEndian.Uint32(b)
		b = b[4:]
	}
	w.at = int64(binary.LittleEndian.Uint64(b))
	return b[8:]
}

// Distinct accounts: each subject remembers up to maxAccounts users with the minute it last saw
// each, replacing the longest unseen when full; the count saturates there.
const maxAccounts = 64

type seenUser struct {
	user   uint32 // a hash of the user id
	minute uint32 // minutes since the Unix epoch
}

// accounts counts the distinct users seen in the last hour.
type accounts []seenUser

func (a *accounts) add(user uint32, minute uint32) {
	oldest := -1
	for i, s := range *a {
		if s.user == user {
			(*a)[i].minute = max(s.minute, minute)
			return
		}
		if oldest < 0 || s.minute < (*a)[oldest].minute {
			oldest = i
		}
	}
	if len(*a) < maxAccounts {
		*a = append(*a, seenUser{user, minute})
		return
	}
	if (*a)[oldest].minute < minute {
		(*a)[oldest] = seenUser{user, minute}
	}
}

func (a accounts) lastHour(minute uint32) int64 {
	var n int64
	for _, s := range a {
		if s.minute+60 > minute {
			n++
		}
	}
	return n
}
