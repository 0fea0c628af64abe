package cloudapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Endpoints are the issuer's OAuth endpoints.
type Endpoints struct {
	AuthURL       string `json:"authorization_endpoint"`
	TokenURL      string `json:"token_endpoint"`
	RevocationURL string `json:"revocation_endpoint,omitempty"`
	DeviceAuthURL string `json:"device_authorization_endpoint,omitempty"`
}

// OAuth2 returns the endpoints in golang.org/x/oauth2's form. The agent is a
// public client, so the client id goes in the form body (no secret).
func (e Endpoints) OAuth2() oauth2.Endpoint {
	return oauth2.Endpoint{
		AuthURL:       e.AuthURL,
		TokenURL:      e.TokenURL,
		DeviceAuthURL: e.DeviceAuthURL,
		AuthStyle:     oauth2.AuthStyleInParams,
	}
}

// Discover finds the issuer's endpoints: from
// {domain}/.well-known/openid-configuration when it answers 200 with a
// token_endpoint, else the fixed paths {domain}/oauth2/authorize,
// {domain}/oauth2/token and {domain}/oauth2/device_authorization (the paths
// of bm-server's built-in issuer and of AuthKit). A discovery document
// without an authorization or device endpoint gets the fixed path for it. Every URL must pass
// CheckURL. A nil hc means http.DefaultClient.
func Discover(ctx context.Context, hc *http.Client, domain string) (Endpoints, error) {
	domain = strings.TrimRight(domain, "/")
	if err := CheckURL(domain); err != nil {
		return Endpoints{}, fmt.Errorf("discover: %w", err)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	fallback := Endpoints{
		AuthURL:       domain + "/oauth2/authorize",
		TokenURL:      domain + "/oauth2/token",
		DeviceAuthURL: domain + "/oauth2/device_authorization",
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, domain+tenantapi.PathDiscovery, nil)
	if err != nil {
		return Endpoints{}, fmt.Errorf("discover: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return Endpoints{}, fmt.Errorf("discover: %w", ctx.Err())
		}
		return Endpoints{}, fmt.Errorf("discover: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fallback, nil
	}
	var ep Endpoints
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ep); err != nil || ep.TokenURL == "" {
		return fallback, nil
	}
	if ep.AuthURL == "" {
		ep.AuthURL = fallback.AuthURL
	}
	if ep.DeviceAuthURL == "" {
		ep.DeviceAuthURL = fallback.DeviceAuthURL
	}
	for _, u := range []string{ep.AuthURL, ep.TokenURL, ep.RevocationURL, ep.DeviceAuthURL} {
		if u == "" {
			continue
		}
		if err := CheckURL(u); err != nil {
			return Endpoints{}, fmt.Errorf("discover: endpoint: %w", err)
		}
	}
	return ep, nil
}

// OAuth2Config is the oauth2.Config of the agent for these endpoints, with
// scopes tenantapi.DefaultScopes and the given redirect URL (may be empty).
func (c Config) OAuth2Config(ep Endpoints, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    c.ClientID,
		Endpoint:    ep.OAuth2(),
		RedirectURL: redirectURL,
		Scopes:      strings.Fields(tenantapi.DefaultScopes),
	}
}

// withHTTPClient puts hc where golang.org/x/oauth2 looks for it.
func withHTTPClient(ctx context.Context, hc *http.Client) context.Context {
	if hc == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, hc)
}

// PendingLogin is an authorization code + PKCE login waiting for the
// browser to come back to http://127.0.0.1:PORT/callback.
type PendingLogin struct {
	conf     *oauth2.Config
	hc       *http.Client
	ln       net.Listener
	state    string
	verifier string

	mu      sync.Mutex
	waiting bool
	closed  bool
}

// StartLogin discovers the issuer of cfg.Domain and listens on a random
// loopback port for the redirect. Open p.URL() in a browser, then call
// p.Wait. Close releases the port if Wait is never called.
func StartLogin(ctx context.Context, hc *http.Client, cfg Config) (*PendingLogin, error) {
	ep, err := Discover(ctx, hc, cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("start login: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start login: listen: %w", err)
	}
	state, err := randomString(24)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start login: %w", err)
	}
	redirect := fmt.Sprintf("http://%s/callback", ln.Addr().String())
	return &PendingLogin{
		conf:     cfg.OAuth2Config(ep, redirect),
		hc:       hc,
		ln:       ln,
		state:    state,
		verifier: oauth2.GenerateVerifier(),
	}, nil
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// URL is the authorization URL to open in the browser: it carries the state
// and the S256 code challenge.
func (p *PendingLogin) URL() string {
	return p.conf.AuthCodeURL(p.state, oauth2.S256ChallengeOption(p.verifier))
}

// RedirectURL is the loopback callback URL the issuer redirects to.
func (p *PendingLogin) RedirectURL() string { return p.conf.RedirectURL }

// Wait serves the loopback callback until one request to /callback arrives
// or ctx ends, exchanges the code (with the PKCE verifier) and returns the
// token. It answers the browser with a small page, then closes the
// listener. A wrong state fails with ErrStateMismatch, a refusal with
// ErrAccessDenied. Wait can be called once.
func (p *PendingLogin) Wait(ctx context.Context) (*oauth2.Token, error) {
	p.mu.Lock()
	if p.waiting || p.closed {
		p.mu.Unlock()
		return nil, errors.New("login wait: already waited or closed")
	}
	p.waiting = true
	p.mu.Unlock()

	type result struct {
		tok *oauth2.Token
		err error
	}
	results := make(chan result, 1)
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		handled := false
		once.Do(func() {
			handled = true
			tok, err := p.callback(ctx, r)
			if err != nil {
				status := http.StatusBadRequest
				if !errors.Is(err, ErrStateMismatch) && !errors.Is(err, ErrAccessDenied) && r.URL.Query().Get("error") == "" {
					status = http.StatusBadGateway
				}
				writePage(w, status, "Login failed", "Basic Memory could not log you in. Go back to the application and try again.")
			} else {
				writePage(w, http.StatusOK, "Logged in", "You are logged in to Basic Memory; you can close this tab.")
			}
			results <- result{tok, err}
		})
		if !handled {
			writePage(w, http.StatusGone, "Login finished", "This login has already finished; you can close this tab.")
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(p.ln) // returns when Shutdown/Close is called
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-served
		p.Close()
	}()

	select {
	case r := <-results:
		if r.err != nil {
			return nil, fmt.Errorf("login: %w", r.err)
		}
		return r.tok, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("login: waiting for the browser: %w", ctx.Err())
	}
}

// callback checks the redirect and exchanges its code.
func (p *PendingLogin) callback(ctx context.Context, r *http.Request) (*oauth2.Token, error) {
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.state)) != 1 {
		return nil, ErrStateMismatch
	}
	if e := q.Get("error"); e != "" {
		if e == "access_denied" {
			return nil, ErrAccessDenied
		}
		if d := q.Get("error_description"); d != "" {
			return nil, fmt.Errorf("authorization failed: %s: %s", e, d)
		}
		return nil, fmt.Errorf("authorization failed: %s", e)
	}
	code := q.Get("code")
	if code == "" {
		return nil, errors.New("authorization failed: no code in the redirect")
	}
	tok, err := p.conf.Exchange(withHTTPClient(ctx, p.hc), code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange code: %w", err)
	}
	return tok, nil
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}} - Basic Memory</title>
<style>body{font-family:system-ui,sans-serif;max-width:32em;margin:4em auto;text-align:center}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

func writePage(w http.ResponseWriter, status int, title, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct{ Title, Message string }{title, message})
}

// Close releases the loopback port. It is safe to call more than once and
// after Wait.
func (p *PendingLogin) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close login listener: %w", err)
	}
	return nil
}

// earlyExpiry is how long before its expiry an access token is refreshed.
const earlyExpiry = 60 * time.Second

// TokenSource returns a TokenSource that hands out tok until 60 s before it
// expires and then refreshes it at endpoints.TokenURL. Concurrent callers
// share one refresh. When a refresh returns a token, save is called with
// it (so a rotated refresh token is persisted); a save error is logged, not
// returned, as the new token is still good for this process. A refresh
// answered with invalid_grant, or needed without a refresh token, fails
// with ErrLoginRequired, and so do all later calls, without asking the
// issuer again. ctx bounds every refresh; hc (nil: default client) makes
// them. save may be nil.
func (c Config) TokenSource(ctx context.Context, hc *http.Client, endpoints Endpoints, tok *oauth2.Token, save func(*oauth2.Token) error) oauth2.TokenSource {
	r := &refresher{
		ctx:  withHTTPClient(ctx, hc),
		conf: c.OAuth2Config(endpoints, ""),
		save: save,
	}
	if tok != nil {
		r.refreshToken = tok.RefreshToken
		t := *tok
		tok = &t
	}
	return oauth2.ReuseTokenSourceWithExpiry(tok, r, earlyExpiry)
}

// refresher makes refresh grants. Its Token is only called under the
// mutex of the reuseTokenSource around it.
type refresher struct {
	ctx          context.Context
	conf         *oauth2.Config
	save         func(*oauth2.Token) error
	refreshToken string
	dead         error
}

func (r *refresher) Token() (*oauth2.Token, error) {
	if r.dead != nil {
		return nil, r.dead
	}
	if r.refreshToken == "" {
		r.dead = fmt.Errorf("refresh token: none stored: %w", ErrLoginRequired)
		return nil, r.dead
	}
	// A token with no access token is never valid, so this source goes
	// straight to a refresh grant.
	tok, err := r.conf.TokenSource(r.ctx, &oauth2.Token{RefreshToken: r.refreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			r.dead = fmt.Errorf("refresh token: %w (issuer said invalid_grant)", ErrLoginRequired)
			return nil, r.dead
		}
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = r.refreshToken
	}
	r.refreshToken = tok.RefreshToken
	if r.save != nil {
		saved := *tok
		if err := r.save(&saved); err != nil {
			slog.Warn("cloudapi: could not save the refreshed token", "err", err)
		}
	}
	return tok, nil
}
