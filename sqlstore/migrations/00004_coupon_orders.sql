-- +goose Up
ALTER TABLE coupons ADD COLUMN order_id BIGINT NOT NULL DEFAULT 0;
ALTER TABLE coupons ADD COLUMN lock_key TEXT NOT NULL DEFAULT '';
ALTER TABLE coupons ADD COLUMN locked_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE coupons ADD COLUMN discount BIGINT NOT NULL DEFAULT 0;
CREATE INDEX coupons_order ON coupons (order_id) WHERE order_id <> 0;
CREATE INDEX coupons_locked ON coupons (locked_at) WHERE state = 'locked';
ALTER TABLE orders ADD COLUMN price TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orders DROP COLUMN price;
DROP INDEX coupons_locked;
DROP INDEX coupons_order;
ALTER TABLE coupons DROP COLUMN discount;
ALTER TABLE coupons DROP COLUMN locked_at;
ALTER TABLE coupons DROP COLUMN lock_key;
ALTER TABLE coupons DROP COLUMN order_id;
