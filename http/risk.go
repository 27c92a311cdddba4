package http

import (
	"net/http"
	"strconv"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/risk"
)

// RiskRuleList is every risk rule.
type RiskRuleList struct {
	Items []*surge.RiskRule `json:"items"`
}

// RiskChangeList is a rule's audited changes, newest first.
type RiskChangeList struct {
	Items []surge.RiskRuleChange `json:"items"`
}

// VerdictList is a page of verdicts, newest first.
type VerdictList struct {
	Items []surge.Verdict `json:"items"`
}

// FeatureList names the features rules read.
type FeatureList struct {
	Items []string `json:"items"`
}

func (s *Server) riskRoutes() []route {
	rs := s.deps.Risk
	if rs == nil {
		return nil
	}
	return []route{
		{method: "GET", path: "/v1/risk/features", summary: "The features risk rules read (operators)", access: signedIn,
			out: FeatureList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				names, err := rs.Features(a)
				return FeatureList{Items: names}, err
			}},
		{method: "POST", path: "/v1/risk/rules", summary: "Save a risk rule (operators): a CEL expression over the features, checked and type-checked; an action (allow, challenge, block), a TTL, a reason code, a priority and a mode (off, dry_run, enforcing)",
			access: signedIn, in: surge.RiskRule{}, out: surge.RiskRule{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in surge.RiskRule) (any, error) { return rs.CreateRule(r.Context(), a, in) })
			}},
		{method: "GET", path: "/v1/risk/rules", summary: "Every risk rule (operators)", access: signedIn, out: RiskRuleList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				list, err := rs.List(r.Context(), a)
				return RiskRuleList{Items: nonNil(list)}, err
			}},
		{method: "GET", path: "/v1/risk/rules/{id}", summary: "A risk rule (operators)", access: signedIn, out: surge.RiskRule{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) { return rs.Rule(r.Context(), a, id) })
			}},
		{method: "PUT", path: "/v1/risk/rules/{id}", summary: "Change a risk rule (operators); every change is audited", access: signedIn,
			in: surge.RiskRule{}, out: surge.RiskRule{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in surge.RiskRule) (any, error) { return rs.UpdateRule(r.Context(), a, id, in) })
				})
			}},
		{method: "POST", path: "/v1/risk/rules/{id}/mode", summary: "Switch a risk rule off, to dry-run or to enforcing (operators)", access: signedIn,
			in: risk.ModeInput{}, out: surge.RiskRule{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					return withBody(r, func(in risk.ModeInput) (any, error) { return rs.SetMode(r.Context(), a, id, in) })
				})
			}},
		{method: "GET", path: "/v1/risk/rules/{id}/changes", summary: "A risk rule's changes, newest first: who, when, before and after (operators)",
			access: signedIn, out: RiskChangeList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withID(r, "id", func(id int64) (any, error) {
					list, err := rs.Changes(r.Context(), a, id)
					return RiskChangeList{Items: nonNil(list)}, err
				})
			}},
		{method: "GET", path: "/v1/risk/verdicts", summary: "The verdicts about a user, or made by the user's events, newest first (support staff)",
			access: signedIn, query: []string{"user"}, out: VerdictList{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				user, err := strconv.ParseInt(r.URL.Query().Get("user"), 10, 64)
				if err != nil || user <= 0 {
					return nil, surge.Errorf(surge.EINVALID, "user must be a user id")
				}
				list, err := rs.Verdicts(r.Context(), a, user)
				return VerdictList{Items: nonNil(list)}, err
			}},
		{method: "POST", path: "/v1/risk/allow", summary: "Exempt a user, device, IP or network from every verdict for a while: undoes a false positive at once (support staff)",
			access: signedIn, in: risk.AllowInput{}, out: surge.RiskAllow{}, status: 201,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in risk.AllowInput) (any, error) { return rs.Allow(r.Context(), a, in) })
			}},
		{method: "DELETE", path: "/v1/risk/allow/{subject}/{value}", summary: "Take a subject off the allow-list (support staff)", access: signedIn,
			status: 204,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return nil, rs.Disallow(r.Context(), a, r.PathValue("subject"), r.PathValue("value"))
			}},
		{method: "POST", path: "/v1/risk/replay", summary: "Run a draft rule over the last hour of events: what it would have caught (operators)",
			access: signedIn, in: risk.ReplayInput{}, out: risk.ReplayResult{}, status: 200,
			handle: func(r *http.Request, a surge.Actor) (any, error) {
				return withBody(r, func(in risk.ReplayInput) (any, error) { return rs.Replay(r.Context(), a, in) })
			}},
	}
}
