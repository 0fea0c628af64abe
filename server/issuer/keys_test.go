package issuer

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// The tenant API's Authenticator.
var _ interface {
	Authenticate(*http.Request) (tenantapi.Claims, error)
} = (*Issuer)(nil)

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "issuer.pem")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Error("second load returned another key")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	// PKCS #1 files are read too; junk is an error.
	pkcs1 := filepath.Join(t.TempDir(), "rsa.pem")
	os.WriteFile(pkcs1, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k1)}), 0o600)
	if k3, err := LoadOrCreateKey(pkcs1); err != nil || !k3.Equal(k1) {
		t.Errorf("PKCS #1: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a key"), 0o600)
	if _, err := LoadOrCreateKey(junk); err == nil {
		t.Error("junk key file accepted")
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	s1, err := LoadOrCreateSecret(path, 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 32 || bytes.Equal(s1, make([]byte, 32)) {
		t.Errorf("secret = %d bytes, all zero: %v", len(s1), bytes.Equal(s1, make([]byte, 32)))
	}
	checkMode(t, path)
	s2, err := LoadOrCreateSecret(path, 32)
	if err != nil || !bytes.Equal(s1, s2) {
		t.Errorf("reload: %v, same: %v", err, bytes.Equal(s1, s2))
	}
	if _, err := LoadOrCreateSecret(path, 64); err == nil {
		t.Error("secret of the wrong length accepted")
	}
	if _, err := LoadOrCreateSecret(filepath.Join(t.TempDir(), "x"), 0); err == nil {
		t.Error("zero length accepted")
	}
}

// TestReadKeyAndSecret: the read-only forms never create a file.
func TestReadKeyAndSecret(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadKey(filepath.Join(dir, "issuer.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadKey of a missing file = %v, want fs.ErrNotExist", err)
	}
	if _, err := ReadSecret(filepath.Join(dir, "oauth.secret"), 32); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadSecret of a missing file = %v, want fs.ErrNotExist", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files created: %v", entries)
	}
	k, err := LoadOrCreateKey(filepath.Join(dir, "issuer.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ReadKey(filepath.Join(dir, "issuer.pem")); err != nil || !got.Equal(k) {
		t.Errorf("ReadKey = %v", err)
	}
	s, err := LoadOrCreateSecret(filepath.Join(dir, "oauth.secret"), 32)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSecret(filepath.Join(dir, "oauth.secret"), 32); err != nil || !bytes.Equal(got, s) {
		t.Errorf("ReadSecret = %v", err)
	}
	if _, err := ReadSecret(filepath.Join(dir, "oauth.secret"), 64); err == nil {
		t.Error("a secret of the wrong length accepted")
	}
}
