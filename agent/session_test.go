package agent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

type testAccount struct{}

func (testAccount) Authenticate(_ context.Context, email, password string) (string, error) {
	if email == "ada@example.com" && password == "correct horse" {
		return "user_ada", nil
	}
	return "", errors.New("bad credentials")
}

func (testAccount) Claims(context.Context, string) (tenantapi.Claims, error) {
	return tenantapi.Claims{Subject: "user_ada", Email: "ada@example.com", TenantID: "t1",
		SubscriptionStatus: "active", SubscriptionTier: "pro"}, nil
}

// cloud is the built-in issuer plus GET /tenant/status, on loopback.
type cloud struct {
	srv      *httptest.Server
	refreshN atomic.Int64
}

func newCloud(t *testing.T, refreshTTL time.Duration) *cloud {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	c := &cloud{}
	mux := http.NewServeMux()
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == issuer.PathToken && r.ParseForm() == nil && r.PostForm.Get("grant_type") == "refresh_token" {
			c.refreshN.Add(1)
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	iss, err := issuer.New(issuer.Config{IssuerURL: c.srv.URL, SigningKey: key, Accounts: testAccount{},
		GlobalSecret: secret, RefreshTokenTTL: refreshTTL, DeviceInterval: time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	iss.Register(mux)
	mux.HandleFunc("GET "+tenantapi.PathTenantStatus, func(w http.ResponseWriter, r *http.Request) {
		claims, err := iss.Authenticate(r)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(tenantapi.ErrorBody{Detail: "not authenticated"})
			return
		}
		json.NewEncoder(w).Encode(tenantapi.TenantStatus{TenantID: claims.TenantID, Email: claims.Email,
			SubscriptionStatus: claims.SubscriptionStatus, SubscriptionTier: claims.SubscriptionTier, Devices: 1})
	})
	return c
}

func newTestDaemon(t *testing.T, c *cloud) *Daemon {
	t.Helper()
	t.Setenv("HOME", t.TempDir()) // no ~/.basic-memory/config.json
	t.Setenv(cloudapi.EnvKeyring, cloudapi.BackendFile)
	for _, k := range []string{cloudapi.EnvHost, cloudapi.EnvDomain, cloudapi.EnvClientID} {
		t.Setenv(k, "")
	}
	sock, err := os.MkdirTemp("", "bmag") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	home := t.TempDir()
	d, err := New(Config{Home: home, Folder: filepath.Join(home, "notes"), SocketPath: filepath.Join(sock, "s"),
		CloudHost: c.srv.URL, CloudDomain: c.srv.URL}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func serve(t *testing.T, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func waitStatus(t *testing.T, d *Daemon, timeout time.Duration, ok func(ipc.Status) bool) ipc.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := d.Status(t.Context())
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never matched; last: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExpiredRefreshTokenMeansLoginRequired: a daemon whose stored grant
// the issuer no longer honours ends in state login_required, asks the issuer
// once, and still takes a new login.
func TestExpiredRefreshTokenMeansLoginRequired(t *testing.T) {
	c := newCloud(t, time.Second)
	d := newTestDaemon(t, c)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := cloudapi.StartLogin(ctx, nil, d.cloud)
	if err != nil {
		t.Fatal(err)
	}
	go issuertest.BrowserLogin(ctx, p.URL(), "ada@example.com", "correct horse")
	tok, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok.Expiry = time.Now().Add(-time.Minute) // the access token is spent
	if err := d.creds.SaveToken(tok); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // and so is the refresh token

	serve(t, d)
	st := waitStatus(t, d, 15*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateLoginRequired })
	if st.LoggedIn || !strings.Contains(st.Error, "login required") {
		t.Errorf("status = %+v", st)
	}
	time.Sleep(time.Second)
	if n := c.refreshN.Load(); n != 1 {
		t.Errorf("%d refresh requests, want 1: no retry loop", n)
	}
	if got := d.Status(t.Context()).State; got != ipc.StateLoginRequired {
		t.Errorf("state %q a second later, want it to stay login_required", got)
	}

	// A device login can start from here, and its code is published.
	ls, err := d.Login(ctx, ipc.LoginOptions{Device: true})
	if err != nil {
		t.Fatal(err)
	}
	st = d.Status(ctx)
	if ls.Method != ipc.LoginDevice || ls.UserCode == "" || st.LoginUserCode != ls.UserCode ||
		st.LoginURL != ls.URL || st.LoginMethod != ipc.LoginDevice {
		t.Errorf("device login start %+v, status %+v", ls, st)
	}
	// Logout drops the login in progress and the stored token.
	if err := d.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	st = d.Status(ctx)
	if st.State != ipc.StateLoggedOut || st.LoginURL != "" {
		t.Errorf("after logout: %+v", st)
	}
	if _, err := d.creds.LoadToken(); !errors.Is(err, cloudapi.ErrNotFound) {
		t.Errorf("token after logout: %v, want not found", err)
	}
}

// TestDeviceLoginSavesToken: the daemon's device login, approved on the
// issuer's page, stores the token and wakes the session loop.
func TestDeviceLoginSavesToken(t *testing.T) {
	c := newCloud(t, 0)
	d := newTestDaemon(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ls, err := d.Login(ctx, ipc.LoginOptions{Device: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := issuertest.DeviceApprove(ctx, ls.URL, "", "ada@example.com", "correct horse"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.loggedIn:
	case <-ctx.Done():
		t.Fatal("login did not complete")
	}
	tok, err := d.creds.LoadToken()
	if err != nil || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("stored token: %v", err)
	}
	if st := d.Status(ctx); st.LoginURL != "" || st.LoginMethod != "" {
		t.Errorf("login still published after it completed: %+v", st)
	}
}
