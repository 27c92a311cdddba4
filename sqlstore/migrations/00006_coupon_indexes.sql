-- +goose Up
-- The partial indexes of 00004 serve no query that names its order or state as a parameter
-- (the planner cannot prove the parameter meets the index's condition): releasing an order's
-- locked coupons scanned the whole table.
DROP INDEX coupons_order;
DROP INDEX coupons_locked;
CREATE INDEX coupons_order ON coupons (order_id);
CREATE INDEX coupons_locked ON coupons (state, locked_at);

-- +goose Down
DROP INDEX coupons_locked;
DROP INDEX coupons_order;
CREATE INDEX coupons_order ON coupons (order_id) WHERE order_id <> 0;
CREATE INDEX coupons_locked ON coupons (locked_at) WHERE state = 'locked';
