package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
	"golang.org/x/crypto/bcrypt"
)

func init() { passwordCost = bcrypt.MinCost }

// pg is this test binary's PostgreSQL server, started by the first test
// that needs it.
var pg pgtest.Shared

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

// testDSN returns the DSN of a new, empty database of dialect.
func testDSN(t *testing.T, d Dialect) string {
	t.Helper()
	if d == DialectPostgres {
		return pg.Get(t).NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), "bm.db")
}

func openDialect(t *testing.T, d Dialect) *Store {
	t.Helper()
	s, err := Open(context.Background(), testDSN(t, d))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if s.Dialect() != d {
		t.Fatalf("dialect = %s, want %s", s.Dialect(), d)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eachDB runs fn against a fresh store on SQLite and on PostgreSQL.
func eachDB(t *testing.T, fn func(t *testing.T, s *Store)) {
	for _, d := range []Dialect{DialectSQLite, DialectPostgres} {
		t.Run(string(d), func(t *testing.T) { fn(t, openDialect(t, d)) })
	}
}

// seedTenant creates an active tenant with bucket "bucket-<id>" and one account.
func seedTenant(t *testing.T, s *Store, id string) Tenant {
	t.Helper()
	tn := Tenant{ID: id, BucketName: "bucket-" + id, SubscriptionStatus: "active", SubscriptionTier: "pro"}
	if err := s.CreateTenantWithAccount(context.Background(), tn, Account{ID: "acct-" + id, Email: id + "@example.com"}); err != nil {
		t.Fatalf("CreateTenantWithAccount(%s): %v", id, err)
	}
	got, err := s.TenantByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestOpenMigratesAndIsIdempotent(t *testing.T) {
	for _, d := range []Dialect{DialectSQLite, DialectPostgres} {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			dsn := testDSN(t, d)
			s, err := Open(ctx, dsn)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if s.SchemaVersion() != 7 {
				t.Errorf("schema version = %d, want 7", s.SchemaVersion())
			}
			seedTenant(t, s, "t1")
			if d == DialectSQLite {
				var mode string
				if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
					t.Errorf("journal_mode = %q, %v; want wal", mode, err)
				}
				var fk int
				if err := s.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
					t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
				}
			}
			if err := s.Ping(ctx); err != nil {
				t.Errorf("Ping: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s2, err := Open(ctx, dsn)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s2.Close()
			if s2.SchemaVersion() != 7 {
				t.Errorf("schema version after reopen = %d, want 7", s2.SchemaVersion())
			}
			var applied int
			if err := s2.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM goose_db_version WHERE version_id = 1").Scan(&applied); err != nil || applied != 1 {
				t.Errorf("migration 1 recorded %d times (%v), want once", applied, err)
			}
			if _, err := s2.TenantByID(ctx, "t1"); err != nil {
				t.Errorf("data lost on reopen: %v", err)
			}
		})
	}
}

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn     string
		dialect Dialect
		target  string
		wantErr bool
	}{
		{"/var/lib/bm/bm.db", DialectSQLite, "/var/lib/bm/bm.db", false},
		{"bm.db", DialectSQLite, "bm.db", false},
		{"sqlite:///var/lib/bm.db", DialectSQLite, "/var/lib/bm.db", false},
		{"sqlite://rel/bm.db", DialectSQLite, "rel/bm.db", false},
		{"sqlite:bm.db", DialectSQLite, "bm.db", false},
		{"postgres://u:p@db:5432/bm?sslmode=disable", DialectPostgres, "postgres://u:p@db:5432/bm?sslmode=disable", false},
		{"postgresql://db/bm", DialectPostgres, "postgresql://db/bm", false},
		{"", "", "", true},
		{"sqlite://", "", "", true},
		{"mysql://u:hunter2@db/bm", "", "", true},
	}
	for _, tt := range tests {
		d, target, err := ParseDSN(tt.dsn)
		if (err != nil) != tt.wantErr || d != tt.dialect || target != tt.target {
			t.Errorf("ParseDSN(%q) = %q, %q, %v; want %q, %q, err=%v", tt.dsn, d, target, err, tt.dialect, tt.target, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseDSN(%q) error leaks the password: %v", tt.dsn, err)
		}
	}
	if got := RedactDSN("postgres://u:hunter2@db/bm"); strings.Contains(got, "hunter2") || !strings.Contains(got, "u:xxxxx@db") {
		t.Errorf("RedactDSN = %q", got)
	}
}

func TestSchemaHasNoSecretColumn(t *testing.T) {
	queries := map[Dialect]string{
		DialectSQLite: `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table'`,
		DialectPostgres: `SELECT table_name, column_name FROM information_schema.columns
			WHERE table_schema = 'public'`,
	}
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rows, err := s.db.QueryContext(ctx, queries[s.Dialect()])
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var table, col string
			if err := rows.Scan(&table, &col); err != nil {
				t.Fatal(err)
			}
			n++
			if strings.Contains(strings.ToLower(col), "secret") {
				t.Errorf("table %s has column %s", table, col)
			}
		}
		if n < 20 {
			t.Fatalf("saw only %d columns; the schema query is broken", n)
		}
	})
}

func TestTenantsAndAccounts(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		hash, err := HashPassword("correct horse")
		if err != nil {
			t.Fatal(err)
		}
		created := time.Date(2025, 9, 22, 16, 48, 50, 414694000, time.UTC)
		tn := Tenant{ID: "t1", BucketName: "basic-memory-t1", SubscriptionStatus: "trialing", SubscriptionTier: "pro", CreatedAt: created}
		if err := s.CreateTenantWithAccount(ctx, tn, Account{ID: "a1", Email: " Ann@Example.COM ", PasswordHash: hash}); err != nil {
			t.Fatal(err)
		}
		got, err := s.TenantByID(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		want := tn
		want.Status = TenantActive
		if got != want {
			t.Errorf("TenantByID = %+v, want %+v", got, want)
		}
		a, err := s.AccountByEmail(ctx, "ann@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != "a1" || a.TenantID != "t1" || a.Email != "ann@example.com" || !a.CreatedAt.Equal(created) {
			t.Errorf("AccountByEmail = %+v", a)
		}
		if err := CheckPassword(a.PasswordHash, "correct horse"); err != nil {
			t.Errorf("CheckPassword(right) = %v", err)
		}
		if err := CheckPassword(a.PasswordHash, "wrong"); !errors.Is(err, ErrBadPassword) {
			t.Errorf("CheckPassword(wrong) = %v, want ErrBadPassword", err)
		}
		if b, err := s.AccountByID(ctx, "a1"); err != nil || b != a {
			t.Errorf("AccountByID = %+v, %v; want %+v", b, err, a)
		}

		tests := []struct {
			name string
			t    Tenant
			a    Account
			want error
		}{
			{"same email", Tenant{ID: "t2"}, Account{ID: "a2", Email: "ANN@example.com"}, ErrConflict},
			{"same tenant id", Tenant{ID: "t1"}, Account{ID: "a3", Email: "b@example.com"}, ErrConflict},
			{"same bucket", Tenant{ID: "t4", BucketName: "basic-memory-t1"}, Account{ID: "a4", Email: "c@example.com"}, ErrConflict},
			{"same account id", Tenant{ID: "t5"}, Account{ID: "a1", Email: "d@example.com"}, ErrConflict},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				err := s.CreateTenantWithAccount(ctx, tc.t, tc.a)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				// One transaction: the tenant must not survive a failed account.
				if tc.t.ID != "t1" {
					if _, err := s.TenantByID(ctx, tc.t.ID); !errors.Is(err, ErrNotFound) {
						t.Errorf("tenant %s left behind: %v", tc.t.ID, err)
					}
				}
			})
		}

		// Two tenants without a bucket yet do not collide.
		for _, id := range []string{"nb1", "nb2"} {
			if err := s.CreateTenantWithAccount(ctx, Tenant{ID: id}, Account{ID: "acct-" + id, Email: id + "@x"}); err != nil {
				t.Fatalf("tenant without bucket %s: %v", id, err)
			}
		}
		if err := s.SetTenantBucket(ctx, "nb1", "basic-memory-t1"); !errors.Is(err, ErrConflict) {
			t.Errorf("SetTenantBucket(taken) = %v, want ErrConflict", err)
		}

		for name, err := range map[string]error{
			"TenantByID":     func() error { _, err := s.TenantByID(ctx, "nope"); return err }(),
			"AccountByEmail": func() error { _, err := s.AccountByEmail(ctx, "nope@x"); return err }(),
			"AccountByID":    func() error { _, err := s.AccountByID(ctx, "nope"); return err }(),
			"SetStatus":      s.SetTenantStatus(ctx, "nope", TenantSuspended),
			"SetSub":         s.SetSubscription(ctx, "nope", "active", "pro"),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s(unknown) = %v, want ErrNotFound", name, err)
			}
		}
		if err := s.SetTenantStatus(ctx, "t1", "bogus"); err == nil {
			t.Error("SetTenantStatus(bogus) succeeded")
		}
		if err := s.SetSubscription(ctx, "t1", "canceled", "free"); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.TenantByID(ctx, "t1"); got.SubscriptionStatus != "canceled" || got.SubscriptionTier != "free" {
			t.Errorf("after SetSubscription: %+v", got)
		}
	})
}

func TestCredentials(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seedTenant(t, s, "A")
		seedTenant(t, s, "B")
		base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		ins := func(id, tenant, key string, at time.Time) {
			t.Helper()
			if err := s.InsertCredential(ctx, Credential{ID: id, TenantID: tenant, AccessKey: key, ProviderRef: "ref-" + id, Description: "laptop", CreatedAt: at}); err != nil {
				t.Fatalf("InsertCredential(%s): %v", id, err)
			}
		}
		ins("a-old", "A", "AKOLD", base)
		ins("a-new", "A", "AKNEW", base.Add(time.Hour))
		ins("b-1", "B", "BK1", base)

		if err := s.InsertCredential(ctx, Credential{ID: "x", TenantID: "A", AccessKey: "AKOLD"}); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate access key: %v, want ErrConflict", err)
		}
		if err := s.InsertCredential(ctx, Credential{ID: "a-old", TenantID: "A", AccessKey: "OTHER"}); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate id: %v, want ErrConflict", err)
		}
		if err := s.InsertCredential(ctx, Credential{ID: "y", TenantID: "ghost", AccessKey: "GHOST"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown tenant: %v, want ErrNotFound", err)
		}
		if err := s.InsertCredential(ctx, Credential{ID: "z", TenantID: "A"}); err == nil {
			t.Error("credential without access key accepted")
		}

		list, err := s.ListCredentials(ctx, "A")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != "a-new" || list[1].ID != "a-old" {
			t.Fatalf("ListCredentials(A) = %+v, want a-new, a-old", list)
		}
		if c := list[1]; c.AccessKey != "AKOLD" || c.ProviderRef != "ref-a-old" || c.Description != "laptop" ||
			!c.CreatedAt.Equal(base) || c.LastUsedAt != nil || c.RevokedAt != nil || c.DeletionStatus != "" {
			t.Errorf("credential fields = %+v", c)
		}
		if n, err := s.CountActiveCredentials(ctx, "A"); err != nil || n != 2 {
			t.Errorf("CountActiveCredentials(A) = %d, %v; want 2", n, err)
		}

		// Tenant scoping.
		if _, err := s.CredentialByID(ctx, "A", "b-1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("A reads B's credential: %v, want ErrNotFound", err)
		}
		if _, err := s.RevokeCredential(ctx, "A", "b-1", base); !errors.Is(err, ErrNotFound) {
			t.Errorf("A revokes B's credential: %v, want ErrNotFound", err)
		}
		if _, active, _ := s.LookupAccessKey(ctx, "BK1"); !active {
			t.Error("B's key inactive after A's attempt to revoke it")
		}

		// Lookup and revoke.
		bucket, active, err := s.LookupAccessKey(ctx, "AKOLD")
		if err != nil || bucket != "bucket-A" || !active {
			t.Fatalf("LookupAccessKey(AKOLD) = %q, %v, %v", bucket, active, err)
		}
		_, _, err = s.LookupAccessKey(ctx, "NOPE")
		if !errors.Is(err, ErrNotFound) || !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("LookupAccessKey(unknown) = %v, want ErrNotFound and storage.ErrNotFound", err)
		}
		revokedAt := base.Add(2 * time.Hour)
		c, err := s.RevokeCredential(ctx, "A", "a-old", revokedAt)
		if err != nil {
			t.Fatal(err)
		}
		if c.RevokedAt == nil || !c.RevokedAt.Equal(revokedAt) || c.DeletionStatus != DeletionPending {
			t.Errorf("revoked = %+v", c)
		}
		if _, active, err := s.LookupAccessKey(ctx, "AKOLD"); err != nil || active {
			t.Errorf("revoked key active=%v err=%v", active, err)
		}
		again, err := s.RevokeCredential(ctx, "A", "a-old", revokedAt.Add(time.Hour))
		if err != nil || !again.RevokedAt.Equal(revokedAt) {
			t.Errorf("second revoke = %+v, %v; want first revocation time kept", again, err)
		}
		if list, _ := s.ListCredentials(ctx, "A"); len(list) != 1 || list[0].ID != "a-new" {
			t.Errorf("list after revoke = %+v", list)
		}
		if n, _ := s.CountActiveCredentials(ctx, "A"); n != 1 {
			t.Errorf("count after revoke = %d, want 1", n)
		}
		if p, err := s.PendingDeletions(ctx, 10); err != nil || len(p) != 1 || p[0].ID != "a-old" {
			t.Errorf("PendingDeletions = %+v, %v", p, err)
		}
		if err := s.SetDeletionStatus(ctx, "a-old", DeletionCompleted); err != nil {
			t.Fatal(err)
		}
		if c, _ := s.CredentialByID(ctx, "A", "a-old"); c.DeletionStatus != DeletionCompleted {
			t.Errorf("deletion status = %q", c.DeletionStatus)
		}
		if p, _ := s.PendingDeletions(ctx, 10); len(p) != 0 {
			t.Errorf("PendingDeletions after completion = %+v", p)
		}
		if err := s.SetDeletionStatus(ctx, "a-old", "bogus"); err == nil {
			t.Error("SetDeletionStatus(bogus) accepted")
		}
		if err := s.SetDeletionStatus(ctx, "nope", DeletionFailed); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetDeletionStatus(unknown) = %v", err)
		}

		// A suspended tenant's keys are inactive; reactivation restores them.
		if err := s.SetTenantStatus(ctx, "B", TenantSuspended); err != nil {
			t.Fatal(err)
		}
		if bucket, active, err := s.LookupAccessKey(ctx, "BK1"); err != nil || active || bucket != "bucket-B" {
			t.Errorf("suspended tenant key = %q, %v, %v", bucket, active, err)
		}
		if err := s.SetTenantStatus(ctx, "B", TenantActive); err != nil {
			t.Fatal(err)
		}
		if _, active, _ := s.LookupAccessKey(ctx, "BK1"); !active {
			t.Error("key inactive after reactivation")
		}
	})
}

func TestTouchAccessKey(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seedTenant(t, s, "A")
		if err := s.InsertCredential(ctx, Credential{ID: "c", TenantID: "A", AccessKey: "AK"}); err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		steps := []struct {
			at   time.Time
			want time.Time
		}{
			{t0, t0},
			{t0.Add(30 * time.Second), t0}, // within a minute: no write
			{t0.Add(61 * time.Second), t0.Add(61 * time.Second)},
		}
		for i, st := range steps {
			if err := s.TouchAccessKey(ctx, "AK", st.at); err != nil {
				t.Fatal(err)
			}
			c, err := s.CredentialByID(ctx, "A", "c")
			if err != nil {
				t.Fatal(err)
			}
			if c.LastUsedAt == nil || !c.LastUsedAt.Equal(st.want) {
				t.Errorf("step %d: last_used_at = %v, want %v", i, c.LastUsedAt, st.want)
			}
		}
		if err := s.TouchAccessKey(ctx, "UNKNOWN", t0); err != nil {
			t.Errorf("touch unknown key: %v", err)
		}
	})
}

func TestAudit(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for _, k := range []string{"one", "two", "three"} {
			if err := s.AddAudit(ctx, "A", k, "detail "+k); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddAudit(ctx, "B", "other", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.AddAudit(ctx, "", "x", ""); err == nil {
			t.Error("audit without tenant accepted")
		}
		ev, err := s.ListAudit(ctx, "A", 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(ev) != 2 || ev[0].Kind != "three" || ev[1].Kind != "two" || ev[0].Detail != "detail three" || ev[0].TenantID != "A" || ev[0].ID <= ev[1].ID || ev[0].CreatedAt.IsZero() {
			t.Errorf("ListAudit(A, 2) = %+v", ev)
		}
		if ev, _ := s.ListAudit(ctx, "B", 0); len(ev) != 1 || ev[0].Kind != "other" {
			t.Errorf("ListAudit(B) = %+v", ev)
		}
	})
}

func TestRebindPostgres(t *testing.T) {
	s := &Store{dialect: DialectPostgres}
	if got, want := s.rebind("a = ? AND b IN (?, ?)"), "a = $1 AND b IN ($2, $3)"; got != want {
		t.Errorf("rebind = %q, want %q", got, want)
	}
	s.dialect = DialectSQLite
	if got := s.rebind("a = ?"); got != "a = ?" {
		t.Errorf("sqlite rebind changed the query: %q", got)
	}
}

func TestNewID(t *testing.T) {
	a, b := NewID(), NewID()
	if len(a) != 36 || a[14] != '4' || a == b {
		t.Errorf("NewID = %q, %q", a, b)
	}
}

func TestHashPasswordRejects(t *testing.T) {
	if _, err := HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
	if _, err := HashPassword(strings.Repeat("x", 73)); err == nil {
		t.Error("73-byte password hashed (bcrypt would truncate it)")
	}
	if err := CheckPassword("", "x"); err == nil || errors.Is(err, ErrBadPassword) {
		t.Errorf("CheckPassword(empty hash) = %v, want a malformed-hash error", err)
	}
}

// The SQLite files hold password hashes and OAuth sessions: the owner
// alone may read them, whether the store made the file or an older
// version left it readable by everyone.
func TestSQLiteFilesArePrivate(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, path string) {
		t.Helper()
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.CreateTenant(ctx, Tenant{ID: NewID(), Status: TenantActive, SubscriptionStatus: "active", SubscriptionTier: "pro"}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if m := fi.Mode().Perm(); m&0o077 != 0 {
				t.Errorf("%s has mode %v, want none for group and others", filepath.Base(p), m)
			}
		}
	}
	t.Run("new", func(t *testing.T) { check(t, filepath.Join(t.TempDir(), "new.db")) })
	t.Run("left open by an older version", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "old.db")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, path)
	})
}
