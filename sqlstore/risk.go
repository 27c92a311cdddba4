package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"time"

	"github.com/surgecommerce/surge"
)

const riskRuleColumns = `id, name, expr, on_subject, action, bits, ttl_sec, reason, priority, mode, version, updated_by, updated_at, created_at`

const verdictColumns = `id, rule_id, rule_version, subject, value, action, bits, reason, mode, user_id, trigger_at, created_at, expires_at`

// CreateRiskRule implements surge.RiskStore.
func (s *Store) CreateRiskRule(ctx context.Context, r *surge.RiskRule) error {
	r.Version = 1
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO risk_rules (`+riskRuleColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			r.ID, r.Name, r.Expr, r.On, r.Action, r.Bits, r.TTLSec, r.Reason, r.Priority, r.Mode, r.Version, r.UpdatedBy,
			ms(r.UpdatedAt), ms(r.CreatedAt))
		if err != nil {
			return s.wrap(err, "risk rule")
		}
		return s.saveRuleChange(ctx, tx, nil, r, r.UpdatedBy, r.UpdatedAt)
	})
}

// UpdateRiskRule implements surge.RiskStore.
func (s *Store) UpdateRiskRule(ctx context.Context, id, by int64, at time.Time, change func(*surge.RiskRule) error) (*surge.RiskRule, error) {
	var r *surge.RiskRule
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		list, err := s.riskRules(ctx, tx, `id = ?`+s.dialect.ForUpdate, id)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return surge.Errorf(surge.ENOTFOUND, "risk rule not found")
		}
		old := list[0]
		next := *old
		if err := change(&next); err != nil {
			return err
		}
		next.ID, next.CreatedAt, next.Version, next.UpdatedBy, next.UpdatedAt, next.Force = id, old.CreatedAt, old.Version+1, by, at, false
		_, err = tx.ExecContext(ctx, s.q(`UPDATE risk_rules SET name = ?, expr = ?, on_subject = ?, action = ?, bits = ?, ttl_sec = ?,
			reason = ?, priority = ?, mode = ?, version = ?, updated_by = ?, updated_at = ? WHERE id = ?`),
			next.Name, next.Expr, next.On, next.Action, next.Bits, next.TTLSec, next.Reason, next.Priority, next.Mode, next.Version,
			next.UpdatedBy, ms(next.UpdatedAt), id)
		if err != nil {
			return s.wrap(err, "risk rule")
		}
		r = &next
		return s.saveRuleChange(ctx, tx, old, r, by, at)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// saveRuleChange audits a rule's new version: before is nil when it was created.
func (s *Store) saveRuleChange(ctx context.Context, tx *sql.Tx, before, after *surge.RiskRule, by int64, at time.Time) error {
	var was any // NULL for a new rule
	if before != nil {
		body, err := ruleJSON(before)
		if err != nil {
			return err
		}
		was = body
	}
	is, err := ruleJSON(after)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.q(`INSERT INTO risk_rule_changes (rule_id, version, changed_by, changed_at, rule_before, rule_after)
		VALUES (?, ?, ?, ?, ?, ?)`), after.ID, after.Version, by, ms(at), was, is)
	return s.wrap(err, "risk rule change")
}

// ruleJSON is a rule as its audit keeps it: as its row holds it, so without the request's Force
// and with times to the millisecond.
func ruleJSON(r *surge.RiskRule) (string, error) {
	c := *r
	c.Force = false
	c.UpdatedAt, c.CreatedAt = fromMs(ms(c.UpdatedAt)), fromMs(ms(c.CreatedAt))
	body, err := json.Marshal(&c)
	return string(body), err
}

// RiskRule implements surge.RiskStore.
func (s *Store) RiskRule(ctx context.Context, id int64) (*surge.RiskRule, error) {
	list, err := s.riskRules(ctx, s.db, `id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, surge.Errorf(surge.ENOTFOUND, "risk rule not found")
	}
	return list[0], nil
}

// RiskRules implements surge.RiskStore. It has no limit: the service keeps to MaxRiskRules, and
// a rule left off the list would be one that no node evaluates.
func (s *Store) RiskRules(ctx context.Context) ([]*surge.RiskRule, error) {
	return s.riskRules(ctx, s.db, `1 = 1 ORDER BY id`)
}

func (s *Store) riskRules(ctx context.Context, q querier, where string, args ...any) ([]*surge.RiskRule, error) {
	rows, err := q.QueryContext(ctx, s.q(`SELECT `+riskRuleColumns+` FROM risk_rules WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "risk rules")
	}
	defer rows.Close()
	var list []*surge.RiskRule
	for rows.Next() {
		var r surge.RiskRule
		var updated, created int64
		if err := rows.Scan(&r.ID, &r.Name, &r.Expr, &r.On, &r.Action, &r.Bits, &r.TTLSec, &r.Reason, &r.Priority, &r.Mode, &r.Version,
			&r.UpdatedBy, &updated, &created); err != nil {
			return nil, s.wrap(err, "risk rules")
		}
		r.UpdatedAt, r.CreatedAt = fromMs(updated), fromMs(created)
		list = append(list, &r)
	}
	return list, s.wrap(rows.Err(), "risk rules")
}

// RiskRuleChanges implements surge.RiskStore.
func (s *Store) RiskRuleChanges(ctx context.Context, id int64, n int) ([]surge.RiskRuleChange, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT version, changed_by, changed_at, rule_before, rule_after FROM risk_rule_changes
		WHERE rule_id = ? ORDER BY version DESC LIMIT ?`), id, min(limit(n), surge.MaxRiskRuleChange))
	if err != nil {
		return nil, s.wrap(err, "risk rule changes")
	}
	defer rows.Close()
	var out []surge.RiskRuleChange
	for rows.Next() {
		c := surge.RiskRuleChange{RuleID: id}
		var at int64
		var before sql.NullString
		var after string
		if err := rows.Scan(&c.Version, &c.By, &at, &before, &after); err != nil {
			return nil, s.wrap(err, "risk rule changes")
		}
		c.At = fromMs(at)
		if before.Valid {
			if err := json.Unmarshal([]byte(before.String), &c.Before); err != nil {
				return nil, err
			}
		}
		if err := json.Unmarshal([]byte(after), &c.After); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, s.wrap(rows.Err(), "risk rule changes")
}

// PutVerdicts implements surge.RiskStore: the first write of an id wins, so that verdicts made
// again from the same events change nothing.
func (s *Store) PutVerdicts(ctx context.Context, vs []surge.Verdict) error {
	if len(vs) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, s.q(`INSERT INTO risk_verdicts (`+verdictColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`))
		if err != nil {
			return s.wrap(err, "verdicts")
		}
		defer st.Close()
		for _, v := range vs {
			if _, err := st.ExecContext(ctx, v.ID, v.RuleID, v.Version, v.Subject, v.Value, v.Action, v.Bits, v.Reason, v.Mode, v.User,
				ms(v.Trigger), ms(v.CreatedAt), ms(v.ExpiresAt)); err != nil {
				return s.wrap(err, "verdict")
			}
		}
		return nil
	})
}

// VerdictsSince implements surge.RiskStore.
func (s *Store) VerdictsSince(ctx context.Context, since time.Time, afterID string, n int) ([]surge.Verdict, error) {
	return s.verdicts(ctx, `created_at > ? OR (created_at = ? AND id > ?) ORDER BY created_at, id LIMIT ?`, ms(since), ms(since), afterID, riskLimit(n))
}

// ActiveVerdicts implements surge.RiskStore.
func (s *Store) ActiveVerdicts(ctx context.Context, now time.Time, n int) ([]surge.Verdict, error) {
	return s.verdicts(ctx, `expires_at > ? ORDER BY created_at DESC, id DESC LIMIT ?`, ms(now), riskLimit(n))
}

// PruneVerdicts implements surge.RiskStore.
func (s *Store) PruneVerdicts(ctx context.Context, before time.Time, n int) (int64, error) {
	res, err := s.exec(ctx, s.q(`DELETE FROM risk_verdicts WHERE id IN (SELECT id FROM risk_verdicts WHERE expires_at < ? ORDER BY expires_at LIMIT ?)`),
		ms(before), max(n, 1))
	if err != nil {
		return 0, s.wrap(err, "verdicts")
	}
	return res.RowsAffected()
}

// UserVerdicts implements surge.RiskStore.
func (s *Store) UserVerdicts(ctx context.Context, user int64, n int) ([]surge.Verdict, error) {
	return s.verdicts(ctx, `user_id = ? OR (subject = ? AND value = ?) ORDER BY created_at DESC, id DESC LIMIT ?`,
		user, surge.SubjectUser, strconv.FormatInt(user, 10), limit(n))
}

// riskLimit bounds a list of verdicts or allow-list entries by what a node holds in memory.
func riskLimit(n int) int {
	if n <= 0 {
		return surge.DefaultListLimit
	}
	return min(n, surge.MaxRiskVerdicts)
}

func (s *Store) verdicts(ctx context.Context, where string, args ...any) ([]surge.Verdict, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+verdictColumns+` FROM risk_verdicts WHERE `+where), args...)
	if err != nil {
		return nil, s.wrap(err, "verdicts")
	}
	defer rows.Close()
	var list []surge.Verdict
	for rows.Next() {
		var v surge.Verdict
		var trigger, created, expires int64
		if err := rows.Scan(&v.ID, &v.RuleID, &v.Version, &v.Subject, &v.Value, &v.Action, &v.Bits, &v.Reason, &v.Mode, &v.User,
			&trigger, &created, &expires); err != nil {
			return nil, s.wrap(err, "verdicts")
		}
		v.Trigger, v.CreatedAt, v.ExpiresAt = fromMs(trigger), fromMs(created), fromMs(expires)
		list = append(list, v)
	}
	return list, s.wrap(rows.Err(), "verdicts")
}

// Allow implements surge.RiskStore.
func (s *Store) Allow(ctx context.Context, a surge.RiskAllow) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO risk_allows (subject, value, reason, allowed_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (subject, value) DO UPDATE SET reason = excluded.reason, allowed_by = excluded.allowed_by,
		created_at = excluded.created_at, expires_at = excluded.expires_at`),
		a.Subject, a.Value, a.Reason, a.By, ms(a.CreatedAt), ms(a.ExpiresAt))
	return s.wrap(err, "risk allow")
}

// Disallow implements surge.RiskStore.
func (s *Store) Disallow(ctx context.Context, subject, value string) error {
	res, err := s.exec(ctx, s.q(`DELETE FROM risk_allows WHERE subject = ? AND value = ?`), subject, value)
	return s.affectedOne(res, err, "risk allow")
}

// ActiveAllows implements surge.RiskStore.
func (s *Store) ActiveAllows(ctx context.Context, now time.Time, n int) ([]surge.RiskAllow, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT subject, value, reason, allowed_by, created_at, expires_at FROM risk_allows
		WHERE expires_at > ? ORDER BY subject, value LIMIT ?`), ms(now), riskLimit(n))
	if err != nil {
		return nil, s.wrap(err, "risk allows")
	}
	defer rows.Close()
	var list []surge.RiskAllow
	for rows.Next() {
		var a surge.RiskAllow
		var created, expires int64
		if err := rows.Scan(&a.Subject, &a.Value, &a.Reason, &a.By, &created, &expires); err != nil {
			return nil, s.wrap(err, "risk allows")
		}
		a.CreatedAt, a.ExpiresAt = fromMs(created), fromMs(expires)
		list = append(list, a)
	}
	return list, s.wrap(rows.Err(), "risk allows")
}
