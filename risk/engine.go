package risk

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/stream"
)

// sweepEvery is how often, in the signals' time, subjects quiet for an hour and verdicts past
// their end are forgotten.
const sweepEvery = 60 // seconds

// Hits counts what rules decided, for the metrics: by rule id and mode.
type Hits interface {
	Hit(rule *Rule)
	Failed(rule *Rule, err error)
	// Keys is told how many subjects the features keep, after each sweep.
	Keys(n int)
}

// engine is the state of the risk pipeline: the features, each subject's with the verdicts
// rules made about it, so that a subject is decided once per verdict rather than on every
// attempt.
type engine struct {
	f     *Features
	swept int64 // the second of the last sweep
	// what the rules read of the signal at hand, kept here so that reading it allocates nothing
	ents [subjects]*entity
	act  activation
	vals values
}

func newEngine() *engine { return &engine{f: NewFeatures()} }

// Build adds the risk pipeline to a stream of signals, timed by their At: the features of every
// signal, and a verdict each time a running rule holds for a subject that has no verdict of it
// yet.
func Build(src stream.Stream[Signal], rules func() *RuleSet, hits Hits) stream.Stream[surge.Verdict] {
	return stream.Process(stream.KeyBy(src, func(Signal) struct{} { return struct{}{} }),
		stream.Processor[struct{}, Signal, engine, surge.Verdict]{
			OnRecord: func(c *stream.Context[struct{}, engine, surge.Verdict], s Signal) {
				e := c.State()
				if e.f == nil {
					e.f = NewFeatures()
				}
				e.step(&s, rules(), hits, func(v surge.Verdict) { c.Emit(c.Time, v) })
			},
		})
}

// step counts a signal and runs the rules over it.
func (e *engine) step(s *Signal, set *RuleSet, hits Hits, emit func(surge.Verdict)) {
	now := s.At / 1000
	if now-e.swept >= sweepEvery {
		e.sweep(now)
		if hits != nil {
			hits.Keys(e.f.Keys())
		}
	}
	if s.Kind == signalTick {
		return
	}
	e.f.Add(s, &e.ents)
	if set == nil || len(set.Rules) == 0 {
		return
	}
	e.act = activation{ents: &e.ents, now: now}
	e.vals.reset(&e.act)
	allowed := [subjects]bool{}
	for _, r := range set.Rules {
		on := subjectIndex(r.On)
		ent := e.ents[on]
		if ent == nil || allowed[on] && r.Mode == surge.ModeEnforcing || ent.decided(r.ID, r.Version, now) {
			continue // no such subject, allowed, or decided already
		}
		hit, err := r.eval(&e.act, &e.vals)
		if err != nil {
			if hits != nil {
				hits.Failed(r, err)
			}
			continue
		}
		if !hit {
			continue
		}
		if hits != nil {
			hits.Hit(r)
		}
		if r.Action == surge.ActionAllow {
			if r.Mode == surge.ModeEnforcing {
				allowed[on] = true
			}
			continue
		}
		ent.decide(r.ID, r.Version, now+r.TTLSec)
		value := s.Values[on]
		at := time.UnixMilli(s.At).UTC()
		emit(surge.Verdict{ID: verdictID(r, on, value, s.At), RuleID: r.ID, Version: r.Version, Subject: r.On, Value: value,
			Action: r.Action, Bits: r.Bits, Reason: r.Reason, Mode: r.Mode, User: s.User, Trigger: at, CreatedAt: at,
			ExpiresAt: at.Add(time.Duration(r.TTLSec) * time.Second)})
	}
}

// verdictID names a verdict by its rule's version, its subject and the time of the signal that
// made it: a replay of the same signals makes the same ids.
func verdictID(r *Rule, on int, value string, at int64) string {
	return strconv.FormatInt(r.ID, 10) + "." + strconv.FormatInt(r.Version, 10) + "." + subjectNames[on] + "." +
		strconv.FormatUint(keyOf(value), 36) + "." + strconv.FormatInt(at, 10)
}

func subjectIndex(s string) int {
	switch s {
	case surge.SubjectDevice:
		return onDevice
	case surge.SubjectIP:
		return onIP
	case surge.SubjectNetwork:
		return onNetwork
	}
	return onUser
}

// sweep forgets the subjects quiet for an hour and the verdicts that ended.
func (e *engine) sweep(now int64) {
	e.swept = now
	e.f.Forget(now)
}

// GobEncode writes the features with their verdicts: the stream engine checkpoints the state
// with gob, whose encoding of maps is several times slower and larger.
func (e engine) GobEncode() ([]byte, error) {
	if e.f == nil {
		return nil, nil
	}
	b := make([]byte, 0, 64+e.f.Keys()*(8+2*windowBytes+2))
	b = binary.LittleEndian.AppendUint64(b, uint64(e.swept))
	return e.f.appendTo(b), nil
}

// GobDecode reads what GobEncode wrote.
func (e *engine) GobDecode(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) < 8 {
		return errShort
	}
	e.swept = int64(binary.LittleEndian.Uint64(b))
	e.f = NewFeatures()
	rest, err := e.f.readFrom(b[8:])
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("risk features: %d bytes after the state", len(rest))
	}
	return nil
}
