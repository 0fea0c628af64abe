package cloudapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// fakeIssuer is a minimal OAuth authorization server: /oauth2/authorize
// redirects at once with a code (as if the user approved), /oauth2/token
// checks the PKCE verifier and rotates refresh tokens.
type fakeIssuer struct {
	srv *httptest.Server

	discovery bool   // serve /.well-known/openid-configuration
	deny      bool   // redirect with error=access_denied
	badState  bool   // redirect with a different state
	expiresIn int    // seconds; default 3600
	clientID  string // expected client_id

	mu        sync.Mutex
	codes     map[string]codeGrant
	refreshes map[string]bool // valid refresh tokens
	n         int
	refreshN  atomic.Int32
}

type codeGrant struct {
	challenge, redirect string
}

func newFakeIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{codes: map[string]codeGrant{}, refreshes: map[string]bool{}, clientID: "test-client", expiresIn: 3600}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if !f.discovery {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"issuer":                        f.srv.URL,
			"authorization_endpoint":        f.srv.URL + "/custom/authorize",
			"token_endpoint":                f.srv.URL + "/custom/token",
			"revocation_endpoint":           f.srv.URL + "/custom/revoke",
			"device_authorization_endpoint": f.srv.URL + "/custom/device",
		})
	})
	mux.HandleFunc("GET /oauth2/authorize", f.authorize)
	mux.HandleFunc("GET /custom/authorize", f.authorize)
	mux.HandleFunc("POST /oauth2/token", f.token)
	mux.HandleFunc("POST /custom/token", f.token)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIssuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != f.clientID ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		!strings.Contains(q.Get("scope"), "offline_access") {
		http.Error(w, "bad authorize request", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Hostname() != "127.0.0.1" || redirect.Path != "/callback" {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	state := q.Get("state")
	if f.badState {
		state = "forged"
	}
	v := url.Values{"state": {state}}
	if f.deny {
		v.Set("error", "access_denied")
	} else {
		f.mu.Lock()
		f.n++
		code := fmt.Sprintf("code-%d", f.n)
		f.codes[code] = codeGrant{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		f.mu.Unlock()
		v.Set("code", code)
	}
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func tokenError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func (f *fakeIssuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != f.clientID {
		tokenError(w, "invalid_client")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		if !ok || g.redirect != r.PostForm.Get("redirect_uri") ||
			oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != g.challenge {
			tokenError(w, "invalid_grant")
			return
		}
	case "refresh_token":
		f.refreshN.Add(1)
		rt := r.PostForm.Get("refresh_token")
		if !f.refreshes[rt] {
			tokenError(w, "invalid_grant")
			return
		}
		delete(f.refreshes, rt) // rotation: a refresh token works once
	default:
		tokenError(w, "unsupported_grant_type")
		return
	}
	f.n++
	rt := fmt.Sprintf("refresh-%d", f.n)
	f.refreshes[rt] = true
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token":  fmt.Sprintf("access-%d", f.n),
		"token_type":    "Bearer",
		"refresh_token": rt,
		"expires_in":    f.expiresIn,
	})
}

func TestDiscover(t *testing.T) {
	f := newFakeIssuer(t)
	tests := []struct {
		name      string
		discovery bool
		want      Endpoints
	}{
		{"discovery document", true, Endpoints{
			AuthURL:       f.srv.URL + "/custom/authorize",
			TokenURL:      f.srv.URL + "/custom/token",
			RevocationURL: f.srv.URL + "/custom/revoke",
			DeviceAuthURL: f.srv.URL + "/custom/device",
		}},
		{"fallback paths", false, Endpoints{
			AuthURL:       f.srv.URL + "/oauth2/authorize",
			TokenURL:      f.srv.URL + "/oauth2/token",
			DeviceAuthURL: f.srv.URL + "/oauth2/device_authorization",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.discovery = tt.discovery
			got, err := Discover(context.Background(), f.srv.Client(), f.srv.URL+"/")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Discover() = %+v, want %+v", got, tt.want)
			}
		})
	}
	if _, err := Discover(context.Background(), nil, "http://auth.example.com"); err == nil {
		t.Error("Discover accepted plain http to a non-loopback host")
	}
}

// browse plays the browser: it opens the authorize URL and follows the
// redirect to the loopback callback.
func browse(t *testing.T, authURL string) (int, string) {
	t.Helper()
	resp, err := http.Get(authURL)
	if err != nil {
		t.Errorf("browser: %v", err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLoginLoopback(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(*fakeIssuer)
		discovery  bool
		wantErr    error
		wantStatus int
		wantPage   string
	}{
		{name: "success", wantStatus: 200, wantPage: "You are logged in to Basic Memory; you can close this tab"},
		{name: "success via discovery", discovery: true, wantStatus: 200, wantPage: "You are logged in"},
		{name: "access denied", setup: func(f *fakeIssuer) { f.deny = true }, wantErr: ErrAccessDenied, wantStatus: 400, wantPage: "Login failed"},
		{name: "state mismatch", setup: func(f *fakeIssuer) { f.badState = true }, wantErr: ErrStateMismatch, wantStatus: 400, wantPage: "Login failed"},
		{name: "issuer refuses an unknown client", setup: func(f *fakeIssuer) { f.clientID = "other" }, wantStatus: 400, wantPage: "bad authorize request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeIssuer(t)
			f.discovery = tt.discovery
			if tt.setup != nil {
				tt.setup(f)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p, err := StartLogin(ctx, f.srv.Client(), Config{Domain: f.srv.URL, ClientID: "test-client"})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if !strings.HasPrefix(p.RedirectURL(), "http://127.0.0.1:") {
				t.Errorf("redirect URL %q is not loopback", p.RedirectURL())
			}

			type res struct {
				tok *oauth2.Token
				err error
			}
			done := make(chan res, 1)
			waitCtx, waitCancel := context.WithTimeout(ctx, 2*time.Second)
			defer waitCancel()
			go func() {
				tok, err := p.Wait(waitCtx)
				done <- res{tok, err}
			}()
			status, page := browse(t, p.URL())
			if tt.wantStatus != 200 && tt.wantErr == nil {
				waitCancel() // the issuer refused before redirecting: nothing will come
			}
			if status != tt.wantStatus || !strings.Contains(page, tt.wantPage) {
				t.Errorf("browser got %d %q, want %d containing %q", status, page, tt.wantStatus, tt.wantPage)
			}
			r := <-done
			switch {
			case tt.wantStatus == 200:
				if r.err != nil {
					t.Fatalf("Wait: %v", r.err)
				}
				if r.tok.AccessToken == "" || r.tok.RefreshToken == "" || r.tok.Expiry.IsZero() {
					t.Errorf("token incomplete: access=%v refresh=%v expiry=%v",
						r.tok.AccessToken != "", r.tok.RefreshToken != "", r.tok.Expiry)
				}
			case tt.wantErr != nil:
				if !errors.Is(r.err, tt.wantErr) {
					t.Fatalf("Wait error = %v, want %v", r.err, tt.wantErr)
				}
			default:
				if !errors.Is(r.err, context.Canceled) {
					t.Fatalf("Wait error = %v, want canceled", r.err)
				}
			}
			// The listener is gone after Wait.
			if _, err := http.Get(p.RedirectURL()); err == nil {
				t.Error("callback listener still answers after Wait")
			}
		})
	}
}

func TestLoginBadVerifierRejected(t *testing.T) {
	f := newFakeIssuer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := StartLogin(ctx, f.srv.Client(), Config{Domain: f.srv.URL, ClientID: "test-client"})
	if err != nil {
		t.Fatal(err)
	}
	p.verifier = oauth2.GenerateVerifier() // not the one the challenge in URL() was made from
	u := p.conf.AuthCodeURL(p.state, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	done := make(chan error, 1)
	go func() { _, err := p.Wait(ctx); done <- err }()
	status, _ := browse(t, u)
	if status != http.StatusBadGateway {
		t.Errorf("browser status = %d, want 502", status)
	}
	err = <-done
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("Wait error = %v, want invalid_grant from the token endpoint", err)
	}
}

func TestLoginWaitTimesOut(t *testing.T) {
	f := newFakeIssuer(t)
	p, err := StartLogin(context.Background(), f.srv.Client(), Config{Domain: f.srv.URL, ClientID: "test-client"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait error = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Wait took %v after its deadline", d)
	}
	if _, err := p.Wait(context.Background()); err == nil {
		t.Error("second Wait succeeded")
	}
}

// issueToken logs in through the fake issuer's token endpoint directly.
func issueToken(t *testing.T, f *fakeIssuer) *oauth2.Token {
	t.Helper()
	f.mu.Lock()
	f.n++
	rt := fmt.Sprintf("refresh-%d", f.n)
	f.refreshes[rt] = true
	f.mu.Unlock()
	return &oauth2.Token{AccessToken: "initial", RefreshToken: rt, Expiry: time.Now().Add(30 * time.Second)}
}

func TestTokenSourceRefreshRotatesAndSaves(t *testing.T) {
	f := newFakeIssuer(t)
	cfg := Config{Domain: f.srv.URL, ClientID: "test-client"}
	ep, err := Discover(context.Background(), f.srv.Client(), f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	start := issueToken(t, f)
	var mu sync.Mutex
	var saved []*oauth2.Token
	save := func(tok *oauth2.Token) error {
		mu.Lock()
		defer mu.Unlock()
		saved = append(saved, tok)
		return nil
	}
	ts := cfg.TokenSource(context.Background(), f.srv.Client(), ep, start, save)

	// 30 s left is inside the 60 s early-expiry window: all callers at once
	// share a single refresh.
	var wg sync.WaitGroup
	toks := make([]*oauth2.Token, 8)
	errs := make([]error, 8)
	for i := range toks {
		wg.Go(func() { toks[i], errs[i] = ts.Token() })
	}
	wg.Wait()
	for i := range toks {
		if errs[i] != nil {
			t.Fatalf("Token: %v", errs[i])
		}
		if toks[i].AccessToken != toks[0].AccessToken || toks[i].AccessToken == "initial" {
			t.Fatalf("caller %d got %q, want one refreshed token for all", i, toks[i].AccessToken)
		}
	}
	if n := f.refreshN.Load(); n != 1 {
		t.Errorf("refreshes = %d, want 1", n)
	}
	if len(saved) != 1 || saved[0].RefreshToken == start.RefreshToken || saved[0].RefreshToken == "" {
		t.Fatalf("saved = %v, want one token with a rotated refresh token", len(saved))
	}
	if saved[0].AccessToken != toks[0].AccessToken {
		t.Error("saved token is not the token handed out")
	}
	// The fresh token (1 h) is reused, no new refresh.
	if tok, err := ts.Token(); err != nil || tok.AccessToken != toks[0].AccessToken || f.refreshN.Load() != 1 {
		t.Errorf("second Token() = %v, %v after %d refreshes; want the cached token", tok, err, f.refreshN.Load())
	}
	// The old refresh token was rotated away at the issuer.
	f.mu.Lock()
	stillValid := f.refreshes[start.RefreshToken]
	f.mu.Unlock()
	if stillValid {
		t.Error("old refresh token still valid at the issuer")
	}
}

func TestTokenSourceLoginRequired(t *testing.T) {
	f := newFakeIssuer(t)
	cfg := Config{Domain: f.srv.URL, ClientID: "test-client"}
	ep, _ := Discover(context.Background(), f.srv.Client(), f.srv.URL)
	expired := time.Now().Add(-time.Minute)
	tests := []struct {
		name         string
		tok          *oauth2.Token
		wantRequests int32
	}{
		{"revoked refresh token", &oauth2.Token{AccessToken: "a", RefreshToken: "revoked", Expiry: expired}, 1},
		{"no refresh token", &oauth2.Token{AccessToken: "a", Expiry: expired}, 0},
		{"no token at all", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.refreshN.Store(0)
			saves := 0
			ts := cfg.TokenSource(context.Background(), f.srv.Client(), ep, tt.tok, func(*oauth2.Token) error { saves++; return nil })
			for range 3 {
				if _, err := ts.Token(); !errors.Is(err, ErrLoginRequired) {
					t.Fatalf("Token() error = %v, want ErrLoginRequired", err)
				}
			}
			if n := f.refreshN.Load(); n != tt.wantRequests {
				t.Errorf("refresh requests = %d, want %d (no retry loop)", n, tt.wantRequests)
			}
			if saves != 0 {
				t.Errorf("save called %d times", saves)
			}
		})
	}
}
