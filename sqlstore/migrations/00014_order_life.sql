-- +goose Up
-- The rest of an order's life: refunds through the payment provider (whole, or units of
-- lines, or of payments no order kept), vouchers for voucher products, and the shopper's
-- review.
ALTER TABLE skus ADD COLUMN voucher INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN refunded_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN review TEXT NOT NULL DEFAULT '';

CREATE TABLE refunds (
    id           TEXT PRIMARY KEY,
    order_id     BIGINT NOT NULL,
    txn_id       TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    lines        TEXT NOT NULL,
    whole        INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    state        TEXT NOT NULL,
    by_user      BIGINT NOT NULL,
    notify_id    TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    succeeded_at BIGINT NOT NULL DEFAULT 0,
    UNIQUE (order_id, request_id)
);
CREATE INDEX refunds_requested ON refunds (state, created_at);
CREATE INDEX refunds_succeeded ON refunds (succeeded_at);

CREATE TABLE vouchers (
    code         TEXT PRIMARY KEY,
    order_id     BIGINT NOT NULL,
    seq          INTEGER NOT NULL,
    line         INTEGER NOT NULL,
    sku_id       BIGINT NOT NULL,
    merchant_id  BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    state        TEXT NOT NULL,
    issued_at    BIGINT NOT NULL,
    redeemed_at  BIGINT NOT NULL DEFAULT 0,
    till         TEXT NOT NULL DEFAULT '',
    redeemed_by  BIGINT NOT NULL DEFAULT 0,
    UNIQUE (order_id, seq)
);
CREATE INDEX vouchers_redeemed ON vouchers (merchant_id, redeemed_at);

-- +goose Down
DROP TABLE vouchers;
DROP TABLE refunds;
ALTER TABLE orders DROP COLUMN review;
ALTER TABLE orders DROP COLUMN refunded_minor;
ALTER TABLE skus DROP COLUMN voucher;
