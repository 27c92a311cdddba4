-- +goose Up
-- Promotion activities (package promo): used and spent count the orders that hold an activity
-- with a cap or a budget (locked or paid) and the discount they hold, kept in the transaction
-- that locks or releases; an activity with neither is not counted there (its row would be every
-- checkout's hot spot), and its locks say what orders hold.
CREATE TABLE activities (
    id          BIGINT PRIMARY KEY,
    merchant_id BIGINT NOT NULL,
    name        TEXT NOT NULL,
    rule        TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    cap         BIGINT NOT NULL,
    budget      BIGINT NOT NULL,
    used        BIGINT NOT NULL DEFAULT 0,
    spent       BIGINT NOT NULL DEFAULT 0,
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL,
    state       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_by  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX activities_merchant ON activities (merchant_id, id);
CREATE INDEX activities_state ON activities (state);
-- Every saved version of an activity, as JSON, and who saved it.
CREATE TABLE activity_versions (
    activity_id BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    body        TEXT NOT NULL,
    saved_by    BIGINT NOT NULL,
    saved_at    BIGINT NOT NULL,
    PRIMARY KEY (activity_id, version)
);
-- What each order holds of an activity: locked with the order, confirmed when it is paid,
-- released (its use back) when it is cancelled, expires or is refunded; counted: the lock moved
-- the activity's used and spent.
CREATE TABLE activity_locks (
    order_id    BIGINT NOT NULL,
    activity_id BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    discount    BIGINT NOT NULL,
    once_key    TEXT NOT NULL DEFAULT '',
    counted     INTEGER NOT NULL DEFAULT 1,
    state       TEXT NOT NULL,
    PRIMARY KEY (order_id, activity_id)
);
CREATE INDEX activity_locks_activity ON activity_locks (activity_id, state);
-- An activity given once per shopper (new shoppers, first order in a shop): the order that
-- holds it, until that order releases it.
CREATE TABLE activity_once (
    activity_id BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    order_id    BIGINT NOT NULL,
    PRIMARY KEY (activity_id, user_id)
);

-- +goose Down
DROP TABLE activity_once;
DROP TABLE activity_locks;
DROP TABLE activity_versions;
DROP TABLE activities;
