package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// This file holds the operator's actions behind bm-server's admin commands.
// Those that touch the storage provider are Server methods; the rest need
// only the store (see OpenStore).

// Audit event kinds written by the operator's actions.
const (
	AuditTenantCreated   = "tenant.created"
	AuditTenantStatus    = "tenant.status"
	AuditSubscription    = "tenant.subscription"
	AuditAccountCreated  = "account.created"
	AuditPasswordChanged = "account.password_changed"
	AuditAccountDisabled = "account.disabled"
	AuditAccountEnabled  = "account.enabled"
	AuditSessionsEnded   = "account.sessions_ended"
	AuditKeyRevoked      = "credential.revoked"
)

// OpenStore opens (and migrates) the store of cfg without the rest of the
// server, for the admin commands that need nothing else.
func OpenStore(ctx context.Context, cfg Config) (*store.Store, error) {
	if cfg.DB == "" && cfg.DataDir == "" {
		return nil, errors.New("open store: a data dir or a database is required")
	}
	st, err := store.Open(ctx, cfg.StoreDSN())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

// CreateTenant creates a tenant with an active subscription of tier
// (default "basic") and provisions its bucket, with the tier's quota at a
// provider that enforces one itself (MinIO).
func (s *Server) CreateTenant(ctx context.Context, tier string) (store.Tenant, error) {
	if tier == "" {
		tier = "basic"
	}
	id := uuid.NewString()
	t := store.Tenant{
		ID:                 id,
		BucketName:         "basic-memory-" + id,
		Status:             store.TenantActive,
		SubscriptionStatus: "active",
		SubscriptionTier:   tier,
		CreatedAt:          time.Now().UTC(),
	}
	if err := s.provider.CreateBucket(ctx, t.BucketName); err != nil {
		return store.Tenant{}, fmt.Errorf("create tenant: bucket: %w", err)
	}
	if err := s.provisionQuota(ctx, t.BucketName, tier); err != nil {
		return store.Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	if err := s.store.CreateTenant(ctx, t); err != nil {
		return store.Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	_ = s.store.AddAudit(ctx, id, AuditTenantCreated, "bucket "+t.BucketName)
	return s.store.TenantByID(ctx, id)
}

// AddAccount creates an account in an existing tenant.
func AddAccount(ctx context.Context, st *store.Store, tenantID, email, password string) (store.Account, error) {
	if email == "" || len(password) < 8 {
		return store.Account{}, errors.New("add account: an email and a password of at least 8 characters are required")
	}
	if _, err := st.TenantByID(ctx, tenantID); err != nil {
		return store.Account{}, fmt.Errorf("add account: %w", err)
	}
	hash, err := store.HashPassword(password)
	if err != nil {
		return store.Account{}, fmt.Errorf("add account: %w", err)
	}
	a := store.Account{ID: uuid.NewString(), Email: email, PasswordHash: hash, TenantID: tenantID}
	if err := st.CreateAccount(ctx, a); err != nil {
		return store.Account{}, fmt.Errorf("add account: %w", err)
	}
	_ = st.AddAudit(ctx, tenantID, AuditAccountCreated, "account "+a.ID)
	return st.AccountByID(ctx, a.ID)
}

// SetPassword replaces the password of the account with email and then
// ends every session of it (EndAccountSessions): sessions signed in with
// the old password, and the keys they minted, stop working. It returns how
// many sessions it ended.
func (s *Server) SetPassword(ctx context.Context, email, password string) (int, error) {
	if len(password) < 8 {
		return 0, errors.New("set password: a password of at least 8 characters is required")
	}
	hash, err := store.HashPassword(password)
	if err != nil {
		return 0, fmt.Errorf("set password: %w", err)
	}
	// The new hash first: a sign-in between the two steps is ended too,
	// never one with the old password kept.
	return s.changeAccount(ctx, "set password", email, func(a store.Account) error {
		return s.store.SetPasswordHash(ctx, a.ID, hash)
	}, issuer.EndPasswordChanged, AuditPasswordChanged)
}

// DisableAccount stops the account with email from signing in and ends
// its sessions (see EndAccountSessions); EnableAccount lets it sign in
// again (its ended sessions stay ended). It returns how many sessions it
// ended.
func (s *Server) DisableAccount(ctx context.Context, email string) (int, error) {
	return s.changeAccount(ctx, "disable account", email, func(a store.Account) error {
		at := time.Now()
		return s.store.SetAccountDisabled(ctx, a.ID, &at)
	}, issuer.EndAccountDisabled, AuditAccountDisabled)
}

// EnableAccount lets a disabled account sign in again.
func (s *Server) EnableAccount(ctx context.Context, email string) error {
	_, err := s.changeAccount(ctx, "enable account", email, func(a store.Account) error {
		return s.store.SetAccountDisabled(ctx, a.ID, nil)
	}, "", AuditAccountEnabled)
	return err
}

// EndAccountSessions ends every session of the account with email (and
// any of its logins not yet exchanged for tokens): their refresh tokens
// stop working at once, their access tokens can no longer mint or list
// keys and stop working everywhere within the session cache TTL, and the
// keys they minted are revoked at the store and the provider. It returns
// how many sessions it ended.
func (s *Server) EndAccountSessions(ctx context.Context, email string) (int, error) {
	return s.changeAccount(ctx, "end account sessions", email, nil, issuer.EndByOperator, AuditSessionsEnded)
}

// changeAccount applies change (if any) to the account with email, then,
// with a reason, ends its sessions (endSessions), and records audit; op
// names the action in errors. It returns how many sessions it ended.
func (s *Server) changeAccount(ctx context.Context, op, email string, change func(store.Account) error, reason, audit string) (int, error) {
	a, err := s.store.AccountByEmail(ctx, email)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	if change != nil {
		if err := change(a); err != nil {
			return 0, fmt.Errorf("%s: %w", op, err)
		}
	}
	if reason == "" {
		_ = s.store.AddAudit(ctx, a.TenantID, audit, "account "+a.ID)
		return 0, nil
	}
	n, err := s.endSessions(ctx, a, reason)
	_ = s.store.AddAudit(ctx, a.TenantID, audit, fmt.Sprintf("account %s sessions_ended=%d", a.ID, n))
	if err != nil {
		return n, fmt.Errorf("%s: %w", op, err)
	}
	return n, nil
}

// endSessions ends the sessions of account a for reason and revokes the
// keys they minted.
func (s *Server) endSessions(ctx context.Context, a store.Account, reason string) (int, error) {
	if s.issuer != nil { // its OnSessionsEnded revokes the keys
		sids, err := s.issuer.EndSubjectSessions(ctx, a.ID, reason)
		return len(sids), err
	}
	sids, err := s.store.EndSubjectSessions(ctx, a.ID, reason, time.Now())
	if err != nil {
		return 0, err
	}
	s.revokeSessionKeys(ctx, sids, reason)
	return len(sids), nil
}

// revokeSessionKeys revokes, as RevokeKey does, the active keys that the
// sessions sids minted; a failure is logged (a key the provider failed to
// delete is retried by the lifecycle job).
func (s *Server) revokeSessionKeys(ctx context.Context, sids []string, reason string) int {
	n := 0
	for _, sid := range sids {
		creds, err := s.store.ListSessionCredentials(ctx, sid)
		if err != nil {
			s.log.ErrorContext(ctx, "revoke the keys of an ended session", "reason", reason, "err", err)
			continue
		}
		for _, c := range creds {
			if _, err := s.revokeKey(ctx, c.ID, "session_end reason="+reason); err != nil {
				s.log.ErrorContext(ctx, "revoke a key of an ended session", "credential_id", c.ID, "reason", reason, "err", err)
				continue
			}
			n++
		}
	}
	if n > 0 {
		s.log.InfoContext(ctx, "revoked the keys of ended sessions", "sessions", len(sids), "keys", n, "reason", reason)
	}
	return n
}

// SetTenantStatus suspends, reactivates or marks deleted a tenant. The
// tenant API refuses suspended and deleted tenants; marking deleted keeps
// the bucket and its notes (deleting data is left to the operator).
func SetTenantStatus(ctx context.Context, st *store.Store, tenantID, status string) error {
	if err := st.SetTenantStatus(ctx, tenantID, status); err != nil {
		return fmt.Errorf("set tenant status: %w", err)
	}
	_ = st.AddAudit(ctx, tenantID, AuditTenantStatus, "status "+status)
	return nil
}

// SubscriptionStatuses are the subscription states an operator may set
// (Stripe's): the tenant API serves "active" and "trialing" ones alone.
var SubscriptionStatuses = []string{"active", "trialing", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "paused"}

// SetSubscription sets tenantID's subscription status and, when tier is
// not empty, its tier. It takes effect at once at every route that needs
// a subscription (the store is asked on each request), whatever the
// claims of the tenant's access tokens say.
func SetSubscription(ctx context.Context, st *store.Store, tenantID, status, tier string) error {
	const op = "set subscription"
	if !slices.Contains(SubscriptionStatuses, status) {
		return fmt.Errorf("%s: unknown status %q (want one of %s)", op, status, strings.Join(SubscriptionStatuses, ", "))
	}
	t, err := st.TenantByID(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if tier == "" {
		tier = t.SubscriptionTier
	}
	if err := st.SetSubscription(ctx, tenantID, status, tier); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	_ = st.AddAudit(ctx, tenantID, AuditSubscription, "status "+status+" tier "+tier)
	return nil
}

// DeleteTenant marks tenantID deleted and revokes every active key of it
// at the store and the provider. It returns how many keys it revoked; a
// key the provider failed to delete keeps deletion status failed for the
// retry job, and the error says so.
func (s *Server) DeleteTenant(ctx context.Context, tenantID string) (int, error) {
	if err := SetTenantStatus(ctx, s.store, tenantID, store.TenantDeleted); err != nil {
		return 0, fmt.Errorf("delete tenant: %w", err)
	}
	creds, err := s.store.ListCredentials(ctx, tenantID)
	if err != nil {
		return 0, fmt.Errorf("delete tenant: %w", err)
	}
	var errs []error
	for _, c := range creds {
		if _, err := s.RevokeKey(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return len(creds), fmt.Errorf("delete tenant: %w", err)
	}
	return len(creds), nil
}

// RevokeKey revokes credential id (of any tenant) in the store, then at
// the provider, and records the deletion status. Revoking a revoked key
// retries the provider unless its deletion completed.
func (s *Server) RevokeKey(ctx context.Context, id string) (store.Credential, error) {
	return s.revokeKey(ctx, id, "admin")
}

// revokeKey is RevokeKey, with by (who revoked it) in the audit event.
func (s *Server) revokeKey(ctx context.Context, id, by string) (store.Credential, error) {
	c, err := s.store.CredentialByAnyID(ctx, id)
	if err != nil {
		return store.Credential{}, fmt.Errorf("revoke key: %w", err)
	}
	if c.DeletionStatus == store.DeletionCompleted {
		return c, nil
	}
	if c, err = s.store.RevokeCredential(ctx, c.TenantID, id, time.Now()); err != nil {
		return store.Credential{}, fmt.Errorf("revoke key: %w", err)
	}
	status := store.DeletionCompleted
	perr := s.provider.RevokeKey(ctx, storage.Key{AccessKey: c.AccessKey, Ref: c.ProviderRef})
	if perr != nil && !errors.Is(perr, storage.ErrNotFound) {
		status = store.DeletionFailed
	} else {
		perr = nil
	}
	if err := s.store.SetDeletionStatus(ctx, id, status); err != nil {
		return store.Credential{}, fmt.Errorf("revoke key: %w", err)
	}
	_ = s.store.AddAudit(ctx, c.TenantID, AuditKeyRevoked,
		fmt.Sprintf("credential_id=%s access_key=%s deletion_status=%s by=%s", c.ID, c.AccessKey, status, by))
	c.DeletionStatus = status
	if perr != nil {
		return c, fmt.Errorf("revoke key: at %s: %w", s.provider.Name(), perr)
	}
	return c, nil
}
