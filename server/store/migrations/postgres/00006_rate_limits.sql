-- Rate limits shared by a fleet of bm-server replicas (server/limit/pglimit):
-- the sign-in, device authorization and verification-page limits of the
-- built-in issuer count here, so that they hold across replicas. Keys are
-- HMAC-SHA-256 hashes of the client address, account or user code (keyed
-- by a secret the database does not hold), never the raw values. Times are
-- microseconds since the Unix epoch on PostgreSQL's clock.
--
-- rate_buckets is a token bucket per (limit, key) as GCRA: tat is the
-- "theoretical arrival time" (a full bucket once it is past), allowed
-- whether the last request taken was let through (what the upsert
-- returns). rate_failures counts the failed attempts of a key (n, the
-- last one at last) for the backoff; expires is when it is forgotten.
--
-- Both are UNLOGGED: counters are worth no WAL, and after a crash
-- PostgreSQL empties them (the limits start over, as after a restart of a
-- single server). Rows past their time are deleted by every replica now
-- and then; no index on tat or expires, so that the updates stay HOT
-- (the table holds only the keys of the last minutes).
--
-- SQLite keeps these limits in the server's memory (one server): see
-- ../sqlite/00006_rate_limits.sql.

-- +goose Up
CREATE UNLOGGED TABLE rate_buckets (
    name    TEXT    NOT NULL,
    key     BYTEA   NOT NULL,
    tat     BIGINT  NOT NULL,
    allowed BOOLEAN NOT NULL,
    PRIMARY KEY (name, key)
);

CREATE UNLOGGED TABLE rate_failures (
    name    TEXT    NOT NULL,
    key     BYTEA   NOT NULL,
    n       INTEGER NOT NULL,
    last    BIGINT  NOT NULL,
    expires BIGINT  NOT NULL,
    PRIMARY KEY (name, key)
);

-- +goose Down
DROP TABLE rate_failures;
DROP TABLE rate_buckets;
