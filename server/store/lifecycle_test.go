package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestLifecycleQueries(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "lc.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	for _, tn := range []Tenant{
		{ID: "A", BucketName: "bucket-a", SubscriptionStatus: "active", SubscriptionTier: "pro"},
		{ID: "B"},
		{ID: "S", BucketName: "bucket-s", Status: TenantSuspended},
	} {
		if err := st.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateTenant(ctx, Tenant{ID: "A"}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate tenant: %v, want ErrConflict", err)
	}
	if err := st.CreateTenant(ctx, Tenant{}); err == nil {
		t.Error("empty id accepted")
	}
	a, err := st.TenantByID(ctx, "A")
	if err != nil || a.Status != TenantActive || a.SubscriptionTier != "pro" || a.CreatedAt.IsZero() {
		t.Errorf("tenant A = %+v, %v", a, err)
	}
	ts, err := st.TenantsWithBuckets(ctx)
	if err != nil || len(ts) != 1 || ts[0].ID != "A" {
		t.Errorf("TenantsWithBuckets = %+v, %v", ts, err)
	}

	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	old := now.Add(-100 * 24 * time.Hour)
	recent := now.Add(-time.Hour)
	cutoff := now.Add(-90 * 24 * time.Hour)
	creds := []struct {
		id       string
		created  time.Time
		lastUsed *time.Time
		revoked  bool
	}{
		{"never-used-old", old, nil, false},
		{"used-long-ago", old, &old, false},
		{"used-recently", old, &recent, false},
		{"new-unused", recent, nil, false},
		{"revoked-old", old, nil, true},
	}
	for _, c := range creds {
		cr := Credential{ID: c.id, TenantID: "A", AccessKey: "AK-" + c.id, CreatedAt: c.created, LastUsedAt: c.lastUsed}
		if c.revoked {
			cr.RevokedAt = &old
			cr.DeletionStatus = DeletionCompleted
		}
		if err := st.InsertCredential(ctx, cr); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.UnusedCredentials(ctx, cutoff, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if len(ids) != 2 || ids[0] != "never-used-old" || ids[1] != "used-long-ago" {
		t.Errorf("UnusedCredentials = %v, want [never-used-old used-long-ago]", ids)
	}
	if got, _ := st.UnusedCredentials(ctx, cutoff, 1); len(got) != 1 {
		t.Errorf("limit 1 returned %d", len(got))
	}
}
