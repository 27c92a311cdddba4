package live

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// SeriesState is a series' running total and its per-second values over the last SeriesSeconds
// seconds up to the newest second it counted. It keeps only the seconds that counted: most of
// a sale's series (one per room and item, say) count in a few seconds of any two minutes, and
// every node holds every series.
type SeriesState struct {
	Total int64
	// last is the newest second counted in, kept beside the total rather than at the end of
	// the older ones: at volume nearly every contribution adds to it, and the seconds' array
	// was a cache miss of its own.
	last    secondValue
	hasLast bool
	dirty   bool          // changed since the sink last published it (the sink's own mark)
	recent  []secondValue // the seconds before last, ascending, all within SeriesSeconds of it
	// encoded is appendBinary's bytes as last published (nil once the series changes): a
	// checkpoint copies them rather than encode tens of thousands of series again, on the
	// pipeline's goroutine, right after the flush that published them all. They are the
	// published value's own bytes, which the board holds too.
	encoded []byte
}

type secondValue struct{ sec, val int64 }

func (s *SeriesState) add(sec, delta int64) {
	s.Total += delta
	s.encoded = nil
	switch {
	case s.hasLast && sec == s.last.sec: // the usual case at volume: the newest second again
		s.last.val += delta
	case !s.hasLast || sec > s.last.sec: // a new newest second
		if s.hasLast {
			s.recent = append(s.recent, s.last)
		}
		s.last, s.hasLast = secondValue{sec, delta}, true
		old := 0
		for old < len(s.recent) && s.recent[old].sec <= sec-SeriesSeconds {
			old++
		}
		if old > 0 {
			s.recent = append(s.recent[:0], s.recent[old:]...)
		}
	case sec <= s.last.sec-SeriesSeconds:
		// older than the series keeps; it still counts in the total
	default:
		i, found := slices.BinarySearchFunc(s.recent, sec, func(p secondValue, sec int64) int { return cmp.Compare(p.sec, sec) })
		if found {
			s.recent[i].val += delta
			return
		}
		s.recent = slices.Insert(s.recent, i, secondValue{sec, delta})
	}
}

// newest is the newest second the series counted in, or 0.
func (s *SeriesState) newest() int64 {
	if !s.hasLast {
		return 0
	}
	return s.last.sec
}

// at is the value of one second (0 outside what the series keeps).
func (s *SeriesState) at(sec int64) int64 {
	if s.hasLast && sec == s.last.sec {
		return s.last.val
	}
	if i, found := slices.BinarySearchFunc(s.recent, sec, func(p secondValue, sec int64) int { return cmp.Compare(p.sec, sec) }); found {
		return s.recent[i].val
	}
	return 0
}

// seconds is how many seconds the series holds.
func (s *SeriesState) seconds() int {
	if !s.hasLast {
		return 0
	}
	return len(s.recent) + 1
}

// appendBinary appends the total and the seconds that counted, as varints. The newest second
// goes in even when its changes cancelled out to zero: it is where the series' window ends.
func (s *SeriesState) appendBinary(out []byte) []byte {
	out = binary.AppendVarint(out, s.Total)
	for _, p := range s.recent {
		if p.val != 0 {
			out = binary.AppendVarint(binary.AppendVarint(out, p.sec), p.val)
		}
	}
	if s.hasLast {
		out = binary.AppendVarint(binary.AppendVarint(out, s.last.sec), s.last.val)
	}
	return out
}

// GobEncode writes the total and only the seconds that counted: the series are a large part of
// the live pipeline's checkpoint.
func (s SeriesState) GobEncode() ([]byte, error) {
	return s.appendBinary(nil), nil
}

// GobDecode reads what GobEncode wrote.
func (s *SeriesState) GobDecode(data []byte) error {
	*s = SeriesState{}
	total, n := binary.Varint(data)
	if n <= 0 {
		return errors.New("series state: no total")
	}
	s.Total = total
	return s.readSeconds(data[n:])
}

// readSeconds reads the seconds that appendBinary wrote after the total.
func (s *SeriesState) readSeconds(data []byte) error {
	n := varints(data)
	if n < 0 || n%2 != 0 {
		return errors.New("series state: bad seconds")
	}
	s.recent = make([]secondValue, 0, n/2)
	inOrder := true
	for len(data) > 0 {
		sec, w1 := binary.Varint(data)
		if w1 <= 0 {
			return errors.New("series state: bad second")
		}
		val, w2 := binary.Varint(data[w1:])
		if w2 <= 0 || sec < 0 {
			return errors.New("series state: bad second")
		}
		data = data[w1+w2:]
		if k := len(s.recent); k > 0 && sec <= s.recent[k-1].sec {
			inOrder = false
		}
		s.recent = append(s.recent, secondValue{sec, val})
	}
	// Earlier checkpoints kept the seconds in a ring, in no order: order them, keep the window.
	if !inOrder {
		slices.SortFunc(s.recent, func(a, b secondValue) int { return cmp.Compare(a.sec, b.sec) })
		s.recent = slices.CompactFunc(s.recent, func(a, b secondValue) bool { return a.sec == b.sec })
	}
	k := len(s.recent)
	if k == 0 {
		return nil
	}
	s.last, s.hasLast, s.recent = s.recent[k-1], true, s.recent[:k-1]
	if k > 1 && s.recent[0].sec <= s.last.sec-SeriesSeconds {
		s.recent = slices.DeleteFunc(s.recent, func(p secondValue) bool { return p.sec <= s.last.sec-SeriesSeconds })
	}
	return nil
}

// varints is how many varints data holds, or -1 if it ends inside one: each ends with a byte
// below 0x80. (One longer than binary.MaxVarintLen64 counts too; reading it fails.)
func varints(data []byte) int {
	if len(data) > 0 && data[len(data)-1] >= 0x80 {
		return -1
	}
	n := 0
	for _, c := range data {
		if c < 0x80 {
			n++
		}
	}
	return n
}

// publishedVersion leads every published value; a value that starts otherwise is not read.
const publishedVersion = 1

// encodePublished is a series as the sink publishes it for every node's board: its key, when it
// was published, its total and the seconds that counted. The values bucket is Surge's own, read
// by nodes as fast as the pipeline publishes, so the format is compact binary, not JSON. The
// state's part of it is kept in st.encoded, for the next checkpoint.
func encodePublished(key string, st *SeriesState, now time.Time) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64*3+len(key)+8*st.seconds())
	out = append(out, publishedVersion)
	out = binary.AppendUvarint(out, uint64(len(key)))
	out = append(out, key...)
	out = binary.AppendVarint(out, now.UnixMilli())
	head := len(out)
	out = st.appendBinary(out)
	st.encoded = out[head:len(out):len(out)]
	return out
}

// publishedValue is a published series read as far as a board needs when it arrives: the
// seconds stay encoded until the series is read. A board takes tens of thousands of values a
// second and is asked for few of them; reading every one in full was 7% of the node's CPU at
// 300,000 events a second.
type publishedValue struct {
	key     []byte // within the value read
	updated time.Time
	total   int64
	seconds []byte // pairs of varints, as appendBinary writes them after the total
}

// readPublished reads what encodePublished wrote, checking that the seconds are whole pairs of
// varints, without reading them.
func readPublished(data []byte) (publishedValue, error) {
	if len(data) == 0 || data[0] != publishedVersion {
		return publishedValue{}, errors.New("published series: unknown format")
	}
	data = data[1:]
	n, w := binary.Uvarint(data)
	if w <= 0 || n > uint64(len(data)-w) {
		return publishedValue{}, errors.New("published series: bad key")
	}
	p := publishedValue{key: data[w : w+int(n)]}
	data = data[w+int(n):]
	ms, w := binary.Varint(data)
	if w <= 0 {
		return publishedValue{}, errors.New("published series: bad time")
	}
	data = data[w:]
	total, w := binary.Varint(data)
	if w <= 0 {
		return publishedValue{}, fmt.Errorf("published series %q: no total", p.key)
	}
	p.updated, p.total, p.seconds = time.UnixMilli(ms), total, data[w:]
	if n := varints(p.seconds); n < 0 || n%2 != 0 {
		return publishedValue{}, fmt.Errorf("published series %q: bad seconds", p.key)
	}
	return p, nil
}

// state reads the seconds too.
func (p publishedValue) state() (*SeriesState, error) {
	st := &SeriesState{Total: p.total}
	if err := st.readSeconds(p.seconds); err != nil {
		return nil, fmt.Errorf("published series %q: %w", p.key, err)
	}
	return st, nil
}
