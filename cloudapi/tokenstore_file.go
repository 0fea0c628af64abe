package cloudapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// SecretsFile is the name of the fallback store's file in its directory.
const SecretsFile = "secrets.json"

// fileStore keeps all items in one JSON object, {"tokens": ..., "s3-key":
// ...}, in a file of mode 0600 inside a directory of mode 0700. It is the
// fallback where no OS keychain answers.
type fileStore struct {
	path   string
	logger *slog.Logger
	mu     sync.Mutex
}

func newFileStore(dir string, logger *slog.Logger) *fileStore {
	return &fileStore{path: filepath.Join(dir, SecretsFile), logger: logger}
}

func (s *fileStore) Backend() string { return BackendFile }

// read loads the whole file; a missing file is an empty store. A file that
// others can read or write is narrowed to 0600 first, with a warning.
func (s *fileStore) read() (map[string]json.RawMessage, error) {
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(s.path, 0o600); err != nil {
			return nil, fmt.Errorf("credentials file: mode %v is open to others and could not be fixed: %w", fi.Mode().Perm(), err)
		}
		s.logger.Warn("credentials file was readable by others; set its mode to 0600",
			"path", s.path, "was", fi.Mode().Perm().String())
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("credentials file: %w", err)
	}
	m := map[string]json.RawMessage{}
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("credentials file %s: decode: %w", s.path, err)
	}
	return m, nil
}

// write replaces the file atomically (see package atomicfile), mode 0600.
func (s *fileStore) write(m map[string]json.RawMessage) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("credentials file: encode: %w", err)
	}
	if err := atomicfile.WriteFile(s.path, b, 0o600); err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	return nil
}

func (s *fileStore) load(item string, v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.read()
	if err != nil {
		return fmt.Errorf("load %s: %w", item, err)
	}
	raw, ok := m[item]
	if !ok || string(raw) == "null" {
		return fmt.Errorf("load %s: %w", item, ErrNotFound)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("load %s: decode: %w", item, err)
	}
	return nil
}

func (s *fileStore) save(item string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("save %s: encode: %w", item, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.read()
	if err != nil {
		return fmt.Errorf("save %s: %w", item, err)
	}
	m[item] = b
	if err := s.write(m); err != nil {
		return fmt.Errorf("save %s: %w", item, err)
	}
	return nil
}

func (s *fileStore) LoadToken() (*oauth2.Token, error) {
	var t oauth2.Token
	if err := s.load(itemTokens, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (s *fileStore) SaveToken(t *oauth2.Token) error {
	if t == nil {
		return errors.New("save tokens: nil token")
	}
	return s.save(itemTokens, t)
}

func (s *fileStore) LoadS3Key() (*S3Key, error) {
	var k S3Key
	if err := s.load(itemS3Key, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

func (s *fileStore) SaveS3Key(k *S3Key) error {
	if k == nil {
		return errors.New("save s3 key: nil key")
	}
	return s.save(itemS3Key, k)
}

// Clear removes the file.
func (s *fileStore) Clear() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clear credentials file: %w", err)
	}
	return nil
}
