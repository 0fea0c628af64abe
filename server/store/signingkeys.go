package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The built-in issuer's secrets for a fleet of replicas (see
// server/keyring, which seals and opens them): its signing keys, other
// sealed secrets by name, and the master key's check value. The store
// only ever sees sealed bytes.

// States of a signing key.
const (
	// SigningKeyActive: the key signs new tokens. There is at most one.
	SigningKeyActive = "active"
	// SigningKeyRetired: a rotation replaced the key; it still verifies
	// the tokens it signed until they have expired.
	SigningKeyRetired = "retired"
)

// SigningKey is a row of signing_keys.
type SigningKey struct {
	// KID is the key's id (the JWT kid).
	KID string
	// Sealed is the private key, sealed with the master key.
	Sealed    []byte
	State     string
	CreatedAt time.Time
	// RetiredAt is when a rotation retired the key (nil while active).
	RetiredAt *time.Time
}

const signingKeyColumns = `kid, sealed_key, state, created_at, retired_at`

func scanSigningKey(sc interface{ Scan(...any) error }) (SigningKey, error) {
	var k SigningKey
	var retired sql.NullTime
	if err := sc.Scan(&k.KID, &k.Sealed, &k.State, &k.CreatedAt, &retired); err != nil {
		return SigningKey{}, err
	}
	k.CreatedAt = k.CreatedAt.UTC()
	k.RetiredAt = timePtr(retired)
	return k, nil
}

// AddFirstSigningKey inserts k as the active signing key unless there is
// an active one already, and reports whether it did. Replicas starting at
// once may all call it: one insert wins, in one statement (a unique index
// holds one active key), and each then reads the winner with
// ActiveSigningKey.
func (s *Store) AddFirstSigningKey(ctx context.Context, k SigningKey) (bool, error) {
	if k.KID == "" || len(k.Sealed) == 0 {
		return false, errors.New("add first signing key: kid and sealed key are required")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now()
	}
	n, err := s.execAffected(ctx, "add first signing key", `INSERT INTO signing_keys (`+signingKeyColumns+`)
		VALUES (?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING`, k.KID, k.Sealed, SigningKeyActive, ts(k.CreatedAt))
	return n > 0, err
}

// ActiveSigningKey returns the active signing key, or ErrNotFound.
func (s *Store) ActiveSigningKey(ctx context.Context) (SigningKey, error) {
	k, err := scanSigningKey(s.queryRow(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys WHERE state = ?`, SigningKeyActive))
	if err != nil {
		return SigningKey{}, fmt.Errorf("active signing key: %w", classify(err))
	}
	return k, nil
}

// SigningKeys returns the active key and the keys retired at or after
// since (the zero time: every key), newest first.
func (s *Store) SigningKeys(ctx context.Context, since time.Time) ([]SigningKey, error) {
	q := `SELECT ` + signingKeyColumns + ` FROM signing_keys WHERE state = ? OR retired_at >= ? ORDER BY created_at DESC, kid`
	var args = []any{SigningKeyActive, ts(since)}
	if since.IsZero() {
		q = `SELECT ` + signingKeyColumns + ` FROM signing_keys ORDER BY created_at DESC, kid`
		args = nil
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	defer rows.Close()
	var out []SigningKey
	for rows.Next() {
		k, err := scanSigningKey(rows)
		if err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return out, nil
}

// RotateSigningKey retires the active key fromKID at at and makes next
// the active key, in one transaction. If fromKID is no longer the active
// key (another rotation got there first) nothing changes and the error
// is ErrConflict.
func (s *Store) RotateSigningKey(ctx context.Context, fromKID string, next SigningKey, at time.Time) error {
	const op = "rotate signing key"
	if next.KID == "" || len(next.Sealed) == 0 {
		return fmt.Errorf("%s: kid and sealed key are required", op)
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = at
	}
	tx, err := s.db.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE (see Open)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.rebind(`UPDATE signing_keys SET state = ?, retired_at = ? WHERE kid = ? AND state = ?`),
		SigningKeyRetired, ts(at), fromKID, SigningKeyActive)
	if err != nil {
		return fmt.Errorf("%s: retire: %w", op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: retire: %w", op, err)
	} else if n == 0 {
		return fmt.Errorf("%s: %s is not the active key: %w", op, fromKID, ErrConflict)
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO signing_keys (`+signingKeyColumns+`) VALUES (?, ?, ?, ?, NULL)`),
		next.KID, next.Sealed, SigningKeyActive, ts(next.CreatedAt)); err != nil {
		return fmt.Errorf("%s: insert: %w", op, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", op, classify(err))
	}
	return nil
}

// AddSealedSecret stores the sealed secret name unless one is stored
// already, and returns the one stored: sealed, or the one that was there
// (the first of replicas starting at once).
func (s *Store) AddSealedSecret(ctx context.Context, name string, sealed []byte) ([]byte, error) {
	if name == "" || len(sealed) == 0 {
		return nil, errors.New("add sealed secret: name and value are required")
	}
	if _, err := s.exec(ctx, `INSERT INTO sealed_secrets (name, sealed, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		name, sealed, now()); err != nil {
		return nil, fmt.Errorf("add sealed secret: %w", classify(err))
	}
	return s.SealedSecret(ctx, name)
}

// SealedSecret returns the sealed secret name, or ErrNotFound.
func (s *Store) SealedSecret(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	if err := s.queryRow(ctx, `SELECT sealed FROM sealed_secrets WHERE name = ?`, name).Scan(&b); err != nil {
		return nil, fmt.Errorf("sealed secret: %w", classify(err))
	}
	return b, nil
}

// SetMasterKeyCheck records check as the master key's check value unless
// one is recorded, and returns the one recorded: check, or the value of
// the master key the database was set up with.
func (s *Store) SetMasterKeyCheck(ctx context.Context, check []byte) ([]byte, error) {
	if len(check) == 0 {
		return nil, errors.New("set master key check: empty value")
	}
	if _, err := s.exec(ctx, `INSERT INTO master_key_check (id, check_value, created_at) VALUES (1, ?, ?) ON CONFLICT DO NOTHING`,
		check, now()); err != nil {
		return nil, fmt.Errorf("set master key check: %w", classify(err))
	}
	return s.MasterKeyCheck(ctx)
}

// MasterKeyCheck returns the master key's check value, or ErrNotFound
// when the database was never set up with a master key.
func (s *Store) MasterKeyCheck(ctx context.Context) ([]byte, error) {
	var b []byte
	if err := s.queryRow(ctx, `SELECT check_value FROM master_key_check WHERE id = 1`).Scan(&b); err != nil {
		return nil, fmt.Errorf("master key check: %w", classify(err))
	}
	return b, nil
}
