package server

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/keyring"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// The built-in issuer's signing keys and OAuth secret. Without a master
// key they are DataDir's issuer.pem and oauth.secret, made on the first
// start (one machine; replicas must share the two files). With one they
// live in the database, sealed (server/keyring): the first start imports
// the two files if they exist, every replica reads the same key and
// secret, and `bm-server keys rotate` changes the key for all of them.

// Names of the files in DataDir.
const (
	issuerKeyFile   = "issuer.pem"
	oauthSecretFile = "oauth.secret"
	// embeddedKeyFile is the embedded S3 endpoint's key (it derives the
	// secrets of the keys it mints), not the master key.
	embeddedKeyFile = "master.key"
)

// keyFiles are the issuer's files in cfg's data dir.
func (cfg Config) keyFiles() keyring.Files {
	return keyring.Files{
		SigningKey:  filepath.Join(cfg.DataDir, issuerKeyFile),
		OAuthSecret: filepath.Join(cfg.DataDir, oauthSecretFile),
	}
}

// masterKey is cfg's master key, or nil if none is configured.
func (cfg Config) masterKey() (*keyring.MasterKey, error) {
	switch {
	case cfg.MasterKey != "" && cfg.MasterKeyFile != "":
		return nil, fmt.Errorf("master key: set %s or --master-key-file, not both", EnvMasterKey)
	case cfg.MasterKey != "":
		mk, err := keyring.ParseMasterKey(cfg.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvMasterKey, err)
		}
		return mk, nil
	case cfg.MasterKeyFile != "":
		if filepath.Clean(cfg.MasterKeyFile) == filepath.Join(cfg.DataDir, embeddedKeyFile) {
			return nil, fmt.Errorf("master key: --master-key-file %s is the embedded S3 endpoint's own key file; keep the master key in another file", cfg.MasterKeyFile)
		}
		return keyring.ReadMasterKeyFile(cfg.MasterKeyFile)
	}
	return nil, nil
}

// issuerKeys returns what the built-in issuer signs with (a key, or a
// source of rotated keys) and its OAuth secret. A database set up with a
// master key refuses a server without one (its issuer.pem would split
// the fleet); on PostgreSQL without a master key, a warning says that
// replicas must share the files.
func (s *Server) issuerKeys(ctx context.Context) (*rsa.PrivateKey, issuer.KeySource, []byte, error) {
	cfg := s.cfg
	files := cfg.keyFiles()
	mk, err := cfg.masterKey()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server: %w", err)
	}
	if mk != nil {
		kr, err := keyring.Open(ctx, s.store, mk, files, cfg.Logger.With("component", "keyring"))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("server: %w", err)
		}
		s.log.Info("the issuer's signing keys and OAuth secret are the database's, sealed with the master key")
		return nil, kr, kr.OAuthSecret(), nil
	}
	if err := keyring.CheckNoMasterKey(ctx, s.store); err != nil {
		return nil, nil, nil, fmt.Errorf("server: %w", err)
	}
	if s.store.Dialect() == store.DialectPostgres {
		s.log.Warn("no master key: the issuer's signing key and OAuth secret are files of the data dir, and every replica on this database must have the same two; set "+
			EnvMasterKey+" or --master-key-file (the same on every replica) to keep them in the database instead",
			"signing_key", files.SigningKey, "oauth_secret", files.OAuthSecret)
	}
	signing, err := issuer.LoadOrCreateKey(files.SigningKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server: issuer key: %w", err)
	}
	secret, err := issuer.LoadOrCreateSecret(files.OAuthSecret, keyring.OAuthSecretLen)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("server: oauth secret: %w", err)
	}
	return signing, nil, secret, nil
}

// ErrNoMasterKey: a command that needs the master key was given none.
var ErrNoMasterKey = errors.New("no master key (set " + EnvMasterKey + " or --master-key-file): without one the issuer's signing key is the data dir's " + issuerKeyFile + ", which only replacing the file on every server changes")

// RotateSigningKey makes a new key the built-in issuer's signing key in
// cfg's database (set up first, as a server start would, if it is not)
// and retires the active one, which keeps verifying the tokens it signed
// until they have expired. Running servers sign with the new key within
// issuer.DefaultKeyReloadInterval and verify its tokens at once. It needs
// the master key.
func RotateSigningKey(ctx context.Context, cfg Config) (retired, active keyring.KeyInfo, err error) {
	mk, err := cfg.masterKey()
	if err != nil {
		return retired, active, fmt.Errorf("rotate signing key: %w", err)
	}
	if mk == nil {
		return retired, active, fmt.Errorf("rotate signing key: %w", ErrNoMasterKey)
	}
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return retired, active, fmt.Errorf("rotate signing key: %w", err)
	}
	defer st.Close()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kr, err := keyring.Open(ctx, st, mk, cfg.keyFiles(), log)
	if err != nil {
		return retired, active, fmt.Errorf("rotate signing key: %w", err)
	}
	return kr.Rotate(ctx)
}

// ListSigningKeys describes the built-in issuer's signing keys in cfg's
// database, newest first (none without a master key: the key is then the
// data dir's issuer.pem). It shows no secret and needs no master key.
func ListSigningKeys(ctx context.Context, cfg Config) ([]keyring.KeyInfo, error) {
	st, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer st.Close()
	return keyring.List(ctx, st)
}
