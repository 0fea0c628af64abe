// Package issuer is bm-server's built-in OAuth 2.0 / OpenID Connect issuer,
// used when bm-server is self-hosted instead of relying on an external
// identity provider.
//
// The protocol work is done by github.com/ory/fosite: the authorization code
// grant with PKCE (required, S256 only), the device authorization grant
// (RFC 8628, also with PKCE; see device.go for what is hand-written and
// why), the refresh token grant with
// rotation, OpenID Connect id_tokens and token revocation. Access tokens are
// RS256-signed JWTs whose tenant claims (tenant_id, subscription_status,
// subscription_tier, email) sit at the top level of the payload, with sid,
// the session (login) they belong to. Refresh tokens and authorization
// codes are opaque HMAC tokens.
//
// The signing key is Config.SigningKey, or comes from Config.Keys, which
// can rotate it: a retired key stays in the JWKS and verifies the tokens it
// signed until they have expired (see keyset.go).
//
// Sessions can be ended: by a logout (POST /oauth2/revoke), by a used
// refresh token or authorization code coming back (the whole family is
// revoked), and by the operator for all of a person's sessions
// (EndSubjectSessions: a password change, a disabled account). An ended
// session's refresh tokens stop working at once; SessionLive, which the
// routes minting and listing keys ask, refuses its access tokens at once;
// Verify refuses them once its cache of session validity
// (Config.SessionCacheTTL, 30 s by default) has expired, in this process
// at once. Config.OnSessionsEnded is told, so that the keys a session
// minted are revoked with it.
//
// There is one public client, tenantapi.DefaultClientID ("bm-agent"), with
// no secret (token endpoint auth method "none") and the loopback redirect
// URIs http://127.0.0.1/callback and http://localhost/callback on any port
// (RFC 8252 section 7.3).
//
// Authorization codes, PKCE and OpenID Connect sessions, token sessions and
// device grants live in Config.Storage (bm-server's SQL store; see
// storage.go), so a restart logs nobody out and replicas sharing the
// database serve one login; expired rows are deleted as new ones are
// written. Without a Storage they are kept in memory. Accounts come from
// the Accounts interface.
package issuer

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/token/jwt"

	"github.com/basicmachines-co/bm-agent/server/limit"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Routes served by Register, relative to the issuer URL.
const (
	PathDiscovery = tenantapi.PathDiscovery
	PathAuthorize = "/oauth2/authorize"
	PathToken     = "/oauth2/token"
	PathJWKS      = "/oauth2/jwks"
	PathRevoke    = "/oauth2/revoke"
)

// Audience is the aud claim of every access token this issuer mints: the
// tenant API. Verify rejects tokens without it (id_tokens, whose audience is
// the client id, are therefore not accepted as access tokens).
const Audience = "bm-api"

// Scopes the client may ask for.
var Scopes = []string{"openid", "profile", "email", "offline_access"}

// Loopback redirect URIs registered for the client; any port is accepted.
var RedirectURIs = []string{"http://127.0.0.1/callback", "http://localhost/callback"}

// Defaults for Config.
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	authorizeCodeTTL       = 10 * time.Minute
)

// Accounts is where the issuer finds people and their tenants.
type Accounts interface {
	// Authenticate checks an email and password and returns the account's subject (id).
	Authenticate(ctx context.Context, email, password string) (subject string, err error)
	// Claims returns the claims to put in an access token for subject.
	Claims(ctx context.Context, subject string) (tenantapi.Claims, error)
}

// Config configures an Issuer. The caller persists SigningKey (or keeps
// its keys in Keys) and GlobalSecret (see LoadOrCreateKey and
// LoadOrCreateSecret) so tokens survive a restart.
type Config struct {
	// IssuerURL is the iss claim and the base of every endpoint URL, e.g.
	// http://127.0.0.1:8787 (a trailing slash is removed). Register serves
	// the routes at the root of the mux, so IssuerURL must name that root.
	IssuerURL string
	// SigningKey signs access tokens and id_tokens (RS256).
	SigningKey *rsa.PrivateKey
	// Keys, when set, replaces SigningKey: the keys come from there and
	// can be rotated (see KeySource); it is read again every
	// KeyReloadInterval (default DefaultKeyReloadInterval) and when a
	// token names a kid the issuer lacks. A retired key verifies for
	// KeyRetention(AccessTokenTTL) after its rotation.
	Keys              KeySource
	KeyReloadInterval time.Duration
	// Accounts authenticates people and supplies token claims.
	Accounts Accounts
	// AccessTokenTTL defaults to one hour, RefreshTokenTTL to 30 days.
	AccessTokenTTL, RefreshTokenTTL time.Duration
	// GlobalSecret is at least 32 random bytes; it keys fosite's HMAC
	// strategy (authorization codes, refresh tokens) and the login form's
	// CSRF tokens.
	GlobalSecret []byte
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Storage keeps codes, token sessions and device grants; bm-server
	// passes its *store.Store. Nil keeps them in memory, lost on restart.
	Storage Storage
	// DeviceCodeTTL is how long a device code waits for approval (default
	// 10 minutes); DeviceInterval the polling interval it asks for (default
	// 5 s, at least 1 s).
	DeviceCodeTTL, DeviceInterval time.Duration
	// Limits bounds what anonymous callers may ask (device codes, the
	// verification page, sign-in attempts); zero fields take defaults.
	Limits Limits
	// LimitBackend counts them (nil: limit.Local, this process's
	// memory); bm-server passes a shared one (pglimit) on PostgreSQL, so
	// that the limits hold across its replicas.
	LimitBackend limit.Backend
	// SessionCacheTTL is how long Verify trusts what the store said of a
	// token's session (default DefaultSessionCacheTTL; negative: ask the
	// store on every Verify). It bounds how long another process or
	// replica still accepts the access tokens of an ended session.
	SessionCacheTTL time.Duration
	// OnSessionsEnded, if set, is told the ids of sessions just ended and
	// why (one of the End* reasons), with a context that outlives the
	// request; bm-server revokes the keys they minted. It runs before the
	// request that ended them is answered.
	OnSessionsEnded func(ctx context.Context, sids []string, reason string)
}

// Issuer is the built-in OAuth 2.0 / OIDC issuer. Create it with New and
// serve it with Register.
type Issuer struct {
	issuer   string
	accounts Accounts
	keys     *keyBook
	csrfKey  []byte
	secure   bool // issuer URL is https: cookies get Secure
	log      *slog.Logger
	provider fosite.OAuth2Provider
	signer   jwt.Signer
	store    *oauthStore
	devices  *deviceStore
	lim      *limiters
	sessions *sessionBook
}

// New builds an Issuer from cfg.
func New(cfg Config) (*Issuer, error) {
	iss := strings.TrimRight(cfg.IssuerURL, "/")
	u, err := url.Parse(iss)
	switch {
	case err != nil:
		return nil, fmt.Errorf("issuer: new: issuer URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, fmt.Errorf("issuer: new: issuer URL %q must be an absolute http(s) URL", cfg.IssuerURL)
	case cfg.SigningKey == nil && cfg.Keys == nil:
		return nil, errors.New("issuer: new: no signing key")
	case cfg.Accounts == nil:
		return nil, errors.New("issuer: new: no accounts")
	case len(cfg.GlobalSecret) < 32:
		return nil, fmt.Errorf("issuer: new: global secret must be at least 32 bytes, got %d", len(cfg.GlobalSecret))
	}
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.DeviceCodeTTL <= 0 {
		cfg.DeviceCodeTTL = DefaultDeviceCodeTTL
	}
	if cfg.DeviceInterval <= 0 {
		cfg.DeviceInterval = DefaultDeviceInterval
	}
	cfg.DeviceInterval = max(cfg.DeviceInterval.Round(time.Second), time.Second)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	keys, err := newKeyBook(cfg.SigningKey, cfg.Keys, cfg.KeyReloadInterval, KeyRetention(cfg.AccessTokenTTL), log)
	if err != nil {
		return nil, fmt.Errorf("issuer: new: %w", err)
	}

	fcfg := &fosite.Config{
		AccessTokenLifespan:            cfg.AccessTokenTTL,
		RefreshTokenLifespan:           cfg.RefreshTokenTTL,
		AuthorizeCodeLifespan:          authorizeCodeTTL,
		IDTokenLifespan:                cfg.AccessTokenTTL,
		IDTokenIssuer:                  iss,
		AccessTokenIssuer:              iss,
		TokenURL:                       iss + PathToken,
		GlobalSecret:                   cfg.GlobalSecret,
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		JWTScopeClaimKey:               jwt.JWTScopeFieldString,
		RefreshTokenScopes:             []string{"offline_access"},
	}
	db := cfg.Storage
	if db == nil {
		db = newMemoryStorage()
	}
	if cfg.SessionCacheTTL == 0 {
		cfg.SessionCacheTTL = DefaultSessionCacheTTL
	}
	sessions := &sessionBook{db: db, log: log, ttl: cfg.SessionCacheTTL, refreshTTL: cfg.RefreshTokenTTL,
		onEnd: cfg.OnSessionsEnded, cache: map[string]cachedSession{}}
	store := &oauthStore{db: db, log: log, sessions: sessions, ttl: map[fosite.TokenType]time.Duration{
		fosite.AuthorizeCode: authorizeCodeTTL,
		fosite.AccessToken:   cfg.AccessTokenTTL,
		fosite.RefreshToken:  cfg.RefreshTokenTTL,
	}}
	store.client = &fosite.DefaultOpenIDConnectClient{
		DefaultClient: &fosite.DefaultClient{
			ID:            tenantapi.DefaultClientID,
			RedirectURIs:  RedirectURIs,
			GrantTypes:    []string{"authorization_code", "refresh_token", GrantTypeDeviceCode},
			ResponseTypes: []string{"code"},
			Scopes:        Scopes,
			Audience:      []string{Audience},
			Public:        true,
		},
		TokenEndpointAuthMethod: "none",
	}
	// The key of the request's token (withSigningKey), else the current one.
	keyGetter := func(ctx context.Context) (any, error) {
		if k, ok := ctx.Value(signingKeyCtx{}).(*rsa.PrivateKey); ok {
			return k, nil
		}
		return keys.state(ctx).signing, nil
	}
	signer := &jwt.DefaultSigner{GetPrivateKey: keyGetter}
	strategy := &compose.CommonStrategy{
		CoreStrategy:               compose.NewOAuth2JWTStrategy(keyGetter, compose.NewOAuth2HMACStrategy(fcfg), fcfg),
		OpenIDConnectTokenStrategy: compose.NewOpenIDConnectStrategy(keyGetter, fcfg),
		Signer:                     signer,
	}
	lim := newLimiters(cfg.Limits, cfg.LimitBackend)
	devices := newDeviceStore(db, store, cfg.DeviceCodeTTL, cfg.DeviceInterval)
	devices.maxPending = lim.maxPending
	provider := compose.Compose(fcfg, store, strategy,
		compose.OAuth2AuthorizeExplicitFactory,
		deviceGrantFactory(devices, fcfg),
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory, // after the authorize code handler, which it needs
	)

	mac := hmac.New(sha256.New, cfg.GlobalSecret)
	mac.Write([]byte("bm-server issuer login form csrf"))
	return &Issuer{
		issuer:   iss,
		accounts: cfg.Accounts,
		keys:     keys,
		csrfKey:  mac.Sum(nil),
		secure:   u.Scheme == "https",
		log:      log,
		provider: provider,
		signer:   signer,
		store:    store,
		devices:  devices,
		lim:      lim,
		sessions: sessions,
	}, nil
}

// Register adds the issuer's routes to mux: discovery, JWKS, the login page
// (GET and POST /oauth2/authorize), the token endpoint, revocation, and the
// device authorization grant's endpoint and verification page.
func (i *Issuer) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathDiscovery, i.serveDiscovery)
	mux.HandleFunc("GET "+PathJWKS, i.serveJWKS)
	mux.HandleFunc("GET "+PathAuthorize, i.serveLoginForm)
	mux.HandleFunc("POST "+PathAuthorize, i.serveLoginSubmit)
	mux.HandleFunc("POST "+PathToken, i.serveToken)
	mux.HandleFunc("POST "+PathRevoke, i.serveRevoke)
	mux.HandleFunc("POST "+PathDeviceAuthorization, i.serveDeviceAuthorization)
	mux.HandleFunc("GET "+PathDevice, i.serveDeviceForm)
	mux.HandleFunc("POST "+PathDevice, i.serveDeviceSubmit)
}

type redirectKey struct{}

// withRedirect records the redirect_uri of the authorize request being
// handled, for oauthStore.GetClient.
func withRedirect(ctx context.Context, redirectURI string) context.Context {
	return context.WithValue(ctx, redirectKey{}, redirectURI)
}

// GetClient implements fosite.ClientManager: the one static client. A
// redirect URI on http://localhost with any port matches a registered
// http://localhost/... URI (fosite grants the RFC 8252 any-port rule only
// to IP literals): during an authorize request whose redirect_uri is
// http://localhost:<port>/<path> and whose client registered
// http://localhost/<path>, the returned copy also lists the requested URI,
// so fosite's exact match accepts it.
func (s *oauthStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if id != s.client.GetID() {
		return nil, fosite.ErrNotFound
	}
	c := s.client
	raw, _ := ctx.Value(redirectKey{}).(string)
	if raw == "" {
		return c, nil
	}
	oc, ok := c.(*fosite.DefaultOpenIDConnectClient)
	if !ok || !localhostMatch(raw, oc.RedirectURIs) {
		return c, nil
	}
	dc := *oc.DefaultClient
	dc.RedirectURIs = append(append([]string(nil), dc.RedirectURIs...), raw)
	cp := *oc
	cp.DefaultClient = &dc
	return &cp, nil
}

// localhostMatch reports whether raw is http://localhost:<port><path> and
// http://localhost<path> (same path, no query, user info or fragment) is
// registered.
func localhostMatch(raw string, registered []string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Hostname() != "localhost" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	if p := u.Port(); p != "" {
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	for _, r := range registered {
		ru, err := url.Parse(r)
		if err == nil && ru.Scheme == "http" && ru.Host == "localhost" && ru.Path == u.Path && ru.RawQuery == "" {
			return true
		}
	}
	return false
}
