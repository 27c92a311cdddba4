package surge

import (
	"context"
	"time"
)

// Risk control: rules over windows of what shoppers do, written by operators,
// whose verdicts reach every purchase gate within a second.

// What a rule's verdict does at the gate.
const (
	ActionAllow     = "allow"     // the subject is let through: rules of lower priority give way
	ActionChallenge = "challenge" // the gate asks for a proof of work before it takes an attempt
	ActionBlock     = "block"     // the gate refuses the subject's attempts
)

// How a rule runs.
const (
	ModeOff       = "off"       // a draft, or switched off: not evaluated
	ModeDryRun    = "dry_run"   // evaluated, its verdicts counted, nobody refused
	ModeEnforcing = "enforcing" // its verdicts act at the gate
)

// What a verdict is about: the gate checks an attempt's user, device, IP and network.
const (
	SubjectUser    = "user"
	SubjectDevice  = "device"
	SubjectIP      = "ip"
	SubjectNetwork = "network" // an IPv4 /24 or an IPv6 /48
)

// Bounds of risk control.
const (
	MaxRiskRules      = 200
	MaxRuleExprLen    = 2000
	MaxVerdictTTL     = 7 * 24 * time.Hour
	MinChallengeBits  = 1
	MaxChallengeBits  = 28
	MaxRiskVerdicts   = 1_000_000 // active verdicts a node holds in memory
	MaxDeviceIDLen    = 64
	MaxRiskRuleChange = 500 // changes listed at once
)

// RiskRule is an operator's rule: when Expr (CEL over the window features, see package risk)
// holds for an event, the subject On gets a verdict of Action for TTLSec, with a reason code.
type RiskRule struct {
	ID       int64  `json:"id,string"`
	Name     string `json:"name"`
	Expr     string `json:"expr"`
	On       string `json:"on"`     // user, device, ip or network
	Action   string `json:"action"` // allow, challenge or block
	Bits     int    `json:"bits,omitzero"`
	TTLSec   int64  `json:"ttl_sec"`
	Reason   string `json:"reason"` // a code for shoppers' apps and support: A-Z, 0-9, _
	Priority int    `json:"priority"`
	Mode     string `json:"mode"`
	// Force saves a rule that would hold for a first attempt of anyone (it would block everyone).
	Force     bool      `json:"force,omitzero"`
	Version   int64     `json:"version"`
	UpdatedBy int64     `json:"updated_by,string"`
	UpdatedAt time.Time `json:"updated_at"`
	CreatedAt time.Time `json:"created_at"`
}

// RiskRuleChange is one audited change of a rule: who made it, when, and the rule before (nil
// when it was created) and after.
type RiskRuleChange struct {
	RuleID  int64     `json:"rule_id,string"`
	Version int64     `json:"version"`
	By      int64     `json:"by,string"`
	At      time.Time `json:"at"`
	Before  *RiskRule `json:"before"`
	After   *RiskRule `json:"after"`
}

// Verdict is what a rule decided about a subject, until ExpiresAt. Its ID is the same however
// often the events that made it are read again.
type Verdict struct {
	ID      string `json:"id"`
	RuleID  int64  `json:"rule_id,string"`
	Version int64  `json:"rule_version"`
	Subject string `json:"subject"` // user, device, ip or network
	Value   string `json:"value"`
	Action  string `json:"action"`
	Bits    int    `json:"bits,omitzero"`
	Reason  string `json:"reason"`
	Mode    string `json:"mode"`
	// User is the shopper whose event made the verdict; Trigger is when Surge took that event.
	User      int64     `json:"user,string"`
	Trigger   time.Time `json:"trigger_at"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RiskAllow exempts a subject from every verdict until it expires: support's undo of a false
// positive.
type RiskAllow struct {
	Subject   string    `json:"subject"`
	Value     string    `json:"value"`
	Reason    string    `json:"reason"`
	By        int64     `json:"by,string"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RiskStore keeps rules with their audit trail, verdicts and the allow-list.
type RiskStore interface {
	// CreateRiskRule stores a new rule (version 1) and its change.
	CreateRiskRule(ctx context.Context, r *RiskRule) error
	// UpdateRiskRule changes a rule in one transaction: it reads it locked, lets change edit a
	// copy (an error from change is returned as is and nothing is written), and stores it one
	// version later with the change audited as by's. Returns ENOTFOUND.
	UpdateRiskRule(ctx context.Context, id, by int64, at time.Time, change func(*RiskRule) error) (*RiskRule, error)
	// RiskRule returns ENOTFOUND if there is no such rule.
	RiskRule(ctx context.Context, id int64) (*RiskRule, error)
	// RiskRules lists every rule, by id.
	RiskRules(ctx context.Context) ([]*RiskRule, error)
	// RiskRuleChanges lists a rule's changes, newest first, at most n.
	RiskRuleChanges(ctx context.Context, id int64, n int) ([]RiskRuleChange, error)
	// PutVerdicts stores verdicts; one whose id is stored already is left as it is.
	PutVerdicts(ctx context.Context, vs []Verdict) error
	// VerdictsSince lists the verdicts made after the one made at since with id afterID (all
	// those made at since, for ""), oldest first (by time, then id), at most n: a reader pages on
	// from the last one it read.
	VerdictsSince(ctx context.Context, since time.Time, afterID string, n int) ([]Verdict, error)
	// ActiveVerdicts lists the verdicts that expire after now, newest first, at most n.
	ActiveVerdicts(ctx context.Context, now time.Time, n int) ([]Verdict, error)
	// PruneVerdicts deletes at most n verdicts that expired before before, and says how many.
	PruneVerdicts(ctx context.Context, before time.Time, n int) (int64, error)
	// UserVerdicts lists the verdicts a user's events made or that are about the user, newest
	// first, at most n.
	UserVerdicts(ctx context.Context, user int64, n int) ([]Verdict, error)
	// Allow adds or replaces an allow-list entry.
	Allow(ctx context.Context, a RiskAllow) error
	// Disallow removes an entry; ENOTFOUND if there is none.
	Disallow(ctx context.Context, subject, value string) error
	// ActiveAllows lists the entries that expire after now, at most n.
	ActiveAllows(ctx context.Context, now time.Time, n int) ([]RiskAllow, error)
}

// ValidSubject reports whether s names what a verdict can be about.
func ValidSubject(s string) bool {
	switch s {
	case SubjectUser, SubjectDevice, SubjectIP, SubjectNetwork:
		return true
	}
	return false
}

// ValidDeviceID checks a device id as an app sends it: 1 to MaxDeviceIDLen letters, digits,
// '-', '_', '.' or ':'. Returns EINVALID.
func ValidDeviceID(id string) error {
	if len(id) == 0 || len(id) > MaxDeviceIDLen {
		return Errorf(EINVALID, "a device id is 1 to %d characters", MaxDeviceIDLen)
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return Errorf(EINVALID, "a device id holds only letters, digits, '-', '_', '.' and ':'")
		}
	}
	return nil
}

// RiskRefusal is an attempt a verdict stopped at the gate: refused (EFORBIDDEN), or asked for a
// proof of work (ECHALLENGE): find a nonce such that SHA-256(Seed + ":" + nonce) starts with
// Bits zero bits, and send the attempt again with "Seed:nonce" (header X-Surge-Proof). Reason is
// the rule's code.
type RiskRefusal struct {
	Err    *Error
	Reason string
	Seed   string
	Bits   int
}

func (r *RiskRefusal) Error() string { return r.Err.Error() }

func (r *RiskRefusal) Unwrap() error { return r.Err }

// Event kinds of risk control.
const (
	EventRiskRuleChanged = "risk.rule_changed" // Data is the rule
	EventRiskVerdict     = "risk.verdict"      // Data is the verdict; a verdict made again has the same id
	EventRiskAllowed     = "risk.allowed"      // Data is the allow-list entry
	EventRiskOutcomes    = "risk.outcomes"     // a gate's refusals and challenges: Data is a list of RiskOutcome
)

// RiskOutcome counts what a gate did to attempts of a session in a second because of verdicts:
// refused (block), challenged, or would have refused (dry-run rules).
type RiskOutcome struct {
	Session int64  `json:"session,string"`
	Action  string `json:"action"` // block, challenge, dry_run
	Count   int64  `json:"count"`
	Second  int64  `json:"second"` // Unix seconds
}
