package risk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"maps"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/surgecommerce/surge"
)

// Timings of a gate's verdicts. Verdicts come from the pipeline's node as they are made (a note
// on the bus); every CatchUpEvery the gate also reads those made since its last look from the
// store, in case a note was lost, and every ReloadEvery (as the blacklist) it reads them all again, which is when
// one that expired is dropped.
const (
	CatchUpEvery = time.Second
	// ProofTTL is how long a challenge's seed can be solved and sent.
	ProofTTL       = 2 * time.Minute
	maxNonce       = 64
	maxOutcomeKey  = 10_000 // sessions × actions counted per second before they are sent
	catchUpOverlap = 5 * time.Second
	maxActed       = 1 << 20
	maxUsed        = 1 << 22 // proofs taken within ProofTTL: 35,000 a second
)

// NotesSubject is where verdicts and allow-list changes go to every gate (core NATS).
const NotesSubject = "surge.notes.risk"

// held is what a gate holds about one subject: its block, its challenge and its dry-run
// verdict, if any. A block acts before a challenge; a challenge outlives a shorter block.
type held struct {
	block, challenge, dry *surge.Verdict
}

// table is a gate's verdicts and allow-list entries about one kind of subject.
type table[K comparable] struct {
	v     map[K]held
	allow map[K]time.Time
}

func newTable[K comparable]() table[K] {
	return table[K]{v: map[K]held{}, allow: map[K]time.Time{}}
}

func (t *table[K]) put(k K, v *surge.Verdict) {
	h := t.v[k]
	slot := &h.block
	switch {
	case v.Mode == surge.ModeDryRun:
		slot = &h.dry
	case v.Action == surge.ActionChallenge:
		slot = &h.challenge
	}
	if *slot == nil || outlasts(v, *slot) {
		*slot = v
	}
	t.v[k] = h
}

// outlasts reports whether a takes the place of b of the same kind: the one that lasts longer,
// or of two that end together the harder challenge.
func outlasts(a, b *surge.Verdict) bool {
	if !a.ExpiresAt.Equal(b.ExpiresAt) {
		return a.ExpiresAt.After(b.ExpiresAt)
	}
	return a.Bits > b.Bits
}

// stronger reports whether a acts before b: a block before a challenge, a harder challenge
// before an easier one.
func stronger(a, b *surge.Verdict) bool {
	if a.Action != b.Action {
		return a.Action == surge.ActionBlock
	}
	return a.Bits > b.Bits
}

func (t *table[K]) allowed(k K, now time.Time) bool {
	exp, ok := t.allow[k]
	return ok && now.Before(exp)
}

// lookup adds what the table holds about k (unless it is allowed) to the attempt's verdicts:
// act becomes the one that acts first of those that last past now.
func (t *table[K]) lookup(k K, now time.Time, act, dry **surge.Verdict) {
	h, ok := t.v[k]
	if !ok || t.allowed(k, now) {
		return
	}
	for _, v := range [2]*surge.Verdict{h.block, h.challenge} {
		if v != nil && now.Before(v.ExpiresAt) && (*act == nil || stronger(v, *act)) {
			*act = v
		}
	}
	if h.dry != nil && now.Before(h.dry.ExpiresAt) {
		*dry = h.dry
	}
}

func (t *table[K]) size() int { return len(t.v) }

// sets is every table of a gate.
type sets struct {
	users   table[int64]
	devices table[string]
	ips     table[netip.Addr]
	nets    table[netip.Prefix]
}

func newSets() *sets {
	return &sets{users: newTable[int64](), devices: newTable[string](), ips: newTable[netip.Addr](), nets: newTable[netip.Prefix]()}
}

// put files a verdict under its subject; one whose value does not parse is left out.
func (s *sets) put(v *surge.Verdict) {
	switch v.Subject {
	case surge.SubjectUser:
		if id, err := strconv.ParseInt(v.Value, 10, 64); err == nil {
			s.users.put(id, v)
		}
	case surge.SubjectDevice:
		s.devices.put(v.Value, v)
	case surge.SubjectIP:
		if a, err := netip.ParseAddr(v.Value); err == nil {
			s.ips.put(a.Unmap(), v)
		}
	case surge.SubjectNetwork:
		if p, err := netip.ParsePrefix(v.Value); err == nil {
			s.nets.put(p.Masked(), v)
		}
	}
}

// allow files an allow-list entry (exp zero removes it).
func (s *sets) allow(subject, value string, exp time.Time) {
	switch subject {
	case surge.SubjectUser:
		if id, err := strconv.ParseInt(value, 10, 64); err == nil {
			setAllow(s.users.allow, id, exp)
		}
	case surge.SubjectDevice:
		setAllow(s.devices.allow, value, exp)
	case surge.SubjectIP:
		if a, err := netip.ParseAddr(value); err == nil {
			setAllow(s.ips.allow, a.Unmap(), exp)
		}
	case surge.SubjectNetwork:
		if p, err := netip.ParsePrefix(value); err == nil {
			setAllow(s.nets.allow, p.Masked(), exp)
		}
	}
}

func setAllow[K comparable](m map[K]time.Time, k K, exp time.Time) {
	if exp.IsZero() {
		delete(m, k)
		return
	}
	m[k] = exp
}

// merge puts in the verdicts of old that still act.
func (s *sets) merge(old *sets, now time.Time) {
	mergeTable(&s.users, &old.users, now)
	mergeTable(&s.devices, &old.devices, now)
	mergeTable(&s.ips, &old.ips, now)
	mergeTable(&s.nets, &old.nets, now)
}

func mergeTable[K comparable](t, old *table[K], now time.Time) {
	for k, h := range old.v {
		for _, v := range [3]*surge.Verdict{h.block, h.challenge, h.dry} {
			if v != nil && now.Before(v.ExpiresAt) {
				t.put(k, v)
			}
		}
	}
}

// purge drops the subjects whose verdicts have all ended.
func (s *sets) purge(now time.Time) {
	purgeTable(&s.users, now)
	purgeTable(&s.devices, now)
	purgeTable(&s.ips, now)
	purgeTable(&s.nets, now)
}

func purgeTable[K comparable](t *table[K], now time.Time) {
	maps.DeleteFunc(t.v, func(_ K, h held) bool {
		for _, v := range [3]*surge.Verdict{h.block, h.challenge, h.dry} {
			if v != nil && now.Before(v.ExpiresAt) {
				return false
			}
		}
		return true
	})
}

func (s *sets) size() int { return s.users.size() + s.devices.size() + s.ips.size() + s.nets.size() }

// Attempt is what the gate checks of a purchase attempt.
type Attempt struct {
	User      int64
	Device    string // the app's X-Device-Id
	IP        string // the client IP as the gate saw it
	Proof     string // X-Surge-Proof: a solved challenge
	Item      int64
	Session   int64
	RequestID string
}

// Gate holds every verdict that acts now, in memory, and screens attempts against them.
type Gate struct {
	store surge.RiskStore
	bus   surge.EventEmitter
	log   *slog.Logger
	now   func() time.Time
	key   []byte // signs challenge seeds
	node  string // names this gate's events

	mu      sync.RWMutex
	sets    *sets
	maxHeld int // subjects held at most: surge.MaxRiskVerdicts

	since    time.Time // the catch-up's place: the last verdict it read (Run's own)
	sinceID  string
	lastGood atomic.Int64
	stale    atomic.Bool

	outMu    sync.Mutex
	outcomes map[surge.RiskOutcome]int64 // keyed with Count 0

	// acted holds the ids of the verdicts that stopped an attempt here, so that each one's delay
	// is measured once, at its first; forgotten past maxActed.
	acted  sync.Map
	nActed atomic.Int64

	// used holds the seeds whose proof this gate took, until they end: a proof is taken once.
	usedMu sync.Mutex
	used   map[string]int64 // seed → its end, Unix seconds

	m gateMetrics
}

type gateMetrics struct {
	screened      *prometheus.CounterVec
	blocked       prometheus.Counter // screened's series, taken once: refusals are a bot storm's hot path
	challenged    prometheus.Counter
	solved        prometheus.Counter
	dryRun        prometheus.Counter
	delay         prometheus.Histogram
	arrival       prometheus.Histogram
	refreshErrors prometheus.Counter
	droppedCounts prometheus.Counter
}

// NewGate returns a gate over a store; key signs its challenges (the nodes of a deployment
// share it). Call Reload, then Run.
func NewGate(store surge.RiskStore, bus surge.EventEmitter, key []byte, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) *Gate {
	if now == nil {
		now = time.Now
	}
	g := &Gate{store: store, bus: bus, key: key, log: log, now: now, sets: newSets(), outcomes: map[surge.RiskOutcome]int64{},
		node: strconv.FormatUint(rand.Uint64(), 36), used: map[string]int64{}, maxHeld: surge.MaxRiskVerdicts}
	g.m = gateMetrics{
		screened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "surge_risk_gate_attempts_total",
			Help: "Purchase attempts risk verdicts acted on, by what the gate did: block, challenge (a proof asked for), solved (a proof taken), dry_run (a dry-run rule would have refused)."}, []string{"action"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_risk_verdict_delay_seconds",
			Help:    "From when Surge took the event that made a verdict to the first attempt it stopped at this gate.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		arrival: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "surge_risk_verdict_arrival_seconds",
			Help:    "From when Surge took the event that made a verdict to the verdict's note reaching this gate.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_risk_refresh_errors_total",
			Help: "Reads of verdicts from the store that failed: the gate kept the verdicts it had."}),
		droppedCounts: prometheus.NewCounter(prometheus.CounterOpts{Name: "surge_risk_outcomes_dropped_total",
			Help: "Gate outcomes not counted for the live metrics: too many sessions in one second."}),
	}
	g.m.blocked, g.m.challenged = g.m.screened.WithLabelValues(surge.ActionBlock), g.m.screened.WithLabelValues(surge.ActionChallenge)
	g.m.solved, g.m.dryRun = g.m.screened.WithLabelValues("solved"), g.m.screened.WithLabelValues(surge.ModeDryRun)
	if reg != nil {
		reg.MustRegister(g.m.screened, g.m.delay, g.m.arrival, g.m.refreshErrors, g.m.droppedCounts,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "surge_risk_verdicts_held", Help: "Subjects this gate holds verdicts about."},
				func() float64 { g.mu.RLock(); defer g.mu.RUnlock(); return float64(g.sets.size()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "surge_risk_verdicts_stale",
				Help: "1 while the verdict store cannot be read: the gate acts on the verdicts it holds and those the bus brings."},
				func() float64 { return b2f(g.stale.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "surge_risk_verdicts_age_seconds",
				Help: "Seconds since the gate last read its verdicts from the store."},
				func() float64 { return g.now().Sub(time.UnixMilli(g.lastGood.Load())).Seconds() }))
	}
	return g
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Screen checks an attempt against the verdicts that act now: nil lets it through; a
// *surge.RiskRefusal refuses it (EFORBIDDEN) or asks for a proof of work (ECHALLENGE) that the
// attempt did not bring. An allow-listed user, or subject, is not refused.
func (g *Gate) Screen(a Attempt) error {
	now := g.now()
	addr, ipErr := netip.ParseAddr(a.IP)
	addr = addr.Unmap()
	var v, dry *surge.Verdict
	g.mu.RLock()
	s := g.sets
	if s.users.allowed(a.User, now) {
		g.mu.RUnlock()
		return nil
	}
	s.users.lookup(a.User, now, &v, &dry)
	if a.Device != "" {
		s.devices.lookup(a.Device, now, &v, &dry)
	}
	if ipErr == nil {
		s.ips.lookup(addr, now, &v, &dry)
		s.nets.lookup(networkPrefix(addr), now, &v, &dry)
	}
	g.mu.RUnlock()
	if dry != nil {
		g.count(a.Session, surge.ModeDryRun, g.m.dryRun, now)
	}
	if v == nil {
		return nil
	}
	if _, seen := g.acted.LoadOrStore(v.ID, struct{}{}); !seen {
		g.m.delay.Observe(now.Sub(v.Trigger).Seconds())
		if g.nActed.Add(1) > maxActed {
			g.acted.Clear()
			g.nActed.Store(0)
		}
	}
	if v.Action == surge.ActionChallenge {
		if g.proved(a, v.Bits, now) {
			g.m.solved.Inc()
			return nil
		}
		g.count(a.Session, surge.ActionChallenge, g.m.challenged, now)
		return &surge.RiskRefusal{Err: surge.Errorf(surge.ECHALLENGE, "risk control asks for a proof of work (%s)", v.Reason),
			Reason: v.Reason, Seed: g.seed(a, now.Add(ProofTTL)), Bits: v.Bits}
	}
	g.count(a.Session, surge.ActionBlock, g.m.blocked, now)
	return &surge.RiskRefusal{Err: surge.Errorf(surge.EFORBIDDEN, "rejected by risk control (%s)", v.Reason), Reason: v.Reason}
}

// count counts an outcome for the metrics and the live platform.
func (g *Gate) count(session int64, action string, c prometheus.Counter, now time.Time) {
	c.Inc()
	k := surge.RiskOutcome{Session: session, Action: action, Second: now.Unix()}
	g.outMu.Lock()
	if _, ok := g.outcomes[k]; ok || len(g.outcomes) < maxOutcomeKey {
		g.outcomes[k]++
	} else {
		g.m.droppedCounts.Inc()
	}
	g.outMu.Unlock()
}

// seed is a challenge for an attempt: its end and a MAC of the attempt's user, item and request
// id with it. A solution holds for that request only (a retry of it is the same request).
func (g *Gate) seed(a Attempt, until time.Time) string {
	end := strconv.FormatInt(until.Unix(), 36)
	return end + "." + base64.RawURLEncoding.EncodeToString(g.mac(a, end))
}

func (g *Gate) mac(a Attempt, end string) []byte {
	h := hmac.New(sha256.New, g.key)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], uint64(a.User))
	binary.LittleEndian.PutUint64(b[8:], uint64(a.Item))
	h.Write(b[:])
	h.Write([]byte(end + "|" + a.RequestID))
	return h.Sum(nil)[:12]
}

// proved reports whether the attempt brings a solution, of at least bits, to a seed this
// deployment gave for it that has not ended.
func (g *Gate) proved(a Attempt, bits int, now time.Time) bool {
	seed, nonce, ok := strings.Cut(a.Proof, ":")
	if !ok || len(nonce) == 0 || len(nonce) > maxNonce {
		return false
	}
	end, tag, ok := strings.Cut(seed, ".")
	if !ok {
		return false
	}
	until, err := strconv.ParseInt(end, 36, 64)
	if err != nil || now.Unix() > until || until > now.Add(ProofTTL).Unix()+1 {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(tag)
	if err != nil || !hmac.Equal(got, g.mac(a, end)) {
		return false
	}
	if LeadingZeros(a.Proof) < bits {
		return false
	}
	return g.useOnce(seed, until, now.Unix())
}

// useOnce takes a seed's proof if it was not taken before. Past maxUsed seeds held it forgets
// those that ended; while it still holds maxUsed it takes no proof (the app solves another).
func (g *Gate) useOnce(seed string, end, now int64) bool {
	g.usedMu.Lock()
	defer g.usedMu.Unlock()
	if _, ok := g.used[seed]; ok {
		return false
	}
	if len(g.used) >= maxUsed {
		maps.DeleteFunc(g.used, func(_ string, e int64) bool { return e < now })
		if len(g.used) >= maxUsed {
			return false
		}
	}
	g.used[seed] = end
	return true
}

// LeadingZeros is the number of zero bits SHA-256 of a proof ("seed:nonce") starts with.
func LeadingZeros(proof string) int {
	sum := sha256.Sum256([]byte(proof))
	n := 0
	for i := 0; i < len(sum); i += 8 {
		w := binary.BigEndian.Uint64(sum[i:])
		n += bits.LeadingZeros64(w)
		if w != 0 {
			break
		}
	}
	return n
}

// Solve finds a nonce for a challenge: what an app does when an attempt answers ECHALLENGE. It
// returns the proof to send ("seed:nonce"); about 2^bits hashes.
func Solve(ctx context.Context, seed string, bits int) (string, error) {
	buf := make([]byte, 0, len(seed)+1+16)
	buf = append(buf, seed...)
	buf = append(buf, ':')
	for n := uint64(0); ; n++ {
		if n&0xffff == 0 && ctx.Err() != nil {
			return "", ctx.Err()
		}
		b := strconv.AppendUint(buf, n, 36)
		if LeadingZeros(string(b)) >= bits {
			return string(b), nil
		}
	}
}

// Apply takes verdicts in (a note from the pipeline, or the store's).
func (g *Gate) Apply(vs []surge.Verdict) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range vs {
		v := vs[i]
		if !now.Before(v.ExpiresAt) {
			continue
		}
		if g.sets.size() >= g.maxHeld {
			g.sets.purge(now) // what ended makes room; at the bound still, the verdict waits for the store's reload
		}
		if g.sets.size() < g.maxHeld {
			g.sets.put(&v)
		}
	}
}

// AllowNow applies an allow-list entry at once (exp zero removes it).
func (g *Gate) AllowNow(subject, value string, exp time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sets.allow(subject, value, exp)
}

// Reload reads every verdict that acts, and the allow-list, from the store.
func (g *Gate) Reload(ctx context.Context) error {
	now := g.now()
	vs, err := g.store.ActiveVerdicts(ctx, now, surge.MaxRiskVerdicts)
	if err == nil {
		var allows []surge.RiskAllow
		if allows, err = g.store.ActiveAllows(ctx, now, surge.MaxRiskVerdicts); err == nil {
			s := newSets()
			for i := range vs {
				s.put(&vs[i])
			}
			for _, a := range allows {
				s.allow(a.Subject, a.Value, a.ExpiresAt)
			}
			g.mu.Lock()
			// A verdict is never lifted, only outlived (an allow-list entry undoes it): what the
			// gate held, a note's brought while the store was read among it, stays.
			s.merge(g.sets, now)
			g.sets = s
			g.mu.Unlock()
		}
	}
	return g.read(err)
}

// read records whether the store answered.
func (g *Gate) read(err error) error {
	if err != nil {
		g.m.refreshErrors.Inc()
		g.stale.Store(true)
		return err
	}
	g.stale.Store(false)
	g.lastGood.Store(g.now().UnixMilli())
	return nil
}

// catchUp reads the verdicts made since the last look.
func (g *Gate) catchUp(ctx context.Context) error {
	vs, err := g.store.VerdictsSince(ctx, g.since, g.sinceID, surge.MaxListLimit)
	if err == nil && len(vs) > 0 {
		// A verdict is made at the time of its event and stored a moment later: the next look
		// goes back a little, unless this one was a full page (it pages on from its last).
		last := vs[len(vs)-1]
		g.since, g.sinceID = last.CreatedAt, last.ID
		if len(vs) < surge.MaxListLimit {
			g.since, g.sinceID = g.since.Add(-catchUpOverlap), ""
		}
		g.Apply(vs)
	}
	return g.read(err)
}

// Note is a message to every gate: verdicts just made, or an allow-list entry added (with its
// end) or removed (no end).
type Note struct {
	Verdicts []surge.Verdict  `json:"verdicts,omitempty"`
	Allow    *surge.RiskAllow `json:"allow,omitempty"`
}

// DecodeNote reads a note, checking each verdict and entry.
func DecodeNote(data []byte) (Note, error) {
	var n Note
	if err := json.Unmarshal(data, &n); err != nil {
		return Note{}, surge.JSONError(err)
	}
	for i := range n.Verdicts {
		if err := checkVerdict(&n.Verdicts[i]); err != nil {
			return Note{}, err
		}
	}
	if a := n.Allow; a != nil && (!surge.ValidSubject(a.Subject) || a.Value == "" || len(a.Value) > surge.MaxDeviceIDLen) {
		return Note{}, surge.Errorf(surge.EINVALID, "an allow-list entry needs a subject and its value")
	}
	return n, nil
}

// Take applies a note from the bus; one that cannot be read is logged and dropped (the store's
// catch-up brings what it held).
func (g *Gate) Take(data []byte) {
	n, err := DecodeNote(data)
	if err != nil {
		g.log.Warn("risk: a note on the bus cannot be read", "err", err)
		return
	}
	if len(n.Verdicts) > 0 {
		now := g.now()
		for i := range n.Verdicts {
			g.m.arrival.Observe(now.Sub(n.Verdicts[i].Trigger).Seconds())
		}
		g.Apply(n.Verdicts)
	}
	if a := n.Allow; a != nil {
		g.AllowNow(a.Subject, a.Value, a.ExpiresAt)
	}
}

// Run catches up every CatchUpEvery, reloads every ReloadEvery and sends the outcomes counted
// each second to the events log, until ctx ends.
func (g *Gate) Run(ctx context.Context) {
	t := time.NewTicker(CatchUpEvery)
	defer t.Stop()
	g.since = g.now().Add(-CatchUpEvery)
	last := g.now()
	for {
		select {
		case <-ctx.Done():
			g.sendOutcomes()
			return
		case <-t.C:
			g.sendOutcomes()
			var err error
			if g.now().Sub(last) >= ReloadEvery {
				last, err = g.now(), g.Reload(ctx)
			} else {
				err = g.catchUp(ctx)
			}
			if err != nil && ctx.Err() == nil {
				g.log.WarnContext(ctx, "risk verdicts: the store cannot be read; acting on the verdicts held", "err", err)
			}
		}
	}
}

// sendOutcomes sends the outcomes counted so far as one risk.outcomes event.
func (g *Gate) sendOutcomes() {
	g.outMu.Lock()
	if len(g.outcomes) == 0 || g.bus == nil {
		g.outMu.Unlock()
		return
	}
	list := make([]surge.RiskOutcome, 0, len(g.outcomes))
	for k, n := range g.outcomes {
		k.Count = n
		list = append(list, k)
	}
	clear(g.outcomes)
	g.outMu.Unlock()
	now := g.now().UTC()
	id := surge.EventRiskOutcomes + "-" + g.node + "-" + strconv.FormatInt(now.UnixNano(), 36)
	b, err := json.Marshal(surge.Event{ID: id, Kind: surge.EventRiskOutcomes, At: now, Data: list})
	if err == nil {
		err = g.bus.Emit("surge.events."+surge.EventRiskOutcomes, id, b)
	}
	if err != nil {
		g.log.Warn("risk: the gate's outcomes did not go to the events log", "err", err)
	}
}
