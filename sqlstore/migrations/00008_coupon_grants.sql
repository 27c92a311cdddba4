-- +goose Up
CREATE TABLE coupon_grants (
    id          BIGINT PRIMARY KEY,
    batch_id    BIGINT NOT NULL,
    request_id  TEXT NOT NULL,
    users       BIGINT NOT NULL,
    position    BIGINT NOT NULL DEFAULT 0,
    granted     BIGINT NOT NULL DEFAULT 0,
    refused     BIGINT NOT NULL DEFAULT 0,
    state       TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_by  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    lease_by    BIGINT NOT NULL DEFAULT -1,
    UNIQUE (batch_id, request_id)
);
CREATE INDEX coupon_grants_running ON coupon_grants (state, id);
-- A grant's users, GrantChunk to a row, as decimal ids separated by commas.
CREATE TABLE coupon_grant_users (
    grant_id BIGINT NOT NULL,
    chunk    BIGINT NOT NULL,
    users    TEXT NOT NULL,
    PRIMARY KEY (grant_id, chunk)
);

-- +goose Down
DROP TABLE coupon_grant_users;
DROP TABLE coupon_grants;
