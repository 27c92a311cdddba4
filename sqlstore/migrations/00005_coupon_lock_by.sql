-- +goose Up
-- lock_by is the attempt that last locked a coupon (its candidate order id): a refused attempt
-- gives its coupons back only if no retry of its request has locked them since.
ALTER TABLE coupons ADD COLUMN lock_by BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE coupons DROP COLUMN lock_by;
