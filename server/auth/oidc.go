// Package auth verifies access tokens from an external OIDC issuer (WorkOS
// AuthKit, Auth0, Keycloak, ...) for the tenant API, as an alternative to
// bm-server's built-in issuer.
//
// NewOIDCVerifier reads the issuer's discovery document (go-oidc checks that
// it names the configured issuer), then verifies each bearer token with
// go-jose: signature by a key of the issuer's JWKS (cached for the TTL the
// issuer's Cache-Control max-age gives, within bounds, and fetched again at
// once when a token names a kid the cache lacks; see jwks.go), an
// algorithm from an allow-list (never "none" nor HS*), the issuer, the
// audience, exp/nbf/iat with a small leeway, and that the token is an
// access token, not an ID token (see TokenType). The tenant and the
// subscription are read from configurable claims (tenant_id or org_id, ...).
package auth

import (
	"context"
	"errors"
	"fmt"
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
	DefaultJWKSTTL                 = 10 * time.Minute
	DefaultJWKSMinTTL              = time.Minute
	DefaultJWKSMaxTTL              = time.Hour
	DefaultMinFetchGap             = time.Second
)

// Token types of Config.TokenType: how an access token is told from an ID
// token (both are JWTs the issuer signs with the same keys, and an ID token
// of the agents' client carries the client id as its audience).
const (
	// TokenTypeAuto (the default) refuses a token whose typ header is not
	// at+jwt (RFC 9068) when the header names another explicit type, a
	// token that carries an ID-token claim (nonce, at_hash, c_hash,
	// s_hash: OpenID Connect defines them for ID tokens alone), and a token
	// whose audience includes the client id while it carries no scope,
	// scp or client_id claim (an ID token's audience is always the client
	// id, and it has none of those; an access token for the client names
	// its scopes or, under RFC 9068, its client_id). A token typed at+jwt
	// is an access token for every issuer that sets the header.
	TokenTypeAuto = "auto"
	// TokenTypeATJWT accepts only tokens whose typ header is at+jwt (or
	// application/at+jwt) and that carry no ID-token claim: the strict
	// RFC 9068 check, for issuers that type their access tokens.
	TokenTypeATJWT = "at+jwt"
	// TokenTypeJWT refuses only tokens with an ID-token claim, for an
	// issuer whose access tokens name the client as their audience and
	// carry neither scopes nor client_id. An ID token without a nonce is
	// then indistinguishable from an access token: give the access tokens
	// an audience of their own (Audience) instead where the issuer can.
	TokenTypeJWT = "jwt"
)

// DefaultAllowedAlgs are the signature algorithms accepted by default.
var DefaultAllowedAlgs = []string{"RS256", "ES256"}

// Errors of Verify. They never quote the token.
var (
	ErrNoToken      = errors.New("auth: no bearer token")
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrIDToken: the token is an ID token (or another kind of JWT), not
	// an access token. It wraps ErrInvalidToken.
	ErrIDToken = fmt.Errorf("%w: not an access token", ErrInvalidToken)
)

// Config configures an OIDCVerifier.
type Config struct {
	// IssuerURL is the issuer exactly as in the tokens' iss claim; discovery
	// is at IssuerURL + "/.well-known/openid-configuration".
	IssuerURL string
	// Audience is what the aud claim must contain; empty means ClientID.
	Audience string
	// ClientID is the OAuth client of the agents (the audience if Audience
	// is empty). One of the two is required. TokenTypeAuto also uses it to
	// tell ID tokens from access tokens.
	ClientID string
	// TokenType is how ID tokens are told from access tokens and refused:
	// TokenTypeAuto (the default), TokenTypeATJWT or TokenTypeJWT.
	TokenType string
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
	// JWKSTTL is how long the fetched JWKS is used before it is fetched
	// again when the issuer's answer has no Cache-Control max-age (default
	// 10 min). A max-age is honoured within JWKSMinTTL (default 1 min, or
	// JWKSTTL if shorter) and JWKSMaxTTL (default 1 h, or JWKSTTL if
	// longer): JWKSMaxTTL bounds how long a key the issuer withdrew is
	// still accepted. A failed fetch keeps the keys and is tried again
	// after JWKSMinTTL.
	JWKSTTL, JWKSMinTTL, JWKSMaxTTL time.Duration
	// MinRefreshInterval is how long a kid that a fetch of the JWKS did not
	// contain is refused without asking the issuer again (default 30s). A
	// kid the cache lacks and no fetch since its arrival looked for makes
	// the JWKS be fetched at once.
	MinRefreshInterval time.Duration
	// MinFetchGap bounds how often the JWKS is fetched at all (default
	// 1s): fetches for unknown kids are shared (one at a time, every
	// waiting request served by it) and spaced by at least this, so that
	// tokens naming made-up kids cannot make the server hammer the issuer.
	MinFetchGap time.Duration
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
	log      *slog.Logger
	jwks     *jwksCache

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
	switch cfg.TokenType {
	case "":
		cfg.TokenType = TokenTypeAuto
	case TokenTypeAuto, TokenTypeATJWT, TokenTypeJWT:
	default:
		return nil, fmt.Errorf("%s: token type %q unknown (want %s, %s or %s)", op, cfg.TokenType, TokenTypeAuto, TokenTypeATJWT, TokenTypeJWT)
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
	if cfg.JWKSTTL <= 0 {
		cfg.JWKSTTL = DefaultJWKSTTL
	}
	if cfg.JWKSMinTTL <= 0 {
		cfg.JWKSMinTTL = min(DefaultJWKSMinTTL, cfg.JWKSTTL)
	}
	if cfg.JWKSMaxTTL <= 0 {
		cfg.JWKSMaxTTL = max(DefaultJWKSMaxTTL, cfg.JWKSTTL)
	}
	if cfg.JWKSMinTTL > cfg.JWKSMaxTTL {
		return nil, fmt.Errorf("%s: JWKS min TTL %s above max TTL %s", op, cfg.JWKSMinTTL, cfg.JWKSMaxTTL)
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.MinFetchGap <= 0 {
		cfg.MinFetchGap = DefaultMinFetchGap
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
	v := &OIDCVerifier{cfg: cfg, audience: aud, algs: algs, log: cfg.Logger, jwks: newJWKSCache(doc.JWKSURI, cfg)}
	if err := v.jwks.fetchSince(ctx, 1); err != nil {
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
	keys, err := v.jwks.keysFor(ctx, kid)
	if err != nil {
		v.log.WarnContext(ctx, "refresh jwks", "err", err)
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
	if err := v.accessToken(tok.Headers[0], std, custom); err != nil {
		return tenantapi.Claims{}, err
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

// idTokenClaims are claims OpenID Connect defines for ID tokens alone
// (Core 1.0 §2, §3.3.2.11; FAPI's s_hash): no access token profile uses
// them.
var idTokenClaims = []string{"nonce", "at_hash", "c_hash", "s_hash"}

// accessTokenClaims are claims an access token for the client carries and
// an ID token does not: its scopes (RFC 9068 §2.2.3, or Okta's and Entra
// ID's scp) or the client it was issued to (RFC 9068 §2.2).
var accessTokenClaims = []string{"scope", "scp", "client_id"}

// accessToken returns nil if the verified token is an access token by
// v's TokenType, or an error wrapping ErrIDToken.
func (v *OIDCVerifier) accessToken(h jose.Header, std jwt.Claims, custom map[string]any) error {
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	typ = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(typ)), "application/")
	for _, name := range idTokenClaims {
		if _, ok := custom[name]; ok {
			return fmt.Errorf("%w: it carries the ID-token claim %s", ErrIDToken, name)
		}
	}
	switch {
	case v.cfg.TokenType == TokenTypeATJWT && typ != "at+jwt":
		return fmt.Errorf("%w: typ header is not at+jwt", ErrIDToken)
	case v.cfg.TokenType == TokenTypeJWT || typ == "at+jwt":
		return nil
	}
	if typ != "" && typ != "jwt" {
		return fmt.Errorf("%w: typ header names another kind of JWT", ErrIDToken)
	}
	if v.cfg.ClientID == "" || !std.Audience.Contains(v.cfg.ClientID) {
		return nil
	}
	for _, name := range accessTokenClaims {
		if _, ok := custom[name]; ok {
			return nil
		}
	}
	return fmt.Errorf("%w: its audience is the client and it names no scope nor client_id, as an ID token", ErrIDToken)
}

// KeyCount is the number of cached keys (for tests and /readyz).
func (v *OIDCVerifier) KeyCount() int { return v.jwks.count() }
