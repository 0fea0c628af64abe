package cloudapi

// Both login flows, refresh and PKCE against bm-server's real built-in
// issuer (server/issuer) over HTTP.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

var issuerKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

type oneAccount struct{}

func (oneAccount) Authenticate(_ context.Context, email, password string) (string, error) {
	if email == "ada@example.com" && password == "correct horse" {
		return "user_ada", nil
	}
	return "", errors.New("bad credentials")
}

func (oneAccount) Claims(context.Context, string) (tenantapi.Claims, error) {
	return tenantapi.Claims{Subject: "user_ada", Email: "ada@example.com", TenantID: "tenant_1",
		SubscriptionStatus: "active", SubscriptionTier: "pro"}, nil
}

type realIssuer struct {
	iss         *issuer.Issuer
	srv         *httptest.Server
	cfg         Config
	tokenPosts  atomic.Int64
	refreshPost atomic.Int64
}

// newRealIssuer serves issuer.New on a loopback httptest server.
func newRealIssuer(t *testing.T, edit func(*issuer.Config)) *realIssuer {
	t.Helper()
	r := &realIssuer{}
	mux := http.NewServeMux()
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == issuer.PathToken {
			r.tokenPosts.Add(1)
			if req.ParseForm() == nil && req.PostForm.Get("grant_type") == "refresh_token" {
				r.refreshPost.Add(1)
			}
		}
		mux.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := issuer.Config{IssuerURL: r.srv.URL, SigningKey: issuerKey(), Accounts: oneAccount{},
		GlobalSecret: secret, Logger: slog.New(slog.DiscardHandler), DeviceInterval: time.Second}
	if edit != nil {
		edit(&cfg)
	}
	var err error
	if r.iss, err = issuer.New(cfg); err != nil {
		t.Fatal(err)
	}
	r.iss.Register(mux)
	r.cfg = Config{Host: r.srv.URL, Domain: r.srv.URL, ClientID: tenantapi.DefaultClientID}
	return r
}

func (r *realIssuer) browserLogin(t *testing.T) *oauth2.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	p, err := StartLogin(ctx, r.srv.Client(), r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	errc := make(chan error, 1)
	go func() { errc <- issuertest.BrowserLogin(ctx, p.URL(), "ada@example.com", "correct horse") }()
	tok, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("BrowserLogin: %v", err)
	}
	return tok
}

func TestLoginFlowsAgainstBuiltInIssuer(t *testing.T) {
	r := newRealIssuer(t, nil)
	t.Run("browser", func(t *testing.T) {
		tok := r.browserLogin(t)
		c, err := r.iss.Verify(t.Context(), tok.AccessToken)
		if err != nil || c.TenantID != "tenant_1" || tok.RefreshToken == "" {
			t.Fatalf("token: claims %+v err %v refresh %t", c, err, tok.RefreshToken != "")
		}
	})
	t.Run("device", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		d, err := StartDeviceLogin(ctx, r.srv.Client(), r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(d.VerificationURIComplete(), r.srv.URL+issuer.PathDevice+"?user_code=") || len(d.UserCode()) != 9 {
			t.Fatalf("verification %q code %q", d.VerificationURIComplete(), d.UserCode())
		}
		errc := make(chan error, 1)
		go func() {
			errc <- issuertest.DeviceApprove(ctx, d.VerificationURIComplete(), "", "ada@example.com", "correct horse")
		}()
		tok, err := d.Wait(ctx)
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("DeviceApprove: %v", err)
		}
		if c, err := r.iss.Verify(ctx, tok.AccessToken); err != nil || c.Email != "ada@example.com" || tok.RefreshToken == "" {
			t.Fatalf("token: claims %+v err %v", c, err)
		}
	})
	t.Run("device denied", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		d, err := StartDeviceLogin(ctx, r.srv.Client(), r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Deny through the page as a person would: sign in, then press
		// Deny on the confirmation step (an anonymous deny decides nothing).
		errc := make(chan error, 1)
		go func() {
			errc <- issuertest.DeviceDecide(ctx, d.VerificationURIComplete(), "", "ada@example.com", "correct horse", "deny")
		}()
		if _, err := d.Wait(ctx); !errors.Is(err, ErrAccessDenied) {
			t.Fatalf("Wait after deny = %v, want ErrAccessDenied", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("DeviceDecide deny: %v", err)
		}
	})
}

// TestPKCERequiredByBuiltInIssuer: a token request without the verifier
// fails for both grants.
func TestPKCERequiredByBuiltInIssuer(t *testing.T) {
	r := newRealIssuer(t, nil)
	ctx := t.Context()
	ep, err := Discover(ctx, r.srv.Client(), r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("authorization code", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		codes := make(chan string, 1)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if c := req.URL.Query().Get("code"); c != "" {
				select {
				case codes <- c:
				default:
				}
			}
		})}
		go srv.Serve(ln)
		defer srv.Close()
		conf := r.cfg.OAuth2Config(ep, "http://"+ln.Addr().String()+"/callback")
		if err := issuertest.BrowserLogin(ctx, conf.AuthCodeURL("state-0123456789"), "ada@example.com", "correct horse"); err == nil {
			t.Error("an authorization request without a code challenge was accepted")
		}
		verifier := oauth2.GenerateVerifier()
		if err := issuertest.BrowserLogin(ctx, conf.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier)), "ada@example.com", "correct horse"); err != nil {
			t.Fatal(err)
		}
		code := <-codes
		var re *oauth2.RetrieveError
		if _, err := conf.Exchange(ctx, code); !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest {
			t.Errorf("code exchange without verifier: %v, want a 400", err)
		}
	})
	t.Run("device code", func(t *testing.T) {
		conf := r.cfg.OAuth2Config(ep, "")
		if _, err := conf.DeviceAuth(ctx); err == nil {
			t.Error("a device authorization without a code challenge was accepted")
		}
		verifier := oauth2.GenerateVerifier()
		da, err := conf.DeviceAuth(ctx, oauth2.S256ChallengeOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if err := issuertest.DeviceApprove(ctx, da.VerificationURIComplete, "", "ada@example.com", "correct horse"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.PostForm(ep.TokenURL, url.Values{"grant_type": {issuer.GrantTypeDeviceCode},
			"device_code": {da.DeviceCode}, "client_id": {tenantapi.DefaultClientID}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("device poll without verifier: %d, want 400", resp.StatusCode)
		}
	})
}

func TestRefreshAgainstBuiltInIssuer(t *testing.T) {
	t.Run("rotation", func(t *testing.T) {
		r := newRealIssuer(t, nil)
		tok := r.browserLogin(t)
		ep, err := Discover(t.Context(), r.srv.Client(), r.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		var saved []*oauth2.Token
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		ts := r.cfg.TokenSource(t.Context(), r.srv.Client(), ep, &expired, func(t *oauth2.Token) error {
			saved = append(saved, t)
			return nil
		})
		got, err := ts.Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if got.AccessToken == tok.AccessToken || got.RefreshToken == tok.RefreshToken || got.RefreshToken == "" {
			t.Error("refresh did not rotate the tokens")
		}
		if len(saved) != 1 || saved[0].RefreshToken != got.RefreshToken {
			t.Errorf("saved %d tokens, want the rotated one", len(saved))
		}
		if _, err := r.iss.Verify(t.Context(), got.AccessToken); err != nil {
			t.Errorf("refreshed access token: %v", err)
		}
	})
	t.Run("expired refresh token means login required", func(t *testing.T) {
		r := newRealIssuer(t, func(c *issuer.Config) { c.RefreshTokenTTL = time.Second })
		tok := r.browserLogin(t)
		ep, err := Discover(t.Context(), r.srv.Client(), r.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2100 * time.Millisecond)
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		ts := r.cfg.TokenSource(t.Context(), r.srv.Client(), ep, &expired, nil)
		before := r.refreshPost.Load()
		for range 3 {
			if _, err := ts.Token(); !errors.Is(err, ErrLoginRequired) {
				t.Fatalf("Token() = %v, want ErrLoginRequired", err)
			}
		}
		if n := r.refreshPost.Load() - before; n != 1 {
			t.Errorf("%d refresh requests, want 1 (no retry loop)", n)
		}
		// The tenant API client turns it into the same error, at once.
		c, err := NewClient(r.srv.URL, ts, r.srv.Client(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.TenantStatus(t.Context()); !errors.Is(err, ErrLoginRequired) {
			t.Errorf("TenantStatus = %v, want ErrLoginRequired", err)
		}
	})
}
