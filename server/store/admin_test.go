package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestAdminQueries(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		if err := s.CreateTenant(ctx, Tenant{ID: "T1", BucketName: "b1", SubscriptionStatus: "active", CreatedAt: base}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTenant(ctx, Tenant{ID: "T2", CreatedAt: base.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTenant(ctx, Tenant{ID: "T1"}); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate tenant: %v, want ErrConflict", err)
		}
		if err := s.CreateTenant(ctx, Tenant{ID: "T3", BucketName: "b1"}); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate bucket: %v, want ErrConflict", err)
		}
		tenants, err := s.ListTenants(ctx)
		if err != nil || len(tenants) != 2 || tenants[0].ID != "T1" || tenants[1].ID != "T2" ||
			tenants[1].Status != TenantActive || tenants[1].BucketName != "" {
			t.Fatalf("ListTenants = %+v, %v", tenants, err)
		}

		accounts := []Account{
			{ID: "a1", Email: "One@Example.com", TenantID: "T1", CreatedAt: base},
			{ID: "a2", Email: "two@example.com", TenantID: "T1", CreatedAt: base.Add(time.Minute)},
			{ID: "a3", Email: "three@example.com", TenantID: "T2", CreatedAt: base.Add(2 * time.Minute)},
		}
		for _, a := range accounts {
			if err := s.CreateAccount(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		for name, a := range map[string]Account{
			"taken email":    {ID: "a4", Email: "one@example.com", TenantID: "T2"},
			"unknown tenant": {ID: "a5", Email: "five@example.com", TenantID: "nope"},
			"no email":       {ID: "a6", TenantID: "T1"},
		} {
			if err := s.CreateAccount(ctx, a); err == nil {
				t.Errorf("%s: CreateAccount accepted %+v", name, a)
			}
		}
		if err := s.CreateAccount(ctx, Account{ID: "a5", Email: "five@example.com", TenantID: "nope"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown tenant: %v, want ErrNotFound", err)
		}
		all, err := s.ListAccounts(ctx, "")
		if err != nil || len(all) != 3 || all[0].Email != "one@example.com" {
			t.Errorf("ListAccounts(all) = %+v, %v", all, err)
		}
		if t1, _ := s.ListAccounts(ctx, "T1"); len(t1) != 2 || t1[1].ID != "a2" {
			t.Errorf("ListAccounts(T1) = %+v", t1)
		}

		creds := []Credential{
			{ID: "c1", TenantID: "T1", AccessKey: "AK1", CreatedAt: base},
			{ID: "c2", TenantID: "T1", AccessKey: "AK2", CreatedAt: base.Add(time.Minute)},
			{ID: "c3", TenantID: "T2", AccessKey: "AK3", CreatedAt: base.Add(2 * time.Minute)},
		}
		for _, c := range creds {
			if err := s.InsertCredential(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.RevokeCredential(ctx, "T1", "c1", base.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		ids := func(cs []Credential) (out []string) {
			for _, c := range cs {
				out = append(out, c.ID)
			}
			return out
		}
		tests := []struct {
			tenant  string
			revoked bool
			want    []string
		}{
			{"", false, []string{"c3", "c2"}},
			{"", true, []string{"c3", "c2", "c1"}},
			{"T1", true, []string{"c2", "c1"}},
			{"T1", false, []string{"c2"}},
			{"T9", true, nil},
		}
		for _, tt := range tests {
			got, err := s.ListAllCredentials(ctx, tt.tenant, tt.revoked)
			if err != nil || len(got) != len(tt.want) || (len(got) > 0 && !slices.Equal(ids(got), tt.want)) {
				t.Errorf("ListAllCredentials(%q, %v) = %v, %v; want %v", tt.tenant, tt.revoked, ids(got), err, tt.want)
			}
		}
		if c, err := s.CredentialByAnyID(ctx, "c3"); err != nil || c.TenantID != "T2" {
			t.Errorf("CredentialByAnyID = %+v, %v", c, err)
		}
		if _, err := s.CredentialByAnyID(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("CredentialByAnyID(unknown) = %v", err)
		}

		for i, tn := range []string{"T1", "T2", "T1"} {
			if err := s.AddAudit(ctx, tn, "k", string(rune('a'+i))); err != nil {
				t.Fatal(err)
			}
		}
		ev, err := s.ListAllAudit(ctx, 2)
		if err != nil || len(ev) != 2 || ev[0].Detail != "c" || ev[1].TenantID != "T2" {
			t.Errorf("ListAllAudit = %+v, %v", ev, err)
		}
	})
}
