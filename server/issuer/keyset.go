package issuer

import (
	"cmp"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// The issuer's signing keys: one that signs, and the keys a rotation
// retired, which keep verifying the tokens they signed (and stay in the
// JWKS) until those have expired. With a Config.SigningKey there is one
// key and nothing changes; with a Config.Keys the set is read again every
// Config.KeyReloadInterval, and at once (at most once a second) when a
// token names a kid the set lacks: a key another replica started signing
// with verifies here on its first token.

// KeySource is where an Issuer's signing keys come from when they live
// outside it: bm-server keeps them in its database, sealed, so that every
// replica signs with the same key and a rotation reaches them all (see
// server/keyring).
type KeySource interface {
	// SigningKeys returns the key that signs now (Retired zero) and the
	// keys a rotation retired at or after since.
	SigningKeys(ctx context.Context, since time.Time) ([]SigningKey, error)
}

// SigningKey is one of a KeySource's keys.
type SigningKey struct {
	Key *rsa.PrivateKey
	// Retired is when a rotation replaced the key (zero: it signs).
	Retired time.Time
}

// Defaults and bounds of the key set.
const (
	// DefaultKeyReloadInterval is how often a KeySource is read again
	// (Config.KeyReloadInterval): how long another replica may go on
	// signing with a key a rotation retired.
	DefaultKeyReloadInterval = 30 * time.Second
	// KeyLeeway is how much longer than the access-token lifetime a
	// retired key keeps verifying: it covers the replicas that sign with
	// it until their next reload and the clocks of replicas that differ.
	KeyLeeway = 5 * time.Minute
	// keyRetryInterval is how soon a failed reload is tried again (the
	// keys already read stay in use meanwhile).
	keyRetryInterval = 5 * time.Second
	// keyLoadTimeout bounds New's first read of a KeySource.
	keyLoadTimeout = 30 * time.Second
)

// KeyRetention is how long after a rotation the retired key still
// verifies tokens (and is published), for an issuer whose access tokens
// live accessTokenTTL (0: DefaultAccessTokenTTL): the lifetime of the last
// token it can have signed, plus KeyLeeway.
func KeyRetention(accessTokenTTL time.Duration) time.Duration {
	if accessTokenTTL <= 0 {
		accessTokenTTL = DefaultAccessTokenTTL
	}
	return accessTokenTTL + KeyLeeway
}

// errUnknownKey: the token's kid is not one of the issuer's keys.
var errUnknownKey = errors.New("unknown key id")

// keyState is one reading of the key set; it is never modified.
type keyState struct {
	signing *rsa.PrivateKey
	kid     string
	verify  map[string]verifyKey
	next    time.Time // when to read the source again
}

type verifyKey struct {
	pub     *rsa.PublicKey
	retired time.Time // zero: the signing key
}

func newKeyState(keys []SigningKey) (*keyState, error) {
	st := &keyState{verify: make(map[string]verifyKey, len(keys))}
	for _, k := range keys {
		if k.Key == nil {
			return nil, errors.New("a nil key")
		}
		if k.Key.N.BitLen() < 2048 {
			return nil, errors.New("signing key shorter than 2048 bits")
		}
		kid, err := KeyID(&k.Key.PublicKey)
		if err != nil {
			return nil, err
		}
		if k.Retired.IsZero() {
			if st.signing != nil {
				return nil, errors.New("more than one active signing key")
			}
			st.signing, st.kid = k.Key, kid
		}
		st.verify[kid] = verifyKey{pub: &k.Key.PublicKey, retired: k.Retired}
	}
	if st.signing == nil {
		return nil, errors.New("no active signing key")
	}
	return st, nil
}

// keyBook holds the current keyState and reads the source again when due.
type keyBook struct {
	src       KeySource // nil: the keys never change
	ttl       time.Duration
	retention time.Duration
	log       *slog.Logger
	now       func() time.Time
	miss      *rate.Limiter // reloads for unknown kids

	mu  sync.Mutex // held while reading the source
	cur atomic.Pointer[keyState]
}

// newKeyBook reads src (or takes key, when src is nil) for the first time.
func newKeyBook(key *rsa.PrivateKey, src KeySource, ttl, retention time.Duration, log *slog.Logger) (*keyBook, error) {
	if ttl <= 0 {
		ttl = DefaultKeyReloadInterval
	}
	b := &keyBook{src: src, ttl: ttl, retention: retention, log: log, now: time.Now,
		miss: rate.NewLimiter(rate.Every(time.Second), 1)}
	if src == nil {
		st, err := newKeyState([]SigningKey{{Key: key}})
		if err != nil {
			return nil, err
		}
		b.cur.Store(st)
		return b, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyLoadTimeout)
	defer cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reloadLocked(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// reloadLocked reads the source; on failure the keys already read (if
// any) stay, and the next try is soon. b.mu is held.
func (b *keyBook) reloadLocked(ctx context.Context) error {
	now := b.now()
	keys, err := b.src.SigningKeys(ctx, now.Add(-b.retention))
	var st *keyState
	if err == nil {
		st, err = newKeyState(keys)
	}
	if err != nil {
		if old := b.cur.Load(); old != nil {
			retry := *old
			retry.next = now.Add(min(b.ttl, keyRetryInterval))
			b.cur.Store(&retry)
		}
		return fmt.Errorf("read signing keys: %w", err)
	}
	if old := b.cur.Load(); old != nil && old.kid != st.kid {
		b.log.InfoContext(ctx, "signing key changed", "kid", st.kid, "previous", old.kid)
	}
	st.next = now.Add(b.ttl)
	b.cur.Store(st)
	return nil
}

// reload reads the source now.
func (b *keyBook) reload(ctx context.Context) error {
	if b.src == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reloadLocked(ctx)
}

// state returns the current keys, first reading the source if it is due
// and no other request is reading it (that one's answer is for the next
// requests).
func (b *keyBook) state(ctx context.Context) *keyState {
	st := b.cur.Load()
	if b.src == nil || b.now().Before(st.next) || !b.mu.TryLock() {
		return st
	}
	defer b.mu.Unlock()
	if st = b.cur.Load(); b.now().Before(st.next) {
		return st
	}
	if err := b.reloadLocked(ctx); err != nil {
		b.log.WarnContext(ctx, "signing keys not read again; the ones read before stay in use", "err", err)
	}
	return b.cur.Load()
}

// lookup returns the key kid of st unless it is unknown or retired longer
// than the retention.
func (b *keyBook) lookup(st *keyState, kid string) (*rsa.PublicKey, bool) {
	k, ok := st.verify[kid]
	if !ok || b.expired(k) {
		return nil, false
	}
	return k.pub, true
}

func (b *keyBook) expired(k verifyKey) bool {
	return !k.retired.IsZero() && !b.now().Before(k.retired.Add(b.retention))
}

// verifier returns the public key of kid. A kid the keys lack makes the
// source be read again at once (one read at a time, at most one a second
// for such kids), so that a key another replica has just started signing
// with verifies on its first token. It fails with errUnknownKey, or with
// keysUnavailable when the source could not be read.
func (b *keyBook) verifier(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if k, ok := b.lookup(b.state(ctx), kid); ok {
		return k, nil
	}
	if b.src == nil {
		return nil, errUnknownKey
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.lookup(b.cur.Load(), kid); ok { // read by another request meanwhile
		return k, nil
	}
	if !b.miss.AllowN(b.now(), 1) {
		return nil, errUnknownKey
	}
	if err := b.reloadLocked(ctx); err != nil {
		b.log.WarnContext(ctx, "signing keys not read again for an unknown kid", "err", err)
		return nil, keysUnavailable{err}
	}
	if k, ok := b.lookup(b.cur.Load(), kid); ok {
		return k, nil
	}
	return nil, errUnknownKey
}

// jwks is the public half of the keys that verify: the signing key first,
// then the retired ones, most recently retired first.
func (b *keyBook) jwks(ctx context.Context) JWKSet {
	st := b.state(ctx)
	type entry struct {
		kid string
		k   verifyKey
	}
	var es []entry
	for kid, k := range st.verify {
		if !b.expired(k) {
			es = append(es, entry{kid, k})
		}
	}
	slices.SortFunc(es, func(x, y entry) int {
		if x.k.retired.IsZero() != y.k.retired.IsZero() {
			if x.k.retired.IsZero() {
				return -1
			}
			return 1
		}
		return cmp.Or(y.k.retired.Compare(x.k.retired), cmp.Compare(x.kid, y.kid))
	})
	set := JWKSet{Keys: make([]JWK, 0, len(es))}
	for _, e := range es {
		n, ev := rsaComponents(e.k.pub)
		set.Keys = append(set.Keys, JWK{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: e.kid, N: n, E: ev})
	}
	return set
}

// keysUnavailable: a token's kid is unknown and the key source could not
// be asked about it; the token may be good (see checkUnavailable: the
// tenant API answers 503, not 401).
type keysUnavailable struct{ err error }

func (e keysUnavailable) Error() string       { return "signing keys unavailable: " + e.err.Error() }
func (e keysUnavailable) Unwrap() error       { return e.err }
func (keysUnavailable) AuthUnavailable() bool { return true }

type signingKeyCtx struct{}

// withSigningKey makes the tokens minted while handling ctx's request be
// signed by st's signing key, the one whose kid their header names, even
// if the keys are read again meanwhile.
func withSigningKey(ctx context.Context, st *keyState) context.Context {
	return context.WithValue(ctx, signingKeyCtx{}, st.signing)
}
