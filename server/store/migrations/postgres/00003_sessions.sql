-- Sessions of the built-in issuer (server/issuer), so that a session can be
-- ended: one row per login, keyed by the grant's request id (the sid claim
-- of its access tokens), ended by a logout, a reused refresh token or
-- authorization code, a password change or a disabled account. Keep in
-- step with ../sqlite/00003_sessions.sql (identical).
--
-- session_cutoffs holds, per subject, the time before which every session
-- it authenticated is ended (a password change, a disabled account): it
-- also refuses an authorization code or a device approval of the old
-- password that is exchanged afterwards.
--
-- mount_credentials.session_id is the session that minted the key ('' for
-- keys minted before this migration or through an external issuer): the
-- key is revoked with it.

-- +goose Up
CREATE TABLE auth_sessions (
    id         TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    ended_at   TIMESTAMP,
    end_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX auth_sessions_subject ON auth_sessions (subject);
CREATE INDEX auth_sessions_expires ON auth_sessions (expires_at);

CREATE TABLE session_cutoffs (
    subject    TEXT PRIMARY KEY,
    not_before TIMESTAMP NOT NULL
);

ALTER TABLE accounts ADD COLUMN disabled_at TIMESTAMP;

ALTER TABLE mount_credentials ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
CREATE INDEX mount_credentials_session ON mount_credentials (session_id);

-- +goose Down
DROP INDEX mount_credentials_session;
ALTER TABLE mount_credentials DROP COLUMN session_id;
ALTER TABLE accounts DROP COLUMN disabled_at;
DROP TABLE session_cutoffs;
DROP TABLE auth_sessions;
