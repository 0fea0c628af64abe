package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// Credential is the metadata of one bucket-scoped mount key. There is no
// secret here, on purpose: the secret is handed to the client once and
// stored nowhere on the server.
type Credential struct {
	ID             string
	TenantID       string
	AccessKey      string
	ProviderRef    string // what the storage provider needs to revoke the key
	Description    string
	DeletionStatus string // "" while active; DeletionPending, DeletionCompleted or DeletionFailed once revoked
	// SessionID is the built-in issuer's session that minted the key
	// ("" for an external issuer's token): the key is revoked with it.
	SessionID  string
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// Active reports whether the credential has not been revoked.
func (c Credential) Active() bool { return c.RevokedAt == nil }

var _ storage.KeyIndex = (*Store)(nil)

const credentialCols = `id, tenant_id, access_key, provider_ref, description, deletion_status, created_at, last_used_at, revoked_at, session_id`

func scanCredential(row interface{ Scan(...any) error }) (Credential, error) {
	var c Credential
	var status sql.NullString
	var lastUsed, revoked sql.NullTime
	if err := row.Scan(&c.ID, &c.TenantID, &c.AccessKey, &c.ProviderRef, &c.Description, &status,
		&c.CreatedAt, &lastUsed, &revoked, &c.SessionID); err != nil {
		return Credential{}, classify(err)
	}
	c.DeletionStatus = status.String
	c.CreatedAt = c.CreatedAt.UTC()
	c.LastUsedAt = timePtr(lastUsed)
	c.RevokedAt = timePtr(revoked)
	return c, nil
}

// InsertCredential records a newly minted key. ID, TenantID and AccessKey
// are required; a zero CreatedAt becomes now. A taken id or access key is
// ErrConflict; an unknown tenant is ErrNotFound.
func (s *Store) InsertCredential(ctx context.Context, c Credential) error {
	const op = "insert credential"
	if c.ID == "" || c.TenantID == "" || c.AccessKey == "" {
		return fmt.Errorf("%s: id, tenant id and access key are required", op)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now()
	}
	_, err := s.exec(ctx, `INSERT INTO mount_credentials
		(id, tenant_id, access_key, provider_ref, description, deletion_status, created_at, last_used_at, revoked_at, session_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.TenantID, c.AccessKey, c.ProviderRef, c.Description, nullString(c.DeletionStatus),
		ts(c.CreatedAt), nullTime(c.LastUsedAt), nullTime(c.RevokedAt), c.SessionID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	return nil
}

// ListCredentials returns the active (not revoked) credentials of tenantID,
// newest first.
func (s *Store) ListCredentials(ctx context.Context, tenantID string) ([]Credential, error) {
	const op = "list credentials"
	rows, err := s.query(ctx, `SELECT `+credentialCols+` FROM mount_credentials
		WHERE tenant_id = ? AND revoked_at IS NULL
		ORDER BY created_at DESC, id DESC`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanCredential)
}

// CredentialByID returns credential id of tenantID, revoked or not. Another
// tenant's credential is ErrNotFound.
func (s *Store) CredentialByID(ctx context.Context, tenantID, id string) (Credential, error) {
	c, err := scanCredential(s.queryRow(ctx, `SELECT `+credentialCols+` FROM mount_credentials
		WHERE tenant_id = ? AND id = ?`, tenantID, id))
	if err != nil {
		return Credential{}, fmt.Errorf("credential by id: %w", err)
	}
	return c, nil
}

// RevokeCredential marks credential id of tenantID revoked at at, with
// deletion status DeletionPending, and returns it. Revoking a revoked
// credential changes nothing and returns it as it is (so a failed deletion
// can be retried). Another tenant's credential is ErrNotFound.
func (s *Store) RevokeCredential(ctx context.Context, tenantID, id string, at time.Time) (Credential, error) {
	const op = "revoke credential"
	if _, err := s.exec(ctx, `UPDATE mount_credentials SET revoked_at = ?, deletion_status = ?
		WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL`,
		ts(at), DeletionPending, tenantID, id); err != nil {
		return Credential{}, fmt.Errorf("%s: %w", op, classify(err))
	}
	c, err := s.CredentialByID(ctx, tenantID, id)
	if err != nil {
		return Credential{}, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

// SetDeletionStatus records how deleting credential id at the storage
// provider went: DeletionPending, DeletionCompleted or DeletionFailed.
func (s *Store) SetDeletionStatus(ctx context.Context, id, status string) error {
	const op = "set deletion status"
	switch status {
	case DeletionPending, DeletionCompleted, DeletionFailed:
	default:
		return fmt.Errorf("%s: invalid status %q", op, status)
	}
	return s.updateOne(ctx, op, `UPDATE mount_credentials SET deletion_status = ? WHERE id = ?`, status, id)
}

// PendingDeletions returns revoked credentials whose deletion at the
// provider is pending or failed, oldest revocation first, for a retry job.
func (s *Store) PendingDeletions(ctx context.Context, limit int) ([]Credential, error) {
	const op = "pending deletions"
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT `+credentialCols+` FROM mount_credentials
		WHERE revoked_at IS NOT NULL AND deletion_status IN (?, ?)
		ORDER BY revoked_at, id LIMIT ?`, DeletionPending, DeletionFailed, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanCredential)
}

// LookupAccessKey returns the bucket of accessKey's tenant and whether the
// key may be used: not revoked and its tenant active. An unknown key is an
// error matching both ErrNotFound and storage.ErrNotFound.
func (s *Store) LookupAccessKey(ctx context.Context, accessKey string) (string, bool, error) {
	rec, err := s.LookupKey(ctx, accessKey)
	if err != nil {
		return "", false, err
	}
	return rec.Bucket, rec.Active, nil
}

// LookupKey returns what the store knows of accessKey: its tenant, the
// tenant's bucket, the key's description and whether the key may be used
// (not revoked, its tenant active with a bucket). An unknown key is an
// error matching both ErrNotFound and storage.ErrNotFound. It implements
// storage.KeyIndex.
func (s *Store) LookupKey(ctx context.Context, accessKey string) (storage.KeyRecord, error) {
	var bucket sql.NullString
	var revoked sql.NullTime
	var rec storage.KeyRecord
	var status string
	err := s.queryRow(ctx, `SELECT t.id, t.bucket_name, t.status, c.description, c.revoked_at
		FROM mount_credentials c JOIN tenants t ON t.id = c.tenant_id
		WHERE c.access_key = ?`, accessKey).Scan(&rec.TenantID, &bucket, &status, &rec.Description, &revoked)
	if err != nil {
		err = classify(err)
		if isNotFound(err) {
			return storage.KeyRecord{}, fmt.Errorf("lookup access key: %w: %w", ErrNotFound, storage.ErrNotFound)
		}
		return storage.KeyRecord{}, fmt.Errorf("lookup access key: %w", err)
	}
	rec.Bucket = bucket.String
	rec.Active = !revoked.Valid && status == TenantActive && bucket.String != ""
	return rec, nil
}

// TouchAccessKey records that accessKey was used at at. It writes at most
// once per minute per key (in this process and in the database), so it is
// cheap to call on every request. An unknown key is not an error.
func (s *Store) TouchAccessKey(ctx context.Context, accessKey string, at time.Time) error {
	at = ts(at)
	s.touchMu.Lock()
	last, ok := s.touched[accessKey]
	if ok && at.Sub(last) < touchInterval {
		s.touchMu.Unlock()
		return nil
	}
	s.touched[accessKey] = at
	if len(s.touched) > 10000 { // bound the memo; the SQL guard still holds
		clear(s.touched)
		s.touched[accessKey] = at
	}
	s.touchMu.Unlock()
	_, err := s.exec(ctx, `UPDATE mount_credentials SET last_used_at = ?
		WHERE access_key = ? AND (last_used_at IS NULL OR last_used_at < ?)`,
		at, accessKey, at.Add(-touchInterval))
	if err != nil {
		s.touchMu.Lock()
		delete(s.touched, accessKey)
		s.touchMu.Unlock()
		return fmt.Errorf("touch access key: %w", err)
	}
	return nil
}

// CountActiveCredentials is the number of active credentials of tenantID
// (the "devices" of the tenant).
func (s *Store) CountActiveCredentials(ctx context.Context, tenantID string) (int, error) {
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM mount_credentials
		WHERE tenant_id = ? AND revoked_at IS NULL`, tenantID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count active credentials: %w", err)
	}
	return n, nil
}
