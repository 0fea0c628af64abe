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
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.jwk}, (&jose.SignerOptions{}).WithType("JWT"))
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

func TestKeyRotation(t *testing.T) {
	ti := newIssuer(t)
	k1, k2 := rsaKey(t, "k1"), rsaKey(t, "k2")
	ti.serve(k1.jwk)
	clk := &clock{t: t0}
	v, err := NewOIDCVerifier(context.Background(), Config{IssuerURL: ti.srv.URL, ClientID: "bm-agent", Now: clk.now, MinRefreshInterval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if n := ti.jwksFetchs.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times at start", n)
	}
	claims := func() jwt.Claims {
		return jwt.Claims{Issuer: ti.srv.URL, Audience: jwt.Audience{"bm-agent"}, Subject: "u", Expiry: jwt.NewNumericDate(clk.now().Add(time.Hour))}
	}
	custom := map[string]any{"tenant_id": "T"}
	// The issuer rotates to k2 (keeping k1 published for a while).
	ti.serve(k1.jwk, k2.jwk)
	clk.add(time.Second)
	if _, err := v.Authenticate(request(sign(t, k2, claims(), custom))); err == nil {
		t.Error("k2 accepted before a refresh was allowed")
	}
	if n := ti.jwksFetchs.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times within the refresh interval, want 1", n)
	}
	clk.add(30 * time.Second)
	if _, err := v.Authenticate(request(sign(t, k2, claims(), custom))); err != nil {
		t.Errorf("k2 after rotation: %v", err)
	}
	if n := ti.jwksFetchs.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2", n)
	}
	// Tokens with made-up kids do not make the verifier hammer the issuer.
	for i := range 20 {
		clk.add(time.Second)
		_, _ = v.Authenticate(request(sign(t, rsaKey(t, "junk"+string(rune('a'+i))), claims(), custom)))
	}
	if n := ti.jwksFetchs.Load(); n > 3 {
		t.Errorf("JWKS fetched %d times for 20 unknown kids in 20s, want at most 3", n)
	}
	// k1 is still accepted from the cache without a fetch.
	before := ti.jwksFetchs.Load()
	if _, err := v.Authenticate(request(sign(t, k1, claims(), custom))); err != nil {
		t.Errorf("k1: %v", err)
	}
	if ti.jwksFetchs.Load() != before {
		t.Error("a known kid caused a fetch")
	}
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
