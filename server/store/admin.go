package store

import (
	"context"
	"database/sql"
	"fmt"
)

// This file holds the queries of the operator's view (bm-server's admin
// commands): listings across tenants and writes that the tenant API never
// makes.

// CreateTenant inserts a tenant without an account. An empty Status becomes
// TenantActive and a zero CreatedAt now; a taken id or bucket name is
// ErrConflict.
func (s *Store) CreateTenant(ctx context.Context, t Tenant) error {
	const op = "create tenant"
	if t.ID == "" {
		return fmt.Errorf("%s: empty id", op)
	}
	if t.Status == "" {
		t.Status = TenantActive
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	if _, err := s.exec(ctx, `INSERT INTO tenants
		(id, bucket_name, status, subscription_status, subscription_tier, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`,
		t.ID, nullString(t.BucketName), t.Status, t.SubscriptionStatus, t.SubscriptionTier, ts(t.CreatedAt)); err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	return nil
}

// CreateAccount inserts an account of an existing tenant. The email is
// normalised; a taken id or email is ErrConflict, an unknown tenant
// ErrNotFound.
func (s *Store) CreateAccount(ctx context.Context, a Account) error {
	const op = "create account"
	a.Email = NormalizeEmail(a.Email)
	if a.ID == "" || a.Email == "" || a.TenantID == "" {
		return fmt.Errorf("%s: id, email and tenant id are required", op)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now()
	}
	if _, err := s.exec(ctx, `INSERT INTO accounts (id, email, password_hash, tenant_id, created_at)
		VALUES (?, ?, ?, ?, ?)`, a.ID, a.Email, a.PasswordHash, a.TenantID, ts(a.CreatedAt)); err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	return nil
}

// ListTenants returns every tenant, oldest first.
func (s *Store) ListTenants(ctx context.Context) ([]Tenant, error) {
	const op = "list tenants"
	rows, err := s.query(ctx, `SELECT `+tenantCols+` FROM tenants ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanTenant)
}

// ListAccounts returns the accounts of tenantID, or of every tenant when
// tenantID is empty, oldest first. Password hashes are included: callers
// must not print them.
func (s *Store) ListAccounts(ctx context.Context, tenantID string) ([]Account, error) {
	const op = "list accounts"
	rows, err := s.query(ctx, `SELECT `+accountCols+` FROM accounts
		WHERE ? = '' OR tenant_id = ? ORDER BY created_at, id`, tenantID, tenantID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanAccount)
}

// ListAllCredentials returns the credentials of tenantID, or of every
// tenant when tenantID is empty, revoked ones included when withRevoked,
// newest first.
func (s *Store) ListAllCredentials(ctx context.Context, tenantID string, withRevoked bool) ([]Credential, error) {
	const op = "list all credentials"
	rows, err := s.query(ctx, `SELECT `+credentialCols+` FROM mount_credentials
		WHERE (? = '' OR tenant_id = ?) AND (? OR revoked_at IS NULL)
		ORDER BY created_at DESC, id DESC`, tenantID, tenantID, withRevoked)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanCredential)
}

// CredentialByAnyID returns credential id whatever its tenant, or
// ErrNotFound. It is for operators; the tenant API uses CredentialByID.
func (s *Store) CredentialByAnyID(ctx context.Context, id string) (Credential, error) {
	c, err := scanCredential(s.queryRow(ctx, `SELECT `+credentialCols+` FROM mount_credentials WHERE id = ?`, id))
	if err != nil {
		return Credential{}, fmt.Errorf("credential by any id: %w", err)
	}
	return c, nil
}

// ListAllAudit returns up to limit (default 100) of the most recent events
// of every tenant, newest first.
func (s *Store) ListAllAudit(ctx context.Context, limit int) ([]AuditEvent, error) {
	const op = "list all audit"
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT id, tenant_id, kind, detail, created_at FROM audit_events
		ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanAudit)
}

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, op string, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}
