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
	Total  int64
	recent []secondValue // ascending seconds, all within SeriesSeconds of the last
	dirty  bool          // changed since the sink last published it (the sink's own mark)
}

type secondValue struct{ sec, val int64 }

func (s *SeriesState) add(sec, delta int64) {
	s.Total += delta
	n := len(s.recent)
	if n > 0 && sec == s.recent[n-1].sec { // the usual case at volume: the newest second again
		s.recent[n-1].val += delta
		return
	}
	if n == 0 || sec > s.recent[n-1].sec { // a new newest second
		old := 0
		for old < n && s.recent[old].sec <= sec-SeriesSeconds {
			old++
		}
		if old > 0 {
			s.recent = append(s.recent[:0], s.recent[old:]...)
		}
		s.recent = append(s.recent, secondValue{sec, delta})
		return
	}
	if sec <= s.recent[n-1].sec-SeriesSeconds {
		return // older than the series keeps; it still counts in the total
	}
	i, found := slices.BinarySearchFunc(s.recent, sec, func(p secondValue, sec int64) int { return cmp.Compare(p.sec, sec) })
	if found {
		s.recent[i].val += delta
		return
	}
	s.recent = slices.Insert(s.recent, i, secondValue{sec, delta})
}

// newest is the newest second the series counted in, or 0.
func (s *SeriesState) newest() int64 {
	if len(s.recent) == 0 {
		return 0
	}
	return s.recent[len(s.recent)-1].sec
}

// at is the value of one second (0 outside what the series keeps).
func (s *SeriesState) at(sec int64) int64 {
	if i, found := slices.BinarySearchFunc(s.recent, sec, func(p secondValue, sec int64) int { return cmp.Compare(p.sec, sec) }); found {
		return s.recent[i].val
	}
	return 0
}

// appendBinary appends the total and the seconds that counted, as varints. The newest second
// goes in even when its changes cancelled out to zero: it is where the series' window ends.
func (s *SeriesState) appendBinary(out []byte) []byte {
	out = binary.AppendVarint(out, s.Total)
	for i, p := range s.recent {
		if p.val != 0 || i == len(s.recent)-1 {
			out = binary.AppendVarint(binary.AppendVarint(out, p.sec), p.val)
		}
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
	next := func() (int64, bool) {
		v, n := binary.Varint(data)
		if n <= 0 {
			return 0, false
		}
		data = data[n:]
		return v, true
	}
	var ok bool
	if s.Total, ok = next(); !ok {
		return errors.New("series state: no total")
	}
	for len(data) > 0 {
		sec, ok1 := next()
		val, ok2 := next()
		if !ok1 || !ok2 || sec < 0 {
			return errors.New("series state: bad second")
		}
		s.recent = append(s.recent, secondValue{sec, val})
	}
	// Earlier checkpoints kept the seconds in a ring, in no order: order them, keep the window.
	slices.SortFunc(s.recent, func(a, b secondValue) int { return cmp.Compare(a.sec, b.sec) })
	s.recent = slices.CompactFunc(s.recent, func(a, b secondValue) bool { return a.sec == b.sec })
	if n := len(s.recent); n > 0 {
		newest := s.recent[n-1].sec
		s.recent = slices.DeleteFunc(s.recent, func(p secondValue) bool { return p.sec <= newest-SeriesSeconds })
	}
	return nil
}

// publishedVersion leads every published value; a value that starts otherwise is not read.
const publishedVersion = 1

// encodePublished is a series as the sink publishes it for every node's board: its key, when it
// was published, its total and the seconds that counted. The values bucket is Surge's own, read
// by nodes as fast as the pipeline publishes, so the format is compact binary, not JSON.
func encodePublished(key string, st *SeriesState, now time.Time) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64*3+len(key)+8*len(st.recent))
	out = append(out, publishedVersion)
	out = binary.AppendUvarint(out, uint64(len(key)))
	out = append(out, key...)
	out = binary.AppendVarint(out, now.UnixMilli())
	return st.appendBinary(out)
}

// decodePublished reads what encodePublished wrote.
func decodePublished(data []byte) (key string, st *SeriesState, updated time.Time, err error) {
	if len(data) == 0 || data[0] != publishedVersion {
		return "", nil, time.Time{}, errors.New("published series: unknown format")
	}
	data = data[1:]
	n, w := binary.Uvarint(data)
	if w <= 0 || n > uint64(len(data)-w) {
		return "", nil, time.Time{}, errors.New("published series: bad key")
	}
	key, data = string(data[w:w+int(n)]), data[w+int(n):]
	ms, w := binary.Varint(data)
	if w <= 0 {
		return "", nil, time.Time{}, errors.New("published series: bad time")
	}
	st = &SeriesState{}
	if err := st.GobDecode(data[w:]); err != nil {
		return "", nil, time.Time{}, fmt.Errorf("published series %q: %w", key, err)
	}
	return key, st, time.UnixMilli(ms), nil
}
