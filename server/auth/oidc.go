// Package auth verifies access tokens from an external OIDC issuer (WorkOS
// AuthKit, Auth0, Keycloak, ...) for the tenant API, as an alternative to
// bm-server's built-in issuer.
//
// NewOIDCVerifier reads the issuer's discovery document (go-oidc checks that
// it names the configured issuer), then verifies each bearer token with
// go-jose: signature by a key of the issuer's JWKS (cached; fetched again
// when a token names an unknown kid, at most once per MinRefreshInterval),
// an algorithm from an allow-list (never "none" nor HS*), the issuer, the
// audience, and exp/nbf/iat with a small leeway. The tenant and the
// subscription are read from configurable claims (tenant_id or org_id, ...).
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Defaults of Config.
const (
	DefaultTenantClaim             = "tenant_id"
	DefaultSubscriptionStatusClaim = "subscription_status"
	DefaultSubscriptionTierClaim   = "subscription_tier"
	DefaultLeeway                  = 60 * time.Second
	DefaultMinRefreshInterval      = 30 * time.Second
)

// DefaultAllowedAlgs are the signature algorithms accepted by default.
var DefaultAllowedAlgs = []string{"RS256", "ES256"}

// Errors of Verify. They never quote the token.
var (
	ErrNoToken      = errors.New("auth: no bearer token")
	ErrInvalidToken = errors.New("auth: invalid token")
)

// Config configures an OIDCVerifier.
type Config struct {
	// IssuerURL is the issuer exactly as in the tokens' iss claim; discovery
	// is at IssuerURL + "/.well-known/openid-configuration".
	IssuerURL string
	// Audience is what the aud claim must contain; empty means ClientID.
	Audience string
	// ClientID is the OAuth client of the agents (the audience if Audience
	// is empty). One of the two is required.
	ClientID string
	// TenantClaim names the claim with the tenant id (default "tenant_id";
	// "org_id" for WorkOS organisations). A dotted name reads a nested
	// object ("org.id").
	TenantClaim string
	// SubscriptionStatusClaim and SubscriptionTierClaim name the
	// subscription claims (defaults "subscription_status" and
	// "subscription_tier"). "-" means the tokens carry none: the store
	// alone decides (see api.Handler.SubscriptionClaimOptional).
	SubscriptionStatusClaim string
	SubscriptionTierClaim   string
	// AllowedAlgs is the allow-list of signature algorithms (default RS256,
	// ES256). "none" and HS* are refused even if listed.
	AllowedAlgs []string
	// Leeway is the clock skew tolerated on exp, nbf and iat (default 60s).
	Leeway time.Duration
	// MinRefreshInterval bounds how often an unknown kid makes the JWKS be
	// fetched again (default 30s).
	MinRefreshInterval time.Duration
	// HTTPClient fetches discovery and JWKS (default: 10s timeout).
	HTTPClient *http.Client
	// AutoProvision, if set, is called the first time (per process) a
	// verified token names a tenant, before the request goes on; it should
	// create the tenant and its bucket if they do not exist (see
	// StoreProvisioner). An error fails the request (as 401).
	AutoProvision func(ctx context.Context, c tenantapi.Claims) error
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// OIDCVerifier verifies access tokens of an external OIDC issuer. It
// implements api.Authenticator.
type OIDCVerifier struct {
	cfg      Config
	audience string
	algs     []jose.SignatureAlgorithm
	jwksURL  string
	log      *slog.Logger

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	lastRefresh time.Time
	refreshing  chan struct{} // non-nil while a fetch is under way

	provisioned sync.Map // tenant id -> struct{}
}

// NewOIDCVerifier fetches the issuer's discovery document and JWKS and
// returns a verifier.
func NewOIDCVerifier(ctx context.Context, cfg Config) (*OIDCVerifier, error) {
	const op = "oidc verifier"
	if cfg.IssuerURL == "" {
		return nil, fmt.Errorf("%s: an issuer URL is required", op)
	}
	aud := cfg.Audience
	if aud == "" {
		aud = cfg.ClientID
	}
	if aud == "" {
		return nil, fmt.Errorf("%s: an audience or client id is required", op)
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = DefaultTenantClaim
	}
	if cfg.SubscriptionStatusClaim == "" {
		cfg.SubscriptionStatusClaim = DefaultSubscriptionStatusClaim
	}
	if cfg.SubscriptionTierClaim == "" {
		cfg.SubscriptionTierClaim = DefaultSubscriptionTierClaim
	}
	if len(cfg.AllowedAlgs) == 0 {
		cfg.AllowedAlgs = DefaultAllowedAlgs
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	algs, err := allowList(cfg.AllowedAlgs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, cfg.HTTPClient), cfg.IssuerURL)
	if err != nil {
		return nil, fmt.Errorf("%s: discovery: %w", op, err)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKSURI == "" {
		return nil, fmt.Errorf("%s: discovery: no jwks_uri", op)
	}
	v := &OIDCVerifier{cfg: cfg, audience: aud, algs: algs, jwksURL: doc.JWKSURI, log: cfg.Logger}
	if err := v.refresh(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return v, nil
}

// allowList turns names into algorithms, refusing none and HMAC.
func allowList(names []string) ([]jose.SignatureAlgorithm, error) {
	var out []jose.SignatureAlgorithm
	for _, n := range names {
		n = strings.TrimSpace(n)
		switch strings.ToUpper(n) {
		case "", "NONE":
			return nil, fmt.Errorf("algorithm %q not allowed", n)
		case "HS256", "HS384", "HS512":
			return nil, fmt.Errorf("algorithm %q not allowed: a shared secret cannot be verified with a public key set", n)
		}
		switch a := jose.SignatureAlgorithm(n); a {
		case jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
			jose.PS256, jose.PS384, jose.PS512, jose.EdDSA:
			out = append(out, a)
		default:
			return nil, fmt.Errorf("algorithm %q unknown", n)
		}
	}
	return out, nil
}

// Authenticate verifies the request's bearer token. It implements
// api.Authenticator.
func (v *OIDCVerifier) Authenticate(r *http.Request) (tenantapi.Claims, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		return tenantapi.Claims{}, ErrNoToken
	}
	c, err := v.Verify(r.Context(), strings.TrimSpace(tok))
	if err != nil {
		return tenantapi.Claims{}, err
	}
	if v.cfg.AutoProvision != nil && c.TenantID != "" {
		if _, done := v.provisioned.Load(c.TenantID); !done {
			if err := v.cfg.AutoProvision(r.Context(), c); err != nil {
				v.log.ErrorContext(r.Context(), "auto-provision tenant", "tenant", c.TenantID, "err", err)
				return tenantapi.Claims{}, fmt.Errorf("auth: provision tenant: %w", err)
			}
			v.provisioned.Store(c.TenantID, struct{}{})
		}
	}
	return c, nil
}

// Verify checks raw and returns its claims. Errors wrap ErrInvalidToken
// and never quote the token.
func (v *OIDCVerifier) Verify(ctx context.Context, raw string) (tenantapi.Claims, error) {
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		return tenantapi.Claims{}, fmt.Errorf("%w: parse: %w", ErrInvalidToken, err)
	}
	if len(tok.Headers) != 1 {
		return tenantapi.Claims{}, fmt.Errorf("%w: %d signatures", ErrInvalidToken, len(tok.Headers))
	}
	kid := tok.Headers[0].KeyID
	var std jwt.Claims
	var custom map[string]any
	keys := v.candidates(kid)
	if len(keys) == 0 && kid != "" {
		// A rotated key: fetch the JWKS again (rate-limited) and retry.
		if err := v.refreshForKid(ctx); err != nil {
			v.log.WarnContext(ctx, "refresh jwks", "err", err)
		}
		keys = v.candidates(kid)
	}
	if len(keys) == 0 {
		return tenantapi.Claims{}, fmt.Errorf("%w: unknown signing key", ErrInvalidToken)
	}
	var verr error
	for _, k := range keys {
		if verr = tok.Claims(k.Key, &std, &custom); verr == nil {
			break
		}
	}
	if verr != nil {
		return tenantapi.Claims{}, fmt.Errorf("%w: signature: %w", ErrInvalidToken, verr)
	}
	if std.Expiry == nil {
		return tenantapi.Claims{}, fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.cfg.IssuerURL,
		AnyAudience: jwt.Audience{v.audience},
		Time:        v.cfg.Now(),
	}, v.cfg.Leeway); err != nil {
		return tenantapi.Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	c := tenantapi.Claims{
		Subject:  std.Subject,
		Email:    str(custom, "email"),
		TenantID: str(custom, v.cfg.TenantClaim),
	}
	if v.cfg.SubscriptionStatusClaim != "-" {
		c.SubscriptionStatus = str(custom, v.cfg.SubscriptionStatusClaim)
	}
	if v.cfg.SubscriptionTierClaim != "-" {
		c.SubscriptionTier = str(custom, v.cfg.SubscriptionTierClaim)
	}
	return c, nil
}

// str reads a string claim; a dotted name walks nested objects. Numbers
// are formatted (some issuers use numeric org ids).
func str(m map[string]any, name string) string {
	var cur any = m
	for _, part := range strings.Split(name, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = obj[part]
	}
	switch x := cur.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprintf("%.0f", x)
	}
	return ""
}

// candidates returns the cached keys that may have signed a token with kid
// (all signing keys when kid is empty).
func (v *OIDCVerifier) candidates(kid string) []jose.JSONWebKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []jose.JSONWebKey
	for _, k := range v.keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// refreshForKid fetches the JWKS again unless it was fetched less than
// MinRefreshInterval ago, so that tokens naming made-up kids cannot make
// the server hammer the issuer.
func (v *OIDCVerifier) refreshForKid(ctx context.Context) error { return v.refreshIf(ctx, false) }

// refresh fetches the JWKS now.
func (v *OIDCVerifier) refresh(ctx context.Context) error { return v.refreshIf(ctx, true) }

// refreshIf fetches the JWKS and replaces the cached keys; unless force, not
// within MinRefreshInterval of the last fetch. Concurrent callers share one
// fetch. A failed fetch keeps the cached keys.
func (v *OIDCVerifier) refreshIf(ctx context.Context, force bool) error {
	v.mu.Lock()
	if ch := v.refreshing; ch != nil {
		v.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("refresh jwks: %w", ctx.Err())
		}
	}
	if !force && v.cfg.Now().Sub(v.lastRefresh) < v.cfg.MinRefreshInterval {
		v.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	v.refreshing = ch
	v.lastRefresh = v.cfg.Now()
	v.mu.Unlock()
	keys, err := v.fetchJWKS(context.WithoutCancel(ctx))
	v.mu.Lock()
	if err == nil {
		v.keys = keys
	}
	v.refreshing = nil
	v.mu.Unlock()
	close(ch)
	return err
}

func (v *OIDCVerifier) fetchJWKS(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.jwksURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch jwks: decode: %w", err)
	}
	var out []jose.JSONWebKey
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() {
			continue // never accept a symmetric or private key from a JWKS
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("fetch jwks: no usable public key")
	}
	return out, nil
}

// KeyCount is the number of cached keys (for tests and /readyz).
func (v *OIDCVerifier) KeyCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.keys)
}
