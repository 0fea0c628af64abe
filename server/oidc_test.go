package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/basicmachines-co/bm-agent/server/auth"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// oidcIssuer is an external OIDC issuer on 127.0.0.1: discovery and a
// JWKS with one RSA key ("k1") to begin with, keys the test can publish
// and withdraw, and a way to sign tokens.
type oidcIssuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey // k1

	mu     sync.Mutex
	served map[string]*rsa.PrivateKey // kid -> key published in the JWKS
}

func newOIDCIssuer(t *testing.T) *oidcIssuer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	oi := &oidcIssuer{key: k, served: map[string]*rsa.PrivateKey{"k1": k}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                oi.srv.URL,
			"authorization_endpoint":                oi.srv.URL + "/authorize",
			"token_endpoint":                        oi.srv.URL + "/token",
			"jwks_uri":                              oi.srv.URL + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		oi.mu.Lock()
		defer oi.mu.Unlock()
		var set jose.JSONWebKeySet
		for kid, k := range oi.served {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	oi.srv = httptest.NewServer(mux)
	t.Cleanup(oi.srv.Close)
	return oi
}

// publish adds key to the JWKS as kid; withdraw removes kid.
func (oi *oidcIssuer) publish(kid string, key *rsa.PrivateKey) {
	oi.mu.Lock()
	defer oi.mu.Unlock()
	oi.served[kid] = key
}

func (oi *oidcIssuer) withdraw(kid string) {
	oi.mu.Lock()
	defer oi.mu.Unlock()
	delete(oi.served, kid)
}

// token signs claims for tenant with key (the issuer's own if nil) as k1.
func (oi *oidcIssuer) token(t *testing.T, key *rsa.PrivateKey, aud, tenant string, ttl time.Duration) string {
	t.Helper()
	return oi.signed(t, key, "k1", "JWT", aud, tenant, ttl, nil)
}

// signed signs a token with key (k1's if nil) naming kid and typ, for aud
// and tenant, with extra claims.
func (oi *oidcIssuer) signed(t *testing.T, key *rsa.PrivateKey, kid, typ, aud, tenant string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	if key == nil {
		key = oi.key
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{
		"org_id": tenant, "email": "dev@example.com",
		"subscription_status": "active", "subscription_tier": "pro",
	}
	for k, v := range extra {
		claims[k] = v
	}
	tok, err := jwt.Signed(s).Claims(jwt.Claims{
		Issuer: oi.srv.URL, Subject: "user-1", Audience: jwt.Audience{aud},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl)),
	}).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestOIDCMode runs the server with --auth-mode oidc against an external
// issuer: its tokens are accepted (the tenant is provisioned on first use,
// from a configured claim, with the subscription of the token), others
// are refused, and the built-in issuer is not served.
func TestOIDCMode(t *testing.T) {
	oi := newOIDCIssuer(t)
	r := serve(t, func(c *Config) {
		c.DemoEmail = "" // no built-in accounts here
		c.AuthMode = AuthOIDC
		c.OIDCIssuer = oi.srv.URL
		c.OIDCAudience = "bm-api"
		c.OIDCTenantClaim = "org_id"
		c.OIDCAutoProvision = true
	})

	good := oi.token(t, nil, "bm-api", "org_acme", time.Hour)
	resp, body := get(t, r.URL()+tenantapi.PathMountInfo, good, nil)
	var info tenantapi.MountInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("mount info = %d %s", resp.StatusCode, body)
	}
	if info.TenantID != "org_acme" || info.BucketName != auth.BucketName("org_acme") {
		t.Errorf("mount info = %+v", info)
	}
	if tn, err := r.Store().TenantByID(context.Background(), "org_acme"); err != nil || tn.BucketName != info.BucketName {
		t.Errorf("provisioned tenant = %+v, %v", tn, err)
	}
	var st tenantapi.TenantStatus
	if resp, body := get(t, r.URL()+tenantapi.PathTenantStatus, good, nil); resp.StatusCode != http.StatusOK ||
		json.Unmarshal([]byte(body), &st) != nil || st.SubscriptionStatus != "active" || st.SubscriptionTier != "pro" {
		t.Errorf("tenant status = %d %s", resp.StatusCode, body)
	}
	if names, err := r.Provider().ListBuckets(context.Background()); err != nil || !strings.Contains(strings.Join(names, ","), info.BucketName) {
		t.Errorf("buckets = %v, %v; want %s", names, err, info.BucketName)
	}

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct{ name, token string }{
		{"no token", ""},
		{"wrong audience", oi.token(t, nil, "someone-else", "org_acme", time.Hour)},
		{"expired", oi.token(t, nil, "bm-api", "org_acme", -time.Hour)},
		{"foreign key", oi.token(t, other, "bm-api", "org_acme", time.Hour)},
	}
	for _, tt := range refused {
		if resp, body := get(t, r.URL()+tenantapi.PathMountInfo, tt.token, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: mount info = %d %s, want 401", tt.name, resp.StatusCode, body)
		}
	}

	// The built-in issuer's routes are not served.
	for _, path := range []string{"/.well-known/openid-configuration", "/oauth2/jwks"} {
		if resp, _ := get(t, r.URL()+path, "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d in oidc mode, want 404", path, resp.StatusCode)
		}
	}
}
