package issuer

import (
	"context"
	"crypto/rsa"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite/token/jwt"
	"golang.org/x/oauth2"
)

// fakeKeys is a KeySource in memory, shared by the issuers of a test as a
// database is by replicas.
type fakeKeys struct {
	mu    sync.Mutex
	keys  []SigningKey
	reads int
	err   error
}

func newFakeKeys(k *rsa.PrivateKey) *fakeKeys { return &fakeKeys{keys: []SigningKey{{Key: k}}} }

func (f *fakeKeys) SigningKeys(_ context.Context, since time.Time) ([]SigningKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return nil, f.err
	}
	var out []SigningKey
	for _, k := range f.keys {
		if k.Retired.IsZero() || !k.Retired.Before(since) {
			out = append(out, k)
		}
	}
	return out, nil
}

// rotate retires the signing key at at and makes next the signing key.
func (f *fakeKeys) rotate(next *rsa.PrivateKey, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.keys {
		if f.keys[i].Retired.IsZero() {
			f.keys[i].Retired = at
		}
	}
	f.keys = append(f.keys, SigningKey{Key: next})
}

func (f *fakeKeys) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func (f *fakeKeys) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func kidOf(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	kid, err := KeyID(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

func jwksKids(s JWKSet) []string {
	var out []string
	for _, k := range s.Keys {
		out = append(out, k.Kid)
	}
	return out
}

func sameKids(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestKeyRotation: after a rotation the new key signs and names itself in
// the token's header; the JWKS holds both keys, the new one first; a token
// signed before the rotation still verifies, and a token of the new key
// verifies at once on another issuer of the same keys and sessions that
// had not read them since the rotation. Once the old key's tokens have
// all expired (retired longer ago than KeyRetention), it leaves the JWKS
// and its tokens are refused.
func TestKeyRotation(t *testing.T) {
	sqlOnly(t) // the other replica shares the sessions of the database
	src := newFakeKeys(testKey())
	e := newEnv(t, func(c *Config) { c.SigningKey, c.Keys = nil, src })
	// Another replica, on the same keys and sessions, that will not read
	// the keys again on its own during the test.
	other, _ := e.replica(t, nil)
	other.keys.ttl = time.Hour
	if err := other.ReloadKeys(t.Context()); err != nil {
		t.Fatal(err)
	}

	k1, k2 := kidOf(t, testKey()), kidOf(t, otherKey())
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	old, err := conf.Exchange(t.Context(), e.login(t, conf, verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := decodeJWT(t, old.AccessToken); h["kid"] != k1 {
		t.Fatalf("token before the rotation has kid %v, want %s", h["kid"], k1)
	}

	src.rotate(otherKey(), time.Now())
	if err := e.iss.ReloadKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.iss.KeyID() != k2 {
		t.Errorf("KeyID after the rotation = %s, want %s", e.iss.KeyID(), k2)
	}
	if got := jwksKids(e.iss.JWKS()); !sameKids(got, k2, k1) {
		t.Errorf("JWKS after the rotation = %v, want [%s %s] (the new key first)", got, k2, k1)
	}
	// A refresh now: the new key signs, and says so in the header.
	fresh, err := refreshWith(t, conf, old.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := decodeJWT(t, fresh.AccessToken); h["kid"] != k2 {
		t.Errorf("token after the rotation has kid %v, want %s", h["kid"], k2)
	}
	for name, iss := range map[string]*Issuer{"this issuer": e.iss, "the other replica": other} {
		for _, tc := range []struct{ what, tok string }{{"token signed before the rotation", old.AccessToken}, {"token of the new key", fresh.AccessToken}} {
			if _, err := iss.Verify(t.Context(), tc.tok); err != nil {
				t.Errorf("%s: %s: %v", name, tc.what, err)
			}
		}
	}
	if other.KeyID() != k2 {
		t.Errorf("the other replica signs with %s after reading the keys for the new kid, want %s", other.KeyID(), k2)
	}

	// The rotation was long enough ago that every token of the old key
	// has expired: the old key is dropped.
	src.mu.Lock()
	src.keys[0].Retired = time.Now().Add(-KeyRetention(e.cfg.AccessTokenTTL) - time.Second)
	src.mu.Unlock()
	if err := e.iss.ReloadKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := jwksKids(e.iss.JWKS()); !sameKids(got, k2) {
		t.Errorf("JWKS once the old key's tokens expired = %v, want [%s]", got, k2)
	}
	if _, err := e.iss.Verify(t.Context(), old.AccessToken); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token of the dropped key: %v, want ErrInvalidToken", err)
	}
	if _, err := e.iss.Verify(t.Context(), fresh.AccessToken); err != nil {
		t.Errorf("a token of the new key after the old one was dropped: %v", err)
	}
}

// TestKeyBookReloads: the keys are read again once the reload interval
// has passed, and at once for an unknown kid (then not again within a
// second, whatever the kid); a failed read keeps the keys read before,
// and an unknown kid the source could not be asked about is "unavailable"
// (the token may be good), not invalid.
func TestKeyBookReloads(t *testing.T) {
	src := newFakeKeys(testKey())
	b, err := newKeyBook(nil, src, time.Minute, time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	b.now = func() time.Time { return clock }
	if err := b.reload(t.Context()); err != nil { // due at clock + 1 min
		t.Fatal(err)
	}
	k1, k2 := kidOf(t, testKey()), kidOf(t, otherKey())
	reads := src.readCount()

	src.rotate(otherKey(), clock)
	if st := b.state(t.Context()); st.kid != k1 || src.readCount() != reads {
		t.Fatalf("before the interval: signing %s after %d reads, want %s and no read", st.kid, src.readCount()-reads, k1)
	}
	clock = clock.Add(time.Minute)
	if st := b.state(t.Context()); st.kid != k2 || src.readCount() != reads+1 {
		t.Fatalf("after the interval: signing %s after %d reads, want %s after one", st.kid, src.readCount()-reads, k2)
	}

	// An unknown kid: one read, then none for other unknown kids within a second.
	reads = src.readCount()
	if _, err := b.verifier(t.Context(), "nope-1"); !errors.Is(err, errUnknownKey) || src.readCount() != reads+1 {
		t.Errorf("unknown kid: %v after %d reads; want errUnknownKey after one", err, src.readCount()-reads)
	}
	if _, err := b.verifier(t.Context(), "nope-2"); !errors.Is(err, errUnknownKey) || src.readCount() != reads+1 {
		t.Errorf("second unknown kid within a second: %v after %d reads; want errUnknownKey and no read", err, src.readCount()-reads)
	}
	for _, kid := range []string{k1, k2} { // known keys need no read
		if _, err := b.verifier(t.Context(), kid); err != nil || src.readCount() != reads+1 {
			t.Errorf("known kid %s: %v after %d reads", kid, err, src.readCount()-reads)
		}
	}

	// The source fails: the keys stay, an unknown kid is unavailable.
	src.setErr(errors.New("database down"))
	clock = clock.Add(2 * time.Minute)
	if st := b.state(t.Context()); st.kid != k2 {
		t.Errorf("after a failed read: signing %s, want %s kept", st.kid, k2)
	}
	if _, err := b.verifier(t.Context(), k1); err != nil {
		t.Errorf("a known key after a failed read: %v", err)
	}
	var un interface{ AuthUnavailable() bool }
	if _, err := b.verifier(t.Context(), "nope-3"); !errors.As(err, &un) || !un.AuthUnavailable() {
		t.Errorf("unknown kid while the source fails: %v, want an unavailable error", err)
	}
	// A failed read is tried again soon, not after the whole interval.
	src.setErr(nil)
	reads = src.readCount()
	clock = clock.Add(keyRetryInterval)
	b.state(t.Context())
	if src.readCount() != reads+1 {
		t.Errorf("%d reads %s after a failed one, want one", src.readCount()-reads, keyRetryInterval)
	}
}

// TestKeySourceRefusals: New refuses a source without a signing key or
// with two, or that cannot be read.
func TestKeySourceRefusals(t *testing.T) {
	cases := map[string]*fakeKeys{
		"no active key":  {keys: []SigningKey{{Key: testKey(), Retired: time.Now()}}},
		"two active":     {keys: []SigningKey{{Key: testKey()}, {Key: otherKey()}}},
		"source failing": {err: errors.New("database down")},
		"nil key":        {keys: []SigningKey{{}}},
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := Config{IssuerURL: "http://127.0.0.1:8787", Keys: src, Accounts: newFakeAccounts(), GlobalSecret: make([]byte, 32)}
			if _, err := New(cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// TestVerifyWhileKeysUnavailable: a token naming a kid the issuer lacks,
// while its key source cannot be read, is "unavailable" (the tenant API
// answers 503: the token may be good), not an invalid token; a token of a
// key already read still verifies its signature.
func TestVerifyWhileKeysUnavailable(t *testing.T) {
	src := newFakeKeys(testKey())
	e := newEnv(t, func(c *Config) { c.SigningKey, c.Keys = nil, src })
	src.setErr(errors.New("database down"))
	signer := &jwt.DefaultSigner{GetPrivateKey: func(context.Context) (any, error) { return otherKey(), nil }}
	claims := jwt.MapClaims{"iss": e.srv.URL, "sub": "user_ada", "aud": []string{Audience},
		"exp": time.Now().Add(time.Hour).Unix(), "sid": "s1"}
	raw, _, err := signer.Generate(t.Context(), claims, &jwt.Headers{Extra: map[string]any{"kid": kidOf(t, otherKey())}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.iss.Verify(t.Context(), raw)
	var un interface{ AuthUnavailable() bool }
	if !errors.As(err, &un) || errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify with an unknown kid while the keys cannot be read = %v; want unavailable, not invalid", err)
	}
}
