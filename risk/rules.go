package risk

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/surgecommerce/surge"
)

// Bounds of a rule.
const (
	MinPriority = -1000
	MaxPriority = 1000
	maxReason   = 40
)

// env is the CEL environment rules are checked in: every feature is an int variable, named as
// rules write it (attempts_10s.device); any other name is an undeclared reference.
var env = func() *cel.Env {
	opts := make([]cel.EnvOption, 0, len(featureList))
	for _, f := range featureList {
		opts = append(opts, cel.Variable(f.name, cel.IntType))
	}
	e, err := cel.NewEnv(opts...)
	if err != nil {
		panic(err) // the declarations are the program's own
	}
	return e
}()

// Rule is a rule compiled for evaluation.
type Rule struct {
	surge.RiskRule
	prog cel.Program
	fast node // the expression as closures, when it is one of theirs (compile.go); nil otherwise
}

// Validate checks a rule as an operator saves it and compiles its expression. Returns EINVALID
// naming what is wrong: a field out of bounds, an expression that does not compile, names a
// feature that does not exist or does not give true or false, or, for a rule to enforce, one
// that holds for anyone's first attempt (it would act on everyone) unless Force says it is
// meant. Such a rule may be a draft or run dry: that is how one sees what it would do.
func Validate(r *surge.RiskRule) (*Rule, error) {
	if err := surge.ValidateText("name", r.Name, 1, surge.MaxNameRunes); err != nil {
		return nil, err
	}
	if !surge.ValidSubject(r.On) {
		return nil, surge.Errorf(surge.EINVALID, "on must be user, device, ip or network")
	}
	switch r.Action {
	case surge.ActionAllow, surge.ActionBlock:
		if r.Bits != 0 {
			return nil, surge.Errorf(surge.EINVALID, "bits is for challenge rules only")
		}
	case surge.ActionChallenge:
		if r.Bits < surge.MinChallengeBits || r.Bits > surge.MaxChallengeBits {
			return nil, surge.Errorf(surge.EINVALID, "a challenge's bits must be between %d and %d", surge.MinChallengeBits, surge.MaxChallengeBits)
		}
	default:
		return nil, surge.Errorf(surge.EINVALID, "action must be allow, challenge or block")
	}
	switch r.Mode {
	case "":
		r.Mode = surge.ModeOff
	case surge.ModeOff, surge.ModeDryRun, surge.ModeEnforcing:
	default:
		return nil, surge.Errorf(surge.EINVALID, "mode must be off, dry_run or enforcing")
	}
	if ttl := time.Duration(r.TTLSec) * time.Second; r.TTLSec < 1 || ttl > surge.MaxVerdictTTL {
		return nil, surge.Errorf(surge.EINVALID, "ttl_sec must be between 1 and %d", int64(surge.MaxVerdictTTL/time.Second))
	}
	if !validReason(r.Reason) {
		return nil, surge.Errorf(surge.EINVALID, "reason must be a code of 1 to %d capital letters, digits and '_', starting with a letter", maxReason)
	}
	if r.Priority < MinPriority || r.Priority > MaxPriority {
		return nil, surge.Errorf(surge.EINVALID, "priority must be between %d and %d", MinPriority, MaxPriority)
	}
	c, checked, err := compile(r.Expr)
	if err != nil {
		return nil, err
	}
	rule := &Rule{RiskRule: *r, prog: c}
	if f, err := fast(checked); err == nil {
		rule.fast = f
	}
	if r.Mode == surge.ModeEnforcing && r.Action != surge.ActionAllow && !r.Force && rule.holdsForNewcomer() {
		return nil, surge.Errorf(surge.EINVALID, "the rule holds for anyone's first attempt, so it would %s everyone; save it with force if that is meant", r.Action)
	}
	return rule, nil
}

func validReason(s string) bool {
	if len(s) == 0 || len(s) > maxReason || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// compile checks an expression and makes its program.
func compile(expr string) (cel.Program, *cel.Ast, error) {
	if strings.TrimSpace(expr) == "" || len(expr) > surge.MaxRuleExprLen {
		return nil, nil, surge.Errorf(surge.EINVALID, "expr must be 1 to %d bytes", surge.MaxRuleExprLen)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, nil, surge.Errorf(surge.EINVALID, "expr: %s", oneLine(iss.Err().Error()))
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, nil, surge.Errorf(surge.EINVALID, "expr must give true or false, not %s", ast.OutputType())
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, nil, surge.Errorf(surge.EINVALID, "expr: %s", oneLine(err.Error()))
	}
	return prog, ast, nil
}

// oneLine keeps CEL's message, whose pointer to the column is on lines of its own, readable in
// one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// holdsForNewcomer reports whether the rule holds for a shopper's first attempt on a new device
// from a new address: every count it reads is 1 (attempts, accounts) or 0.
func (r *Rule) holdsForNewcomer() bool {
	var ents [subjects]*entity
	const now = 1_000_000_000
	for i := range ents {
		e := &entity{}
		e.attempts.add(now, 1)
		if i != onUser {
			e.accounts.add(1, now/60)
		}
		ents[i] = e
	}
	a := &activation{ents: &ents, now: now}
	var v values
	v.reset(a)
	hit, _ := r.eval(a, &v)
	return hit
}

// activation gives a rule the features of the subjects of one signal.
type activation struct {
	ents *[subjects]*entity
	now  int64 // seconds
}

func (a *activation) ResolveName(name string) (any, bool) {
	i, ok := featureIndex[name]
	if !ok {
		return nil, false
	}
	f := &featureList[i]
	e := a.ents[f.subject]
	if e == nil {
		return types.Int(0), true
	}
	return types.Int(f.value(e, a.now)), true
}

func (a *activation) Parent() interpreter.Activation { return nil }

// errArith is a fast rule's failure: CEL's integer overflow or division by zero.
var errArith = errors.New("integer overflow or division by zero")

// eval reports whether the rule holds, over the signal's activation and values (reset for it);
// an expression that fails (a division by zero, say) does not hold, and says why.
func (r *Rule) eval(a *activation, vals *values) (bool, error) {
	if r.fast != nil {
		x, ok := r.fast(vals)
		if !ok {
			return false, errArith
		}
		return x == 1, nil
	}
	v, _, err := r.prog.Eval(a)
	if err != nil {
		return false, err
	}
	return v == types.True, nil
}

// RuleSet is the rules that run: enforcing and dry-run ones, highest priority first.
type RuleSet struct {
	Rules []*Rule
}

// NewRuleSet compiles the rules that run. A stored rule that no longer compiles is left out and
// reported (it was checked when saved).
func NewRuleSet(rules []*surge.RiskRule) (*RuleSet, []error) {
	set := &RuleSet{}
	var errs []error
	for _, r := range rules {
		if r.Mode != surge.ModeDryRun && r.Mode != surge.ModeEnforcing {
			continue
		}
		c := *r
		c.Force = true // it was saved: whether it acts on everyone was settled then
		rule, err := Validate(&c)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %d: %w", r.ID, err))
			continue
		}
		set.Rules = append(set.Rules, rule)
	}
	slices.SortStableFunc(set.Rules, func(a, b *Rule) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.ID, b.ID))
	})
	return set, errs
}
