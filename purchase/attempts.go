package purchase

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
)

// emitAttempts sends a batch of attempts as one purchase.attempts event. Every tap on "buy now"
// is one attempt, so the batch is written without reflection (appendAttemptsEvent), which the
// JSON library took over a microsecond per attempt to do.
func (s *Service) emitAttempts(batch []Attempt) {
	id, at := s.eventID(surge.EventPurchaseAttempts), s.now().UTC()
	b, ok := appendAttemptsEvent(make([]byte, 0, 96+192*len(batch)), id, at, batch)
	var err error
	if !ok {
		b, err = json.Marshal(surge.Event{ID: id, Kind: surge.EventPurchaseAttempts, At: at, Data: batch})
	}
	s.send(surge.EventPurchaseAttempts, id, b, err)
}

// appendAttemptsEvent appends to b the JSON of the purchase.attempts event of batch: the bytes
// json.Marshal writes for surge.Event{ID: id, Kind: surge.EventPurchaseAttempts, At: at,
// Data: batch}. A string that needs escaping is quoted by the library, alone, so a shopper's odd
// request id costs only itself. It reports false, having appended part of it, for a time that
// is not UTC: the caller then marshals the whole event with the library.
func appendAttemptsEvent(b []byte, id string, at time.Time, batch []Attempt) ([]byte, bool) {
	ok := true
	b = append(b, `{"id":`...)
	b = surge.AppendJSONString(b, id)
	b = append(b, `,"kind":"`+surge.EventPurchaseAttempts+`","at":`...)
	b = appendTime(b, at, &ok)
	b = append(b, `,"data":[`...)
	for i := range batch {
		a := &batch[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"item_id":"`...)
		b = strconv.AppendInt(b, a.ItemID, 10)
		b = append(b, `","user_id":"`...)
		b = strconv.AppendInt(b, a.UserID, 10)
		b = append(b, `","quantity":`...)
		b = strconv.AppendInt(b, a.Quantity, 10)
		b = append(b, `,"request_id":`...)
		b = surge.AppendJSONString(b, a.RequestID)
		b = append(b, `,"outcome":`...)
		b = surge.AppendJSONString(b, a.Outcome)
		b = append(b, `,"ip":`...)
		b = surge.AppendJSONString(b, a.IP)
		for _, f := range [...]struct{ name, v string }{{`,"device":`, a.Device}, {`,"address":`, a.Address}, {`,"account":`, a.Account}} {
			if f.v != "" {
				b = append(b, f.name...)
				b = surge.AppendJSONString(b, f.v)
			}
		}
		if a.Coupons != 0 {
			b = append(b, `,"coupons":`...)
			b = strconv.AppendInt(b, int64(a.Coupons), 10)
		}
		b = append(b, `,"at":`...)
		b = appendTime(b, a.At, &ok)
		if a.Test {
			b = append(b, `,"test":true`...)
		}
		b = append(b, '}')
	}
	if batch == nil {
		b = append(b[:len(b)-1], "null"...) // the library writes a nil list as null
	} else {
		b = append(b, ']')
	}
	return append(b, '}'), ok
}

// appendTime appends t as time.Time's MarshalJSON does: RFC 3339 with nanoseconds. It takes UTC
// times of years 0 to 9999, as the node's are; for any other it sets *ok to false (the library
// then writes the zone's offset, or reports the error).
func appendTime(b []byte, t time.Time, ok *bool) []byte {
	if _, offset := t.Zone(); offset != 0 || t.Year() < 0 || t.Year() > 9999 {
		*ok = false
		return b
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
