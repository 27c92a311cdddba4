package risk

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/surgecommerce/surge"
)

// Kinds of the events log the risk pipeline reads; it skips every other.
const (
	kindAttempts = surge.EventPurchaseAttempts
	kindOrders   = surge.EventOrdersCreated
	kindRefunded = surge.EventOrderRefunded
	kindTick     = "live.tick" // the time the live metrics' node writes each second
)

// envelope is a message of the events log.
type envelope struct {
	Kind string         `json:"kind"`
	At   string         `json:"at"`
	Data jsontext.Value `json:"data"`
}

// split reads the envelope of a message as Surge writes its events (surge.Event: id, kind and at,
// plain strings, then data) without reading data twice, once to skip it and once to decode it:
// the attempts are most of the pipeline's input. It reports false for any other message, which
// the JSON decoder then reads.
func split(data []byte) (envelope, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(`{"id":"`))
	var kind, at []byte
	if ok {
		_, rest, ok = cutPlain(rest, `","kind":"`)
	}
	if ok {
		kind, rest, ok = cutPlain(rest, `","at":"`)
	}
	if ok {
		at, rest, ok = cutPlain(rest, `","data":`)
	}
	if ok {
		rest, ok = bytes.CutSuffix(rest, []byte("}"))
	}
	if !ok {
		return envelope{}, false
	}
	return envelope{Kind: string(kind), At: string(at), Data: rest}, true
}

// cutPlain cuts b at sep, when what comes before it is a string with nothing to unescape.
func cutPlain(b []byte, sep string) (before, after []byte, ok bool) {
	before, after, ok = bytes.Cut(b, []byte(sep))
	if ok && bytes.ContainsAny(before, `"\`) {
		return nil, nil, false
	}
	return before, after, ok
}

// attempt is what the risk pipeline reads of a purchase attempt (purchase.Attempt).
type attempt struct {
	UserID  int64     `json:"user_id,string"`
	Outcome string    `json:"outcome"`
	IP      string    `json:"ip"`
	Device  string    `json:"device"`
	Address string    `json:"address"`
	Account string    `json:"account"`
	Coupons int       `json:"coupons"`
	At      time.Time `json:"at"`
}

// order is what it reads of an order.
type order struct {
	ID         int64 `json:"id,string"`
	UserID     int64 `json:"user_id,string"`
	MerchantID int64 `json:"merchant_id,string"`
}

// Won reports whether an attempt's outcome is an order made or queued for.
func Won(outcome string) bool { return outcome == "success" || outcome == "queued" }

var lenient = jsonv2.RejectUnknownMembers(false)

// DecodeSignals reads one message of the events log into the signals it carries: a batch of
// purchase attempts, of orders made, an order refunded, or a tick of time. Other kinds carry
// none. A signal is timed when Surge took it: an attempt at its own time, anything else at the
// message's.
func DecodeSignals(data []byte) ([]Signal, error) {
	env, ok := split(data)
	if !ok {
		if err := jsonv2.Unmarshal(data, &env, lenient); err != nil {
			return nil, err
		}
	}
	switch env.Kind {
	case kindAttempts, kindOrders, kindRefunded, kindTick:
	default:
		return nil, nil
	}
	at, err := time.Parse(time.RFC3339Nano, env.At)
	if err != nil {
		return nil, fmt.Errorf("a message's time: %w", err)
	}
	ms := at.UnixMilli()
	switch env.Kind {
	case kindTick:
		return []Signal{{Kind: signalTick, At: ms}}, nil
	case kindRefunded:
		var o order
		if err := jsonv2.Unmarshal(env.Data, &o, lenient); err != nil {
			return nil, err
		}
		s := Signal{Kind: SignalRefund, User: o.UserID, At: ms}
		s.Values[onUser] = userValue(o.UserID)
		return []Signal{s}, nil
	case kindOrders:
		var list []order
		if err := jsonv2.Unmarshal(env.Data, &list, lenient); err != nil {
			return nil, err
		}
		out := make([]Signal, len(list))
		for i, o := range list {
			out[i] = Signal{Kind: SignalOrder, Self: o.UserID == o.MerchantID, User: o.UserID, At: ms}
			out[i].Values[onUser] = userValue(o.UserID)
		}
		return out, nil
	}
	var list []attempt
	if err := jsonv2.Unmarshal(env.Data, &list, lenient); err != nil {
		return nil, err
	}
	out := make([]Signal, 0, len(list))
	for _, a := range list {
		if a.UserID <= 0 {
			continue
		}
		s := Signal{Kind: SignalAttempt, Won: Won(a.Outcome), Coupons: uint8(min(max(a.Coupons, 0), 255)), User: a.UserID, At: a.At.UnixMilli()}
		if a.At.IsZero() {
			s.At = ms
		}
		s.Values = [subjects]string{userValue(a.UserID), a.Device, a.IP, NetworkOf(a.IP), a.Address, a.Account}
		out = append(out, s)
	}
	return out, nil
}

func checkVerdict(v *surge.Verdict) error {
	switch {
	case v.ID == "" || len(v.ID) > 200:
		return surge.Errorf(surge.EINVALID, "a verdict needs an id of at most 200 bytes")
	case !surge.ValidSubject(v.Subject) || v.Value == "" || len(v.Value) > surge.MaxDeviceIDLen:
		return surge.Errorf(surge.EINVALID, "a verdict needs a subject (user, device, ip, network) and its value")
	case v.Action != surge.ActionBlock && v.Action != surge.ActionChallenge:
		return surge.Errorf(surge.EINVALID, "a verdict's action is block or challenge")
	case v.Action == surge.ActionChallenge && (v.Bits < surge.MinChallengeBits || v.Bits > surge.MaxChallengeBits):
		return surge.Errorf(surge.EINVALID, "a challenge's bits are between %d and %d", surge.MinChallengeBits, surge.MaxChallengeBits)
	case v.Mode != surge.ModeDryRun && v.Mode != surge.ModeEnforcing:
		return surge.Errorf(surge.EINVALID, "a verdict's mode is dry_run or enforcing")
	case !validReason(v.Reason):
		return surge.Errorf(surge.EINVALID, "a verdict's reason is a code")
	case !v.ExpiresAt.After(v.CreatedAt):
		return surge.Errorf(surge.EINVALID, "a verdict ends after it is made")
	}
	if v.Subject == surge.SubjectUser {
		if _, err := strconv.ParseInt(v.Value, 10, 64); err != nil {
			return surge.Errorf(surge.EINVALID, "a verdict about a user names the user's id")
		}
	}
	return nil
}
