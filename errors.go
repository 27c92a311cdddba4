// Package surge holds the domain vocabulary of the Surge flash-sale and real-time platform:
// the entities, their validation rules and limits, the error codes every layer speaks, and the
// storage ports that have more than one real backend.
package surge

import (
	"errors"
	"fmt"
)

// Domain error codes. Callers branch on these, never on message text.
const (
	EINVALID      = "EINVALID"      // the request is malformed or breaks a rule
	ENOTFOUND     = "ENOTFOUND"     // the entity does not exist (or is not visible to the caller)
	ECONFLICT     = "ECONFLICT"     // the entity exists already or is in a state that forbids the change
	EUNAUTHORIZED = "EUNAUTHORIZED" // no valid credentials
	EFORBIDDEN    = "EFORBIDDEN"    // valid credentials but the role may not do this
	ETOOLARGE     = "ETOOLARGE"     // the request body is larger than allowed
	ERATELIMIT    = "ERATELIMIT"    // too many requests; retry later
	ESOLDOUT      = "ESOLDOUT"      // no stock left
	ELIMIT        = "ELIMIT"        // a per-user limit would be exceeded
	EUNAVAILABLE  = "EUNAVAILABLE"  // a backend is down or the node is shedding load
	ECLOCK        = "ECLOCK"        // a clock is off: the server's stepped back further than can be waited out, or an event's time is too far from the server's
	EINTERNAL     = "EINTERNAL"     // a bug or an unexpected failure
	// EPRICECHANGED: the price an order would charge is not the one the shopper was quoted (an
	// activity ended, ran out or changed, a list price moved); the error carries the new quote.
	EPRICECHANGED = "EPRICECHANGED"
	// ECHALLENGE: risk control asks for a proof of work before it takes the attempt; the error
	// carries the puzzle (RiskRefusal).
	ECHALLENGE = "ECHALLENGE"
)

// Error is a domain error: a code callers branch on and a message safe to show to a user.
type Error struct {
	Code    string
	Message string
	// RetryAfterMs, when positive, is how long the caller should wait before trying again:
	// a refusal for load (EUNAVAILABLE, ERATELIMIT) says when the node expects to have room.
	RetryAfterMs int64
}

// RetryAfterMsHeader is the HTTP header that carries a refusal's RetryAfterMs. Retry-After itself
// counts whole seconds; a node shedding load expects room again within a fraction of one.
const RetryAfterMsHeader = "Retry-After-Ms"

// RetryAfter returns a copy of e that tells the caller to retry after ms milliseconds.
func RetryAfter(e *Error, ms int64) *Error {
	c := *e
	c.RetryAfterMs = ms
	return &c
}

// RetryAfterMs returns the retry hint of the first domain error in err's chain (0 for none).
func RetryAfterMs(err error) int64 {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.RetryAfterMs
	}
	return 0
}

// Error implements the error interface.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns a domain error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first domain error in err's chain, EINTERNAL for any other
// non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok { // no allocation, unlike errors.As: every answer asks
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of the first domain error in err's chain, or a
// generic text for any other error so internals never leak to callers.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Message
	}
	return "internal error"
}
