package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// OAuthSession is one row of the built-in OAuth issuer's state: a stored
// request behind an authorization code, an access or refresh token, a PKCE
// or OpenID Connect session, or a device grant. Signature is an HMAC
// signature, a hash or a user code, never a usable code or token; Data is
// the issuer's own serialisation of the request, opaque to the store.
type OAuthSession struct {
	Kind      string
	Signature string
	RequestID string
	ClientID  string
	Subject   string
	Active    bool
	Data      string
	ExpiresAt time.Time
	CreatedAt time.Time
}

// CreateOAuthSession inserts sess (CreatedAt defaults to now). A row with
// the same kind and signature is ErrConflict.
func (s *Store) CreateOAuthSession(ctx context.Context, sess OAuthSession) error {
	if sess.Kind == "" || sess.Signature == "" {
		return errors.New("create oauth session: kind and signature are required")
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now()
	}
	_, err := s.exec(ctx, `INSERT INTO oauth_sessions
		(kind, signature, request_id, client_id, subject, active, data, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sess.Kind, sess.Signature, sess.RequestID, sess.ClientID, sess.Subject, sess.Active, sess.Data,
		ts(sess.ExpiresAt), ts(sess.CreatedAt))
	if err != nil {
		return fmt.Errorf("create oauth session: %w", classify(err))
	}
	return nil
}

// CreateOAuthSessionCapped inserts sess as CreateOAuthSession does unless
// maxRows rows of its kind are unexpired at now: then it is ErrFull. The
// count and the insert are one transaction under a lock of the kind (a
// SQLite write transaction; a PostgreSQL advisory lock), so concurrent
// callers, at one replica or several, never pass the bound together.
func (s *Store) CreateOAuthSessionCapped(ctx context.Context, sess OAuthSession, maxRows int, now time.Time) error {
	if sess.Kind == "" || sess.Signature == "" {
		return errors.New("create oauth session: kind and signature are required")
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now
	}
	tx, err := s.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE (see Open), the write lock
	if err != nil {
		return fmt.Errorf("create oauth session: begin: %w", err)
	}
	defer tx.Rollback()
	if s.dialect == DialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "oauth_sessions:"+sess.Kind); err != nil {
			return fmt.Errorf("create oauth session: lock: %w", err)
		}
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM oauth_sessions WHERE kind = ? AND expires_at >= ?`),
		sess.Kind, ts(now)).Scan(&n); err != nil {
		return fmt.Errorf("create oauth session: count: %w", err)
	}
	if n >= maxRows {
		return fmt.Errorf("create oauth session: %d %s rows: %w", n, sess.Kind, ErrFull)
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO oauth_sessions
		(kind, signature, request_id, client_id, subject, active, data, expires_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		sess.Kind, sess.Signature, sess.RequestID, sess.ClientID, sess.Subject, sess.Active, sess.Data,
		ts(sess.ExpiresAt), ts(sess.CreatedAt)); err != nil {
		return fmt.Errorf("create oauth session: %w", classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create oauth session: commit: %w", classify(err))
	}
	return nil
}

// OAuthSession returns the row of kind and signature, or ErrNotFound.
// Expired rows not yet swept are returned as they are: the caller checks
// ExpiresAt.
func (s *Store) OAuthSession(ctx context.Context, kind, signature string) (OAuthSession, error) {
	var o OAuthSession
	err := s.queryRow(ctx, `SELECT kind, signature, request_id, client_id, subject, active, data, expires_at, created_at
		FROM oauth_sessions WHERE kind = ? AND signature = ?`, kind, signature).
		Scan(&o.Kind, &o.Signature, &o.RequestID, &o.ClientID, &o.Subject, &o.Active, &o.Data, &o.ExpiresAt, &o.CreatedAt)
	if err != nil {
		return OAuthSession{}, fmt.Errorf("oauth session: %w", classify(err))
	}
	o.ExpiresAt, o.CreatedAt = o.ExpiresAt.UTC(), o.CreatedAt.UTC()
	return o, nil
}

// DeleteOAuthSession deletes the row of kind and signature; a missing row
// is not an error.
func (s *Store) DeleteOAuthSession(ctx context.Context, kind, signature string) error {
	if _, err := s.exec(ctx, `DELETE FROM oauth_sessions WHERE kind = ? AND signature = ?`, kind, signature); err != nil {
		return fmt.Errorf("delete oauth session: %w", err)
	}
	return nil
}

// DeactivateOAuthSession marks the active row of kind and signature
// inactive and reports whether it did: false if the row is missing or was
// already inactive (for example because another replica got there first).
func (s *Store) DeactivateOAuthSession(ctx context.Context, kind, signature string) (bool, error) {
	res, err := s.exec(ctx, `UPDATE oauth_sessions SET active = ? WHERE kind = ? AND signature = ? AND active = ?`,
		false, kind, signature, true)
	if err != nil {
		return false, fmt.Errorf("deactivate oauth session: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("deactivate oauth session: %w", err)
	}
	return n > 0, nil
}

// DeactivateOAuthSessionsByRequest marks every row of kind and requestID
// inactive.
func (s *Store) DeactivateOAuthSessionsByRequest(ctx context.Context, kind, requestID string) error {
	if _, err := s.exec(ctx, `UPDATE oauth_sessions SET active = ? WHERE kind = ? AND request_id = ?`,
		false, kind, requestID); err != nil {
		return fmt.Errorf("deactivate oauth sessions: %w", err)
	}
	return nil
}

// DeleteOAuthSessionsByRequest deletes every row of kind and requestID.
func (s *Store) DeleteOAuthSessionsByRequest(ctx context.Context, kind, requestID string) error {
	if _, err := s.exec(ctx, `DELETE FROM oauth_sessions WHERE kind = ? AND request_id = ?`, kind, requestID); err != nil {
		return fmt.Errorf("delete oauth sessions: %w", err)
	}
	return nil
}

// SwapOAuthSessionData replaces the data (and the active flag) of the row
// of kind and signature if its data is still oldData, and reports whether
// it did: a compare-and-swap that lets replicas update one device grant
// without a lock.
func (s *Store) SwapOAuthSessionData(ctx context.Context, kind, signature, oldData, newData string, active bool) (bool, error) {
	res, err := s.exec(ctx, `UPDATE oauth_sessions SET data = ?, active = ? WHERE kind = ? AND signature = ? AND data = ?`,
		newData, active, kind, signature, oldData)
	if err != nil {
		return false, fmt.Errorf("swap oauth session: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("swap oauth session: %w", err)
	}
	return n > 0, nil
}

// CountOAuthSessions counts the unexpired rows of kind at t.
func (s *Store) CountOAuthSessions(ctx context.Context, kind string, t time.Time) (int, error) {
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM oauth_sessions WHERE kind = ? AND expires_at >= ?`,
		kind, ts(t)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count oauth sessions: %w", err)
	}
	return n, nil
}

// DeleteExpiredOAuthSessions deletes the rows that expired before t and
// returns how many.
func (s *Store) DeleteExpiredOAuthSessions(ctx context.Context, t time.Time) (int64, error) {
	return s.execAffected(ctx, "delete expired oauth sessions", `DELETE FROM oauth_sessions WHERE expires_at < ?`, ts(t))
}
