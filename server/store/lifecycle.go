package store

// Queries of the credential-lifecycle workers (server/lifecycle). Kept in
// their own file: they only add to the store.

import (
	"context"
	"fmt"
	"time"
)

// TenantsWithBuckets returns the active tenants that have a bucket, by id,
// for the periodic bucket check.
func (s *Store) TenantsWithBuckets(ctx context.Context) ([]Tenant, error) {
	const op = "tenants with buckets"
	rows, err := s.query(ctx, `SELECT `+tenantCols+` FROM tenants
		WHERE status = ? AND bucket_name IS NOT NULL AND bucket_name <> ''
		ORDER BY id`, TenantActive)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanTenant)
}

// UnusedCredentials returns up to limit (default 100) active credentials
// created before cutoff and not used since cutoff (last_used_at older or
// never set), oldest first: the keys the orphan job revokes.
func (s *Store) UnusedCredentials(ctx context.Context, cutoff time.Time, limit int) ([]Credential, error) {
	const op = "unused credentials"
	if limit <= 0 {
		limit = 100
	}
	cutoff = ts(cutoff)
	rows, err := s.query(ctx, `SELECT `+credentialCols+` FROM mount_credentials
		WHERE revoked_at IS NULL AND created_at < ? AND (last_used_at IS NULL OR last_used_at < ?)
		ORDER BY created_at, id LIMIT ?`, cutoff, cutoff, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanCredential)
}
