-- +goose Up
-- A red envelope's amount, drawn from its budget when claimed (0 for a coupon).
ALTER TABLE coupons ADD COLUMN value BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE coupons DROP COLUMN value;
