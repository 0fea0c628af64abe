package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestSigningKeysRotate: the first key is added once, a rotation retires
// it and activates the next in one step, a stale rotation changes
// nothing, and SigningKeys filters retired keys by when they retired.
func TestSigningKeysRotate(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.ActiveSigningKey(ctx); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ActiveSigningKey on an empty database = %v, want ErrNotFound", err)
		}
		t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		k1 := SigningKey{KID: "k1", Sealed: []byte{0, 1, 2, 0xff}, CreatedAt: t0}
		if ok, err := s.AddFirstSigningKey(ctx, k1); err != nil || !ok {
			t.Fatalf("AddFirstSigningKey(k1) = %v, %v; want true", ok, err)
		}
		if ok, err := s.AddFirstSigningKey(ctx, SigningKey{KID: "k0", Sealed: []byte{9}}); err != nil || ok {
			t.Fatalf("AddFirstSigningKey with an active key = %v, %v; want false", ok, err)
		}
		got, err := s.ActiveSigningKey(ctx)
		if err != nil || got.KID != "k1" || !bytes.Equal(got.Sealed, k1.Sealed) || got.State != SigningKeyActive ||
			!got.CreatedAt.Equal(t0) || got.RetiredAt != nil {
			t.Fatalf("ActiveSigningKey = %+v, %v", got, err)
		}

		t1 := t0.Add(time.Hour)
		if err := s.RotateSigningKey(ctx, "k1", SigningKey{KID: "k2", Sealed: []byte{2}}, t1); err != nil {
			t.Fatal(err)
		}
		// A rotation from a key that is no longer active: a conflict, nothing changes.
		if err := s.RotateSigningKey(ctx, "k1", SigningKey{KID: "k3", Sealed: []byte{3}}, t1); !errors.Is(err, ErrConflict) {
			t.Errorf("stale rotation = %v, want ErrConflict", err)
		}
		if got, err := s.ActiveSigningKey(ctx); err != nil || got.KID != "k2" || !got.CreatedAt.Equal(t1) {
			t.Errorf("active after rotation = %+v, %v; want k2", got, err)
		}
		t2 := t1.Add(time.Hour)
		if err := s.RotateSigningKey(ctx, "k2", SigningKey{KID: "k3", Sealed: []byte{3}, CreatedAt: t2}, t2); err != nil {
			t.Fatal(err)
		}
		kids := func(ks []SigningKey) string {
			var b bytes.Buffer
			for _, k := range ks {
				fmt.Fprintf(&b, "%s:%s ", k.KID, k.State)
			}
			return b.String()
		}
		all, err := s.SigningKeys(ctx, time.Time{})
		if err != nil || kids(all) != "k3:active k2:retired k1:retired " {
			t.Errorf("SigningKeys(all) = %s, %v", kids(all), err)
		}
		if all[1].RetiredAt == nil || !all[1].RetiredAt.Equal(t2) {
			t.Errorf("k2 retired at %v, want %v", all[1].RetiredAt, t2)
		}
		recent, err := s.SigningKeys(ctx, t1.Add(time.Minute))
		if err != nil || kids(recent) != "k3:active k2:retired " {
			t.Errorf("SigningKeys(since k1 retired) = %s, %v; want k3 and k2", kids(recent), err)
		}
	})
}

// TestSigningKeysConcurrentFirst: replicas (each its own connection pool)
// adding their first key at once end up with one active key, which all
// of them read back; the same for a sealed secret and the master key's
// check value.
func TestSigningKeysConcurrentFirst(t *testing.T) {
	for _, d := range []Dialect{DialectSQLite, DialectPostgres} {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			dsn := testDSN(t, d)
			const n = 8
			stores := make([]*Store, n)
			for i := range stores {
				s, err := Open(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores[i] = s
			}
			type result struct {
				inserted      bool
				active        string
				secret, check []byte
				errs          []error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, s := range stores {
				wg.Go(func() {
					<-start
					r := &results[i]
					var err error
					r.inserted, err = s.AddFirstSigningKey(ctx, SigningKey{KID: fmt.Sprintf("kid-%d", i), Sealed: []byte{byte(i)}})
					r.errs = append(r.errs, err)
					k, err := s.ActiveSigningKey(ctx)
					r.active = k.KID
					r.errs = append(r.errs, err)
					r.secret, err = s.AddSealedSecret(ctx, "oauth_hmac", []byte{byte(i), 1})
					r.errs = append(r.errs, err)
					r.check, err = s.SetMasterKeyCheck(ctx, []byte{byte(i), 2})
					r.errs = append(r.errs, err)
				})
			}
			close(start)
			wg.Wait()
			inserted := 0
			for i, r := range results {
				if err := errors.Join(r.errs...); err != nil {
					t.Fatalf("replica %d: %v", i, err)
				}
				if r.inserted {
					inserted++
				}
				if r.active != results[0].active || !bytes.Equal(r.secret, results[0].secret) || !bytes.Equal(r.check, results[0].check) {
					t.Errorf("replica %d read active %s, secret %x, check %x; replica 0 read %s, %x, %x",
						i, r.active, r.secret, r.check, results[0].active, results[0].secret, results[0].check)
				}
			}
			if inserted != 1 {
				t.Errorf("%d replicas inserted a first key, want 1", inserted)
			}
			all, err := stores[0].SigningKeys(ctx, time.Time{})
			if err != nil || len(all) != 1 || all[0].KID != results[0].active {
				t.Errorf("SigningKeys = %+v, %v; want the one active key %s", all, err, results[0].active)
			}
			// The winner's values, as stored.
			if got, err := stores[0].SealedSecret(ctx, "oauth_hmac"); err != nil || !bytes.Equal(got, results[0].secret) {
				t.Errorf("SealedSecret = %x, %v", got, err)
			}
			if got, err := stores[0].MasterKeyCheck(ctx); err != nil || !bytes.Equal(got, results[0].check) {
				t.Errorf("MasterKeyCheck = %x, %v", got, err)
			}
		})
	}
}

func TestSealedSecretAndCheckMissing(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.SealedSecret(ctx, "oauth_hmac"); !errors.Is(err, ErrNotFound) {
			t.Errorf("SealedSecret on an empty database = %v, want ErrNotFound", err)
		}
		if _, err := s.MasterKeyCheck(ctx); !errors.Is(err, ErrNotFound) {
			t.Errorf("MasterKeyCheck on an empty database = %v, want ErrNotFound", err)
		}
		if _, err := s.SetMasterKeyCheck(ctx, nil); err == nil {
			t.Error("empty check value accepted")
		}
	})
}

// TestOpenConcurrentlyMigrates: replicas opening one empty PostgreSQL
// database at once (each migrating it) all succeed, on one schema.
// (SQLite is one machine's: its migrations take no lock.)
func TestOpenConcurrentlyMigrates(t *testing.T) {
	for round := range 2 { // without the lock, the race is lost now and then
		t.Run(fmt.Sprint("postgres ", round), func(t *testing.T) {
			dsn := testDSN(t, DialectPostgres)
			const n = 8
			errs := make([]error, n)
			versions := make([]int64, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					s, err := Open(context.Background(), dsn)
					if err != nil {
						errs[i] = err
						return
					}
					versions[i] = s.SchemaVersion()
					s.Close()
				})
			}
			close(start)
			wg.Wait()
			for i := range n {
				if errs[i] != nil || versions[i] != versions[0] || versions[0] == 0 {
					t.Errorf("replica %d: schema version %d, %v", i, versions[i], errs[i])
				}
			}
		})
	}
}
