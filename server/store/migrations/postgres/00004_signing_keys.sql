-- The built-in issuer's secrets, for replicas that share nothing but the
-- database (server/keyring): its RSA signing keys and its OAuth HMAC
-- secret, each sealed (AES-256-GCM) with the master key every replica is
-- given outside the database. Keep in step with
-- ../sqlite/00004_signing_keys.sql (identical but for the type of the
-- sealed columns).
--
-- signing_keys: kid is the key's RFC 7638 thumbprint; sealed_key its
-- PKCS #8 DER, sealed. One key is active (it signs; the partial unique
-- index makes a second one a conflict, so replicas starting at once agree
-- on one); a rotation retires it (retired_at), and it keeps verifying the
-- tokens it signed until they have expired. Rows are kept.
--
-- sealed_secrets: other secrets by name (oauth_hmac), sealed.
--
-- master_key_check: one row, an HMAC of a fixed label keyed by the master
-- key, so that a replica given another master key refuses to start. The
-- master key itself is never stored.

-- +goose Up
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    sealed_key BYTEA NOT NULL,
    state      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';

CREATE TABLE sealed_secrets (
    name       TEXT PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE master_key_check (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value BYTEA NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE master_key_check;
DROP TABLE sealed_secrets;
DROP TABLE signing_keys;
