package issuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// signingKeyBits is the size of keys made by LoadOrCreateKey.
const signingKeyBits = 2048

// LoadOrCreateKey reads an RSA private key (PEM, PKCS #8 or PKCS #1) from
// path, or creates a 2048-bit key there (PKCS #8 PEM, mode 0600) if the file
// does not exist. Creation never replaces a file that appeared meanwhile:
// then that file's key is returned.
func LoadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, signingKeyBits)
		if err != nil {
			return nil, fmt.Errorf("issuer: create signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("issuer: create signing key: %w", err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		created, err := createExclusive(path, data)
		if err != nil {
			return nil, fmt.Errorf("issuer: create signing key %s: %w", path, err)
		}
		if created {
			return key, nil
		}
		if b, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("issuer: read signing key: %w", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("issuer: read signing key: %w", err)
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("issuer: read signing key %s: %w", path, err)
	}
	return key, nil
}

// ReadKey reads the RSA private key file at path as LoadOrCreateKey does,
// but never creates one: a missing file is an error wrapping
// fs.ErrNotExist.
func ReadKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("issuer: read signing key: %w", err)
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("issuer: read signing key %s: %w", path, err)
	}
	return key, nil
}

// ReadSecret reads the n-byte secret file at path as LoadOrCreateSecret
// does, but never creates one: a missing file is an error wrapping
// fs.ErrNotExist.
func ReadSecret(path string, n int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("issuer: read secret: %w", err)
	}
	if len(b) != n {
		return nil, fmt.Errorf("issuer: read secret %s: %d bytes, want %d", path, len(b), n)
	}
	return b, nil
}

func parseKey(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an RSA key: %T", key)
	}
	if rk.N.BitLen() < 2048 {
		return nil, fmt.Errorf("RSA key of %d bits is too short", rk.N.BitLen())
	}
	return rk, nil
}

// LoadOrCreateSecret reads n secret bytes from path, or writes n random
// bytes there (mode 0600) if the file does not exist. A file of another
// length is an error.
func LoadOrCreateSecret(path string, n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("issuer: secret: bad length %d", n)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, n)
		rand.Read(secret) // never fails (crypto/rand)
		created, err := createExclusive(path, secret)
		if err != nil {
			return nil, fmt.Errorf("issuer: create secret %s: %w", path, err)
		}
		if created {
			return secret, nil
		}
		if b, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("issuer: read secret: %w", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("issuer: read secret: %w", err)
	}
	if len(b) != n {
		return nil, fmt.Errorf("issuer: read secret %s: %d bytes, want %d", path, len(b), n)
	}
	return b, nil
}

// createExclusive writes data (mode 0600) to path, creating its directory,
// unless path exists: then it reports false, without error. A reader never
// sees a half-written file (atomicfile.Create).
func createExclusive(path string, data []byte) (created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	return atomicfile.Create(path, data, 0o600)
}
