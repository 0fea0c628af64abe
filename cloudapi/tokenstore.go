package cloudapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/zalando/go-keyring"
	"golang.org/x/oauth2"
)

// Keychain names: one service, one item per secret.
const (
	KeyringService = "bm-agent"
	itemTokens     = "tokens"
	itemS3Key      = "s3-key"
	itemProbe      = "probe"
)

// EnvKeyring forces the store backend: "file" or "keyring". Unset or
// anything else means detect.
const EnvKeyring = "BM_AGENT_KEYRING"

// Backend names returned by Store.Backend.
const (
	BackendKeyring = "keyring"
	BackendFile    = "file"
)

// keyringTimeout bounds every keychain call: go-keyring over D-Bus can hang
// when nothing answers.
var keyringTimeout = 2 * time.Second

// S3Key is the bucket-scoped key the tenant API minted for this device.
// Its String and LogValue never show the secret.
type S3Key struct {
	AccessKey    string `json:"access_key"`
	SecretKey    string `json:"secret_key"`
	CredentialID string `json:"credential_id"`
	Endpoint     string `json:"endpoint"`
	Region       string `json:"region"`
	Bucket       string `json:"bucket"`
}

// String describes the key without its secret.
func (k S3Key) String() string {
	return fmt.Sprintf("S3Key{access_key=%s credential_id=%s endpoint=%s region=%s bucket=%s secret_key=%s}",
		k.AccessKey, k.CredentialID, k.Endpoint, k.Region, k.Bucket, redact(k.SecretKey))
}

// GoString is String, so %#v does not print the secret either.
func (k S3Key) GoString() string { return k.String() }

// LogValue implements slog.LogValuer without the secret.
func (k S3Key) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_key", k.AccessKey),
		slog.String("credential_id", k.CredentialID),
		slog.String("endpoint", k.Endpoint),
		slog.String("region", k.Region),
		slog.String("bucket", k.Bucket),
		slog.String("secret_key", redact(k.SecretKey)),
	)
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// Store keeps the agent's secrets: the OAuth token (with its refresh token)
// and the S3 key. Loads of an item never saved, or cleared, return
// ErrNotFound (wrapped; test with errors.Is) and a nil value.
// Implementations are safe for concurrent use.
type Store interface {
	LoadToken() (*oauth2.Token, error)
	SaveToken(*oauth2.Token) error
	LoadS3Key() (*S3Key, error)
	SaveS3Key(*S3Key) error
	// Clear removes both items; clearing an empty store is not an error.
	Clear() error
	// Backend is BackendKeyring or BackendFile.
	Backend() string
}

// OpenStore picks the store backend: the OS keychain (go-keyring, service
// "bm-agent") when it answers, else a 0600 JSON file in fallbackDir, with one
// warning on logger (nil: slog.Default()). BM_AGENT_KEYRING=file|keyring
// forces a backend. Detection skips the keychain at once on Unix systems
// other than macOS when DBUS_SESSION_BUS_ADDRESS is empty, and otherwise
// probes it with a read bounded by a 2 s timeout.
func OpenStore(fallbackDir string, logger *slog.Logger) Store {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "tokenstore")
	file := func(reason string) Store {
		logger.Warn("no OS keychain: storing credentials in a file readable only by this user",
			"reason", reason, "dir", fallbackDir)
		return newFileStore(fallbackDir, logger)
	}
	switch os.Getenv(EnvKeyring) {
	case BackendFile:
		logger.Info("credential store forced to file", "env", EnvKeyring, "dir", fallbackDir)
		return newFileStore(fallbackDir, logger)
	case BackendKeyring:
		return keyringStore{}
	}
	if needsDBus() && os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		return file("DBUS_SESSION_BUS_ADDRESS is empty (no session bus for the Secret Service)")
	}
	if err := probeKeyring(); err != nil {
		return file(err.Error())
	}
	return keyringStore{}
}

// needsDBus reports whether go-keyring talks to the Secret Service over
// D-Bus on this system.
func needsDBus() bool {
	return runtime.GOOS != "darwin" && runtime.GOOS != "windows"
}

func probeKeyring() error {
	err := withTimeout(func() error {
		_, err := keyring.Get(KeyringService, itemProbe)
		return err
	})
	if err == nil || errors.Is(err, keyring.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("keychain probe: %w", err)
}

// withTimeout runs f, giving up after keyringTimeout. A hung f is left
// behind: there is no way to cancel a go-keyring call.
func withTimeout(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTimer(keyringTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("keychain did not answer within %s", keyringTimeout)
	}
}

// keyringStore keeps each item as JSON in the OS keychain.
type keyringStore struct{}

func (keyringStore) Backend() string { return BackendKeyring }

func (s keyringStore) get(item string, v any) error {
	var raw string
	err := withTimeout(func() error {
		var err error
		raw, err = keyring.Get(KeyringService, item)
		return err
	})
	if errors.Is(err, keyring.ErrNotFound) {
		return fmt.Errorf("keychain: load %s: %w", item, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("keychain: load %s: %w", item, err)
	}
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		// The error of encoding/json quotes no input, only offsets and types.
		return fmt.Errorf("keychain: decode %s: %w", item, err)
	}
	return nil
}

func (s keyringStore) set(item string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("keychain: encode %s: %w", item, err)
	}
	if err := withTimeout(func() error { return keyring.Set(KeyringService, item, string(b)) }); err != nil {
		return fmt.Errorf("keychain: save %s: %w", item, err)
	}
	return nil
}

func (s keyringStore) LoadToken() (*oauth2.Token, error) {
	var t oauth2.Token
	if err := s.get(itemTokens, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (s keyringStore) SaveToken(t *oauth2.Token) error {
	if t == nil {
		return errors.New("keychain: save tokens: nil token")
	}
	return s.set(itemTokens, t)
}

func (s keyringStore) LoadS3Key() (*S3Key, error) {
	var k S3Key
	if err := s.get(itemS3Key, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

func (s keyringStore) SaveS3Key(k *S3Key) error {
	if k == nil {
		return errors.New("keychain: save s3 key: nil key")
	}
	return s.set(itemS3Key, k)
}

func (s keyringStore) Clear() error {
	var errs []error
	for _, item := range []string{itemTokens, itemS3Key} {
		err := withTimeout(func() error { return keyring.Delete(KeyringService, item) })
		if err != nil && !errors.Is(err, keyring.ErrNotFound) {
			errs = append(errs, fmt.Errorf("keychain: delete %s: %w", item, err))
		}
	}
	return errors.Join(errs...)
}
