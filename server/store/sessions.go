package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AuthSession is one session of the built-in issuer: one login, kept
// across refresh-token rotation. ID is the sid claim of its access tokens
// (the grant's request id), never a usable token.
type AuthSession struct {
	ID        string
	Subject   string
	CreatedAt time.Time
	ExpiresAt time.Time
	EndedAt   *time.Time // nil while the session may be used
	EndReason string
}

// Live reports whether the session may be used at t: not ended, not expired.
func (a AuthSession) Live(t time.Time) bool { return a.EndedAt == nil && t.Before(a.ExpiresAt) }

const authSessionCols = `id, subject, created_at, expires_at, ended_at, end_reason`

func scanAuthSession(row interface{ Scan(...any) error }) (AuthSession, error) {
	var a AuthSession
	var ended sql.NullTime
	if err := row.Scan(&a.ID, &a.Subject, &a.CreatedAt, &a.ExpiresAt, &ended, &a.EndReason); err != nil {
		return AuthSession{}, classify(err)
	}
	a.CreatedAt, a.ExpiresAt = a.CreatedAt.UTC(), a.ExpiresAt.UTC()
	a.EndedAt = timePtr(ended)
	return a, nil
}

// OpenAuthSession records sess (CreatedAt defaults to now) or, if its id
// is recorded already, moves its expiry to sess.ExpiresAt when that is
// later. An ended session stays ended. An id recorded for another subject
// is ErrConflict.
func (s *Store) OpenAuthSession(ctx context.Context, sess AuthSession) error {
	const op = "open auth session"
	if sess.ID == "" || sess.Subject == "" {
		return fmt.Errorf("%s: id and subject are required", op)
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now()
	}
	n, err := s.execAffected(ctx, op, `INSERT INTO auth_sessions (id, subject, created_at, expires_at, end_reason)
		VALUES (?, ?, ?, ?, '')
		ON CONFLICT (id) DO UPDATE SET expires_at = CASE
			WHEN excluded.expires_at > auth_sessions.expires_at THEN excluded.expires_at
			ELSE auth_sessions.expires_at END
		WHERE auth_sessions.subject = excluded.subject`,
		sess.ID, sess.Subject, ts(sess.CreatedAt), ts(sess.ExpiresAt))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: id of another subject: %w", op, ErrConflict)
	}
	return nil
}

// AuthSession returns session id, ended or not, or ErrNotFound.
func (s *Store) AuthSession(ctx context.Context, id string) (AuthSession, error) {
	a, err := scanAuthSession(s.queryRow(ctx, `SELECT `+authSessionCols+` FROM auth_sessions WHERE id = ?`, id))
	if err != nil {
		return AuthSession{}, fmt.Errorf("auth session: %w", err)
	}
	return a, nil
}

// EndAuthSession ends session id at at for reason and reports whether it
// did: false if it is unknown or was ended already.
func (s *Store) EndAuthSession(ctx context.Context, id, reason string, at time.Time) (bool, error) {
	n, err := s.execAffected(ctx, "end auth session",
		`UPDATE auth_sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL`, ts(at), reason, id)
	return n > 0, err
}

// EndSubjectSessions ends, at at for reason, every session of subject
// that is not ended yet and returns their ids; it also records at as the
// subject's cutoff (see SessionsNotBefore), later cutoffs winning. Both
// are one transaction.
func (s *Store) EndSubjectSessions(ctx context.Context, subject, reason string, at time.Time) ([]string, error) {
	const op = "end subject sessions"
	if subject == "" {
		return nil, fmt.Errorf("%s: empty subject", op)
	}
	at = ts(at)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO session_cutoffs (subject, not_before) VALUES (?, ?)
		ON CONFLICT (subject) DO UPDATE SET not_before = CASE
			WHEN excluded.not_before > session_cutoffs.not_before THEN excluded.not_before
			ELSE session_cutoffs.not_before END`), subject, at); err != nil {
		return nil, fmt.Errorf("%s: cutoff: %w", op, err)
	}
	rows, err := tx.QueryContext(ctx, s.rebind(`UPDATE auth_sessions SET ended_at = ?, end_reason = ?
		WHERE subject = ? AND ended_at IS NULL RETURNING id`), at, reason, subject)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ids, err := collect(rows, op, func(r interface{ Scan(...any) error }) (string, error) {
		var id string
		return id, r.Scan(&id)
	})
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("%s: commit: %w", op, err)
	}
	return ids, nil
}

// SessionsNotBefore is subject's cutoff: sessions it authenticated before
// that time are ended. Zero if there is none.
func (s *Store) SessionsNotBefore(ctx context.Context, subject string) (time.Time, error) {
	var t time.Time
	err := s.queryRow(ctx, `SELECT not_before FROM session_cutoffs WHERE subject = ?`, subject).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("sessions not before: %w", err)
	}
	return t.UTC(), nil
}

// DeleteExpiredAuthSessions deletes the sessions that expired before t and
// returns how many.
func (s *Store) DeleteExpiredAuthSessions(ctx context.Context, t time.Time) (int64, error) {
	return s.execAffected(ctx, "delete expired auth sessions", `DELETE FROM auth_sessions WHERE expires_at < ?`, ts(t))
}

// ListSessionCredentials returns the active credentials minted by session
// sessionID, oldest first; an empty id has none.
func (s *Store) ListSessionCredentials(ctx context.Context, sessionID string) ([]Credential, error) {
	const op = "list session credentials"
	if sessionID == "" {
		return []Credential{}, nil
	}
	rows, err := s.query(ctx, `SELECT `+credentialCols+` FROM mount_credentials
		WHERE session_id = ? AND revoked_at IS NULL ORDER BY created_at, id`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanCredential)
}
