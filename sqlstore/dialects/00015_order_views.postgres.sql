-- Order views (R-4.3), PostgreSQL: the shopper's copy partitioned by user id hash, the
-- merchant's by merchant id hash, support's search with trigram indexes. {{trgm}} is the schema
-- pg_trgm lives in. Times are unix milliseconds, as in orders; paid_at 0 is unpaid.
CREATE TABLE order_views_by_user (
    user_id      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    order_id     BIGINT NOT NULL,
    merchant_id  BIGINT NOT NULL,
    txn_id       TEXT NOT NULL,
    session_id   BIGINT NOT NULL,
    item_id      BIGINT NOT NULL,
    sku_id       BIGINT NOT NULL,
    quantity     BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    state        TEXT NOT NULL,
    paid_at      BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    phone        TEXT NOT NULL,
    username     TEXT NOT NULL,
    PRIMARY KEY (user_id, created_at, order_id)
) PARTITION BY HASH (user_id);

CREATE TABLE order_views_by_merchant (LIKE order_views_by_user, PRIMARY KEY (merchant_id, created_at, order_id))
    PARTITION BY HASH (merchant_id);
CREATE INDEX order_views_by_merchant_state ON order_views_by_merchant (merchant_id, state, created_at, order_id);

-- 16 partitions each; README.md ("Order views") says how to split them further.
DO $$
BEGIN
    FOR r IN 0..15 LOOP
        EXECUTE format('CREATE TABLE order_views_by_user_p%s PARTITION OF order_views_by_user FOR VALUES WITH (MODULUS 16, REMAINDER %s)', r, r);
        EXECUTE format('CREATE TABLE order_views_by_merchant_p%s PARTITION OF order_views_by_merchant FOR VALUES WITH (MODULUS 16, REMAINDER %s)', r, r);
    END LOOP;
END
$$;

CREATE TABLE order_search (LIKE order_views_by_user, PRIMARY KEY (order_id));
CREATE INDEX order_search_created ON order_search (created_at, order_id);
CREATE INDEX order_search_phone ON order_search USING gin (phone {{trgm}}.gin_trgm_ops);
CREATE INDEX order_search_username ON order_search USING gin (username {{trgm}}.gin_trgm_ops);

CREATE TABLE order_view_checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
