-- +goose Up
-- Risk control: operators' rules, every change of them, the verdicts they made and support's
-- allow-list. Column names avoid SQL keywords (on, by, before, after) so both dialects take
-- them unquoted.
CREATE TABLE risk_rules (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    expr        TEXT NOT NULL,
    on_subject  TEXT NOT NULL,
    action      TEXT NOT NULL,
    bits        BIGINT NOT NULL,
    ttl_sec     BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    mode        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    updated_by  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- Each version of a rule as JSON, before (NULL for the first) and after, and who made it.
CREATE TABLE risk_rule_changes (
    rule_id     BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    changed_by  BIGINT NOT NULL,
    changed_at  BIGINT NOT NULL,
    rule_before TEXT,
    rule_after  TEXT NOT NULL,
    PRIMARY KEY (rule_id, version)
);
-- Verdicts, keyed by the id their events give them, so that reading the events again stores
-- nothing twice.
CREATE TABLE risk_verdicts (
    id           TEXT PRIMARY KEY,
    rule_id      BIGINT NOT NULL,
    rule_version BIGINT NOT NULL,
    subject      TEXT NOT NULL,
    value        TEXT NOT NULL,
    action       TEXT NOT NULL,
    bits         BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    mode         TEXT NOT NULL,
    user_id      BIGINT NOT NULL,
    trigger_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX risk_verdicts_created ON risk_verdicts (created_at, id);
CREATE INDEX risk_verdicts_expires ON risk_verdicts (expires_at);
CREATE INDEX risk_verdicts_user ON risk_verdicts (user_id);
CREATE INDEX risk_verdicts_subject ON risk_verdicts (subject, value);
-- Subjects exempt from every verdict until they expire.
CREATE TABLE risk_allows (
    subject     TEXT NOT NULL,
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    allowed_by  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (subject, value)
);
CREATE INDEX risk_allows_expires ON risk_allows (expires_at);

-- +goose Down
DROP TABLE risk_allows;
DROP TABLE risk_verdicts;
DROP TABLE risk_rule_changes;
DROP TABLE risk_rules;
