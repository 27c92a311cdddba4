package client

import (
	"context"
	"net/url"

	"github.com/surgecommerce/surge"
	surgehttp "github.com/surgecommerce/surge/http"
	"github.com/surgecommerce/surge/risk"
)

// CreateRiskRule saves a risk rule (operators).
func (c *Client) CreateRiskRule(ctx context.Context, r surge.RiskRule) (*surge.RiskRule, error) {
	return call[surge.RiskRule](ctx, c, "POST", "/v1/risk/rules", r)
}

// UpdateRiskRule replaces what an operator writes of a rule.
func (c *Client) UpdateRiskRule(ctx context.Context, ruleID int64, r surge.RiskRule) (*surge.RiskRule, error) {
	return call[surge.RiskRule](ctx, c, "PUT", "/v1/risk/rules/"+id(ruleID), r)
}

// SetRiskMode switches a rule off, to dry-run or to enforcing.
func (c *Client) SetRiskMode(ctx context.Context, ruleID int64, in risk.ModeInput) (*surge.RiskRule, error) {
	return call[surge.RiskRule](ctx, c, "POST", "/v1/risk/rules/"+id(ruleID)+"/mode", in)
}

// RiskRule returns a rule.
func (c *Client) RiskRule(ctx context.Context, ruleID int64) (*surge.RiskRule, error) {
	return call[surge.RiskRule](ctx, c, "GET", "/v1/risk/rules/"+id(ruleID), nil)
}

// RiskRules lists the rules.
func (c *Client) RiskRules(ctx context.Context) ([]*surge.RiskRule, error) {
	out, err := call[surgehttp.RiskRuleList](ctx, c, "GET", "/v1/risk/rules", nil)
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

// RiskRuleChanges lists a rule's audited changes, newest first.
func (c *Client) RiskRuleChanges(ctx context.Context, ruleID int64) ([]surge.RiskRuleChange, error) {
	out, err := call[surgehttp.RiskChangeList](ctx, c, "GET", "/v1/risk/rules/"+id(ruleID)+"/changes", nil)
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

// RiskVerdicts lists the verdicts about a user or made by the user's events (support staff).
func (c *Client) RiskVerdicts(ctx context.Context, user int64) ([]surge.Verdict, error) {
	out, err := call[surgehttp.VerdictList](ctx, c, "GET", "/v1/risk/verdicts?user="+id(user), nil)
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

// RiskAllow puts a subject on the allow-list (support staff).
func (c *Client) RiskAllow(ctx context.Context, in risk.AllowInput) (*surge.RiskAllow, error) {
	return call[surge.RiskAllow](ctx, c, "POST", "/v1/risk/allow", in)
}

// RiskDisallow takes a subject off the allow-list.
func (c *Client) RiskDisallow(ctx context.Context, subject, value string) error {
	return c.Do(ctx, "DELETE", "/v1/risk/allow/"+url.PathEscape(subject)+"/"+url.PathEscape(value), nil, nil)
}

// RiskReplay runs a draft rule over the last hour of events.
func (c *Client) RiskReplay(ctx context.Context, in risk.ReplayInput) (*risk.ReplayResult, error) {
	return call[risk.ReplayResult](ctx, c, "POST", "/v1/risk/replay", in)
}
