package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
)

// pg is this test binary's PostgreSQL server, started by the first test
// that needs it.
var pg pgtest.Shared

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

var quiet = slog.New(slog.DiscardHandler)

// testDSN is the DSN of a new, empty database of dialect d.
func testDSN(t *testing.T, d store.Dialect) string {
	t.Helper()
	if d == store.DialectPostgres {
		return pg.Get(t).NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), "bm.db")
}

// openStore opens the store at dsn (another replica's pool on the same
// database if dsn is shared).
func openStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// eachDB runs fn with the DSN of a fresh database on SQLite and on
// PostgreSQL.
func eachDB(t *testing.T, fn func(t *testing.T, dsn string)) {
	for _, d := range []store.Dialect{store.DialectSQLite, store.DialectPostgres} {
		t.Run(string(d), func(t *testing.T) { fn(t, testDSN(t, d)) })
	}
}

func randomMasterKey(t *testing.T) *MasterKey {
	t.Helper()
	raw := make([]byte, MasterKeyLen)
	rand.Read(raw)
	mk, err := ParseMasterKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func TestParseMasterKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0xfb, 0x01, 0x7e, 0xff}, 8) // + and / in std base64, - and _ in URL base64
	want, err := newMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"base64":               base64.StdEncoding.EncodeToString(raw),
		"base64 unpadded":      base64.RawStdEncoding.EncodeToString(raw),
		"base64url":            base64.URLEncoding.EncodeToString(raw),
		"base64url unpadded":   base64.RawURLEncoding.EncodeToString(raw),
		"hex":                  hex.EncodeToString(raw),
		"HEX":                  strings.ToUpper(hex.EncodeToString(raw)),
		"with a newline after": base64.StdEncoding.EncodeToString(raw) + "\n",
	}
	for name, text := range good {
		mk, err := ParseMasterKey(text)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(mk.CheckValue(), want.CheckValue()) {
			t.Errorf("%s: another key than the bytes written", name)
		}
	}
	bad := map[string]string{
		"empty":         "  \n",
		"16 bytes":      base64.StdEncoding.EncodeToString(raw[:16]),
		"31 bytes hex":  hex.EncodeToString(raw[:31]),
		"33 bytes":      base64.StdEncoding.EncodeToString(append(raw, 1)),
		"a passphrase":  "correct horse battery staple and more words",
		"raw 32 bytes?": string(raw),
	}
	for name, text := range bad {
		_, err := ParseMasterKey(text)
		if err == nil {
			t.Errorf("%s accepted", name)
			continue
		}
		if strings.TrimSpace(text) != "" && strings.Contains(err.Error(), strings.TrimSpace(text)) {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
}

func TestReadMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	raw := make([]byte, MasterKeyLen)
	rand.Read(raw)
	text := base64.StdEncoding.EncodeToString(raw) + "\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	mk, err := ReadMasterKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := newMasterKey(raw)
	if !bytes.Equal(mk.CheckValue(), want.CheckValue()) {
		t.Error("the file's key is not the one written")
	}
	if runtime.GOOS != "windows" {
		for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := ReadMasterKeyFile(path)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "0600") {
				t.Errorf("mode %v: %v; want a refusal naming the file and 0600", mode, err)
			}
			if err != nil && strings.Contains(err.Error(), strings.TrimSpace(text)) {
				t.Errorf("mode %v: the error quotes the key", mode)
			}
		}
	}
	if _, err := ReadMasterKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file accepted")
	}
}

// TestSealOpen: a sealed value opens with its master key and purpose
// only, and not once altered.
func TestSealOpen(t *testing.T) {
	mk, other := randomMasterKey(t), randomMasterKey(t)
	plain := []byte("the OAuth HMAC secret, 32 bytes!")
	sealed := mk.Seal("secret:oauth_hmac", plain)
	if bytes.Contains(sealed, plain) {
		t.Fatal("the sealed value holds the plaintext")
	}
	if again := mk.Seal("secret:oauth_hmac", plain); bytes.Equal(again, sealed) {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	if got, err := mk.Open("secret:oauth_hmac", sealed); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"another master key": func() ([]byte, error) { return other.Open("secret:oauth_hmac", sealed) },
		"another purpose":    func() ([]byte, error) { return mk.Open("signing_key:abc", sealed) },
		"altered":            func() ([]byte, error) { return mk.Open("secret:oauth_hmac", tampered) },
		"truncated":          func() ([]byte, error) { return mk.Open("secret:oauth_hmac", sealed[:10]) },
		"empty":              func() ([]byte, error) { return mk.Open("secret:oauth_hmac", nil) },
	} {
		if got, err := try(); !errors.Is(err, ErrUnseal) || got != nil {
			t.Errorf("%s: %q, %v; want ErrUnseal", name, got, err)
		}
	}
}

// TestOpenSetsUpOnce: the first Open creates a signing key and the OAuth
// secret, sealed (the database holds neither in the clear); the next
// opens, with the same master key, read them; another master key is
// refused with the error that says so, and a server without a master key
// is told the database needs one.
func TestOpenSetsUpOnce(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		st := openStore(t, dsn)
		if err := CheckNoMasterKey(ctx, st); err != nil {
			t.Fatalf("CheckNoMasterKey on a fresh database: %v", err)
		}
		mk := randomMasterKey(t)
		k1, err := Open(ctx, st, mk, Files{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := k1.SigningKeys(ctx, time.Now())
		if err != nil || len(keys) != 1 || !keys[0].Retired.IsZero() {
			t.Fatalf("SigningKeys = %v, %v; want one active key", keys, err)
		}
		secret := k1.OAuthSecret()
		if len(secret) != OAuthSecretLen || bytes.Equal(secret, make([]byte, OAuthSecretLen)) {
			t.Fatalf("OAuth secret of %d bytes, all zero: %v", len(secret), bytes.Equal(secret, make([]byte, OAuthSecretLen)))
		}
		// Nothing in the clear.
		row, err := st.ActiveSigningKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(keys[0].Key)
		sealedSecret, _ := st.SealedSecret(ctx, OAuthSecretName)
		if bytes.Contains(row.Sealed, der[len(der)-64:]) || bytes.Contains(sealedSecret, secret) {
			t.Error("the database holds the key or the secret in the clear")
		}

		// Another replica, same master key: the same key and secret.
		k2, err := Open(ctx, openStore(t, dsn), mk, Files{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		keys2, _ := k2.SigningKeys(ctx, time.Now())
		if len(keys2) != 1 || !keys2[0].Key.Equal(keys[0].Key) || !bytes.Equal(k2.OAuthSecret(), secret) {
			t.Error("a second Open with the same master key read another key or secret")
		}

		// Another master key: refused, nothing written.
		_, err = Open(ctx, openStore(t, dsn), randomMasterKey(t), Files{}, quiet)
		if !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), "the master key does not match the one this database was set up with") {
			t.Errorf("Open with another master key = %v, want ErrWrongMasterKey", err)
		}
		if all, _ := st.SigningKeys(ctx, time.Time{}); len(all) != 1 {
			t.Errorf("%d signing keys after the refusal, want 1", len(all))
		}
		// No master key at all.
		if err := CheckNoMasterKey(ctx, st); !errors.Is(err, ErrMasterKeyRequired) {
			t.Errorf("CheckNoMasterKey on a set-up database = %v, want ErrMasterKeyRequired", err)
		}
	})
}

// writeFiles writes a data dir's issuer.pem and oauth.secret, as a
// server without a master key makes them.
func writeFiles(t *testing.T) Files {
	t.Helper()
	dir := t.TempDir()
	f := Files{SigningKey: filepath.Join(dir, "issuer.pem"), OAuthSecret: filepath.Join(dir, "oauth.secret")}
	if _, err := issuer.LoadOrCreateKey(f.SigningKey); err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.LoadOrCreateSecret(f.OAuthSecret, OAuthSecretLen); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestOpenImportsFiles: the first Open takes the data dir's issuer.pem
// and oauth.secret, so tokens issued before stay valid; a replica without
// files gets them; a replica with files of its own is refused, naming
// the file; after a rotation, the replica with the imported (now retired)
// key file still starts.
func TestOpenImportsFiles(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		mk := randomMasterKey(t)
		files := writeFiles(t)
		fileKey, _ := issuer.ReadKey(files.SigningKey)
		fileSecret, _ := issuer.ReadSecret(files.OAuthSecret, OAuthSecretLen)
		k1, err := Open(ctx, openStore(t, dsn), mk, files, quiet)
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := k1.SigningKeys(ctx, time.Now())
		if len(keys) != 1 || !keys[0].Key.Equal(fileKey) || !bytes.Equal(k1.OAuthSecret(), fileSecret) {
			t.Fatal("the first Open did not import the files' key and secret")
		}
		k2, err := Open(ctx, openStore(t, dsn), mk, Files{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		if keys2, _ := k2.SigningKeys(ctx, time.Now()); len(keys2) != 1 || !keys2[0].Key.Equal(fileKey) || !bytes.Equal(k2.OAuthSecret(), fileSecret) {
			t.Error("a replica without files did not get the imported key and secret")
		}

		own := writeFiles(t)
		for name, f := range map[string]Files{
			"its own issuer.pem":   {SigningKey: own.SigningKey},
			"its own oauth.secret": {OAuthSecret: own.OAuthSecret},
		} {
			_, err := Open(ctx, openStore(t, dsn), mk, f, quiet)
			path := f.SigningKey + f.OAuthSecret
			if !errors.Is(err, ErrFileDiffers) || !strings.Contains(err.Error(), path) {
				t.Errorf("a replica with %s: %v; want ErrFileDiffers naming %s", name, err, path)
			}
		}

		if _, _, err := k1.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctx, openStore(t, dsn), mk, files, quiet); err != nil {
			t.Errorf("the replica whose issuer.pem a rotation retired: %v", err)
		}
	})
}

// TestConcurrentFirstOpen: replicas starting at once on one empty
// database (each its own pool) end up with one signing key and one
// secret.
func TestConcurrentFirstOpen(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		mk := randomMasterKey(t)
		const n = 6
		stores := make([]*store.Store, n)
		for i := range stores {
			stores[i] = openStore(t, dsn)
		}
		rings := make([]*Keyring, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				rings[i], errs[i] = Open(ctx, stores[i], mk, Files{}, quiet)
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		first, _ := rings[0].SigningKeys(ctx, time.Now())
		for i, k := range rings {
			keys, err := k.SigningKeys(ctx, time.Now())
			if err != nil || len(keys) != 1 || !keys[0].Key.Equal(first[0].Key) || !bytes.Equal(k.OAuthSecret(), rings[0].OAuthSecret()) {
				t.Errorf("replica %d: %d keys (%v), same key as replica 0: %v, same secret: %v", i, len(keys), err,
					len(keys) == 1 && keys[0].Key.Equal(first[0].Key), bytes.Equal(k.OAuthSecret(), rings[0].OAuthSecret()))
			}
		}
		if all, err := stores[0].SigningKeys(ctx, time.Time{}); err != nil || len(all) != 1 {
			t.Errorf("%d signing keys in the database (%v), want 1", len(all), err)
		}
	})
}

// TestRotateAndList: a rotation makes a new key active, seen by another
// replica's keyring at its next read; the old one is listed as retired
// with when it stops verifying, and is returned to the issuer until then.
func TestRotateAndList(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		mk := randomMasterKey(t)
		st := openStore(t, dsn)
		k, err := Open(ctx, st, mk, Files{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		other, err := Open(ctx, openStore(t, dsn), mk, Files{}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := st.ActiveSigningKey(ctx)
		retired, active, err := k.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if retired.KID != before.KID || retired.State != StateRetired || active.State != StateActive || active.KID == before.KID {
			t.Errorf("Rotate = %+v, %+v", retired, active)
		}
		keys, err := other.SigningKeys(ctx, time.Now().Add(-time.Minute))
		if err != nil || len(keys) != 2 {
			t.Fatalf("the other replica's SigningKeys = %d keys, %v; want 2", len(keys), err)
		}
		for _, sk := range keys {
			kid, _ := issuer.KeyID(&sk.Key.PublicKey)
			if (kid == active.KID) != sk.Retired.IsZero() {
				t.Errorf("key %s retired %v; the active key is %s", kid, sk.Retired, active.KID)
			}
		}
		list, err := List(ctx, st)
		if err != nil || len(list) != 2 {
			t.Fatalf("List = %+v, %v", list, err)
		}
		if list[0].KID != active.KID || list[0].State != StateActive || list[0].RetiredAt != nil || list[0].VerifiesUntil != nil {
			t.Errorf("List[0] = %+v, want the active key", list[0])
		}
		wantUntil := retired.RetiredAt.Add(issuer.KeyRetention(issuer.DefaultAccessTokenTTL))
		if list[1].KID != before.KID || list[1].State != StateRetired || list[1].VerifiesUntil == nil || !list[1].VerifiesUntil.Equal(wantUntil) {
			t.Errorf("List[1] = %+v, want the retired key verifying until %v", list[1], wantUntil)
		}
		// Retired long enough ago, it is listed as expired and no longer
		// returned to the issuer.
		if got := info(store.SigningKey{KID: "x", State: store.SigningKeyRetired, RetiredAt: retired.RetiredAt}, wantUntil); got.State != StateExpired {
			t.Errorf("a key past its retention is %q, want %q", got.State, StateExpired)
		}
		if keys, _ := other.SigningKeys(ctx, time.Now().Add(time.Minute)); len(keys) != 1 {
			t.Errorf("SigningKeys since after the rotation = %d keys, want only the active one", len(keys))
		}
	})
}
