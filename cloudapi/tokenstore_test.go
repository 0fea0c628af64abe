package cloudapi

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zalando/go-keyring"
	"golang.org/x/oauth2"
)

const testSecret = "s3cr3t-SECRET-value"

func testKey() *S3Key {
	return &S3Key{AccessKey: "AKIATEST", SecretKey: testSecret, CredentialID: "cred-1",
		Endpoint: "http://127.0.0.1:9000", Region: "us-east-1", Bucket: "tenant-bucket"}
}

func testToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "access-xyz", TokenType: "Bearer", RefreshToken: "refresh-xyz",
		Expiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// exerciseStore runs the behaviour every backend must have.
func exerciseStore(t *testing.T, s Store) {
	t.Helper()
	if _, err := s.LoadToken(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadToken on empty store: %v, want ErrNotFound", err)
	}
	if _, err := s.LoadS3Key(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadS3Key on empty store: %v, want ErrNotFound", err)
	}
	if err := s.SaveToken(testToken()); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveS3Key(testKey()); err != nil {
		t.Fatal(err)
	}
	tok, err := s.LoadToken()
	if err != nil {
		t.Fatal(err)
	}
	want := testToken()
	if tok.AccessToken != want.AccessToken || tok.RefreshToken != want.RefreshToken || !tok.Expiry.Equal(want.Expiry) {
		t.Errorf("token round trip lost data")
	}
	k, err := s.LoadS3Key()
	if err != nil {
		t.Fatal(err)
	}
	if *k != *testKey() {
		t.Errorf("S3 key round trip = %v, want %v", k, testKey())
	}
	// Overwrite keeps the other item.
	rotated := testToken()
	rotated.RefreshToken = "refresh-rotated"
	if err := s.SaveToken(rotated); err != nil {
		t.Fatal(err)
	}
	if tok, _ := s.LoadToken(); tok == nil || tok.RefreshToken != "refresh-rotated" {
		t.Error("rotated refresh token not saved")
	}
	if k, _ := s.LoadS3Key(); k == nil || k.SecretKey != testSecret {
		t.Error("saving the token lost the S3 key")
	}
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(); err != nil {
		t.Fatalf("second Clear: %v", err)
	}
	if _, err := s.LoadToken(); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadToken after Clear: %v, want ErrNotFound", err)
	}
	if _, err := s.LoadS3Key(); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadS3Key after Clear: %v, want ErrNotFound", err)
	}
}

func TestFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newFileStore(dir, slog.New(slog.DiscardHandler))
	exerciseStore(t, s)

	if err := s.SaveS3Key(testKey()); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(filepath.Join(dir, SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", di.Mode().Perm())
	}
}

func TestFileStoreFixesOpenMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	dir := t.TempDir()
	var logs bytes.Buffer
	s := newFileStore(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err := s.SaveS3Key(testKey()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SecretsFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := s.LoadS3Key()
	if err != nil || k.SecretKey != testSecret {
		t.Fatalf("LoadS3Key = %v, %v", k, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after load = %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "readable by others") {
		t.Errorf("no warning logged: %q", logs.String())
	}
	if strings.Contains(logs.String(), testSecret) {
		t.Error("log contains the secret")
	}
}

func TestFileStoreCorruptFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, SecretsFile), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newFileStore(dir, slog.New(slog.DiscardHandler))
	if _, err := s.LoadToken(); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("LoadToken of a corrupt file = %v, want a decode error", err)
	}
}

func TestOpenStoreBackend(t *testing.T) {
	tests := []struct {
		name string
		env  string
		dbus string
		skip bool
		want string
	}{
		{name: "forced file", env: "file", dbus: "unix:path=/nonexistent", want: BackendFile},
		{name: "no session bus falls back to file", dbus: "", skip: !needsDBus(), want: BackendFile},
		{name: "forced keyring", env: "keyring", dbus: "", want: BackendKeyring},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("the keychain does not use D-Bus here")
			}
			t.Setenv(EnvKeyring, tt.env)
			t.Setenv("DBUS_SESSION_BUS_ADDRESS", tt.dbus)
			var logs bytes.Buffer
			start := time.Now()
			s := OpenStore(t.TempDir(), slog.New(slog.NewTextHandler(&logs, nil)))
			if got := s.Backend(); got != tt.want {
				t.Errorf("Backend() = %q, want %q", got, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("OpenStore took %v", d)
			}
			if tt.want == BackendFile && tt.env == "" && !strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("fallback logged no warning: %q", logs.String())
			}
		})
	}
}

func TestKeyringStoreWithMock(t *testing.T) {
	keyring.MockInit()
	exerciseStore(t, keyringStore{})

	keyring.MockInitWithError(errors.New("locked"))
	if _, err := (keyringStore{}).LoadToken(); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("LoadToken with a failing keychain = %v, want its error", err)
	}
	if err := probeKeyring(); err == nil {
		t.Error("probe of a failing keychain succeeded")
	}
}

func TestWithTimeoutGivesUp(t *testing.T) {
	old := keyringTimeout
	keyringTimeout = 20 * time.Millisecond
	t.Cleanup(func() { keyringTimeout = old })
	block := make(chan struct{})
	defer close(block)
	err := withTimeout(func() error { <-block; return nil })
	if err == nil {
		t.Fatal("withTimeout returned nil for a hung call")
	}
}

func TestS3KeyNeverPrintsSecret(t *testing.T) {
	k := testKey()
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "key", k)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("key", "key", *k)
	outputs := []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", *k, k, k, k), k.String(), logs.String(),
	}
	for _, out := range outputs {
		if strings.Contains(out, testSecret) {
			t.Errorf("secret printed: %s", out)
		}
		if !strings.Contains(out, "AKIATEST") {
			t.Errorf("access key missing from %s", out)
		}
	}
}
