package http

import (
	"net/http"

	"github.com/surgecommerce/surge"
)

// statusOf maps every domain error code to its HTTP status. It is the only such table.
var statusOf = map[string]int{
	surge.EINVALID:      http.StatusBadRequest,
	surge.EUNAUTHORIZED: http.StatusUnauthorized,
	surge.EFORBIDDEN:    http.StatusForbidden,
	surge.ENOTFOUND:     http.StatusNotFound,
	surge.ECONFLICT:     http.StatusConflict,
	surge.ESOLDOUT:      http.StatusConflict,
	surge.ELIMIT:        http.StatusConflict,
	surge.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	surge.ERATELIMIT:    http.StatusTooManyRequests,
	surge.EUNAVAILABLE:  http.StatusServiceUnavailable,
	surge.ECLOCK:        http.StatusServiceUnavailable,
	surge.EINTERNAL:     http.StatusInternalServerError,
	surge.EPRICECHANGED: http.StatusConflict,
	surge.ECHALLENGE:    http.StatusPreconditionRequired,
}

// Status returns the HTTP status for a domain error code.
func Status(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the one error envelope every endpoint answers with.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of the error envelope. A refused catalog import carries its
// line-numbered report; a checkout refused with EPRICECHANGED the new quote.
type ErrorDetail struct {
	Code      string              `json:"code"`
	Message   string              `json:"message"`
	RequestID string              `json:"request_id"`
	Report    *surge.ImportReport `json:"report,omitempty"`
	// Quote is the price an order would charge now, with EPRICECHANGED.
	Quote *surge.PriceBreakdown `json:"quote,omitempty"`
	// Reason is the code of the risk rule that refused or challenged an attempt; Challenge the
	// proof of work it asks for, with ECHALLENGE.
	Reason    string     `json:"reason,omitempty"`
	Challenge *Challenge `json:"challenge,omitempty"`
}

// Challenge is a proof of work to send with the attempt again: a nonce such that
// SHA-256(seed + ":" + nonce) starts with bits zero bits, sent as "seed:nonce" in the
// X-Surge-Proof header.
type Challenge struct {
	Seed string `json:"seed"`
	Bits int    `json:"bits"`
}

// refusedImport is the error of an import that wrote nothing, with the report saying why.
type refusedImport struct {
	err    *surge.Error
	report *surge.ImportReport
}

func (r *refusedImport) Error() string { return r.err.Error() }

func (r *refusedImport) Unwrap() error { return r.err }

// appendJSON appends the envelope as json.Encoder writes it, newline included, without
// reflection: a sale answers tens of thousands of "sold out" a second. An import's report is
// left to the encoder.
func (b ErrorBody) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = surge.AppendJSONString(dst, b.Error.Code)
	dst = append(dst, `,"message":`...)
	dst = surge.AppendJSONString(dst, b.Error.Message)
	dst = append(dst, `,"request_id":`...)
	dst = surge.AppendJSONString(dst, b.Error.RequestID)
	return append(dst, "}}\n"...)
}
