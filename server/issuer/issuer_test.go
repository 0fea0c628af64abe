package issuer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite/token/jwt"
	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

var (
	testKey  = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
	otherKey = sync.OnceValue(func() *rsa.PrivateKey { return mustKey() })
)

func mustKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// fakeAccounts holds one account per email.
type fakeAccounts struct {
	mu     sync.Mutex
	pass   map[string]string // email -> password
	subj   map[string]string // email -> subject
	claims map[string]tenantapi.Claims
}

func newFakeAccounts() *fakeAccounts {
	return &fakeAccounts{
		pass: map[string]string{"ada@example.com": "correct horse"},
		subj: map[string]string{"ada@example.com": "user_ada"},
		claims: map[string]tenantapi.Claims{"user_ada": {
			Subject: "user_ada", Email: "ada@example.com", TenantID: "tenant_1",
			SubscriptionStatus: "active", SubscriptionTier: "pro",
		}},
	}
}

func (f *fakeAccounts) Authenticate(_ context.Context, email, password string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pass[email]; !ok || p != password {
		return "", errors.New("bad credentials")
	}
	return f.subj[email], nil
}

func (f *fakeAccounts) Claims(_ context.Context, subject string) (tenantapi.Claims, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.claims[subject]
	if !ok {
		return tenantapi.Claims{}, errors.New("no such account")
	}
	return c, nil
}

func (f *fakeAccounts) setTier(subject, tier string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.claims[subject]
	c.SubscriptionTier = tier
	f.claims[subject] = c
}

type env struct {
	iss      *Issuer
	srv      *httptest.Server
	accounts *fakeAccounts
	cb       *callback
	cfg      Config         // what iss was built from
	sw       *switchHandler // serves srv: iss, or a replica (see storage_test.go)
}

func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	mux := http.NewServeMux()
	sw := &switchHandler{}
	sw.set(mux)
	srv := httptest.NewServer(sw)
	t.Cleanup(srv.Close)
	accounts := newFakeAccounts()
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := Config{
		IssuerURL:    srv.URL + "/",
		SigningKey:   testKey(),
		Accounts:     accounts,
		GlobalSecret: secret,
		Logger:       slog.New(slog.DiscardHandler),
		Storage:      newTestStorage(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	iss, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	iss.Register(mux)
	return &env{iss: iss, srv: srv, accounts: accounts, cb: newCallback(t), cfg: cfg, sw: sw}
}

// callback is the client's loopback redirect target.
type callback struct {
	mu    sync.Mutex
	port  string
	codes []url.Values
}

func newCallback(t *testing.T) *callback {
	t.Helper()
	cb := &callback{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, cb.port, _ = net.SplitHostPort(ln.Addr().String())
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		cb.mu.Lock()
		cb.codes = append(cb.codes, r.URL.Query())
		cb.mu.Unlock()
		io.WriteString(w, "you may close this window")
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	return cb
}

func (cb *callback) received() []url.Values {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return append([]url.Values(nil), cb.codes...)
}

func (e *env) oauthConfig(host string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: tenantapi.DefaultClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL:   e.srv.URL + PathAuthorize,
			TokenURL:  e.srv.URL + PathToken,
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: "http://" + net.JoinHostPort(host, e.cb.port) + "/callback",
		Scopes:      strings.Fields(tenantapi.DefaultScopes),
	}
}

// login runs the browser step and returns the code the callback received.
func (e *env) login(t *testing.T, conf *oauth2.Config, verifier string) string {
	t.Helper()
	ctx := t.Context()
	state := "state-" + oauth2.GenerateVerifier()[:16]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
	if err := issuertest.BrowserLogin(ctx, authURL, "ada@example.com", "correct horse"); err != nil {
		t.Fatalf("BrowserLogin: %v", err)
	}
	got := e.cb.received()
	if len(got) == 0 {
		t.Fatal("callback received nothing")
	}
	last := got[len(got)-1]
	if last.Get("state") != state {
		t.Fatalf("state = %q, want %q", last.Get("state"), state)
	}
	if last.Get("code") == "" {
		t.Fatalf("no code in callback: %v", last)
	}
	return last.Get("code")
}

// decodeJWT returns the header and payload of a JWT without verifying it.
func decodeJWT(t *testing.T, raw string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload
}

func TestAuthorizationCodeFlowWithPKCE(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			e := newEnv(t)
			conf := e.oauthConfig(host)
			verifier := oauth2.GenerateVerifier()
			code := e.login(t, conf, verifier)

			tok, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tok.RefreshToken == "" {
				t.Error("no refresh token despite offline_access")
			}
			if idt, _ := tok.Extra("id_token").(string); idt == "" {
				t.Error("no id_token despite openid")
			} else if _, p := decodeJWT(t, idt); p["sub"] != "user_ada" || p["iss"] != e.srv.URL {
				t.Errorf("id_token claims: %v", p)
			}

			h, p := decodeJWT(t, tok.AccessToken)
			if h["alg"] != "RS256" || h["kid"] != e.iss.KeyID() {
				t.Errorf("header = %v, want RS256 and kid %s", h, e.iss.KeyID())
			}
			want := map[string]any{
				"iss": e.srv.URL, "sub": "user_ada", "tenant_id": "tenant_1",
				"subscription_status": "active", "subscription_tier": "pro", "email": "ada@example.com",
			}
			for k, v := range want {
				if p[k] != v {
					t.Errorf("claim %s = %v, want %v", k, p[k], v)
				}
			}
			if aud, _ := p["aud"].([]any); len(aud) != 1 || aud[0] != Audience {
				t.Errorf("aud = %v, want [%s]", p["aud"], Audience)
			}
			for _, k := range []string{"exp", "iat", "jti"} {
				if p[k] == nil {
					t.Errorf("claim %s missing", k)
				}
			}
			if _, ok := p["ext"]; ok {
				t.Error("claims nested under ext")
			}
			if exp, _ := p["exp"].(float64); time.Until(time.Unix(int64(exp), 0)) > time.Hour+time.Minute {
				t.Errorf("exp too far: %v", exp)
			}

			claims, err := e.iss.Verify(t.Context(), tok.AccessToken)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			sid, _ := p["sid"].(string)
			if sid == "" {
				t.Error("no sid claim")
			}
			wantClaims := tenantapi.Claims{Subject: "user_ada", Email: "ada@example.com", TenantID: "tenant_1",
				SubscriptionStatus: "active", SubscriptionTier: "pro", SessionID: sid}
			if claims != wantClaims {
				t.Errorf("Verify = %+v, want %+v", claims, wantClaims)
			}

			// The code is single-use, and its reuse ends the session it
			// made: its access token and refresh token stop working.
			if _, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier)); err == nil {
				t.Error("second exchange of the same code succeeded")
			}
			if _, err := e.iss.Verify(t.Context(), tok.AccessToken); !errors.Is(err, ErrSessionEnded) {
				t.Errorf("Verify after the code's reuse: %v, want ErrSessionEnded", err)
			}
			if _, err := conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token(); err == nil {
				t.Error("refresh after the code's reuse succeeded")
			}
		})
	}
}

func tokenRequest(t *testing.T, e *env, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+PathToken, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestTokenRequiresMatchingCodeVerifier(t *testing.T) {
	e := newEnv(t)
	conf := e.oauthConfig("127.0.0.1")
	tests := []struct {
		name     string
		verifier string // "" omits code_verifier
	}{
		{"missing", ""},
		{"wrong", oauth2.GenerateVerifier()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := e.login(t, conf, oauth2.GenerateVerifier())
			form := url.Values{
				"grant_type":   {"authorization_code"},
				"code":         {code},
				"client_id":    {tenantapi.DefaultClientID},
				"redirect_uri": {conf.RedirectURL},
			}
			if tt.verifier != "" {
				form.Set("code_verifier", tt.verifier)
			}
			status, body := tokenRequest(t, e, form)
			if status != http.StatusBadRequest || body["access_token"] != nil {
				t.Fatalf("status %d body %v, want 400 and no token", status, body)
			}
			if body["error"] != "invalid_grant" && body["error"] != "invalid_request" {
				t.Errorf("error = %v", body["error"])
			}
		})
	}
}

// noRedirect is an HTTP client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestAuthorizeRefusesBadPKCEParameters(t *testing.T) {
	e := newEnv(t)
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	tests := []struct {
		name string
		opts []oauth2.AuthCodeOption
	}{
		{"plain", []oauth2.AuthCodeOption{
			oauth2.SetAuthURLParam("code_challenge", verifier),
			oauth2.SetAuthURLParam("code_challenge_method", "plain"),
		}},
		{"no method", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", verifier)}},
		{"no challenge", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := noRedirect.Get(conf.AuthCodeURL("state-12345678", tt.opts...))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `id="bm-login"`) {
				t.Fatal("login form shown")
			}
			loc, err := resp.Location()
			if err != nil {
				t.Fatalf("status %d, no redirect: %v", resp.StatusCode, err)
			}
			if !strings.HasPrefix(loc.String(), conf.RedirectURL) || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
				t.Errorf("redirect to %s, want %s with error=invalid_request", loc, conf.RedirectURL)
			}
		})
	}

	// A plain challenge smuggled into the login POST is refused as well.
	t.Run("plain on POST", func(t *testing.T) {
		authURL := conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(verifier))
		form, jar := openLoginForm(t, authURL)
		form.Set("code_challenge_method", "plain")
		form.Set("code_challenge", verifier)
		resp := postLogin(t, e, form, jar, "correct horse")
		if loc, err := resp.Location(); err != nil || loc.Query().Get("code") != "" || loc.Query().Get("error") == "" {
			t.Errorf("status %d location %v, want an error redirect without code", resp.StatusCode, loc)
		}
	})
}

// openLoginForm GETs the login page and returns its form fields and the
// cookie jar holding the CSRF cookie.
func openLoginForm(t *testing.T, authURL string) (url.Values, *http.Cookie) {
	t.Helper()
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login page: status %d", resp.StatusCode)
	}
	p, err := issuertest.ReadPage(resp)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := p.LoginForm()
	if !ok {
		t.Fatal("no login form")
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie {
			cookie = c
		}
	}
	return f.Values, cookie
}

func postLogin(t *testing.T, e *env, form url.Values, cookie *http.Cookie, password string) *http.Response {
	t.Helper()
	form.Set("email", "ada@example.com")
	form.Set("password", password)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+PathAuthorize, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestLoginFailures(t *testing.T) {
	e := newEnv(t)
	conf := e.oauthConfig("127.0.0.1")
	authURL := conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	t.Run("BrowserLogin wrong password", func(t *testing.T) {
		err := issuertest.BrowserLogin(t.Context(), authURL, "ada@example.com", "wrong")
		if !errors.Is(err, issuertest.ErrLoginRejected) {
			t.Fatalf("err = %v, want ErrLoginRejected", err)
		}
		if got := e.cb.received(); len(got) != 0 {
			t.Errorf("callback received %v", got)
		}
	})

	tests := []struct {
		name       string
		password   string
		dropCookie bool
		tamper     bool // change an authorize parameter after the form was issued
		wantStatus int
		wantError  string
	}{
		{"wrong password", "wrong", false, false, http.StatusOK, "Wrong email or password."},
		{"no CSRF cookie", "correct horse", true, false, http.StatusForbidden, "expired"},
		{"tampered form", "correct horse", false, true, http.StatusForbidden, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form, cookie := openLoginForm(t, authURL)
			if tt.dropCookie {
				cookie = nil
			}
			if tt.tamper {
				form.Set("state", "state-other-12345678")
			}
			resp := postLogin(t, e, form, cookie, tt.password)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if resp.Header.Get("Location") != "" {
				t.Errorf("redirected to %s", resp.Header.Get("Location"))
			}
			p, err := issuertest.ReadPage(resp)
			if err != nil {
				t.Fatal(err)
			}
			msg, ok := p.LoginError()
			if !ok || !strings.Contains(msg, tt.wantError) {
				t.Errorf("error message = %q, want %q", msg, tt.wantError)
			}
			f, ok := p.LoginForm()
			if !ok {
				t.Fatal("form not shown again")
			}
			if f.Values.Get("password") != "" {
				t.Error("password echoed back")
			}
			if f.Values.Get("code_challenge") == "" {
				t.Error("authorize parameters lost")
			}
			if got := e.cb.received(); len(got) != 0 {
				t.Errorf("callback received %v", got)
			}
		})
	}
}

func TestLoginFormEscapes(t *testing.T) {
	e := newEnv(t)
	conf := e.oauthConfig("127.0.0.1")
	evil := `"><script>alert(1)</script>`
	authURL := conf.AuthCodeURL("state-"+evil, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), "<script>") {
		t.Errorf("status %d; unescaped script in page: %v", resp.StatusCode, strings.Contains(string(b), "<script>"))
	}
}

func TestRefreshRotationAndFreshClaims(t *testing.T) {
	e := newEnv(t)
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	tok, err := conf.Exchange(t.Context(), e.login(t, conf, verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	e.accounts.setTier("user_ada", "team")

	refresh := func(rt string) (*oauth2.Token, error) {
		return conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}).Token()
	}
	tok2, err := refresh(tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Error("refresh token not rotated")
	}
	if tok2.AccessToken == tok.AccessToken {
		t.Error("same access token")
	}
	c, err := e.iss.Verify(t.Context(), tok2.AccessToken)
	if err != nil {
		t.Fatalf("Verify refreshed token: %v", err)
	}
	if c.SubscriptionTier != "team" || c.TenantID != "tenant_1" || c.Subject != "user_ada" {
		t.Errorf("refreshed claims = %+v, want tier team", c)
	}
	_, p1 := decodeJWT(t, tok.AccessToken)
	_, p2 := decodeJWT(t, tok2.AccessToken)
	if p1["jti"] == p2["jti"] {
		t.Error("jti reused")
	}

	var re *oauth2.RetrieveError
	if _, err := refresh(tok.RefreshToken); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("reusing the old refresh token: err = %v, want invalid_grant", err)
	}

	// Revocation ends the chain (reuse detection above may already have).
	tok3, err := conf.Exchange(t.Context(), e.login(t, conf, verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(e.srv.URL+PathRevoke, url.Values{
		"token": {tok3.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {tenantapi.DefaultClientID},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d", resp.StatusCode)
	}
	if _, err := refresh(tok3.RefreshToken); err == nil {
		t.Error("refresh after revocation succeeded")
	}
}

func TestVerify(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	db := e.iss.store.db
	for _, sid := range []string{"sess-live", "sess-ended", "sess-expired"} {
		exp := time.Now().Add(time.Hour)
		if sid == "sess-expired" {
			exp = time.Now().Add(-time.Second)
		}
		if err := db.OpenAuthSession(ctx, store.AuthSession{ID: sid, Subject: "user_ada", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.EndAuthSession(ctx, "sess-ended", EndLogout, time.Now()); err != nil {
		t.Fatal(err)
	}
	sign := func(key *rsa.PrivateKey, kid string, edit func(jwt.MapClaims)) string {
		claims := jwt.MapClaims{
			"iss": e.srv.URL, "sub": "user_ada", "aud": []string{Audience},
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "jti": "j1",
			"tenant_id": "tenant_1", "subscription_status": "active", "subscription_tier": "pro",
			"sid": "sess-live",
		}
		if edit != nil {
			edit(claims)
		}
		s := &jwt.DefaultSigner{GetPrivateKey: func(context.Context) (any, error) { return key, nil }}
		raw, _, err := s.Generate(ctx, claims, &jwt.Headers{Extra: map[string]any{"kid": kid}})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := sign(testKey(), e.iss.KeyID(), nil)
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(
		[]byte(strings.Replace(string(payload), "tenant_1", "tenant_2", 1))) + "." + parts[2]
	unsigned := parts[0] + "." + parts[1] + "."

	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"valid", good, true},
		{"tampered payload", tampered, false},
		{"no signature", unsigned, false},
		{"expired", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), false},
		{"no exp", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { delete(c, "exp") }), false},
		{"other key same kid", sign(otherKey(), e.iss.KeyID(), nil), false},
		{"unknown kid", sign(testKey(), "other", nil), false},
		{"wrong issuer", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), false},
		{"id_token audience", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { c["aud"] = []string{tenantapi.DefaultClientID} }), false},
		{"no subject", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { delete(c, "sub") }), false},
		{"no session", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { delete(c, "sid") }), false},
		{"unknown session", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { c["sid"] = "nope" }), false},
		{"ended session", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { c["sid"] = "sess-ended" }), false},
		{"expired session", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { c["sid"] = "sess-expired" }), false},
		{"another subject's session", sign(testKey(), e.iss.KeyID(), func(c jwt.MapClaims) { c["sub"] = "user_bob" }), false},
		{"garbage", "not.a.jwt", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := e.iss.Verify(ctx, tt.token)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.TenantID != "tenant_1" || c.Subject != "user_ada" || c.SubscriptionTier != "pro" {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t)
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	tok, err := conf.Exchange(t.Context(), e.login(t, conf, verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header string
		want   error
	}{
		{"bearer", "Bearer " + tok.AccessToken, nil},
		{"lower-case scheme", "bearer " + tok.AccessToken, nil},
		{"none", "", ErrNoToken},
		{"basic", "Basic dXNlcjpwYXNz", ErrNoToken},
		{"empty bearer", "Bearer ", ErrNoToken},
		{"bad token", "Bearer x.y.z", ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/tenant/status", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			c, err := e.iss.Authenticate(r)
			if tt.want == nil {
				if err != nil || c.TenantID != "tenant_1" {
					t.Errorf("Authenticate = %+v, %v", c, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDiscoveryAndJWKS(t *testing.T) {
	e := newEnv(t)
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: status %d, type %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var d map[string]any
	getJSON(PathDiscovery, &d)
	wantStr := map[string]string{
		"issuer":                        e.srv.URL,
		"authorization_endpoint":        e.srv.URL + "/oauth2/authorize",
		"token_endpoint":                e.srv.URL + "/oauth2/token",
		"jwks_uri":                      e.srv.URL + "/oauth2/jwks",
		"revocation_endpoint":           e.srv.URL + "/oauth2/revoke",
		"device_authorization_endpoint": e.srv.URL + "/oauth2/device_authorization",
	}
	for k, v := range wantStr {
		if d[k] != v {
			t.Errorf("%s = %v, want %s", k, d[k], v)
		}
	}
	if fmt.Sprint(d["code_challenge_methods_supported"]) != "[S256]" {
		t.Errorf("code_challenge_methods_supported = %v", d["code_challenge_methods_supported"])
	}
	if fmt.Sprint(d["grant_types_supported"]) != "[authorization_code refresh_token urn:ietf:params:oauth:grant-type:device_code]" {
		t.Errorf("grant_types_supported = %v", d["grant_types_supported"])
	}
	if fmt.Sprint(d["scopes_supported"]) != "[openid profile email offline_access]" {
		t.Errorf("scopes_supported = %v", d["scopes_supported"])
	}

	var set JWKSet
	getJSON(PathJWKS, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || k.Kid != e.iss.KeyID() || k.Kid == "" {
		t.Errorf("jwk = %+v", k)
	}
	n, err1 := base64.RawURLEncoding.DecodeString(k.N)
	eb, err2 := base64.RawURLEncoding.DecodeString(k.E)
	if err1 != nil || err2 != nil {
		t.Fatal("bad base64url in jwk")
	}
	pub := rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(eb).Int64())}
	if !pub.Equal(&testKey().PublicKey) {
		t.Error("jwk is not the signing key")
	}

	// The kid in tokens is the one published.
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	tok, err := conf.Exchange(t.Context(), e.login(t, conf, verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := decodeJWT(t, tok.AccessToken); h["kid"] != k.Kid {
		t.Errorf("token kid %v, jwks kid %s", h["kid"], k.Kid)
	}
}

func TestAuthorizeRefusesNonLoopbackRedirect(t *testing.T) {
	e := newEnv(t)
	for _, redirect := range []string{
		"https://evil.example/callback",
		"http://evil.example/callback",
		"http://localhost.evil.example/callback",
		"http://127.0.0.1:" + e.cb.port + "/other",
		"http://localhost:" + e.cb.port + "/callback?x=1",
		"http://10.0.0.1/callback",
	} {
		t.Run(redirect, func(t *testing.T) {
			conf := e.oauthConfig("127.0.0.1")
			conf.RedirectURL = redirect
			resp, err := noRedirect.Get(conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("redirected to %s", loc)
			}
			if resp.StatusCode < 400 || strings.Contains(string(body), `id="bm-login"`) {
				t.Errorf("status %d, login form shown: %v", resp.StatusCode, strings.Contains(string(body), `id="bm-login"`))
			}
		})
	}
}

func TestLocalhostMatch(t *testing.T) {
	reg := RedirectURIs
	tests := []struct {
		uri  string
		want bool
	}{
		{"http://localhost:8080/callback", true},
		{"http://localhost/callback", true},
		{"http://localhost:1/callback", true},
		{"https://localhost:8080/callback", false},
		{"http://localhost:8080/callback/x", false},
		{"http://localhost:8080/callback?a=b", false},
		{"http://localhost:8080/callback#f", false},
		{"http://user@localhost:8080/callback", false},
		{"http://localhost.evil:8080/callback", false},
		{"http://127.0.0.1:8080/callback", false}, // fosite's own rule covers IP literals
		{"http://localhost:abc/callback", false},
	}
	for _, tt := range tests {
		if got := localhostMatch(tt.uri, reg); got != tt.want {
			t.Errorf("localhostMatch(%q) = %v, want %v", tt.uri, got, tt.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := Config{IssuerURL: "http://127.0.0.1:8787", SigningKey: testKey(), Accounts: newFakeAccounts(), GlobalSecret: make([]byte, 32)}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"no issuer", func(c *Config) { c.IssuerURL = "" }},
		{"relative issuer", func(c *Config) { c.IssuerURL = "/x" }},
		{"no key", func(c *Config) { c.SigningKey = nil }},
		{"no accounts", func(c *Config) { c.Accounts = nil }},
		{"short secret", func(c *Config) { c.GlobalSecret = make([]byte, 16) }},
	}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			if _, err := New(c); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}
