package risk

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// What features are kept about. A signal (an attempt, an order, a refund) names some of these;
// each has its own counts.
const (
	onUser = iota
	onDevice
	onIP
	onNetwork
	onAddress
	onAccount
	subjects
)

var subjectNames = [subjects]string{"user", "device", "ip", "network", "address", "account"}

// Signal is what the features are computed from: one thing a shopper did, read from the events
// log. Values that are empty are not counted.
type Signal struct {
	Kind    uint8 // attempt, order, refund
	Won     bool  // an attempt that reserved (or queued for) stock: an order
	Coupons uint8 // coupons an attempt that won named
	Self    bool  // an order of a shop by its own account
	User    int64
	Values  [subjects]string // user (decimal), device, ip, network, address, account
	At      int64            // when Surge took it, milliseconds since the Unix epoch
}

// Signal kinds.
const (
	SignalAttempt = iota + 1
	SignalOrder
	SignalRefund
	signalTick // moves time only
)

// NetworkOf is the network an IP is in: its /24 for IPv4, its /48 for IPv6; "" for no IP.
func NetworkOf(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	return networkPrefix(a).String()
}

func networkPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// entity is what is kept about one subject.
type entity struct {
	attempts window
	orders   window
	accounts accounts // of a device, IP, network, address or account: the users seen on it
	more     *extra   // what few subjects need: allocated on first use
}

type extra struct {
	coupons  window
	refunds  window
	self     window
	verdicts []ruleEnd // the verdicts rules made about the subject, while they last
}

// ruleEnd is a verdict a version of a rule made about a subject, until the second end: while
// it lasts that version is not evaluated for the subject again. A rule changed (its mode
// switched from dry-run to enforcing, say) is a new version, which decides afresh.
type ruleEnd struct {
	rule, version int64
	end           int64
}

// decided reports whether the rule's version has a verdict about the subject that lasts past
// now.
func (e *entity) decided(rule, version, now int64) bool {
	if e.more == nil {
		return false
	}
	for _, v := range e.more.verdicts {
		if v.rule == rule && v.version == version && v.end > now {
			return true
		}
	}
	return false
}

// decide records a verdict of the rule's version until end, in place of the rule's earlier one.
func (e *entity) decide(rule, version, end int64) {
	x := e.extra()
	for i := range x.verdicts {
		if x.verdicts[i].rule == rule {
			x.verdicts[i] = ruleEnd{rule, version, end}
			return
		}
	}
	x.verdicts = append(x.verdicts, ruleEnd{rule, version, end})
}

func (e *entity) extra() *extra {
	if e.more == nil {
		e.more = &extra{}
	}
	return e.more
}

// last is the last second anything was counted for the subject.
func (e *entity) last() int64 {
	at := max(e.attempts.at, e.orders.at)
	for _, s := range e.accounts {
		at = max(at, int64(s.minute)*60)
	}
	if e.more != nil {
		at = max(at, e.more.coupons.at, e.more.refunds.at, e.more.self.at)
	}
	return at
}

// Verdicts is how many verdicts of rules about subjects last.
func (f *Features) Verdicts() int {
	n := 0
	for _, m := range f.by {
		for _, e := range m {
			if e.more != nil {
				n += len(e.more.verdicts)
			}
		}
	}
	return n
}

// Features are the counts of every subject seen in the last hour, keyed by a hash of the value.
type Features struct {
	by [subjects]map[uint64]*entity
}

// NewFeatures returns empty features.
func NewFeatures() *Features {
	f := &Features{}
	for i := range f.by {
		f.by[i] = map[uint64]*entity{}
	}
	return f
}

// Keys is how many subjects are kept.
func (f *Features) Keys() int {
	n := 0
	for _, m := range f.by {
		n += len(m)
	}
	return n
}

func keyOf(v string) uint64 { return xxhash.Sum64String(v) }

// Add counts a signal and returns the entities it touched, by subject (nil where it named none).
func (f *Features) Add(s *Signal, ents *[subjects]*entity) {
	sec := s.At / 1000
	userHash := uint32(keyOf(s.Values[onUser]))
	for i, v := range s.Values {
		if v == "" {
			ents[i] = nil
			continue
		}
		k := keyOf(v)
		e := f.by[i][k]
		if e == nil {
			e = &entity{}
			f.by[i][k] = e
		}
		ents[i] = e
		switch s.Kind {
		case SignalAttempt:
			e.attempts.add(sec, 1)
			if s.Won {
				e.orders.add(sec, 1)
				if s.Coupons > 0 {
					e.extra().coupons.add(sec, uint32(s.Coupons))
				}
			}
			if i != onUser && s.Values[onUser] != "" {
				e.accounts.add(userHash, uint32(sec/60))
			}
		case SignalOrder:
			if s.Self {
				e.extra().self.add(sec, 1)
			}
		case SignalRefund:
			e.extra().refunds.add(sec, 1)
		}
	}
}

// Count counts a signal.
func (f *Features) Count(s *Signal) {
	var ents [subjects]*entity
	f.Add(s, &ents)
}

// Forget drops the verdicts that ended by second now, and the subjects nothing was counted for
// in the last hour that have none left.
func (f *Features) Forget(now int64) {
	for _, m := range f.by {
		for k, e := range m {
			if e.more != nil && len(e.more.verdicts) > 0 {
				e.more.verdicts = slices.DeleteFunc(e.more.verdicts, func(v ruleEnd) bool { return v.end <= now })
			}
			if e.last() <= now-3600 && (e.more == nil || len(e.more.verdicts) == 0) {
				delete(m, k)
			}
		}
	}
}

// feature is one value a rule can read: a count of a subject.
type feature struct {
	name    string
	subject int
	value   func(e *entity, now int64) int64
}

func extraValue(f func(x *extra, now int64) int64) func(*entity, int64) int64 {
	return func(e *entity, now int64) int64 {
		if e.more == nil {
			return 0
		}
		return f(e.more, now)
	}
}

// featureList is every feature, named as rules write them: attempts_10s.device.
var featureList = func() []feature {
	var out []feature
	add := func(name string, on []int, v func(*entity, int64) int64) {
		for _, s := range on {
			out = append(out, feature{name: name + "." + subjectNames[s], subject: s, value: v})
		}
	}
	all := []int{onUser, onDevice, onIP, onNetwork, onAddress, onAccount}
	add("attempts_10s", all, func(e *entity, now int64) int64 { return e.attempts.last10s(now) })
	add("attempts_1m", all, func(e *entity, now int64) int64 { return e.attempts.lastMinute(now) })
	add("attempts_1h", all, func(e *entity, now int64) int64 { return e.attempts.lastHour(now) })
	add("orders_10s", all, func(e *entity, now int64) int64 { return e.orders.last10s(now) })
	add("orders_1m", all, func(e *entity, now int64) int64 { return e.orders.lastMinute(now) })
	add("orders_1h", all, func(e *entity, now int64) int64 { return e.orders.lastHour(now) })
	add("accounts_1h", all[1:], func(e *entity, now int64) int64 { return e.accounts.lastHour(uint32(now / 60)) })
	add("coupons_1h", all, extraValue(func(x *extra, now int64) int64 { return x.coupons.lastHour(now) }))
	add("refunds_1h", []int{onUser}, extraValue(func(x *extra, now int64) int64 { return x.refunds.lastHour(now) }))
	add("self_orders_1h", []int{onUser}, extraValue(func(x *extra, now int64) int64 { return x.self.lastHour(now) }))
	return out
}()

var featureIndex = func() map[string]int {
	m := make(map[string]int, len(featureList))
	for i, f := range featureList {
		m[f.name] = i
	}
	return m
}()

// FeatureNames lists the features rules can read.
func FeatureNames() []string {
	out := make([]string, len(featureList))
	for i, f := range featureList {
		out[i] = f.name
	}
	return out
}

// Value is a feature of a subject (by name, as rules write it) at second now; false for a
// feature that does not exist.
func (f *Features) Value(name, value string, now int64) (int64, bool) {
	i, ok := featureIndex[name]
	if !ok {
		return 0, false
	}
	ft := featureList[i]
	e := f.by[ft.subject][keyOf(value)]
	if e == nil {
		return 0, true
	}
	return ft.value(e, now), true
}

// Encoding of the features in a checkpoint: per subject its count of entities, then each
// entity's key, its two windows, its accounts (a count and each), and a flag byte followed by
// its extra when it has one.
func (f *Features) appendTo(b []byte) []byte {
	for _, m := range f.by {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(m)))
		keys := make([]uint64, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys) // the same state encodes the same
		for _, k := range keys {
			e := m[k]
			b = binary.LittleEndian.AppendUint64(b, k)
			b = e.attempts.appendTo(b)
			b = e.orders.appendTo(b)
			b = append(b, byte(len(e.accounts)))
			for _, s := range e.accounts {
				b = binary.LittleEndian.AppendUint32(b, s.user)
				b = binary.LittleEndian.AppendUint32(b, s.minute)
			}
			if e.more == nil {
				b = append(b, 0)
				continue
			}
			b = append(b, 1)
			b = e.more.coupons.appendTo(b)
			b = e.more.refunds.appendTo(b)
			b = e.more.self.appendTo(b)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(e.more.verdicts)))
			for _, v := range e.more.verdicts {
				b = binary.LittleEndian.AppendUint64(b, uint64(v.rule))
				b = binary.LittleEndian.AppendUint64(b, uint64(v.version))
				b = binary.LittleEndian.AppendUint64(b, uint64(v.end))
			}
		}
	}
	return b
}

var errShort = fmt.Errorf("risk features: the checkpoint is cut short")

func (f *Features) readFrom(b []byte) ([]byte, error) {
	for i := range f.by {
		if len(b) < 8 {
			return nil, errShort
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if n > uint64(len(b)/(8+2*windowBytes+2)) {
			return nil, errShort
		}
		m := make(map[uint64]*entity, n)
		for range n {
			if len(b) < 8+2*windowBytes+2 {
				return nil, errShort
			}
			k := binary.LittleEndian.Uint64(b)
			e := &entity{}
			b = e.orders.readFrom(e.attempts.readFrom(b[8:]))
			na := int(b[0])
			b = b[1:]
			if na > maxAccounts || len(b) < 8*na+1 {
				return nil, errShort
			}
			for range na {
				e.accounts = append(e.accounts, seenUser{binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])})
				b = b[8:]
			}
			flag := b[0]
			b = b[1:]
			if flag == 1 {
				if len(b) < 3*windowBytes {
					return nil, errShort
				}
				x := e.extra()
				b = x.self.readFrom(x.refunds.readFrom(x.coupons.readFrom(b)))
				if len(b) < 4 {
					return nil, errShort
				}
				nv := binary.LittleEndian.Uint32(b)
				b = b[4:]
				if uint64(nv) > uint64(len(b)/24) {
					return nil, errShort
				}
				for range nv {
					x.verdicts = append(x.verdicts, ruleEnd{int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:])),
						int64(binary.LittleEndian.Uint64(b[16:]))})
					b = b[24:]
				}
			} else if flag != 0 {
				return nil, fmt.Errorf("risk features: a subject's flag %d is neither 0 nor 1", flag)
			}
			m[k] = e
		}
		f.by[i] = m
	}
	return b, nil
}

// userValue is a user id as the features and verdicts name it.
func userValue(id int64) string { return strconv.FormatInt(id, 10) }
