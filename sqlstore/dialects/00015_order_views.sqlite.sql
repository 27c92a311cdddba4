-- Order views (R-4.3), SQLite: the same three copies as on PostgreSQL, unpartitioned, and the
-- search's phones and usernames in an FTS5 trigram index whose rowid is the order id. Times are
-- unix milliseconds, as in orders; paid_at 0 is unpaid.
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
) WITHOUT ROWID;

CREATE TABLE order_views_by_merchant (
    merchant_id  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    order_id     BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
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
    PRIMARY KEY (merchant_id, created_at, order_id)
) WITHOUT ROWID;
CREATE INDEX order_views_by_merchant_state ON order_views_by_merchant (merchant_id, state, created_at, order_id);

CREATE TABLE order_search (
    order_id     INTEGER PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
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
    username     TEXT NOT NULL
);
CREATE INDEX order_search_created ON order_search (created_at, order_id);
CREATE VIRTUAL TABLE order_search_text USING fts5 (phone, username, tokenize = 'trigram');

CREATE TABLE order_view_checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
