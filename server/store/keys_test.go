package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// TestLookupKeyAndTenantByBucket: the key record the embedded S3 caches
// (tenant, bucket, description, active) and the bucket-to-tenant lookup
// of the storage webhook.
func TestLookupKeyAndTenantByBucket(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seedTenant(t, s, "A")
		seedTenant(t, s, "B")
		if err := s.InsertCredential(ctx, Credential{ID: "a1", TenantID: "A", AccessKey: "AK1", Description: "bm-agent on laptop"}); err != nil {
			t.Fatal(err)
		}
		rec, err := s.LookupKey(ctx, "AK1")
		if err != nil || rec != (storage.KeyRecord{TenantID: "A", Bucket: "bucket-A", Description: "bm-agent on laptop", Active: true}) {
			t.Errorf("LookupKey(AK1) = %+v, %v", rec, err)
		}
		if _, err := s.LookupKey(ctx, "NOPE"); !errors.Is(err, ErrNotFound) || !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("LookupKey(unknown) = %v, want ErrNotFound and storage.ErrNotFound", err)
		}
		if err := s.SetTenantStatus(ctx, "A", TenantSuspended); err != nil {
			t.Fatal(err)
		}
		if rec, err := s.LookupKey(ctx, "AK1"); err != nil || rec.Active || rec.TenantID != "A" {
			t.Errorf("LookupKey of a suspended tenant's key = %+v, %v; want inactive", rec, err)
		}
		if err := s.SetTenantStatus(ctx, "A", TenantActive); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RevokeCredential(ctx, "A", "a1", time.Now()); err != nil {
			t.Fatal(err)
		}
		if rec, err := s.LookupKey(ctx, "AK1"); err != nil || rec.Active {
			t.Errorf("LookupKey of a revoked key = %+v, %v; want inactive", rec, err)
		}

		if tn, err := s.TenantByBucket(ctx, "bucket-B"); err != nil || tn.ID != "B" {
			t.Errorf("TenantByBucket(bucket-B) = %+v, %v", tn, err)
		}
		for _, b := range []string{"bucket-Z", ""} {
			if _, err := s.TenantByBucket(ctx, b); !errors.Is(err, ErrNotFound) {
				t.Errorf("TenantByBucket(%q) = %v, want ErrNotFound", b, err)
			}
		}
	})
}
