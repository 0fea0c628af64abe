package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/internal/syncbuf"
	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// pg is the test binary's PostgreSQL, started by the first test or
// benchmark that asks for it.
var pg pgtest.Shared

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg)) }

const (
	demoEmail    = "ada@example.com"
	demoPassword = "correct horse battery"
)

// running is a served Server and how to stop it.
type running struct {
	*Server
	logs   *syncbuf.Buffer
	cancel context.CancelFunc
	done   chan struct{} // closed when Serve returned, with its error in err
	err    error
}

// stop cancels Serve and returns its error and how long it took to return.
func (r *running) stop(t testing.TB) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	r.cancel()
	select {
	case <-r.done:
		return time.Since(start), r.err
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return 30 s after cancel")
		return 0, nil
	}
}

// serve starts a server on loopback ports in a temp dir with a demo account;
// mod adjusts the config first.
func serve(t testing.TB, mod func(*Config)) *running {
	t.Helper()
	return serveWrapped(t, mod, nil)
}

// serveWrapped is serve with wrap around the API handler.
func serveWrapped(t testing.TB, mod func(*Config), wrap func(http.Handler) http.Handler) *running {
	t.Helper()
	logs := &syncbuf.Buffer{}
	cfg := Config{
		Addr:         "127.0.0.1:0",
		S3Addr:       "127.0.0.1:0",
		DataDir:      t.TempDir(),
		DemoEmail:    demoEmail,
		DemoPassword: demoPassword,
		Logger:       slog.New(slog.NewJSONHandler(logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.wrap = wrap
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: srv, logs: logs, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = srv.Serve(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// login runs the authorization code flow with PKCE against srv's issuer as
// the person with email and password, and returns an access token.
func login(t testing.TB, srv *Server, email, password string) string {
	t.Helper()
	return loginTokens(t, srv, email, password).AccessToken
}

// oauthConfig is the agent's OAuth client of srv's issuer, redirecting to
// redirectURL.
func oauthConfig(srv *Server, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: tenantapi.DefaultClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL:   srv.URL() + issuer.PathAuthorize,
			TokenURL:  srv.URL() + issuer.PathToken,
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: redirectURL,
		Scopes:      strings.Fields(tenantapi.DefaultScopes),
	}
}

// refresh trades refreshToken at srv's token endpoint.
func refresh(t testing.TB, srv *Server, refreshToken string) (*oauth2.Token, error) {
	t.Helper()
	return oauthConfig(srv, "").TokenSource(context.Background(),
		&oauth2.Token{RefreshToken: refreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
}

// loginTokens is login returning the tokens (access and refresh).
func loginTokens(t testing.TB, srv *Server, email, password string) *oauth2.Token {
	t.Helper()
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	codes := make(chan string, 1)
	cb := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case codes <- r.URL.Query().Get("code"):
		default:
		}
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = cb.Serve(ln) }()
	defer cb.Close()
	conf := oauthConfig(srv, "http://"+ln.Addr().String()+"/callback")
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-1234567890", oauth2.S256ChallengeOption(verifier))
	if err := issuertest.BrowserLogin(ctx, authURL, email, password); err != nil {
		t.Fatalf("BrowserLogin: %v", err)
	}
	var code string
	select {
	case code = <-codes:
	case <-time.After(5 * time.Second):
		t.Fatal("no code at the callback")
	}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

// get sends a GET with an optional bearer token and headers.
func get(t testing.TB, url, token string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return resp, string(b)
}
