-- The change events of every tenant, for a fleet of replicas (package
-- server/events/pgevents): each replica inserts the events published on it
-- (in batches, one transaction at a time under an advisory lock, so that
-- the numbers commit in order) and NOTIFYs; every replica LISTENs, reads
-- the rows after the last it delivered and hands them to its hub, which
-- replays them to a device that reconnects with Last-Event-ID. Rows are
-- kept for the replay window (ten minutes), the newest always. The epoch
-- names this numbering, so that a client's ID from another database is
-- not taken for one of this. With SQLite the hub is in-process and this
-- table is not used (../sqlite/00005_change_events.sql is empty).

-- +goose Up
CREATE TABLE change_events (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    device     TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL DEFAULT '',
    keys       TEXT NOT NULL DEFAULT '',  -- JSON array of object keys, or ''
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX change_events_at ON change_events (at);

CREATE TABLE change_events_epoch (
    epoch TEXT NOT NULL
);
INSERT INTO change_events_epoch (epoch) VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 8));

-- +goose Down
DROP TABLE change_events_epoch;
DROP TABLE change_events;
