package surge

import (
	"strconv"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Business events arrive by the hundred thousand a second, and are read twice: once when they
// are ingested and once when the live metrics count them. They come in the plain form apps and
// Surge write: one flat object, names and strings without escapes, whole numbers. The readers
// here take that form straight from the bytes in one pass, checking its syntax as they go, and
// hand anything else to the JSON library, whose rules they follow exactly
// (FuzzBusinessEventJSON holds them to it). The writer gives the library's bytes.

// UnmarshalBusinessEvent reads one event from data into e as the JSON library does (the fields
// data names are set, the others kept), refusing unknown members when rejectUnknown is set.
// When the plain reading stops part way, the library reads data again over what it set: the
// same fields, to the same values.
func UnmarshalBusinessEvent(data []byte, e *BusinessEvent, rejectUnknown bool) error {
	if i, ok := e.readPlain(data, skipSpace(data, 0)); ok && skipSpace(data, i) == len(data) {
		return nil
	}
	// Into a copy: e handed to the library would be moved to the heap on every call, plain
	// events included (an allocation per event ingested).
	v := *e
	err := jsonv2.Unmarshal(data, &v, jsonv2.RejectUnknownMembers(rejectUnknown))
	*e = v
	return err
}

// UnmarshalBusinessEvents reads a JSON array of events as the JSON library does.
func UnmarshalBusinessEvents(data []byte) ([]BusinessEvent, error) {
	if evs, ok := readPlainArray(data); ok {
		return evs, nil
	}
	var evs []BusinessEvent
	err := jsonv2.Unmarshal(data, &evs)
	return evs, err
}

// readPlainArray reads data when it is an array of plain objects (see readPlain).
func readPlainArray(data []byte) ([]BusinessEvent, bool) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '[' {
		return nil, false
	}
	evs := make([]BusinessEvent, 0, len(data)/128)
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return evs, skipSpace(data, i+1) == len(data)
	}
	for {
		evs = append(evs, BusinessEvent{})
		var ok bool
		if i, ok = evs[len(evs)-1].readPlain(data, i); !ok {
			return nil, false
		}
		i = skipSpace(data, i)
		if i == len(data) {
			return nil, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return evs, skipSpace(data, i+1) == len(data)
		default:
			return nil, false
		}
	}
}

// Bits of the fields an object has named, to find a name given twice.
const (
	hasID = 1 << iota
	hasType
	hasTime
	hasPlatform
	hasUser
	hasRoom
	hasShop
	hasSKU
	hasSession
	hasOrder
	hasUnits
	hasAmount
	hasStatus
	hasText
)

// PlainValue is the value of one member of a plain JSON object (see ReadPlainObject).
type PlainValue struct {
	Kind byte   // '"' a string, '0' a whole number, 't' true, 'f' false, 'n' null
	Str  []byte // a string's content, which aliases the input
	Num  int64  // a whole number
}

// QuotedWhole is the whole number a string value holds, written as JSON writes a number of at
// most 18 digits (no sign but '-', no leading zeros), as ids are sent: "123".
func (v PlainValue) QuotedWhole() (int64, bool) {
	if v.Kind != '"' || len(v.Str) == 0 {
		return 0, false
	}
	n, end, ok := wholeNumber(v.Str, 0)
	return n, ok && end == len(v.Str)
}

// ReadPlainObject calls member for each member of the JSON object that is the whole of b (space
// around it aside), in order, when it is in the plain form: names and strings without escapes
// (and so without control characters), strings of valid UTF-8, whole numbers of at most 18
// digits, true, false or null. It checks the syntax itself and reports false at once for
// anything else, valid or not, and when member does: such input is for a JSON library, whose
// answer (the value, or why not) it leaves alone. Decoders use it as a fast path for the bodies
// clients usually send, and fall back to the library when it reports false.
func ReadPlainObject(b []byte, member func(name []byte, v PlainValue) bool) bool {
	i, ok := readPlainObject(b, skipSpace(b, 0), member)
	return ok && skipSpace(b, i) == len(b)
}

// readPlainObject is ReadPlainObject for the object at b[i]; it gives the index past it.
func readPlainObject(b []byte, i int, member func(name []byte, v PlainValue) bool) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		name, next, ok := plainString(b, i)
		if !ok {
			return i, false
		}
		if i = skipSpace(b, next); i >= len(b) || b[i] != ':' {
			return i, false
		}
		if i = skipSpace(b, i+1); i >= len(b) {
			return i, false
		}
		var v PlainValue
		switch c := b[i]; {
		case c == '"':
			v.Kind = '"'
			v.Str, i, ok = plainString(b, i)
		case c == 'n', c == 't', c == 'f':
			lit := "false"
			if c == 'n' {
				lit = "null"
			} else if c == 't' {
				lit = "true"
			}
			v.Kind = c
			ok = len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
			i += len(lit)
		case c == '-' || (c >= '0' && c <= '9'):
			v.Kind = '0'
			v.Num, i, ok = wholeNumber(b, i)
		default:
			ok = false // an object or an array: the library reads it
		}
		if !ok || !member(name, v) {
			return i, false
		}
		if i = skipSpace(b, i); i >= len(b) {
			return i, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// readPlain reads the object at b[i] into e, and gives the index past it, when it is in the plain
// form (see ReadPlainObject) and names only the event's own fields, each once, with values of
// their kinds. Anything else it reports as not plain, and the library reads it.
func (e *BusinessEvent) readPlain(b []byte, i int) (int, bool) {
	var seen int
	return readPlainObject(b, i, func(name []byte, v PlainValue) bool {
		var field *string // a string field, or
		var whole *int64  // a number field
		var bit int
		switch string(name) {
		case "id":
			field, bit = &e.ID, hasID
		case "type":
			field, bit = &e.Type, hasType
		case "platform":
			field, bit = &e.Platform, hasPlatform
		case "user":
			field, bit = &e.User, hasUser
		case "room":
			field, bit = &e.Room, hasRoom
		case "shop":
			field, bit = &e.Shop, hasShop
		case "sku":
			field, bit = &e.SKU, hasSKU
		case "session":
			field, bit = &e.Session, hasSession
		case "order":
			field, bit = &e.Order, hasOrder
		case "status":
			field, bit = &e.Status, hasStatus
		case "text":
			field, bit = &e.Text, hasText
		case "time":
			whole, bit = &e.Time, hasTime
		case "units":
			whole, bit = &e.Units, hasUnits
		case "amount":
			whole, bit = &e.Amount, hasAmount
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		switch {
		case v.Kind != 'n' && (field != nil && v.Kind != '"' || whole != nil && v.Kind != '0'):
			return false // the wrong kind of value: the library says so
		case field != nil:
			*field = eventString(bit, v.Str) // "" for null
		default:
			*whole = v.Num // 0 for null
		}
		return true
	})
}

// eventString is the string of a field's value, without a copy for the usual types and platforms.
func eventString(field int, v []byte) string {
	if len(v) == 0 {
		return ""
	}
	switch field {
	case hasType:
		for _, t := range bizTypes() {
			if string(v) == t {
				return t
			}
		}
	case hasPlatform:
		switch string(v) {
		case "ios":
			return "ios"
		case "android":
			return "android"
		case "web":
			return "web"
		case "surge":
			return "surge"
		}
	}
	return string(v)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString is the content of the JSON string at b[i] when it has no escapes (and so no
// control characters) and is valid UTF-8, and the index past its closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return s, j + 1, ascii || utf8.Valid(s)
		case c == '\\' || c < ' ':
			return nil, j, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, len(b), false
}

// wholeNumber reads the JSON number at b[i] when it is a whole number of at most 18 digits
// (which always fits an int64), and gives the index past it.
func wholeNumber(b []byte, i int) (int64, int, bool) {
	neg := b[i] == '-'
	if neg {
		i++
	}
	start := i
	var n int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > 18 || (digits > 1 && b[start] == '0') ||
		(i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E')) {
		return 0, i, false // not JSON, a fraction, an exponent, or maybe past an int64: the library decides
	}
	if neg {
		n = -n
	}
	return n, i, true
}

// AppendJSON appends the event's JSON to b: the same bytes the JSON library marshals it to,
// without reflection. It fails, as the library does, on a string that is not valid UTF-8.
func (e *BusinessEvent) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendQuoted(b, e.ID, &err)
	b = append(b, `,"type":`...)
	b = appendQuoted(b, e.Type, &err)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, e.Time, 10)
	for _, f := range [...]struct {
		name string
		v    string
	}{{`,"platform":`, e.Platform}, {`,"user":`, e.User}, {`,"room":`, e.Room}, {`,"shop":`, e.Shop},
		{`,"sku":`, e.SKU}, {`,"session":`, e.Session}, {`,"order":`, e.Order}} {
		if f.v != "" {
			b = append(b, f.name...)
			b = appendQuoted(b, f.v, &err)
		}
	}
	if e.Units != 0 {
		b = append(b, `,"units":`...)
		b = strconv.AppendInt(b, e.Units, 10)
	}
	if e.Amount != 0 {
		b = append(b, `,"amount":`...)
		b = strconv.AppendInt(b, e.Amount, 10)
	}
	if e.Status != "" {
		b = append(b, `,"status":`...)
		b = appendQuoted(b, e.Status, &err)
	}
	if e.Text != "" {
		b = append(b, `,"text":`...)
		b = appendQuoted(b, e.Text, &err)
	}
	return append(b, '}'), err
}

// appendQuoted appends s as a JSON string; the first failure is kept in err.
func appendQuoted(b []byte, s string, err *error) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	b, e := jsontext.AppendQuote(b, s)
	if e != nil && *err == nil {
		*err = e
	}
	return b
}
