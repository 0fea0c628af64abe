package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Tenant is one customer: one bucket, one subscription. It holds the bucket
// name only, never a key.
type Tenant struct {
	ID                 string
	BucketName         string // "" until the bucket exists
	Status             string // TenantActive, TenantSuspended or TenantDeleted
	SubscriptionStatus string // "active", "trialing", "canceled", ...
	SubscriptionTier   string
	CreatedAt          time.Time
}

// Account is a person who logs in; it belongs to one tenant.
type Account struct {
	ID           string
	Email        string // stored trimmed and lower-cased; unique
	PasswordHash string // see HashPassword
	TenantID     string
	CreatedAt    time.Time
	DisabledAt   *time.Time // set while the account may not sign in (see SetAccountDisabled)
}

// NormalizeEmail is how emails are stored and looked up.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// CreateTenantWithAccount inserts t and a in one transaction; a.TenantID is
// set to t.ID. Empty ids are an error; a zero CreatedAt becomes now and an
// empty Status becomes TenantActive. A taken id, email or bucket name is
// ErrConflict.
func (s *Store) CreateTenantWithAccount(ctx context.Context, t Tenant, a Account) error {
	const op = "create tenant with account"
	if t.ID == "" || a.ID == "" {
		return fmt.Errorf("%s: empty id", op)
	}
	a.Email = NormalizeEmail(a.Email)
	if a.Email == "" {
		return fmt.Errorf("%s: empty email", op)
	}
	if t.Status == "" {
		t.Status = TenantActive
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now()
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = t.CreatedAt
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO tenants
		(id, bucket_name, status, subscription_status, subscription_tier, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`),
		t.ID, nullString(t.BucketName), t.Status, t.SubscriptionStatus, t.SubscriptionTier, ts(t.CreatedAt)); err != nil {
		return fmt.Errorf("%s: tenant: %w", op, classify(err))
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO accounts
		(id, email, password_hash, tenant_id, created_at) VALUES (?, ?, ?, ?, ?)`),
		a.ID, a.Email, a.PasswordHash, t.ID, ts(a.CreatedAt)); err != nil {
		return fmt.Errorf("%s: account: %w", op, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", op, classify(err))
	}
	return nil
}

const tenantCols = `id, bucket_name, status, subscription_status, subscription_tier, created_at`

func scanTenant(row interface{ Scan(...any) error }) (Tenant, error) {
	var t Tenant
	var bucket sql.NullString
	if err := row.Scan(&t.ID, &bucket, &t.Status, &t.SubscriptionStatus, &t.SubscriptionTier, &t.CreatedAt); err != nil {
		return Tenant{}, classify(err)
	}
	t.BucketName = bucket.String
	t.CreatedAt = t.CreatedAt.UTC()
	return t, nil
}

// TenantByID returns the tenant with id, or ErrNotFound.
func (s *Store) TenantByID(ctx context.Context, id string) (Tenant, error) {
	t, err := scanTenant(s.queryRow(ctx, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, id))
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant by id: %w", err)
	}
	return t, nil
}

// TenantByBucket returns the tenant whose bucket is bucket, or ErrNotFound.
func (s *Store) TenantByBucket(ctx context.Context, bucket string) (Tenant, error) {
	if bucket == "" {
		return Tenant{}, fmt.Errorf("tenant by bucket: %w", ErrNotFound)
	}
	t, err := scanTenant(s.queryRow(ctx, `SELECT `+tenantCols+` FROM tenants WHERE bucket_name = ?`, bucket))
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant by bucket: %w", err)
	}
	return t, nil
}

// SetTenantStatus sets the status of tenant id (TenantActive,
// TenantSuspended or TenantDeleted).
func (s *Store) SetTenantStatus(ctx context.Context, id, status string) error {
	const op = "set tenant status"
	switch status {
	case TenantActive, TenantSuspended, TenantDeleted:
	default:
		return fmt.Errorf("%s: invalid status %q", op, status)
	}
	return s.updateOne(ctx, op, `UPDATE tenants SET status = ? WHERE id = ?`, status, id)
}

// SetSubscription sets the subscription status and tier of tenant id.
func (s *Store) SetSubscription(ctx context.Context, id, status, tier string) error {
	return s.updateOne(ctx, "set subscription",
		`UPDATE tenants SET subscription_status = ?, subscription_tier = ? WHERE id = ?`, status, tier, id)
}

// SetTenantBucket records the bucket of tenant id once it exists. A bucket
// name used by another tenant is ErrConflict.
func (s *Store) SetTenantBucket(ctx context.Context, id, bucket string) error {
	return s.updateOne(ctx, "set tenant bucket",
		`UPDATE tenants SET bucket_name = ? WHERE id = ?`, nullString(bucket), id)
}

// updateOne runs an UPDATE that must touch exactly one row.
func (s *Store) updateOne(ctx context.Context, op, query string, args ...any) error {
	res, err := s.exec(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", op, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return nil
}

const accountCols = `id, email, password_hash, tenant_id, created_at, disabled_at`

func scanAccount(row interface{ Scan(...any) error }) (Account, error) {
	var a Account
	var disabled sql.NullTime
	if err := row.Scan(&a.ID, &a.Email, &a.PasswordHash, &a.TenantID, &a.CreatedAt, &disabled); err != nil {
		return Account{}, classify(err)
	}
	a.CreatedAt = a.CreatedAt.UTC()
	a.DisabledAt = timePtr(disabled)
	return a, nil
}

// AccountByEmail returns the account with email (compared after
// NormalizeEmail), or ErrNotFound.
func (s *Store) AccountByEmail(ctx context.Context, email string) (Account, error) {
	a, err := scanAccount(s.queryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE email = ?`, NormalizeEmail(email)))
	if err != nil {
		return Account{}, fmt.Errorf("account by email: %w", err)
	}
	return a, nil
}

// AccountByID returns the account with id, or ErrNotFound.
func (s *Store) AccountByID(ctx context.Context, id string) (Account, error) {
	a, err := scanAccount(s.queryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id))
	if err != nil {
		return Account{}, fmt.Errorf("account by id: %w", err)
	}
	return a, nil
}

// SetPasswordHash replaces the password hash of account id.
func (s *Store) SetPasswordHash(ctx context.Context, id, hash string) error {
	return s.updateOne(ctx, "set password hash", `UPDATE accounts SET password_hash = ? WHERE id = ?`, hash, id)
}

// SetAccountDisabled disables account id at at, or enables it when at is
// nil. Disabling a disabled account keeps its first time.
func (s *Store) SetAccountDisabled(ctx context.Context, id string, at *time.Time) error {
	const op = "set account disabled"
	if at == nil {
		return s.updateOne(ctx, op, `UPDATE accounts SET disabled_at = NULL WHERE id = ?`, id)
	}
	return s.updateOne(ctx, op, `UPDATE accounts SET disabled_at = COALESCE(disabled_at, ?) WHERE id = ?`, nullTime(at), id)
}

// isNotFound reports whether err is ErrNotFound.
func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
