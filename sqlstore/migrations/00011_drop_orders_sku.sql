-- +goose Up
-- Checkouts count what sessions that have not ended allot, as new sessions do: they no longer
-- sum a SKU's past sale orders, and every sale order no longer pays for this index.
DROP INDEX orders_sku;

-- +goose Down
CREATE INDEX orders_sku ON orders (sku_id);
