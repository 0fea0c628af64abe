-- Initial schema of bm-server (SQLite). Keep in step with
-- ../postgres/00001_init.sql: the only difference is how audit_events.id is
-- generated.
--
-- No table ever holds an S3 secret key: mount_credentials stores the access
-- key and the provider's reference needed to revoke it, nothing more.

-- +goose Up
CREATE TABLE tenants (
    id                  TEXT PRIMARY KEY,
    bucket_name         TEXT UNIQUE,
    status              TEXT NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'suspended', 'deleted')),
    subscription_status TEXT NOT NULL DEFAULT '',
    subscription_tier   TEXT NOT NULL DEFAULT '',
    created_at          TIMESTAMP NOT NULL
);

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX accounts_tenant_id ON accounts (tenant_id);

CREATE TABLE mount_credentials (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    access_key      TEXT NOT NULL UNIQUE,
    provider_ref    TEXT NOT NULL DEFAULT '',
    description     TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMP NOT NULL,
    last_used_at    TIMESTAMP,
    revoked_at      TIMESTAMP,
    deletion_status TEXT
                    CHECK (deletion_status IS NULL OR deletion_status IN ('pending', 'completed', 'failed'))
);
CREATE INDEX mount_credentials_tenant ON mount_credentials (tenant_id, revoked_at);

CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE mount_credentials;
DROP TABLE accounts;
DROP TABLE tenants;
