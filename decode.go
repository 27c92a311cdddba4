package surge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DecodeJSON decodes exactly one JSON value from r into v, refusing unknown fields, trailing
// data and invalid UTF-8 (which encoding/json would silently replace). Every failure is a domain
// error: ETOOLARGE when r was cut off by http.MaxBytesReader, EINVALID otherwise, with a message
// that names the problem without echoing the input. Callers bound r.
func DecodeJSON(r io.Reader, v any) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return JSONError(err)
	}
	return DecodeJSONBytes(body, v)
}

// DecodeJSONBytes is DecodeJSON on a byte slice.
func DecodeJSONBytes(body []byte, v any) error {
	if !utf8.Valid(body) {
		return Errorf(EINVALID, "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return JSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return JSONError(err)
		}
		return Errorf(EINVALID, "the body must hold one JSON value")
	}
	return nil
}

// AppendJSONString appends s quoted as encoding/json writes it, escaping HTML's special
// characters and replacing invalid UTF-8: as it is when it is plain ASCII free of those and of
// quotes, backslashes and control characters, and otherwise by the library itself. Hot answers
// and events are written by hand with it, without reflection.
func AppendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// JSONError describes a JSON decoding error as a domain error.
func JSONError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var mb *http.MaxBytesError
	if e, ok := errors.AsType[*Error](err); ok { // a value's own decoder said what is wrong
		return e
	}
	switch {
	case errors.As(err, &mb):
		return Errorf(ETOOLARGE, "the body is larger than %d bytes", mb.Limit)
	case errors.Is(err, io.EOF):
		return Errorf(EINVALID, "the body is empty; a JSON value is required")
	case errors.As(err, &se):
		return Errorf(EINVALID, "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return Errorf(EINVALID, "field %s must be %s", te.Field, jsonKind(te.Type.String()))
		}
		return Errorf(EINVALID, "a value must be %s", jsonKind(te.Type.String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(EINVALID, "the JSON ends early")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return Errorf(EINVALID, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	case strings.Contains(err.Error(), ",string"):
		return Errorf(EINVALID, "ids must be JSON strings of digits, such as \"123\"")
	}
	return Errorf(EINVALID, "malformed JSON: %s", fmt.Sprint(strings.TrimPrefix(err.Error(), "json: ")))
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number in range"
	case goType == "string", strings.HasSuffix(goType, "Role"):
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case goType == "time.Time":
		return "an RFC 3339 time"
	}
	return "an object"
}

// IDList is a list of 64-bit ids, written in JSON as an array of strings of digits, as single
// ids are: JavaScript numbers lose digits past 2^53.
type IDList []int64

// MarshalJSON writes the ids as strings.
func (l IDList) MarshalJSON() ([]byte, error) {
	b := append(make([]byte, 0, 2+len(l)*21), '[')
	for i, id := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(strconv.AppendInt(append(b, '"'), id, 10), '"')
	}
	return append(b, ']'), nil
}

// UnmarshalJSON reads an array of positive ids written as strings of digits.
func (l *IDList) UnmarshalJSON(b []byte) error {
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return Errorf(EINVALID, "ids must be an array of JSON strings of digits, such as [\"123\"]")
	}
	out := make(IDList, len(ss))
	for i, s := range ss {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
			return Errorf(EINVALID, "id %d of the list must be a positive whole number written as a string of digits", i+1)
		}
		out[i] = id
	}
	*l = out
	return nil
}
