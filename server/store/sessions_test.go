package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestAuthSessions(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		t0 := time.Now().UTC()
		open := func(id, subject string, exp time.Time) error {
			return s.OpenAuthSession(ctx, AuthSession{ID: id, Subject: subject, ExpiresAt: exp})
		}
		for _, id := range []string{"s1", "s2", "s3"} {
			if err := open(id, "user_ada", t0.Add(time.Hour)); err != nil {
				t.Fatalf("open %s: %v", id, err)
			}
		}
		if err := open("s4", "user_bob", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}

		// Reopening moves the expiry later, never earlier; another
		// subject's id is a conflict.
		if err := open("s1", "user_ada", t0.Add(2*time.Hour)); err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if err := open("s1", "user_ada", t0.Add(time.Minute)); err != nil {
			t.Fatalf("reopen earlier: %v", err)
		}
		if got, err := s.AuthSession(ctx, "s1"); err != nil || !got.ExpiresAt.Equal(ts(t0.Add(2*time.Hour))) || got.Subject != "user_ada" || !got.Live(t0) {
			t.Errorf("s1 = %+v, %v; want live until t0+2h", got, err)
		}
		if err := open("s1", "user_bob", t0.Add(3*time.Hour)); !errors.Is(err, ErrConflict) {
			t.Errorf("open another subject's id: %v, want ErrConflict", err)
		}
		if _, err := s.AuthSession(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown session: %v, want ErrNotFound", err)
		}

		// One session ends once.
		for i, want := range []bool{true, false} {
			if ok, err := s.EndAuthSession(ctx, "s2", "logout", t0); err != nil || ok != want {
				t.Errorf("end #%d = %v, %v; want %v", i+1, ok, err, want)
			}
		}
		if got, _ := s.AuthSession(ctx, "s2"); got.Live(t0) || got.EndReason != "logout" || got.EndedAt == nil {
			t.Errorf("ended s2 = %+v", got)
		}
		if err := open("s2", "user_ada", t0.Add(5*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.AuthSession(ctx, "s2"); got.Live(t0) {
			t.Error("reopening an ended session revived it")
		}

		// A subject's sessions end together, with a cutoff.
		if nb, err := s.SessionsNotBefore(ctx, "user_ada"); err != nil || !nb.IsZero() {
			t.Errorf("cutoff before any = %v, %v", nb, err)
		}
		ended, err := s.EndSubjectSessions(ctx, "user_ada", "password_changed", t0.Add(time.Second))
		slices.Sort(ended)
		if err != nil || !slices.Equal(ended, []string{"s1", "s3"}) {
			t.Errorf("EndSubjectSessions = %v, %v; want [s1 s3]", ended, err)
		}
		if nb, err := s.SessionsNotBefore(ctx, "user_ada"); err != nil || !nb.Equal(ts(t0.Add(time.Second))) {
			t.Errorf("cutoff = %v, %v", nb, err)
		}
		if _, err := s.EndSubjectSessions(ctx, "user_ada", "again", t0); err != nil {
			t.Fatal(err)
		}
		if nb, _ := s.SessionsNotBefore(ctx, "user_ada"); !nb.Equal(ts(t0.Add(time.Second))) {
			t.Errorf("an earlier cutoff replaced a later one: %v", nb)
		}
		if got, _ := s.AuthSession(ctx, "s4"); !got.Live(t0) {
			t.Error("another subject's session ended")
		}

		// Expired sessions are swept.
		if err := open("old", "user_bob", t0.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n, err := s.DeleteExpiredAuthSessions(ctx, t0); err != nil || n != 1 {
			t.Errorf("DeleteExpiredAuthSessions = %d, %v; want 1", n, err)
		}
	})
}

func TestSessionCredentialsAndDisabledAccounts(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seedTenant(t, s, "A")
		for i, sid := range []string{"sess-1", "sess-1", "sess-2", ""} {
			c := Credential{ID: NewID(), TenantID: "A", AccessKey: "AK" + string(rune('0'+i)), SessionID: sid}
			if err := s.InsertCredential(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ListSessionCredentials(ctx, "sess-1")
		if err != nil || len(got) != 2 || got[0].SessionID != "sess-1" {
			t.Fatalf("ListSessionCredentials(sess-1) = %+v, %v; want 2", got, err)
		}
		if _, err := s.RevokeCredential(ctx, "A", got[0].ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.ListSessionCredentials(ctx, "sess-1"); len(got) != 1 {
			t.Errorf("revoked key still listed: %+v", got)
		}
		if got, _ := s.ListSessionCredentials(ctx, ""); len(got) != 0 {
			t.Errorf("keys of no session listed: %+v", got)
		}

		at := time.Now()
		if err := s.SetAccountDisabled(ctx, "acct-A", &at); err != nil {
			t.Fatal(err)
		}
		if a, _ := s.AccountByID(ctx, "acct-A"); a.DisabledAt == nil || !a.DisabledAt.Equal(ts(at)) {
			t.Errorf("disabled account = %+v", a)
		}
		if err := s.SetAccountDisabled(ctx, "acct-A", nil); err != nil {
			t.Fatal(err)
		}
		if a, _ := s.AccountByEmail(ctx, "A@example.com"); a.DisabledAt != nil {
			t.Errorf("enabled account = %+v", a)
		}
		if err := s.SetAccountDisabled(ctx, "nope", &at); !errors.Is(err, ErrNotFound) {
			t.Errorf("disable unknown: %v, want ErrNotFound", err)
		}
	})
}
