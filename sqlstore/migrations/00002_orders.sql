-- +goose Up
ALTER TABLE sessions ADD COLUMN published_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN pay_timeout_ms BIGINT NOT NULL DEFAULT 900000;

CREATE TABLE orders (
    id            BIGINT PRIMARY KEY,
    txn_id        TEXT NOT NULL UNIQUE,
    request_id    TEXT NOT NULL,
    user_id       BIGINT NOT NULL,
    session_id    BIGINT NOT NULL,
    item_id       BIGINT NOT NULL,
    sku_id        BIGINT NOT NULL,
    merchant_id   BIGINT NOT NULL,
    quantity      BIGINT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    state         TEXT NOT NULL,
    cancel_reason TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    paid_at       BIGINT NOT NULL DEFAULT 0,
    stock_settled INTEGER NOT NULL DEFAULT 0,
    UNIQUE (item_id, user_id, request_id)
);
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_due ON orders (state, expires_at);
CREATE INDEX orders_unsettled ON orders (stock_settled, state);

CREATE TABLE payments (
    notify_id    TEXT PRIMARY KEY,
    txn_id       TEXT NOT NULL,
    order_id     BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    paid_at      BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    outcome      TEXT NOT NULL
);
CREATE INDEX payments_order ON payments (order_id);

CREATE TABLE blacklist (
    user_id    BIGINT PRIMARY KEY,
    reason     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX blacklist_created ON blacklist (created_at);

-- +goose Down
DROP TABLE blacklist;
DROP TABLE payments;
DROP TABLE orders;
ALTER TABLE sessions DROP COLUMN pay_timeout_ms;
ALTER TABLE sessions DROP COLUMN published_at;
