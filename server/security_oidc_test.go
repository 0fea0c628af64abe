package server

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// oidcServer runs the server in OIDC mode against oi, with the default
// audience (the client id) unless mod sets one.
func oidcServer(t *testing.T, oi *oidcIssuer, mod func(*Config)) *running {
	t.Helper()
	return serve(t, func(c *Config) {
		c.DemoEmail = ""
		c.AuthMode = AuthOIDC
		c.OIDCIssuer = oi.srv.URL
		c.OIDCTenantClaim = "org_id"
		c.OIDCAutoProvision = true
		if mod != nil {
			mod(c)
		}
	})
}

// TestSecurityOIDCIDToken: in OIDC mode with the default audience (the
// agents' client id, which is also every ID token's audience), an ID token
// of that client is refused as a bearer token, with a nonce or without (a
// device login's), while the issuer's access tokens are accepted. Before,
// any token of the issuer with the client as audience was accepted.
func TestSecurityOIDCIDToken(t *testing.T) {
	oi := newOIDCIssuer(t)
	r := oidcServer(t, oi, nil)
	client := tenantapi.DefaultClientID
	tests := []struct {
		name string
		tok  string
		want int
	}{
		{"access token with scope", oi.signed(t, nil, "k1", "JWT", client, "org_a", time.Hour, map[string]any{"scope": tenantapi.DefaultScopes}), http.StatusOK},
		{"RFC 9068 access token", oi.signed(t, nil, "k1", "at+jwt", client, "org_a", time.Hour, map[string]any{"client_id": client}), http.StatusOK},
		{"ID token with nonce", oi.signed(t, nil, "k1", "JWT", client, "org_a", time.Hour, map[string]any{"nonce": "n-0S6_WzA2Mj", "name": "Dev"}), http.StatusUnauthorized},
		{"ID token with at_hash", oi.signed(t, nil, "k1", "JWT", client, "org_a", time.Hour, map[string]any{"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}), http.StatusUnauthorized},
		{"ID token of a device login", oi.signed(t, nil, "k1", "JWT", client, "org_a", time.Hour, map[string]any{"auth_time": time.Now().Unix()}), http.StatusUnauthorized},
		{"logout token", oi.signed(t, nil, "k1", "logout+jwt", client, "org_a", time.Hour, map[string]any{"scope": "x"}), http.StatusUnauthorized},
	}
	var idTokens, idRefused, accessTokens, accessAccepted int
	for _, tt := range tests {
		resp, body := get(t, r.URL()+tenantapi.PathMountInfo, tt.tok, nil)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: mount info = %d %s, want %d", tt.name, resp.StatusCode, body, tt.want)
		}
		if tt.want == http.StatusOK {
			accessTokens++
			if resp.StatusCode == http.StatusOK {
				accessAccepted++
			}
		} else {
			idTokens++
			if resp.StatusCode == http.StatusUnauthorized {
				idRefused++
			}
		}
	}
	t.Logf("FIGURE oidc: with the default audience (the client id), %d of %d ID-token (and other non-access) shapes refused 401, %d of %d access-token shapes accepted",
		idRefused, idTokens, accessAccepted, accessTokens)
}

// TestSecurityOIDCWithdrawnKey: a key the issuer withdraws from its JWKS
// stops being accepted once the keys' TTL has passed (1 s here; 10 min by
// default, or the JWKS answer's max-age within 1 min..1 h), and a key it
// publishes is accepted on its first token, however recent the last fetch.
// Before, a withdrawn key stayed accepted until a token with an unknown
// kid forced a fetch, and a key published within 30 s of the last fetch
// had its tokens refused for the rest of those 30 s.
func TestSecurityOIDCWithdrawnKey(t *testing.T) {
	oi := newOIDCIssuer(t)
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	oi.publish("k2", k2)
	const ttl = time.Second
	r := oidcServer(t, oi, func(c *Config) { c.OIDCAudience = "bm-api"; c.OIDCJWKSTTL = ttl })
	tok := oi.signed(t, k2, "k2", "JWT", "bm-api", "org_a", time.Hour, nil)
	if resp, body := get(t, r.URL()+tenantapi.PathMountInfo, tok, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("k2's token while published = %d %s", resp.StatusCode, body)
	}
	oi.withdraw("k2")
	withdrawn := time.Now()
	accepted := 0
	var took time.Duration
	for {
		resp, _ := get(t, r.URL()+tenantapi.PathMountInfo, tok, nil)
		if resp.StatusCode == http.StatusUnauthorized {
			took = time.Since(withdrawn)
			break
		}
		accepted++
		if time.Since(withdrawn) > 60*time.Second {
			t.Fatalf("the withdrawn key's token still accepted %s after withdrawal (TTL %s)", time.Since(withdrawn).Round(time.Second), ttl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("FIGURE oidc: a withdrawn key refused %s after withdrawal (JWKS TTL %s), after %d more accepted requests", took.Round(time.Millisecond), ttl, accepted)

	// A key published right after that fetch is accepted on its first token.
	k3, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	oi.publish("k3", k3)
	start := time.Now()
	resp, body := get(t, r.URL()+tenantapi.PathMountInfo, oi.signed(t, k3, "k3", "JWT", "bm-api", "org_a", time.Hour, nil), nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("first token of a key published just after a fetch = %d %s, want 200", resp.StatusCode, body)
	}
	t.Logf("FIGURE oidc: a key published just after a JWKS fetch: its first token answered %d in %s", resp.StatusCode, time.Since(start).Round(time.Millisecond))
}
