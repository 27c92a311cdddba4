-- +goose Up
-- What reconciliation finds: the real-time pipeline's mismatches, the daily runs against the
-- payment provider's ledger, and the repairs made of their findings. Payments are found by
-- when they were received, for the day's comparison.
CREATE TABLE recon_mismatches (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    order_id   BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    detail     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    raised_at  BIGINT NOT NULL
);
CREATE INDEX recon_mismatches_raised ON recon_mismatches (raised_at);

CREATE TABLE recon_runs (
    day        TEXT PRIMARY KEY,
    report     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE recon_repairs (
    day        TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    by_user    BIGINT NOT NULL,
    result     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (day, finding_id)
);

CREATE INDEX payments_paid ON payments (paid_at);
CREATE INDEX refunds_created ON refunds (created_at);
-- A shop's settlement of a day: its orders paid that day.
CREATE INDEX orders_merchant_paid ON orders (merchant_id, paid_at);

-- +goose Down
DROP INDEX orders_merchant_paid;
DROP INDEX refunds_created;
DROP INDEX payments_paid;
DROP TABLE recon_repairs;
DROP TABLE recon_runs;
DROP TABLE recon_mismatches;
