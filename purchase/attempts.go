package purchase

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
)

// emitAttempts sends a batch of attempts as one purchase.attempts event. Every tap on "buy now"
// is one attempt, so the batch is written without reflection (appendAttemptsEvent), which the
// JSON library took over a microsecond per attempt to do; a batch with a string that needs
// escaping goes through the library.
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
// Data: batch}. It reports false, having appended part of it, when a string in it is not plain
// ASCII free of quotes, backslashes and the characters the library escapes (control
// characters, <, > and &): the caller then marshals with the library.
func appendAttemptsEvent(b []byte, id string, at time.Time, batch []Attempt) ([]byte, bool) {
	ok := true
	b = append(b, `{"id":`...)
	b = appendPlain(b, id, &ok)
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
		b = appendPlain(b, a.RequestID, &ok)
		b = append(b, `,"outcome":`...)
		b = appendPlain(b, a.Outcome, &ok)
		b = append(b, `,"ip":`...)
		b = appendPlain(b, a.IP, &ok)
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

// appendPlain appends s quoted, if the library would write it as it is; otherwise it sets
// *ok to false.
func appendPlain(b []byte, s string, ok *bool) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			*ok = false
			return b
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendTime appends t as time.Time's MarshalJSON does (RFC 3339 with nanoseconds, for years
// 0 to 9999; otherwise it sets *ok to false, and the library reports the error).
func appendTime(b []byte, t time.Time, ok *bool) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		*ok = false
		return b
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
