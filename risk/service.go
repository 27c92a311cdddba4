package risk

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// Timings and bounds of the rules service.
const (
	// RulesEvery is how often a node reads the rules again, besides when a note says one
	// changed.
	RulesEvery = 5 * time.Second
	// ReplayWindow is how far back a replay reads the events log, and MaxReplaySignals how many
	// signals it reads at most.
	ReplayWindow     = time.Hour
	MaxReplaySignals = 20_000_000
	maxReplayShown   = 100
	MaxAllowTTL      = 30 * 24 * time.Hour
)

// Notes is the bus's fan-out to every node: rules changed (for the pipeline's node) and
// verdicts and allow-list entries (for every gate).
type Notes interface {
	// RulesChanged tells every node to read the rules again.
	RulesChanged() error
	// Send sends a note to every gate.
	Send(n Note) error
}

// History reads the events log from a time: the records stored at or after since, up to the
// last one stored when the read began.
type History interface {
	Since(ctx context.Context, since time.Time, each func(data []byte) error) error
}

// Service manages rules, verdicts and the allow-list (operators and support staff), and keeps
// the node's set of running rules.
type Service struct {
	store   surge.RiskStore
	ids     func() (int64, error)
	notes   Notes
	bus     surge.EventEmitter
	gate    *Gate // this node's: an allow-list entry acts here at once
	history History
	log     *slog.Logger
	now     func() time.Time
	rules   atomic.Pointer[RuleSet]
	loading sync.Mutex // one read of the rules at a time: a slower one never stores an older set
}

// NewService returns the rules service. history may be nil (no replays on this node).
func NewService(store surge.RiskStore, ids func() (int64, error), notes Notes, bus surge.EventEmitter, gate *Gate,
	history History, log *slog.Logger, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	s := &Service{store: store, ids: ids, notes: notes, bus: bus, gate: gate, history: history, log: log, now: now}
	s.rules.Store(&RuleSet{})
	return s
}

func staffOnly(a surge.Actor) error { return staff(a, "risk control") }

// Features names the features rules read (operators).
func (s *Service) Features(a surge.Actor) ([]string, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	return FeatureNames(), nil
}

// Rules is the set of rules that run on this node now.
func (s *Service) Rules() *RuleSet { return s.rules.Load() }

// LoadRules reads the rules from the store and makes the running set of them.
func (s *Service) LoadRules(ctx context.Context) error {
	s.loading.Lock()
	defer s.loading.Unlock()
	list, err := s.store.RiskRules(ctx)
	if err != nil {
		return err
	}
	set, errs := NewRuleSet(list)
	for _, err := range errs {
		s.log.Error("risk: a stored rule does not compile; it does not run", "err", err)
	}
	s.rules.Store(set)
	return nil
}

// RunRules reads the rules again every RulesEvery and whenever changed sends, until ctx ends.
func (s *Service) RunRules(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTicker(RulesEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
		if err := s.LoadRules(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "risk: the rules cannot be read; running the last ones", "err", err)
		}
	}
}

// VerdictHistory is how long support can look a verdict up after it ended; PruneEvery how often
// the node that computes the verdicts deletes older ones, at most pruneBatch at a time.
const (
	VerdictHistory = 30 * 24 * time.Hour
	PruneEvery     = time.Hour
	pruneBatch     = 10_000
)

// RunPrune deletes the verdicts that ended VerdictHistory ago, every PruneEvery, until ctx ends.
func (s *Service) RunPrune(ctx context.Context) {
	t := time.NewTicker(PruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.prune(ctx)
	}
}

// prune deletes the verdicts that ended VerdictHistory ago, a batch at a time.
func (s *Service) prune(ctx context.Context) {
	before := s.now().Add(-VerdictHistory)
	for ctx.Err() == nil {
		n, err := s.store.PruneVerdicts(ctx, before, pruneBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.WarnContext(ctx, "risk: old verdicts not deleted; next time", "err", err)
			}
			return
		}
		if n < pruneBatch {
			return
		}
	}
}

// CreateRule saves a new rule (operators): checked, type-checked, audited.
func (s *Service) CreateRule(ctx context.Context, a surge.Actor, in surge.RiskRule) (*surge.RiskRule, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	if _, err := Validate(&in); err != nil {
		return nil, err
	}
	list, err := s.store.RiskRules(ctx)
	if err != nil {
		return nil, err
	}
	if len(list) >= surge.MaxRiskRules {
		return nil, surge.Errorf(surge.ELIMIT, "at most %d rules", surge.MaxRiskRules)
	}
	id, err := s.ids()
	if err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	in.ID, in.Force, in.UpdatedBy, in.UpdatedAt, in.CreatedAt = id, false, a.UserID, now, now
	if err := s.store.CreateRiskRule(ctx, &in); err != nil {
		return nil, err
	}
	s.changed(ctx, &in)
	return &in, nil
}

// UpdateRule replaces what an operator writes of a rule: name, expr, on, action, bits, ttl_sec,
// reason, priority and mode. Saving it in enforcing mode when it would act on everyone needs
// force, each time.
func (s *Service) UpdateRule(ctx context.Context, a surge.Actor, id int64, in surge.RiskRule) (*surge.RiskRule, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	if _, err := Validate(&in); err != nil {
		return nil, err
	}
	r, err := s.store.UpdateRiskRule(ctx, id, a.UserID, s.now().UTC().Truncate(time.Millisecond), func(r *surge.RiskRule) error {
		r.Name, r.Expr, r.On, r.Action, r.Bits, r.TTLSec, r.Reason, r.Priority, r.Mode =
			in.Name, in.Expr, in.On, in.Action, in.Bits, in.TTLSec, in.Reason, in.Priority, in.Mode
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, r)
	return r, nil
}

// ModeInput switches a rule's mode.
type ModeInput struct {
	Mode  string `json:"mode"`
	Force bool   `json:"force,omitzero"`
}

// SetMode switches a rule off, to dry-run or to enforcing (operators).
func (s *Service) SetMode(ctx context.Context, a surge.Actor, id int64, in ModeInput) (*surge.RiskRule, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	r, err := s.store.UpdateRiskRule(ctx, id, a.UserID, s.now().UTC().Truncate(time.Millisecond), func(r *surge.RiskRule) error {
		r.Mode, r.Force = in.Mode, in.Force
		_, err := Validate(r)
		r.Force = false
		return err
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, r)
	return r, nil
}

// changed tells every node the rules changed, and the events log.
func (s *Service) changed(ctx context.Context, r *surge.RiskRule) {
	if err := s.notes.RulesChanged(); err != nil {
		s.log.WarnContext(ctx, "risk: the note of a changed rule was not sent; nodes read it within seconds", "err", err)
	}
	if err := s.LoadRules(ctx); err != nil {
		s.log.WarnContext(ctx, "risk: the rules cannot be read", "err", err)
	}
	surge.TellBus(ctx, s.bus, s.log, surge.EventRiskRuleChanged, strconv.FormatInt(r.ID, 10)+"."+strconv.FormatInt(r.Version, 10), r.UpdatedAt, r)
}

// Rule returns a rule (operators).
func (s *Service) Rule(ctx context.Context, a surge.Actor, id int64) (*surge.RiskRule, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	return s.store.RiskRule(ctx, id)
}

// List returns every rule (operators).
func (s *Service) List(ctx context.Context, a surge.Actor) ([]*surge.RiskRule, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	return s.store.RiskRules(ctx)
}

// Changes returns a rule's audit trail, newest first (operators).
func (s *Service) Changes(ctx context.Context, a surge.Actor, id int64) ([]surge.RiskRuleChange, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	if _, err := s.store.RiskRule(ctx, id); err != nil {
		return nil, err
	}
	return s.store.RiskRuleChanges(ctx, id, surge.MaxRiskRuleChange)
}

// Verdicts returns the verdicts about a user or made by the user's events, newest first
// (support staff: operators and admins).
func (s *Service) Verdicts(ctx context.Context, a surge.Actor, user int64) ([]surge.Verdict, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	if user <= 0 {
		return nil, surge.Errorf(surge.EINVALID, "user is required")
	}
	return s.store.UserVerdicts(ctx, user, surge.MaxListLimit)
}

// AllowInput puts a subject on the allow-list for a while.
type AllowInput struct {
	Subject string `json:"subject"`
	Value   string `json:"value"`
	Reason  string `json:"reason"`
	TTLSec  int64  `json:"ttl_sec"`
}

// Allow exempts a subject from verdicts (support staff): this node at once, the others as the
// note reaches them.
func (s *Service) Allow(ctx context.Context, a surge.Actor, in AllowInput) (*surge.RiskAllow, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	value, err := canonical(in.Subject, in.Value)
	if err != nil {
		return nil, err
	}
	if err := surge.ValidateText("reason", in.Reason, 1, surge.MaxNameRunes); err != nil {
		return nil, err
	}
	if ttl := time.Duration(in.TTLSec) * time.Second; in.TTLSec < 1 || ttl > MaxAllowTTL {
		return nil, surge.Errorf(surge.EINVALID, "ttl_sec must be between 1 and %d", int64(MaxAllowTTL/time.Second))
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	entry := surge.RiskAllow{Subject: in.Subject, Value: value, Reason: in.Reason, By: a.UserID, CreatedAt: now,
		ExpiresAt: now.Add(time.Duration(in.TTLSec) * time.Second)}
	if err := s.store.Allow(ctx, entry); err != nil {
		return nil, err
	}
	s.allowed(ctx, entry)
	return &entry, nil
}

// Disallow takes a subject off the allow-list (support staff).
func (s *Service) Disallow(ctx context.Context, a surge.Actor, subject, value string) error {
	if err := staffOnly(a); err != nil {
		return err
	}
	value, err := canonical(subject, value)
	if err != nil {
		return err
	}
	if err := s.store.Disallow(ctx, subject, value); err != nil {
		return err
	}
	s.allowed(ctx, surge.RiskAllow{Subject: subject, Value: value})
	return nil
}

func (s *Service) allowed(ctx context.Context, entry surge.RiskAllow) {
	if s.gate != nil {
		s.gate.AllowNow(entry.Subject, entry.Value, entry.ExpiresAt)
	}
	if err := s.notes.Send(Note{Allow: &entry}); err != nil {
		s.log.WarnContext(ctx, "risk: the allow-list note was not sent; other nodes take it within a minute", "err", err)
	}
	surge.TellBus(ctx, s.bus, s.log, surge.EventRiskAllowed, entry.Subject+"."+entry.Value+"."+strconv.FormatInt(s.now().UnixMilli(), 10), s.now().UTC(), entry)
}

// canonical checks a subject's value and writes it as verdicts do.
func canonical(subject, value string) (string, error) {
	switch subject {
	case surge.SubjectUser:
		id, err := strconv.ParseInt(value, 10, 64)
		if err != nil || id <= 0 {
			return "", surge.Errorf(surge.EINVALID, "a user is named by its id")
		}
		return userValue(id), nil
	case surge.SubjectDevice:
		return value, surge.ValidDeviceID(value)
	case surge.SubjectIP:
		a, err := netip.ParseAddr(value)
		if err != nil {
			return "", surge.Errorf(surge.EINVALID, "ip is not an IP address")
		}
		return a.Unmap().String(), nil
	case surge.SubjectNetwork:
		if n := NetworkOf(value); n != "" {
			return n, nil // an address stands for its network
		}
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return "", surge.Errorf(surge.EINVALID, "network is an IPv4 /24 or IPv6 /48, or an address in it")
		}
		return networkPrefix(p.Addr()).String(), nil
	}
	return "", surge.Errorf(surge.EINVALID, "subject must be user, device, ip or network")
}

// ReplayInput is a draft rule to run over the last hour of events, in a mode.
type ReplayInput struct {
	Rule surge.RiskRule `json:"rule"`
}

// ReplayResult is what a draft rule would have done over the events log's last hour.
type ReplayResult struct {
	From     time.Time       `json:"from"`
	To       time.Time       `json:"to"`
	Signals  int64           `json:"signals"`  // attempts, orders and refunds read
	Verdicts int64           `json:"verdicts"` // verdicts it would have made
	Subjects int64           `json:"subjects"` // distinct subjects they were about
	First    []surge.Verdict `json:"first"`    // the first 100
	Complete bool            `json:"complete"` // false when the replay stopped at MaxReplaySignals
}

// Replay runs a draft rule over the last hour of the events log, from empty features, as the
// pipeline would have (operators). The rule is checked as when saved; its mode, if off, is
// taken as dry-run.
func (s *Service) Replay(ctx context.Context, a surge.Actor, in ReplayInput) (*ReplayResult, error) {
	if err := staffOnly(a); err != nil {
		return nil, err
	}
	if s.history == nil {
		return nil, surge.Errorf(surge.EUNAVAILABLE, "this node cannot read the events log")
	}
	r := in.Rule
	if r.ID == 0 {
		r.ID = 1
	}
	if r.Mode == "" || r.Mode == surge.ModeOff {
		r.Mode = surge.ModeDryRun
	}
	r.Force = true // a replay is how one finds out
	rule, err := Validate(&r)
	if err != nil {
		return nil, err
	}
	to := s.now().UTC()
	from := to.Add(-ReplayWindow)
	return ReplayRecords(ctx, s.history, from, to, &RuleSet{Rules: []*Rule{rule}})
}

// errReplayFull stops a replay that read MaxReplaySignals; errReplayStopped one whose pipeline
// stopped (its error says why).
var (
	errReplayFull    = errors.New("replay: signal bound reached")
	errReplayStopped = errors.New("replay: the pipeline stopped")
)

// ReplayRecords runs rules over the log's records since from, as the pipeline does.
func ReplayRecords(ctx context.Context, h History, from, to time.Time, set *RuleSet) (*ReplayResult, error) {
	res := &ReplayResult{From: from, To: to, Complete: true}
	seen := map[string]struct{}{}
	p, src := stream.New("risk-replay", stream.Config{OutOfOrderness: OutOfOrderness}, func(s Signal) int64 { return s.At })
	stream.To(Build(src, func() *RuleSet { return set }, nil), stream.Sink[surge.Verdict](stream.SinkFunc[surge.Verdict](
		func(_ uint64, _ int64, v surge.Verdict) error {
			res.Verdicts++
			if _, ok := seen[v.Subject+"\x00"+v.Value]; !ok {
				seen[v.Subject+"\x00"+v.Value] = struct{}{}
				res.Subjects++
			}
			if len(res.First) < maxReplayShown {
				res.First = append(res.First, v)
			}
			return nil
		})))
	var readErr error
	signals := func(yield func(Signal) bool) {
		readErr = h.Since(ctx, from, func(data []byte) error {
			list, err := DecodeSignals(data)
			if err != nil {
				return nil // a record that is not readable is skipped, as the pipeline skips it
			}
			for _, sig := range list {
				if sig.At < from.UnixMilli() {
					continue
				}
				if res.Signals >= MaxReplaySignals {
					return errReplayFull
				}
				res.Signals++
				if !yield(sig) {
					return errReplayStopped
				}
			}
			return nil
		})
	}
	err := p.RunSeq(ctx, signals)
	if err != nil {
		return nil, err
	}
	if errors.Is(readErr, errReplayFull) {
		res.Complete = false
	} else if readErr != nil && !errors.Is(readErr, errReplayStopped) {
		return nil, readErr
	}
	res.First = nonNil(res.First)
	return res, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
