package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestOAuthSessions(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		exp := time.Now().Add(time.Hour)
		a := OAuthSession{Kind: "refresh_token", Signature: "sig-a", RequestID: "req-1", ClientID: "bm-agent",
			Subject: "user_ada", Active: true, Data: `{"id":"req-1"}`, ExpiresAt: exp}
		if err := s.CreateOAuthSession(ctx, a); err != nil {
			t.Fatalf("create: %v", err)
		}
		if err := s.CreateOAuthSession(ctx, a); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate create: err = %v, want ErrConflict", err)
		}
		// Same signature, another kind: a different row.
		if err := s.CreateOAuthSession(ctx, OAuthSession{Kind: "access_token", Signature: "sig-a", RequestID: "req-1",
			Active: true, ExpiresAt: exp}); err != nil {
			t.Fatalf("create other kind: %v", err)
		}
		if err := s.CreateOAuthSession(ctx, OAuthSession{Kind: "refresh_token", Signature: "sig-b", RequestID: "req-1",
			Active: true, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}

		got, err := s.OAuthSession(ctx, "refresh_token", "sig-a")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if got.RequestID != a.RequestID || got.ClientID != a.ClientID || got.Subject != a.Subject || !got.Active ||
			got.Data != a.Data || !got.ExpiresAt.Equal(ts(exp)) || got.CreatedAt.IsZero() {
			t.Errorf("get = %+v, want %+v", got, a)
		}
		if _, err := s.OAuthSession(ctx, "refresh_token", "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("get missing: err = %v, want ErrNotFound", err)
		}

		// Deactivation happens once.
		for i, want := range []bool{true, false} {
			ok, err := s.DeactivateOAuthSession(ctx, "refresh_token", "sig-a")
			if err != nil || ok != want {
				t.Errorf("deactivate #%d = %v, %v; want %v", i+1, ok, err, want)
			}
		}
		if ok, err := s.DeactivateOAuthSession(ctx, "refresh_token", "nope"); err != nil || ok {
			t.Errorf("deactivate missing = %v, %v", ok, err)
		}

		// Compare-and-swap on data.
		if ok, err := s.SwapOAuthSessionData(ctx, "refresh_token", "sig-a", "stale", "x", true); err != nil || ok {
			t.Errorf("swap with stale data = %v, %v; want false", ok, err)
		}
		if ok, err := s.SwapOAuthSessionData(ctx, "refresh_token", "sig-a", a.Data, "new", true); err != nil || !ok {
			t.Errorf("swap = %v, %v; want true", ok, err)
		}
		if got, _ := s.OAuthSession(ctx, "refresh_token", "sig-a"); got.Data != "new" || !got.Active {
			t.Errorf("after swap = %+v", got)
		}

		// By request id.
		if err := s.DeactivateOAuthSessionsByRequest(ctx, "refresh_token", "req-1"); err != nil {
			t.Fatal(err)
		}
		for _, sig := range []string{"sig-a", "sig-b"} {
			if got, _ := s.OAuthSession(ctx, "refresh_token", sig); got.Active {
				t.Errorf("%s still active", sig)
			}
		}
		if got, _ := s.OAuthSession(ctx, "access_token", "sig-a"); !got.Active {
			t.Error("another kind was deactivated")
		}
		if err := s.DeleteOAuthSessionsByRequest(ctx, "access_token", "req-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.OAuthSession(ctx, "access_token", "sig-a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete by request: err = %v", err)
		}
		if err := s.DeleteOAuthSession(ctx, "refresh_token", "sig-b"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.OAuthSession(ctx, "refresh_token", "sig-b"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: err = %v", err)
		}

		// Expiry: counted out, then swept.
		if err := s.CreateOAuthSession(ctx, OAuthSession{Kind: "refresh_token", Signature: "old",
			ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if n, err := s.CountOAuthSessions(ctx, "refresh_token", time.Now()); err != nil || n != 1 {
			t.Errorf("count = %d, %v; want 1 (the expired row not counted)", n, err)
		}
		if n, err := s.DeleteExpiredOAuthSessions(ctx, time.Now()); err != nil || n != 1 {
			t.Errorf("sweep = %d, %v; want 1", n, err)
		}
		if _, err := s.OAuthSession(ctx, "refresh_token", "sig-a"); err != nil {
			t.Errorf("unexpired row swept: %v", err)
		}
	})
}
