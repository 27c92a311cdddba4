-- +goose Up
CREATE TABLE coupon_batches (
    id          BIGINT PRIMARY KEY,
    merchant_id BIGINT NOT NULL,
    name        TEXT NOT NULL,
    rule        TEXT NOT NULL,
    total       BIGINT NOT NULL,
    per_user    BIGINT NOT NULL,
    claim_from  BIGINT NOT NULL,
    claim_until BIGINT NOT NULL,
    valid_from  BIGINT NOT NULL,
    valid_until BIGINT NOT NULL,
    valid_days  BIGINT NOT NULL,
    state       TEXT NOT NULL,
    created_by  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX coupon_batches_merchant ON coupon_batches (merchant_id, id);

CREATE TABLE coupons (
    id          BIGINT PRIMARY KEY,
    batch_id    BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    claim_key   TEXT NOT NULL,
    state       TEXT NOT NULL,
    claimed_at  BIGINT NOT NULL,
    valid_from  BIGINT NOT NULL,
    valid_until BIGINT NOT NULL,
    UNIQUE (batch_id, claim_key)
);
CREATE INDEX coupons_user ON coupons (user_id, id);

-- +goose Down
DROP TABLE coupons;
DROP TABLE coupon_batches;
