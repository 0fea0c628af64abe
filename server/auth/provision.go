package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// TenantStore is what StoreProvisioner needs of the store; *store.Store
// implements it.
type TenantStore interface {
	TenantByID(ctx context.Context, id string) (store.Tenant, error)
	CreateTenant(ctx context.Context, t store.Tenant) error
	AddAudit(ctx context.Context, tenantID, kind, detail string) error
}

// AuditTenantProvisioned is the audit kind of an auto-provisioned tenant.
const AuditTenantProvisioned = "tenant.provisioned"

// BucketName is the default bucket name of a tenant: "basic-memory-" and
// the tenant id, lower-cased, with characters S3 refuses replaced by "-",
// at most 63 characters.
func BucketName(tenantID string) string {
	var b strings.Builder
	b.WriteString("basic-memory-")
	for _, r := range strings.ToLower(tenantID) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.TrimRight(s, "-")
}

// StoreProvisioner returns a Config.AutoProvision callback that, for a
// tenant not in st, creates its bucket at prov (named by bucketName, nil
// means BucketName) and then the tenant, active, with the subscription of
// the token's claims. A tenant that exists is left as it is (the admin CLI
// or the billing system owns it then).
func StoreProvisioner(st TenantStore, prov storage.Provider, bucketName func(tenantID string) string) func(ctx context.Context, c tenantapi.Claims) error {
	if bucketName == nil {
		bucketName = BucketName
	}
	return func(ctx context.Context, c tenantapi.Claims) error {
		const op = "provision tenant"
		_, err := st.TenantByID(ctx, c.TenantID)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%s: %w", op, err)
		}
		bucket := bucketName(c.TenantID)
		if err := prov.CreateBucket(ctx, bucket); err != nil {
			// Another replica may have created it a moment ago.
			names, lerr := prov.ListBuckets(ctx)
			if lerr != nil || !slices.Contains(names, bucket) {
				return fmt.Errorf("%s: bucket: %w", op, err)
			}
		}
		t := store.Tenant{
			ID:                 c.TenantID,
			BucketName:         bucket,
			Status:             store.TenantActive,
			SubscriptionStatus: c.SubscriptionStatus,
			SubscriptionTier:   c.SubscriptionTier,
		}
		if err := st.CreateTenant(ctx, t); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return nil // created concurrently
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		_ = st.AddAudit(ctx, c.TenantID, AuditTenantProvisioned, "bucket="+bucket+" subject="+c.Subject)
		return nil
	}
}
