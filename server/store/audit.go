package store

import (
	"context"
	"fmt"
	"time"
)

// AuditEvent is one entry of a tenant's audit trail. Detail never carries a
// secret.
type AuditEvent struct {
	ID        int64
	TenantID  string
	Kind      string // "credential.created", "credential.revoked", "bucket.changed", ...
	Detail    string
	CreatedAt time.Time
}

// AddAudit appends an event to tenantID's audit trail.
func (s *Store) AddAudit(ctx context.Context, tenantID, kind, detail string) error {
	if tenantID == "" || kind == "" {
		return fmt.Errorf("add audit: tenant id and kind are required")
	}
	if _, err := s.exec(ctx, `INSERT INTO audit_events (tenant_id, kind, detail, created_at) VALUES (?, ?, ?, ?)`,
		tenantID, kind, detail, now()); err != nil {
		return fmt.Errorf("add audit: %w", err)
	}
	return nil
}

// ListAudit returns up to limit (default 100) of tenantID's most recent
// events, newest first.
func (s *Store) ListAudit(ctx context.Context, tenantID string, limit int) ([]AuditEvent, error) {
	const op = "list audit"
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT id, tenant_id, kind, detail, created_at FROM audit_events
		WHERE tenant_id = ? ORDER BY id DESC LIMIT ?`, tenantID, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return collect(rows, op, scanAudit)
}

// scanAudit scans the columns id, tenant_id, kind, detail, created_at.
func scanAudit(row interface{ Scan(...any) error }) (AuditEvent, error) {
	var e AuditEvent
	if err := row.Scan(&e.ID, &e.TenantID, &e.Kind, &e.Detail, &e.CreatedAt); err != nil {
		return AuditEvent{}, err
	}
	e.CreatedAt = e.CreatedAt.UTC()
	return e, nil
}
