package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// testIssuer is an OIDC issuer on 127.0.0.1: discovery and a JWKS whose
// keys the test can rotate.
type testIssuer struct {
	srv        *httptest.Server
	mu         sync.Mutex
	keys       []jose.JSONWebKey // public keys served
	cache      string            // Cache-Control of the JWKS, if set
	jwksFetchs atomic.Int32
}

func newIssuer(t *testing.T) *testIssuer {
	t.Helper()
	ti := &testIssuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                ti.srv.URL,
			"authorization_endpoint":                ti.srv.URL + "/authorize",
			"token_endpoint":                        ti.srv.URL + "/token",
			"jwks_uri":                              ti.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksFetchs.Add(1)
		ti.mu.Lock()
		defer ti.mu.Unlock()
		if ti.cache != "" {
			w.Header().Set("Cache-Control", ti.cache)
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: ti.keys})
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

func (ti *testIssuer) serve(keys ...jose.JSONWebKey) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = nil
	for _, k := range keys {
		ti.keys = append(ti.keys, k.Public())
	}
}

type signingKey struct {
	jwk jose.JSONWebKey
	alg jose.SignatureAlgorithm
}

func rsaKey(t *testing.T, kid string) signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: "RS256", Use: "sig"}, jose.RS256}
}

func ecKey(t *testing.T, kid string) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{jose.JSONWebKey{Key: k, KeyID: kid, Algorithm: "ES256", Use: "sig"}, jose.ES256}
}

func sign(t *testing.T, k signingKey, std jwt.Claims, custom map[string]any) string {
	t.Helper()
	return signTyp(t, k, "JWT", std, custom)
}

// signTyp signs with typ as the typ header (none if empty).
func signTyp(t *testing.T, k signingKey, typ string, std jwt.Claims, custom map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.jwk}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(std).Claims(custom).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func request(tok string) *http.Request {
	r := httptest.NewRequest("GET", "/tenant/mount/info", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

func TestVerify(t *testing.T) {
	ti := newIssuer(t)
	k1, kec := rsaKey(t, "k1"), ecKey(t, "ec1")
	ti.serve(k1.jwk, kec.jwk)
	clk := &clock{t: t0}
	v, err := NewOIDCVerifier(context.Background(), Config{IssuerURL: ti.srv.URL, Audience: "bm-api", Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	std := func(mod func(*jwt.Claims)) jwt.Claims {
		c := jwt.Claims{
			Issuer:   ti.srv.URL,
			Subject:  "user-1",
			Audience: jwt.Audience{"bm-api"},
			IssuedAt: jwt.NewNumericDate(t0.Add(-time.Minute)),
			Expiry:   jwt.NewNumericDate(t0.Add(time.Hour)),
		}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	custom := map[string]any{"tenant_id": "T1", "email": "a@example.com", "subscription_status": "active", "subscription_tier": "pro"}
	want := tenantapi.Claims{Subject: "user-1", Email: "a@example.com", TenantID: "T1", SubscriptionStatus: "active", SubscriptionTier: "pro"}

	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
		(&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	hsTok, err := jwt.Signed(hs).Claims(std(nil)).Claims(custom).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	noneTok := b64(map[string]string{"alg": "none", "kid": "k1"}) + "." + b64(map[string]any{
		"iss": ti.srv.URL, "aud": "bm-api", "sub": "user-1", "exp": t0.Add(time.Hour).Unix(), "tenant_id": "T1"}) + "."
	other := rsaKey(t, "k1") // same kid, key the issuer never published

	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"valid RS256", sign(t, k1, std(nil), custom), true},
		{"valid ES256", sign(t, kec, std(nil), custom), true},
		{"wrong issuer", sign(t, k1, std(func(c *jwt.Claims) { c.Issuer = "https://evil.example" }), custom), false},
		{"wrong audience", sign(t, k1, std(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other"} }), custom), false},
		{"expired beyond leeway", sign(t, k1, std(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(-2 * time.Minute)) }), custom), false},
		{"expired within leeway", sign(t, k1, std(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(t0.Add(-30 * time.Second)) }), custom), true},
		{"not yet valid", sign(t, k1, std(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(t0.Add(5 * time.Minute)) }), custom), false},
		{"issued slightly in the future", sign(t, k1, std(func(c *jwt.Claims) { c.IssuedAt = jwt.NewNumericDate(t0.Add(30 * time.Second)) }), custom), true},
		{"no exp", sign(t, k1, std(func(c *jwt.Claims) { c.Expiry = nil }), custom), false},
		{"alg none", noneTok, false},
		{"HS256 with a known kid", hsTok, false},
		{"forged signature", sign(t, other, std(nil), custom), false},
		{"garbage", "not.a.jwt", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Authenticate(request(tc.tok))
			if tc.ok {
				if err != nil || got != want {
					t.Errorf("= %+v, %v; want %+v", got, err, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			if strings.Contains(err.Error(), tc.tok) {
				t.Error("error quotes the token")
			}
		})
	}
	if _, err := v.Authenticate(request("")); !errors.Is(err, ErrNoToken) {
		t.Errorf("no token: %v", err)
	}
}

// TestKeyRotation: a key the issuer has just published is accepted at
// once, however recent the last fetch of the JWKS; a kid a fresh fetch did
// not find is not looked for again within MinRefreshInterval; a known kid
// costs no fetch. Before, a rotation within 30 s of the last fetch made
// the new key's tokens fail for the rest of the 30 s.
func TestKeyRotation(t *testing.T) {
	ti := newIssuer(t)
	k1, k2, k3 := rsaKey(t, "k1"), rsaKey(t, "k2"), ecKey(t, "k3")
	ti.serve(k1.jwk)
	clk := &clock{t: t0}
	v, err := NewOIDCVerifier(context.Background(), Config{IssuerURL: ti.srv.URL, ClientID: "bm-agent", Now: clk.now,
		MinRefreshInterval: 30 * time.Second, MinFetchGap: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if n := ti.jwksFetchs.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times at start", n)
	}
	claims := func() jwt.Claims {
		return jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{"bm-agent"}, Subject: "u", Expiry: jwt.NewNumericDate(clk.now().Add(time.Hour))}
	}
	custom := map[string]any{"tenant_id": "T", "scope": "openid offline_access"}
	// The issuer rotates to k2 (keeping k1 published for a while), a
	// second after the last fetch.
	ti.serve(k1.jwk, k2.jwk)
	clk.add(time.Second)
	if _, err := v.Authenticate(request(sign(t, k2, claims(), custom))); err != nil {
		t.Errorf("k2 a second after the last fetch: %v", err)
	}
	if n := ti.jwksFetchs.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2", n)
	}
	// And again to k3, at once.
	ti.serve(k2.jwk, k3.jwk)
	if _, err := v.Authenticate(request(sign(t, k3, claims(), custom))); err != nil {
		t.Errorf("k3 right after the fetch that found k2: %v", err)
	}
	// A kid that a fetch did not find is not looked for again for a while.
	junk := rsaKey(t, "junk")
	before := ti.jwksFetchs.Load()
	for range 20 {
		clk.add(time.Second)
		if _, err := v.Authenticate(request(sign(t, junk, claims(), custom))); err == nil {
			t.Fatal("a kid the issuer never published was accepted")
		}
	}
	if n := ti.jwksFetchs.Load() - before; n != 1 {
		t.Errorf("JWKS fetched %d times for one unknown kid sent 20 times in 20s, want 1", n)
	}
	// k2 is still accepted from the cache without a fetch.
	before = ti.jwksFetchs.Load()
	if _, err := v.Authenticate(request(sign(t, k2, claims(), custom))); err != nil {
		t.Errorf("k2: %v", err)
	}
	if ti.jwksFetchs.Load() != before {
		t.Error("a known kid caused a fetch")
	}
	if _, err := v.Authenticate(request(sign(t, k1, claims(), custom))); err == nil {
		t.Error("k1 accepted after a fetch that no longer had it")
	}
}

// TestUnknownKidFlood: tokens naming made-up kids, sent as fast as 8
// clients can, make at most one fetch per MinFetchGap, while a key the
// issuer publishes meanwhile is accepted.
func TestUnknownKidFlood(t *testing.T) {
	ti := newIssuer(t)
	k1 := ecKey(t, "k1")
	ti.serve(k1.jwk)
	const gap = 100 * time.Millisecond
	v, err := NewOIDCVerifier(context.Background(), Config{IssuerURL: ti.srv.URL, Audience: "bm-api", MinFetchGap: gap})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{"bm-api"}, Subject: "u", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	custom := map[string]any{"tenant_id": "T"}
	junk := make([]string, 300)
	for i := range junk {
		k := k1
		k.jwk.KeyID = fmt.Sprintf("junk-%d", i)
		junk[i] = sign(t, k, claims, custom)
	}
	var next atomic.Int32
	var refused atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	before := ti.jwksFetchs.Load()
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := junk[int(next.Add(1))%len(junk)]
				if _, err := v.Authenticate(request(tok)); err != nil {
					refused.Add(1)
				} else {
					t.Error("a made-up kid was accepted")
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	k2 := ecKey(t, "k2")
	ti.serve(k1.jwk, k2.jwk)
	published := time.Now()
	if _, err := v.Authenticate(request(sign(t, k2, claims, custom))); err != nil {
		t.Errorf("k2 published during the flood: %v", err)
	}
	took := time.Since(published)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	el := time.Since(start)
	fetches := ti.jwksFetchs.Load() - before
	t.Logf("FIGURE oidc unknown-kid flood: %d tokens refused, %d JWKS fetches in %s (gap %s); a new key accepted %s after publication",
		refused.Load(), fetches, el.Round(time.Millisecond), gap, took.Round(time.Millisecond))
	if limit := int32(el/gap) + 2; fetches > limit {
		t.Errorf("%d JWKS fetches in %s, want at most %d (one per %s)", fetches, el, limit, gap)
	}
}

// TestJWKSTTL: keys are fetched again when their TTL has passed (the
// issuer's max-age within bounds, else JWKSTTL), so a key the issuer
// withdrew is refused from then on. Before, it was accepted until an
// unknown kid forced a fetch.
func TestJWKSTTL(t *testing.T) {
	tests := []struct {
		name         string
		cacheControl string
		cfg          Config
		stillCached  time.Duration // a withdrawn key is still accepted then
		refreshed    time.Duration // and refused then
	}{
		{"default TTL", "", Config{}, DefaultJWKSTTL - time.Second, DefaultJWKSTTL},
		{"configured TTL", "", Config{JWKSTTL: 2 * time.Minute}, 2*time.Minute - time.Second, 2 * time.Minute},
		{"max-age", "public, max-age=300", Config{}, 299 * time.Second, 300 * time.Second},
		{"max-age below the minimum", "max-age=5", Config{}, DefaultJWKSMinTTL - time.Second, DefaultJWKSMinTTL},
		{"max-age above the maximum", "max-age=604800", Config{}, DefaultJWKSMaxTTL - time.Second, DefaultJWKSMaxTTL},
		{"configured maximum", "max-age=604800", Config{JWKSMaxTTL: 3 * time.Hour}, 3*time.Hour - time.Second, 3 * time.Hour},
		{"no-store", "no-store", Config{}, DefaultJWKSMinTTL - time.Second, DefaultJWKSMinTTL},
	}
	k1, k2 := ecKey(t, "k1"), ecKey(t, "k2")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ti := newIssuer(t)
			ti.serve(k1.jwk, k2.jwk)
			ti.cache = tc.cacheControl
			clk := &clock{t: t0}
			cfg := tc.cfg
			cfg.IssuerURL, cfg.Audience, cfg.Now = ti.srv.URL, "bm-api", clk.now
			v, err := NewOIDCVerifier(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			tok := sign(t, k2, jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{"bm-api"}, Subject: "u",
				Expiry: jwt.NewNumericDate(t0.Add(24 * time.Hour))}, map[string]any{"tenant_id": "T"})
			if _, err := v.Authenticate(request(tok)); err != nil {
				t.Fatalf("k2 while published: %v", err)
			}
			ti.serve(k1.jwk) // k2 withdrawn
			clk.add(tc.stillCached)
			ti.expect(t, v, "withdrawn k2 within the TTL (cached)", tok, true, 1)
			clk.add(tc.refreshed - tc.stillCached)
			ti.expect(t, v, "withdrawn k2 after the TTL", tok, false, 2)
		})
	}
}

// TestJWKSFetchFailure: an issuer whose JWKS fails keeps the cached keys
// in use, and the fetch is tried again after JWKSMinTTL, not per request.
func TestJWKSFetchFailure(t *testing.T) {
	ti := newIssuer(t)
	k1 := rsaKey(t, "k1")
	ti.serve(k1.jwk)
	clk := &clock{t: t0}
	v, err := NewOIDCVerifier(context.Background(), Config{IssuerURL: ti.srv.URL, Audience: "bm-api", Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, k1, jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{"bm-api"}, Subject: "u",
		Expiry: jwt.NewNumericDate(t0.Add(24 * time.Hour))}, map[string]any{"tenant_id": "T"})
	ti.serve() // an empty set: no usable key, the fetch fails
	clk.add(DefaultJWKSTTL)
	for range 5 {
		ti.expect(t, v, "k1 while the JWKS fails (one failed try)", tok, true, 2)
	}
	ti.serve(k1.jwk)
	clk.add(DefaultJWKSMinTTL)
	ti.expect(t, v, "k1 once the JWKS answers (tried again after the minimum TTL)", tok, true, 3)
}

// expect checks that v accepts tok (or refuses it, !ok) and that the JWKS
// has then been fetched fetches times in all.
func (ti *testIssuer) expect(t *testing.T, v *OIDCVerifier, what, tok string, ok bool, fetches int32) {
	t.Helper()
	_, err := v.Authenticate(request(tok))
	if ok && err != nil {
		t.Errorf("%s: refused: %v", what, err)
	} else if !ok && !errors.Is(err, ErrInvalidToken) {
		t.Errorf("%s: = %v, want refused", what, err)
	}
	if n := ti.jwksFetchs.Load(); n != fetches {
		t.Errorf("%s: JWKS fetched %d times, want %d", what, n, fetches)
	}
}

// TestIDTokenRefused: an ID token of the agents' client is not accepted
// as an access token, under each TokenType; access tokens of the usual
// shapes are. Before, any signed token with the audience passed.
func TestIDTokenRefused(t *testing.T) {
	ti := newIssuer(t)
	k := rsaKey(t, "k1")
	ti.serve(k.jwk)
	const client = "bm-agent"
	tok := func(typ string, aud string, custom map[string]any) string {
		c := map[string]any{"tenant_id": "T"}
		for n, v := range custom {
			c[n] = v
		}
		return signTyp(t, k, typ, jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{aud}, Subject: "u",
			IssuedAt: jwt.NewNumericDate(t0), Expiry: jwt.NewNumericDate(t0.Add(time.Hour))}, c)
	}
	type want struct{ auto, atjwt, jwt bool } // accepted under each type
	tests := []struct {
		name     string
		audience string // Config.Audience ("": the client id)
		tok      string
		want     want
	}{
		{"RFC 9068 access token", "", tok("at+jwt", client, map[string]any{"client_id": client}), want{true, true, true}},
		{"RFC 9068 media type", "", tok("application/AT+JWT", client, nil), want{true, true, true}},
		{"access token with scope", "", tok("JWT", client, map[string]any{"scope": "openid offline_access"}), want{true, false, true}},
		{"access token with scp", "", tok("JWT", client, map[string]any{"scp": []string{"sync"}}), want{true, false, true}},
		{"access token with client_id, no typ", "", tok("", client, map[string]any{"client_id": client}), want{true, false, true}},
		{"access token for an API audience", "bm-api", tok("JWT", "bm-api", nil), want{true, false, true}},
		{"ID token with nonce", "", tok("JWT", client, map[string]any{"nonce": "n-1", "email": "a@example.com"}), want{false, false, false}},
		{"ID token with at_hash", "", tok("JWT", client, map[string]any{"at_hash": "abc"}), want{false, false, false}},
		{"ID token with c_hash", "", tok("", client, map[string]any{"c_hash": "abc"}), want{false, false, false}},
		{"ID token typed at+jwt with nonce", "", tok("at+jwt", client, map[string]any{"nonce": "n"}), want{false, false, false}},
		{"ID token of a device login (no nonce)", "", tok("JWT", client, map[string]any{"email": "a@example.com", "auth_time": t0.Unix()}), want{false, false, true}},
		{"ID token with two audiences", "bm-api", tok("JWT", "bm-api", nil), want{true, false, true}},
		{"another kind of JWT", "", tok("logout+jwt", client, map[string]any{"scope": "x"}), want{false, false, true}},
	}
	modes := []struct {
		typ  string
		pick func(want) bool
	}{
		{"", func(w want) bool { return w.auto }},
		{TokenTypeATJWT, func(w want) bool { return w.atjwt }},
		{TokenTypeJWT, func(w want) bool { return w.jwt }},
	}
	for _, m := range modes {
		verifiers := map[string]*OIDCVerifier{}
		for _, aud := range []string{"", "bm-api"} {
			v, err := NewOIDCVerifier(context.Background(), Config{IssuerURL: ti.srv.URL, ClientID: client, Audience: aud,
				TokenType: m.typ, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			verifiers[aud] = v
		}
		for _, tc := range tests {
			t.Run(firstNonEmpty(m.typ, TokenTypeAuto)+"/"+tc.name, func(t *testing.T) {
				_, err := verifiers[tc.audience].Authenticate(request(tc.tok))
				if ok := m.pick(tc.want); ok && err != nil {
					t.Errorf("refused: %v", err)
				} else if !ok && !errors.Is(err, ErrIDToken) {
					t.Errorf("= %v, want ErrIDToken", err)
				}
			})
		}
	}
	if _, err := NewOIDCVerifier(context.Background(), Config{IssuerURL: ti.srv.URL, ClientID: client, TokenType: "id"}); err == nil {
		t.Error("an unknown token type was accepted")
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func TestCustomClaims(t *testing.T) {
	ti := newIssuer(t)
	k := rsaKey(t, "k1")
	ti.serve(k.jwk)
	tests := []struct {
		name   string
		cfg    Config
		custom map[string]any
		want   tenantapi.Claims
	}{
		{
			name:   "org_id",
			cfg:    Config{TenantClaim: "org_id", SubscriptionStatusClaim: "https://bm/sub", SubscriptionTierClaim: "plan"},
			custom: map[string]any{"org_id": "org_01H", "tenant_id": "not-this", "https://bm/sub": "trialing", "plan": "team"},
			want:   tenantapi.Claims{Subject: "u", TenantID: "org_01H", SubscriptionStatus: "trialing", SubscriptionTier: "team"},
		},
		{
			name:   "nested and numeric",
			cfg:    Config{TenantClaim: "org.id"},
			custom: map[string]any{"org": map[string]any{"id": 4217}, "subscription_status": "active"},
			want:   tenantapi.Claims{Subject: "u", TenantID: "4217", SubscriptionStatus: "active"},
		},
		{
			name:   "no subscription claims",
			cfg:    Config{SubscriptionStatusClaim: "-", SubscriptionTierClaim: "-"},
			custom: map[string]any{"tenant_id": "T", "subscription_status": "active"},
			want:   tenantapi.Claims{Subject: "u", TenantID: "T"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.IssuerURL, cfg.Audience, cfg.Now = ti.srv.URL, "aud", func() time.Time { return t0 }
			v, err := NewOIDCVerifier(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			tok := sign(t, k, jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{"aud"}, Subject: "u", Expiry: jwt.NewNumericDate(t0.Add(time.Hour))}, tc.custom)
			got, err := v.Authenticate(request(tok))
			if err != nil || got != tc.want {
				t.Errorf("= %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	ti := newIssuer(t)
	ti.serve(rsaKey(t, "k1").jwk)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no issuer", Config{Audience: "a"}},
		{"no audience", Config{IssuerURL: ti.srv.URL}},
		{"HS256 allowed", Config{IssuerURL: ti.srv.URL, Audience: "a", AllowedAlgs: []string{"RS256", "HS256"}}},
		{"none allowed", Config{IssuerURL: ti.srv.URL, Audience: "a", AllowedAlgs: []string{"none"}}},
		{"issuer mismatch", Config{IssuerURL: ti.srv.URL + "/other", Audience: "a"}},
	}
	for _, tc := range tests {
		if _, err := NewOIDCVerifier(context.Background(), tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// bucketProvider is the part of a storage.Provider provisioning uses.
type bucketProvider struct {
	storage.Provider
	mu      sync.Mutex
	buckets []string
}

func (p *bucketProvider) CreateBucket(_ context.Context, b string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buckets = append(p.buckets, b)
	return nil
}

func TestAutoProvision(t *testing.T) {
	ti := newIssuer(t)
	k := rsaKey(t, "k1")
	ti.serve(k.jwk)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "bm.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateTenant(context.Background(), store.Tenant{ID: "existing", BucketName: "b-existing", SubscriptionStatus: "canceled"}); err != nil {
		t.Fatal(err)
	}
	prov := &bucketProvider{}
	v, err := NewOIDCVerifier(context.Background(), Config{
		IssuerURL: ti.srv.URL, Audience: "aud", TenantClaim: "org_id", Now: func() time.Time { return t0 },
		AutoProvision: StoreProvisioner(st, prov, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := func(org string) string {
		return sign(t, k, jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{"aud"}, Subject: "u", Expiry: jwt.NewNumericDate(t0.Add(time.Hour))},
			map[string]any{"org_id": org, "subscription_status": "active", "subscription_tier": "pro"})
	}
	for range 3 {
		if _, err := v.Authenticate(request(tok("Org_01H"))); err != nil {
			t.Fatal(err)
		}
	}
	tn, err := st.TenantByID(context.Background(), "Org_01H")
	if err != nil || tn.BucketName != "basic-memory-org-01h" || tn.SubscriptionStatus != "active" || tn.SubscriptionTier != "pro" || tn.Status != store.TenantActive {
		t.Errorf("provisioned tenant = %+v, %v", tn, err)
	}
	if _, err := v.Authenticate(request(tok("existing"))); err != nil {
		t.Fatal(err)
	}
	if tn, _ := st.TenantByID(context.Background(), "existing"); tn.SubscriptionStatus != "canceled" {
		t.Errorf("existing tenant changed: %+v", tn)
	}
	prov.mu.Lock()
	defer prov.mu.Unlock()
	if len(prov.buckets) != 1 || prov.buckets[0] != "basic-memory-org-01h" {
		t.Errorf("buckets created = %v, want one", prov.buckets)
	}
	ev, _ := st.ListAudit(context.Background(), "Org_01H", 10)
	if len(ev) != 1 || ev[0].Kind != AuditTenantProvisioned {
		t.Errorf("audit = %+v", ev)
	}
}

func TestBucketName(t *testing.T) {
	tests := map[string]string{
		"3f2a-uuid":             "basic-memory-3f2a-uuid",
		"Org_01H":               "basic-memory-org-01h",
		strings.Repeat("a", 80): "basic-memory-" + strings.Repeat("a", 50),
	}
	for in, want := range tests {
		if got := BucketName(in); got != want {
			t.Errorf("BucketName(%q) = %q, want %q", in, got, want)
		}
	}
}
