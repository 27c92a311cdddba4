package live

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
)

// TicketTTL is how long a screen ticket opens the live stream: a browser's EventSource must put
// its credential in the address, so the credential there is short-lived and good for one thing.
const TicketTTL = time.Minute

// maxTicketLen bounds what Check reads.
const maxTicketLen = 512

// Tickets issues and checks screen tickets: HMAC-signed, naming the user, role, room and expiry.
type Tickets struct {
	key []byte
	now func() time.Time
}

// NewTickets signs tickets with key (32 bytes or more, shared by the nodes).
func NewTickets(key []byte, now func() time.Time) *Tickets {
	if now == nil {
		now = time.Now
	}
	return &Tickets{key: key, now: now}
}

// Ticket is an issued screen ticket.
type Ticket struct {
	Ticket    string    `json:"ticket"`
	Room      string    `json:"room,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Issue gives a staff member a ticket for one room's stream ("" for the platform's). Returns
// EFORBIDDEN for anyone else, EINVALID for a malformed room.
func (t *Tickets) Issue(a surge.Actor, room string) (Ticket, error) {
	if !a.Role.Staff() {
		return Ticket{}, surge.Errorf(surge.EFORBIDDEN, "the big screen is for staff")
	}
	if room != "" && !surge.ValidDim(room) {
		return Ticket{}, surge.Errorf(surge.EINVALID, "room must be 1 to %d letters, digits, '-' or '_'", surge.MaxDimLen)
	}
	exp := t.now().Add(TicketTTL)
	body := strings.Join([]string{"v1", strconv.FormatInt(a.UserID, 10), string(a.Role), room, strconv.FormatInt(exp.UnixMilli(), 10)}, ".")
	enc := base64.RawURLEncoding.EncodeToString([]byte(body))
	return Ticket{Ticket: enc + "." + base64.RawURLEncoding.EncodeToString(t.mac(enc)), Room: room, ExpiresAt: exp}, nil
}

func (t *Tickets) mac(s string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte("surge-screen-ticket:"))
	m.Write([]byte(s))
	return m.Sum(nil)
}

// Check verifies a ticket and returns who it was issued to and for which room. Returns
// EUNAUTHORIZED for a ticket that is malformed, forged or expired.
func (t *Tickets) Check(ticket string) (surge.Actor, string, error) {
	bad := surge.Errorf(surge.EUNAUTHORIZED, "the screen ticket is not valid; get a new one")
	if len(ticket) > maxTicketLen {
		return surge.Actor{}, "", bad
	}
	enc, sig, ok := strings.Cut(ticket, ".")
	if !ok {
		return surge.Actor{}, "", bad
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(got, t.mac(enc)) {
		return surge.Actor{}, "", bad
	}
	body, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil {
		return surge.Actor{}, "", bad
	}
	f := strings.Split(string(body), ".")
	if len(f) != 5 || f[0] != "v1" {
		return surge.Actor{}, "", bad
	}
	id, err1 := strconv.ParseInt(f[1], 10, 64)
	exp, err2 := strconv.ParseInt(f[4], 10, 64)
	role := surge.Role(f[2])
	if err1 != nil || err2 != nil || !role.Valid() || (f[3] != "" && !surge.ValidDim(f[3])) {
		return surge.Actor{}, "", bad
	}
	if t.now().UnixMilli() > exp {
		return surge.Actor{}, "", surge.Errorf(surge.EUNAUTHORIZED, "the screen ticket has expired; get a new one")
	}
	return surge.Actor{UserID: id, Role: role}, f[3], nil
}
