-- +goose Up
-- An ordinary checkout's lines, as JSON ('' for a sale's order, which has one item).
ALTER TABLE orders ADD COLUMN lines TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orders DROP COLUMN lines;
