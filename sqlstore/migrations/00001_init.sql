-- +goose Up
-- Times are unix milliseconds; money is integer minor units. The same SQL runs on SQLite and
-- PostgreSQL.
CREATE TABLE users (
    id            BIGINT PRIMARY KEY,
    username      TEXT UNIQUE,
    email         TEXT UNIQUE,
    phone         TEXT UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    expires_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE otps (
    phone      TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE spus (
    id          BIGINT PRIMARY KEY,
    merchant_id BIGINT NOT NULL,
    code        TEXT NOT NULL,
    title       TEXT NOT NULL,
    category_l1 TEXT NOT NULL,
    category_l2 TEXT NOT NULL,
    description TEXT NOT NULL,
    images      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (merchant_id, code)
);

CREATE TABLE skus (
    id          BIGINT PRIMARY KEY,
    spu_id      BIGINT NOT NULL REFERENCES spus (id),
    merchant_id BIGINT NOT NULL,
    code        TEXT NOT NULL,
    title       TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    cost_minor  BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    stock       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (merchant_id, code)
);
CREATE INDEX skus_spu ON skus (spu_id);

CREATE TABLE sessions (
    id         BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    start_at   BIGINT NOT NULL,
    end_at     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sessions_window ON sessions (end_at, start_at);

CREATE TABLE session_items (
    id               BIGINT PRIMARY KEY,
    session_id       BIGINT NOT NULL REFERENCES sessions (id),
    sku_id           BIGINT NOT NULL REFERENCES skus (id),
    allotted         BIGINT NOT NULL,
    sale_price_minor BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    per_user_limit   BIGINT NOT NULL,
    UNIQUE (session_id, sku_id)
);
CREATE INDEX session_items_sku ON session_items (sku_id);

-- +goose Down
DROP TABLE session_items;
DROP TABLE sessions;
DROP TABLE skus;
DROP TABLE spus;
DROP TABLE otps;
DROP TABLE refresh_tokens;
DROP TABLE users;
