package issuer

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite/token/jwt"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Errors of Verify and Authenticate.
var (
	// ErrNoToken: the request has no bearer token.
	ErrNoToken = errors.New("no bearer token")
	// ErrInvalidToken: the token is malformed, badly signed, expired or not
	// an access token of this issuer.
	ErrInvalidToken = errors.New("invalid access token")
)

// JWK is a public JSON Web Key (RFC 7517), RSA only.
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// JWKSet is the body of GET /oauth2/jwks.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the public keys that verify this issuer's tokens: the
// signing key first, then the keys a rotation retired whose tokens may
// not have expired yet.
func (i *Issuer) JWKS() JWKSet { return i.keys.jwks(context.Background()) }

// KeyID returns the kid of the signing key: its RFC 7638 thumbprint.
func (i *Issuer) KeyID() string { return i.keys.cur.Load().kid }

// ReloadKeys reads the Config.Keys source again now rather than at the
// next KeyReloadInterval (after a rotation this process made); without
// a source it does nothing.
func (i *Issuer) ReloadKeys(ctx context.Context) error {
	if err := i.keys.reload(ctx); err != nil {
		return fmt.Errorf("issuer: reload keys: %w", err)
	}
	return nil
}

func rsaComponents(pub *rsa.PublicKey) (n, e string) {
	enc := base64.RawURLEncoding
	return enc.EncodeToString(pub.N.Bytes()), enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
}

// KeyID is the kid of pub: its RFC 7638 JWK thumbprint, SHA-256 over the
// required members in lexical order, base64url.
func KeyID(pub *rsa.PublicKey) (string, error) {
	n, e := rsaComponents(pub)
	b, err := json.Marshal(struct {
		E   string `json:"e"`
		Kty string `json:"kty"`
		N   string `json:"n"`
	}{e, "RSA", n})
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// Verify checks an access token minted by this issuer: RS256 signature by
// the key named in its kid header, iss, aud (Audience), exp (required),
// sub, and that its session (sid, required) is live, and returns its
// claims. Whether a session is live comes from a cache of the store's
// answers (Config.SessionCacheTTL), so a session ended by another process
// is refused within the TTL. Errors wrap ErrInvalidToken, and also
// ErrSessionEnded for an ended session.
func (i *Issuer) Verify(ctx context.Context, rawAccessToken string) (tenantapi.Claims, error) {
	var keyErr error // the parser's error does not wrap the key function's
	tok, err := jwt.ParseWithClaims(rawAccessToken, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		if t.Method != "RS256" {
			return nil, fmt.Errorf("unexpected signing algorithm %q", t.Method)
		}
		kid, _ := t.Header["kid"].(string)
		pub, err := i.keys.verifier(ctx, kid)
		keyErr = err
		return pub, err
	})
	var unavailable keysUnavailable
	if errors.As(keyErr, &unavailable) {
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w", unavailable)
	}
	if err != nil {
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w: %w", ErrInvalidToken, err)
	}
	m := tok.Claims
	now := time.Now().Unix()
	switch {
	case !m.VerifyExpiresAt(now, true):
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w: expired or no exp", ErrInvalidToken)
	case !m.VerifyIssuer(i.issuer, true):
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w: wrong issuer", ErrInvalidToken)
	case !m.VerifyAudience(Audience, true):
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w: wrong audience", ErrInvalidToken)
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	c := tenantapi.Claims{
		Subject:            str("sub"),
		Email:              str(claimEmail),
		TenantID:           str(claimTenantID),
		SubscriptionStatus: str(claimSubscriptionStatus),
		SubscriptionTier:   str(claimSubscriptionTier),
	}
	if c.Subject == "" {
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w: no subject", ErrInvalidToken)
	}
	if c.SessionID = str(claimSessionID); c.SessionID == "" {
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w: %w: no session id", ErrInvalidToken, ErrSessionEnded)
	}
	live, err := i.sessions.live(ctx, c.SessionID, c.Subject, false)
	if err != nil {
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w", err)
	}
	if !live {
		return tenantapi.Claims{}, fmt.Errorf("verify access token: %w: %w", ErrInvalidToken, ErrSessionEnded)
	}
	return c, nil
}

// Authenticate reads "Authorization: Bearer <token>" from r and verifies
// the token with Verify. It satisfies the tenant API's Authenticator.
func (i *Issuer) Authenticate(r *http.Request) (tenantapi.Claims, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return tenantapi.Claims{}, fmt.Errorf("authenticate: %w", ErrNoToken)
	}
	c, err := i.Verify(r.Context(), token)
	if err != nil {
		return tenantapi.Claims{}, fmt.Errorf("authenticate: %w", err)
	}
	return c, nil
}
