package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// MasterKeyLen is the length of a master key in bytes.
const MasterKeyLen = 32

// ErrUnseal: a sealed value does not open with this master key (another
// key sealed it, or it was altered or moved to another row).
var ErrUnseal = errors.New("sealed value does not open with this master key")

// MasterKey seals and opens the secrets kept in the database
// (AES-256-GCM, with what the value is for as associated data, so that a
// sealed value moved to another row does not open), and has a check value
// that tells it from another master key without revealing it. Two
// independent keys are derived from it (HKDF-SHA256) for the two uses.
type MasterKey struct {
	aead  cipher.AEAD
	check []byte
}

// ParseMasterKey reads a master key written as text: 32 bytes in base64
// (standard or URL alphabet, padded or not) or hex, surrounding white
// space ignored (`openssl rand -base64 32` makes one). Errors never quote
// the text.
func ParseMasterKey(text string) (*MasterKey, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("master key: empty")
	}
	raw := decodeKey(text)
	if raw == nil {
		return nil, fmt.Errorf("master key: want %d bytes in base64 or hex (openssl rand -base64 32 makes one)", MasterKeyLen)
	}
	return newMasterKey(raw)
}

func decodeKey(text string) []byte {
	if b, err := hex.DecodeString(text); err == nil && len(b) == MasterKeyLen {
		return b
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil && len(b) == MasterKeyLen {
			return b
		}
	}
	return nil
}

// ReadMasterKeyFile reads a master key (as ParseMasterKey) from the file
// at path, which only its owner may read or write (mode 0600 or
// narrower; not checked on Windows).
func ReadMasterKeyFile(path string) (*MasterKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s: mode %v lets others read or write it; make it 0600 (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	mk, err := ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return mk, nil
}

func newMasterKey(raw []byte) (*MasterKey, error) {
	sealKey, err := hkdf.Key(sha256.New, raw, nil, "bm-server keyring: seal v1", 32)
	if err != nil {
		return nil, fmt.Errorf("master key: derive: %w", err)
	}
	checkKey, err := hkdf.Key(sha256.New, raw, nil, "bm-server keyring: check v1", 32)
	if err != nil {
		return nil, fmt.Errorf("master key: derive: %w", err)
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	mac := hmac.New(sha256.New, checkKey)
	mac.Write([]byte("bm-server master key check value"))
	return &MasterKey{aead: aead, check: mac.Sum(nil)}, nil
}

// sealVersion starts every sealed value: the format (version, 12-byte
// random nonce, AES-256-GCM ciphertext and tag).
const sealVersion = 1

// Seal seals plaintext for purpose (what the value is and which row
// holds it, e.g. "signing_key:KID"): Open opens it only for the same
// purpose.
func (m *MasterKey) Seal(purpose string, plaintext []byte) []byte {
	nonce := make([]byte, m.aead.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand)
	out := append([]byte{sealVersion}, nonce...)
	return m.aead.Seal(out, nonce, plaintext, sealAAD(purpose))
}

// Open opens a value Seal sealed for purpose; anything else is ErrUnseal.
func (m *MasterKey) Open(purpose string, sealed []byte) ([]byte, error) {
	ns := m.aead.NonceSize()
	if len(sealed) < 1+ns+m.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("open %s: %w", purpose, ErrUnseal)
	}
	b, err := m.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealAAD(purpose))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", purpose, ErrUnseal)
	}
	return b, nil
}

func sealAAD(purpose string) []byte {
	return []byte(fmt.Sprintf("bm-server sealed v%d: %s", sealVersion, purpose))
}

// CheckValue is what the database keeps of the master key: an HMAC of a
// fixed label, keyed by a key derived from it.
func (m *MasterKey) CheckValue() []byte { return append([]byte(nil), m.check...) }
