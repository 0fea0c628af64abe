-- State of the built-in OAuth issuer (server/issuer), so that a restart
-- does not log every device out and replicas sharing a database serve one
-- login. Keep in step with ../sqlite/00002_oauth.sql (identical).
--
-- signature is what fosite keys a code or token by: an HMAC signature (or a
-- JWT's signature part), a SHA-256 of a device code, or a user code. No
-- column ever holds a usable code or token. data is the JSON of the stored
-- request or device grant.

-- +goose Up
CREATE TABLE oauth_sessions (
    kind       TEXT NOT NULL,
    signature  TEXT NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    client_id  TEXT NOT NULL DEFAULT '',
    subject    TEXT NOT NULL DEFAULT '',
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    data       TEXT NOT NULL DEFAULT '',
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (kind, signature)
);
CREATE INDEX oauth_sessions_request ON oauth_sessions (kind, request_id);
CREATE INDEX oauth_sessions_expires ON oauth_sessions (expires_at);

-- +goose Down
DROP TABLE oauth_sessions;
