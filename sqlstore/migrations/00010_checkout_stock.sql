-- +goose Up
-- stock_back: a cancelled checkout gave its units back to its SKUs (stock_settled also waits
-- for its coupons and events). orders_sku: the units sales sold of an SKU, which a checkout
-- may not sell again.
ALTER TABLE orders ADD COLUMN stock_back INTEGER NOT NULL DEFAULT 0;
CREATE INDEX orders_sku ON orders (sku_id);

-- +goose Down
DROP INDEX orders_sku;
ALTER TABLE orders DROP COLUMN stock_back;
