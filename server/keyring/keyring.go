// Package keyring keeps the built-in issuer's secrets in bm-server's
// database, so that replicas share nothing else: the RSA keys that sign
// access tokens (one active, rotated by `bm-server keys rotate`) and the
// OAuth HMAC secret. Each is sealed with the master key (see MasterKey),
// which every replica is given from the environment or a file and which
// the database never holds; it keeps a check value instead, so that a
// replica given another master key refuses to start.
//
// Open sets the database up on the first start of the first replica:
// with the data dir's issuer.pem and oauth.secret when they exist (tokens
// already issued stay valid), else with new ones; replicas starting at
// once on one database agree on one key and one secret. A Keyring is the
// issuer's KeySource.
package keyring

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// Errors of Open and CheckNoMasterKey. Each refuses a replica whose
// configuration would split the fleet.
var (
	// ErrWrongMasterKey: the database was set up with another master key.
	ErrWrongMasterKey = errors.New("the master key does not match the one this database was set up with")
	// ErrMasterKeyRequired: the database keeps sealed keys, and the
	// server was given no master key.
	ErrMasterKeyRequired = errors.New("this database keeps the issuer's keys sealed with a master key, and none is configured (BM_SERVER_MASTER_KEY or --master-key-file)")
	// ErrFileDiffers: a key or secret file of the data dir is not the one
	// the database holds: a replica using it would split the fleet.
	ErrFileDiffers = errors.New("the file holds another key than the one this database holds, and a replica using it would split the fleet")
)

// OAuthSecretName names the OAuth HMAC secret among the sealed secrets.
const OAuthSecretName = "oauth_hmac"

// OAuthSecretLen is the OAuth HMAC secret's length in bytes.
const OAuthSecretLen = 32

// signingKeyBits is the size of the keys made here.
const signingKeyBits = 2048

// Store is the part of *store.Store a Keyring uses.
type Store interface {
	SetMasterKeyCheck(ctx context.Context, check []byte) ([]byte, error)
	AddFirstSigningKey(ctx context.Context, k store.SigningKey) (bool, error)
	ActiveSigningKey(ctx context.Context) (store.SigningKey, error)
	SigningKeys(ctx context.Context, since time.Time) ([]store.SigningKey, error)
	RotateSigningKey(ctx context.Context, fromKID string, next store.SigningKey, at time.Time) error
	AddSealedSecret(ctx context.Context, name string, sealed []byte) ([]byte, error)
}

var _ Store = (*store.Store)(nil)

// Files are the data dir's issuer.pem and oauth.secret, imported into an
// empty database and checked against a set-up one ("" for none).
type Files struct {
	SigningKey, OAuthSecret string
}

// Keyring is the issuer's secrets in the database. It implements
// issuer.KeySource.
type Keyring struct {
	st     Store
	mk     *MasterKey
	log    *slog.Logger
	secret []byte

	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey // opened keys by kid
}

var _ issuer.KeySource = (*Keyring)(nil)

// Open checks mk against the database (recording its check value in a
// database that has none), and makes sure the database has an active
// signing key and the OAuth secret: files' if they exist, new ones
// otherwise. A file that holds another key or secret than the database's
// is ErrFileDiffers (an issuer.pem whose key the database knows as a
// retired one is fine: a rotation retired it); another master key is
// ErrWrongMasterKey. log defaults to slog.Default().
func Open(ctx context.Context, st Store, mk *MasterKey, files Files, log *slog.Logger) (*Keyring, error) {
	if mk == nil {
		return nil, errors.New("keyring: open: no master key")
	}
	if log == nil {
		log = slog.Default()
	}
	stored, err := st.SetMasterKeyCheck(ctx, mk.check)
	if err != nil {
		return nil, fmt.Errorf("keyring: open: %w", err)
	}
	if !hmac.Equal(stored, mk.check) {
		return nil, fmt.Errorf("keyring: open: %w", ErrWrongMasterKey)
	}
	k := &Keyring{st: st, mk: mk, log: log, keys: map[string]*rsa.PrivateKey{}}
	if err := k.setUpSigningKey(ctx, files.SigningKey); err != nil {
		return nil, fmt.Errorf("keyring: open: %w", err)
	}
	if k.secret, err = k.setUpSecret(ctx, files.OAuthSecret); err != nil {
		return nil, fmt.Errorf("keyring: open: %w", err)
	}
	return k, nil
}

// CheckNoMasterKey is what a server without a master key asks first: if
// the database was set up with one, it is ErrMasterKeyRequired (its
// issuer.pem would split the fleet).
func CheckNoMasterKey(ctx context.Context, st interface {
	MasterKeyCheck(ctx context.Context) ([]byte, error)
}) error {
	_, err := st.MasterKeyCheck(ctx)
	switch {
	case err == nil:
		return ErrMasterKeyRequired
	case errors.Is(err, store.ErrNotFound):
		return nil
	default:
		return fmt.Errorf("keyring: check master key: %w", err)
	}
}

// setUpSigningKey adds the first signing key (the file's, or a new one)
// unless the database has one, and checks the file against it.
func (k *Keyring) setUpSigningKey(ctx context.Context, path string) error {
	fileKey, err := readOptional(path, issuer.ReadKey)
	if err != nil {
		return err
	}
	active, err := k.st.ActiveSigningKey(ctx)
	if errors.Is(err, store.ErrNotFound) {
		active, err = k.addFirstSigningKey(ctx, fileKey, path)
	}
	if err != nil {
		return err
	}
	if _, err := k.open(active); err != nil {
		return err
	}
	if fileKey == nil {
		return nil
	}
	kid, err := issuer.KeyID(&fileKey.PublicKey)
	if err != nil {
		return err
	}
	all, err := k.st.SigningKeys(ctx, time.Time{})
	if err != nil {
		return err
	}
	for _, row := range all {
		if row.KID == kid {
			return nil
		}
	}
	return fmt.Errorf("signing key file %s (kid %s; the database's active key is %s): %w; remove the file (or start this replica on the database it was set up with)",
		path, kid, active.KID, ErrFileDiffers)
}

// addFirstSigningKey adds fileKey (read from path), or a new key if it is
// nil, as the first signing key unless another replica got there first,
// and returns the active key.
func (k *Keyring) addFirstSigningKey(ctx context.Context, fileKey *rsa.PrivateKey, path string) (store.SigningKey, error) {
	first, what := fileKey, "imported the signing key from "+path
	if first == nil {
		var err error
		if first, err = rsa.GenerateKey(rand.Reader, signingKeyBits); err != nil {
			return store.SigningKey{}, fmt.Errorf("create signing key: %w", err)
		}
		what = "created the signing key"
	}
	row, err := k.seal(first, time.Now())
	if err != nil {
		return store.SigningKey{}, err
	}
	added, err := k.st.AddFirstSigningKey(ctx, row)
	if err != nil {
		return store.SigningKey{}, err
	}
	if added {
		k.log.InfoContext(ctx, "keyring: "+what+" into the database", "kid", row.KID)
	}
	return k.st.ActiveSigningKey(ctx)
}

// setUpSecret adds the OAuth secret (the file's, or a new one) unless
// the database has one, and returns the database's.
func (k *Keyring) setUpSecret(ctx context.Context, path string) ([]byte, error) {
	read := func(p string) ([]byte, error) { return issuer.ReadSecret(p, OAuthSecretLen) }
	fileSecret, err := readOptional(path, read)
	if err != nil {
		return nil, err
	}
	first, what := fileSecret, "imported the OAuth secret from "+path
	if first == nil {
		first, what = make([]byte, OAuthSecretLen), "created the OAuth secret"
		rand.Read(first) // never fails (crypto/rand)
	}
	sealed := k.mk.Seal(secretPurpose(OAuthSecretName), first)
	stored, err := k.st.AddSealedSecret(ctx, OAuthSecretName, sealed)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(stored, sealed) {
		k.log.InfoContext(ctx, "keyring: "+what+" into the database")
	}
	secret, err := k.mk.Open(secretPurpose(OAuthSecretName), stored)
	if err != nil {
		return nil, err
	}
	if len(secret) != OAuthSecretLen {
		return nil, fmt.Errorf("OAuth secret: %d bytes, want %d", len(secret), OAuthSecretLen)
	}
	if fileSecret != nil && !hmac.Equal(secret, fileSecret) {
		return nil, fmt.Errorf("OAuth secret file %s: %w; remove the file (or start this replica on the database it was set up with)", path, ErrFileDiffers)
	}
	return secret, nil
}

// readOptional reads path with read; no path or no file is nil.
func readOptional[T any](path string, read func(string) (T, error)) (T, error) {
	var zero T
	if path == "" {
		return zero, nil
	}
	v, err := read(path)
	if errors.Is(err, fs.ErrNotExist) {
		return zero, nil
	}
	return v, err
}

// OAuthSecret is the OAuth HMAC secret (issuer.Config.GlobalSecret).
func (k *Keyring) OAuthSecret() []byte { return append([]byte(nil), k.secret...) }

// SigningKeys implements issuer.KeySource: the active key and the keys
// retired at or after since.
func (k *Keyring) SigningKeys(ctx context.Context, since time.Time) ([]issuer.SigningKey, error) {
	rows, err := k.st.SigningKeys(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	out := make([]issuer.SigningKey, 0, len(rows))
	for _, row := range rows {
		key, err := k.open(row)
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		sk := issuer.SigningKey{Key: key}
		if row.State != store.SigningKeyActive {
			sk.Retired = time.Unix(0, 0).UTC()
			if row.RetiredAt != nil {
				sk.Retired = *row.RetiredAt
			}
		}
		out = append(out, sk)
	}
	return out, nil
}

// Rotate makes a new key the signing key and retires the active one,
// which keeps verifying the tokens it signed (see issuer.KeyRetention).
// Running replicas sign with the new key from their next read of the keys
// (issuer.DefaultKeyReloadInterval) and verify its tokens at once.
func (k *Keyring) Rotate(ctx context.Context) (retired, active KeyInfo, err error) {
	from, err := k.st.ActiveSigningKey(ctx)
	if err != nil {
		return KeyInfo{}, KeyInfo{}, fmt.Errorf("keyring: rotate: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, signingKeyBits)
	if err != nil {
		return KeyInfo{}, KeyInfo{}, fmt.Errorf("keyring: rotate: create key: %w", err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	row, err := k.seal(key, at)
	if err != nil {
		return KeyInfo{}, KeyInfo{}, fmt.Errorf("keyring: rotate: %w", err)
	}
	if err := k.st.RotateSigningKey(ctx, from.KID, row, at); err != nil {
		return KeyInfo{}, KeyInfo{}, fmt.Errorf("keyring: rotate: %w", err)
	}
	k.log.InfoContext(ctx, "keyring: signing key rotated", "kid", row.KID, "retired", from.KID)
	from.State, from.RetiredAt = store.SigningKeyRetired, &at
	row.State = store.SigningKeyActive
	return info(from, at), info(row, at), nil
}

// seal is key as a row of the database, created at.
func (k *Keyring) seal(key *rsa.PrivateKey, at time.Time) (store.SigningKey, error) {
	kid, err := issuer.KeyID(&key.PublicKey)
	if err != nil {
		return store.SigningKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return store.SigningKey{}, fmt.Errorf("seal signing key: %w", err)
	}
	k.mu.Lock()
	k.keys[kid] = key
	k.mu.Unlock()
	return store.SigningKey{KID: kid, Sealed: k.mk.Seal(keyPurpose(kid), der), CreatedAt: at}, nil
}

// open returns the private key of row, opened once per kid.
func (k *Keyring) open(row store.SigningKey) (*rsa.PrivateKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.keys[row.KID]; ok {
		return key, nil
	}
	der, err := k.mk.Open(keyPurpose(row.KID), row.Sealed)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", row.KID, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", row.KID, err)
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not an RSA key: %T", row.KID, parsed)
	}
	if kid, err := issuer.KeyID(&key.PublicKey); err != nil || kid != row.KID {
		return nil, fmt.Errorf("signing key %s: the sealed key's kid is %s", row.KID, kid)
	}
	k.keys[row.KID] = key
	return key, nil
}

func keyPurpose(kid string) string     { return "signing_key:" + kid }
func secretPurpose(name string) string { return "secret:" + name }

// Displayed states of a key (KeyInfo.State).
const (
	StateActive  = "active"  // it signs
	StateRetired = "retired" // a rotation retired it; it still verifies
	StateExpired = "expired" // every token it signed has expired
)

// KeyInfo describes a signing key, without its secret.
type KeyInfo struct {
	KID       string     `json:"kid"`
	State     string     `json:"state"`
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
	// VerifiesUntil is when a retired key stops verifying tokens and
	// leaves the JWKS (for access tokens of issuer.DefaultAccessTokenTTL).
	VerifiesUntil *time.Time `json:"verifies_until,omitempty"`
}

func info(row store.SigningKey, now time.Time) KeyInfo {
	ki := KeyInfo{KID: row.KID, State: StateActive, CreatedAt: row.CreatedAt, RetiredAt: row.RetiredAt}
	if row.State == store.SigningKeyActive {
		return ki
	}
	ki.State = StateRetired
	if row.RetiredAt != nil {
		until := row.RetiredAt.Add(issuer.KeyRetention(issuer.DefaultAccessTokenTTL))
		ki.VerifiesUntil = &until
		if !now.Before(until) {
			ki.State = StateExpired
		}
	}
	return ki
}

// List describes every signing key of the database, newest first. It
// needs no master key: it shows no secret.
func List(ctx context.Context, st interface {
	SigningKeys(ctx context.Context, since time.Time) ([]store.SigningKey, error)
}) ([]KeyInfo, error) {
	rows, err := st.SigningKeys(ctx, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("keyring: list: %w", err)
	}
	now := time.Now()
	out := make([]KeyInfo, 0, len(rows))
	for _, row := range rows {
		out = append(out, info(row, now))
	}
	return out, nil
}
