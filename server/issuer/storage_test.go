package issuer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/server/store/pgtest"
)

// testStorage is the Storage of newEnv's issuers: the whole suite runs on
// SQLite (what bm-server uses), then again in memory (the default of New).
var testStorage = "sqlite"

// pg is this test binary's PostgreSQL server, started on first use.
var pg pgtest.Shared

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 {
		fmt.Println("issuer tests again with in-memory storage")
		testStorage = "memory"
		code = m.Run()
	}
	pg.Stop()
	os.Exit(code)
}

// openStore opens a store of dialect d on a fresh database.
func openStore(t *testing.T, d store.Dialect) *store.Store {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "bm.db")
	if d == store.DialectPostgres {
		dsn = pg.Get(t).NewDatabase(t)
	}
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newTestStorage(t *testing.T) Storage {
	if testStorage == "memory" {
		return nil
	}
	return openStore(t, store.DialectSQLite)
}

// sqlOnly skips tests of the SQL storage during the in-memory pass.
func sqlOnly(t *testing.T) {
	if testStorage == "memory" {
		t.Skip("SQL storage test: ran in the SQLite pass")
	}
}

// switchHandler serves one of several issuers on one URL: a restarted
// server or another replica behind the same load balancer.
type switchHandler struct{ h atomic.Pointer[http.ServeMux] }

func (s *switchHandler) set(m *http.ServeMux) { s.h.Store(m) }

func (s *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.Load().ServeHTTP(w, r) }

// replica builds another Issuer from e's configuration with storage st
// (nil: e's) and returns it with its mux; e.sw.set(mux) routes to it.
func (e *env) replica(t *testing.T, st Storage) (*Issuer, *http.ServeMux) {
	t.Helper()
	cfg := e.cfg
	if st != nil {
		cfg.Storage = st
	}
	iss, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	iss.Register(mux)
	return iss, mux
}

// eachDialect runs fn on SQLite and PostgreSQL.
func eachDialect(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	sqlOnly(t)
	for _, d := range []store.Dialect{store.DialectSQLite, store.DialectPostgres} {
		t.Run(string(d), func(t *testing.T) { fn(t, openStore(t, d)) })
	}
}

func refreshWith(t *testing.T, conf *oauth2.Config, rt string) (*oauth2.Token, error) {
	return conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}).Token()
}

func isInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

// TestRestartKeepsLogins: a refresh token issued before a restart (a new
// Issuer on a reopened database) is accepted after it, rotation still
// rejects the old one, and reuse revokes the grant.
func TestRestartKeepsLogins(t *testing.T) {
	sqlOnly(t)
	path := filepath.Join(t.TempDir(), "bm.db")
	st1, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Storage = st1 })
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	tok, err := conf.Exchange(t.Context(), e.login(t, conf, verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	tok1, err := refreshWith(t, conf, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh before restart: %v", err)
	}
	st1.Close()

	// Restart: a new store on the same file, a new Issuer.
	st2, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	iss2, mux2 := e.replica(t, st2)
	e.sw.set(mux2)

	tok2, err := refreshWith(t, conf, tok1.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok1.RefreshToken {
		t.Error("refresh token not rotated after restart")
	}
	if c, err := iss2.Verify(t.Context(), tok2.AccessToken); err != nil || c.Subject != "user_ada" || c.TenantID != "tenant_1" {
		t.Errorf("Verify after restart = %+v, %v", c, err)
	}
	// The rotated-out tokens stay refused after the restart...
	for name, rt := range map[string]string{"first": tok.RefreshToken, "second": tok1.RefreshToken} {
		if _, err := refreshWith(t, conf, rt); !isInvalidGrant(err) {
			t.Errorf("reusing the %s refresh token after restart: err = %v, want invalid_grant", name, err)
		}
	}
	// ... and their reuse revoked the whole grant, the newest token too.
	if _, err := refreshWith(t, conf, tok2.RefreshToken); err == nil {
		t.Error("refresh token still valid after reuse of an older one")
	}
}

// TestReplicasShareLogin: an authorization code issued by replica A (the
// login form posted to A) is exchanged at replica B; reusing the code at A
// fails and revokes what B issued.
func TestReplicasShareLogin(t *testing.T) {
	eachDialect(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, func(c *Config) { c.Storage = st })
		muxA := http.NewServeMux()
		e.iss.Register(muxA)
		e.sw.set(muxA)
		issB, muxB := e.replica(t, nil)

		conf := e.oauthConfig("localhost")
		verifier := oauth2.GenerateVerifier()
		code := e.login(t, conf, verifier) // at A
		e.sw.set(muxB)
		tok, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange at B: %v", err)
		}
		if idt, _ := tok.Extra("id_token").(string); idt == "" {
			t.Error("no id_token from B")
		}
		if c, err := issB.Verify(t.Context(), tok.AccessToken); err != nil || c.Email != "ada@example.com" {
			t.Errorf("Verify at B = %+v, %v", c, err)
		}
		if _, err := e.iss.Verify(t.Context(), tok.AccessToken); err != nil {
			t.Errorf("Verify at A: %v", err)
		}

		e.sw.set(muxA)
		if _, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier)); !isInvalidGrant(err) {
			t.Errorf("second exchange of the code at A: err = %v, want invalid_grant", err)
		}
		if _, err := refreshWith(t, conf, tok.RefreshToken); err == nil {
			t.Error("refresh token still valid after its code was reused")
		}

		// A fresh login's refresh token works at either replica in turn.
		code = e.login(t, conf, verifier)
		tok, err = conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		e.sw.set(muxB)
		if _, err := refreshWith(t, conf, tok.RefreshToken); err != nil {
			t.Errorf("refresh at B of a token from A: %v", err)
		}
	})
}

// TestDeviceCodeAcrossReplicas: a device code created and approved at A
// is polled to tokens at B, once.
func TestDeviceCodeAcrossReplicas(t *testing.T) {
	eachDialect(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, fastDevices, func(c *Config) { c.Storage = st })
		muxA := http.NewServeMux()
		e.iss.Register(muxA)
		e.sw.set(muxA)
		issB, muxB := e.replica(t, nil)

		verifier := oauth2.GenerateVerifier()
		status, da := deviceAuth(t, e, deviceForm(verifier))
		if status != http.StatusOK {
			t.Fatalf("device authorization: %d %v", status, da)
		}
		deviceCode, _ := da["device_code"].(string)
		complete, _ := da["verification_uri_complete"].(string)

		e.sw.set(muxB)
		if st, body := tokenRequest(t, e, pollForm(deviceCode, verifier)); st != http.StatusBadRequest || body["error"] != "authorization_pending" {
			t.Fatalf("poll at B before approval: %d %v", st, body)
		}
		e.sw.set(muxA)
		if err := issuertest.DeviceApprove(t.Context(), complete, "", "ada@example.com", "correct horse"); err != nil {
			t.Fatalf("DeviceApprove at A: %v", err)
		}
		e.sw.set(muxB)
		time.Sleep(time.Second) // the polling interval
		st200, body := tokenRequest(t, e, pollForm(deviceCode, verifier))
		if st200 != http.StatusOK {
			t.Fatalf("poll at B after approval: %d %v", st200, body)
		}
		at, _ := body["access_token"].(string)
		if c, err := issB.Verify(t.Context(), at); err != nil || c.Subject != "user_ada" {
			t.Errorf("Verify = %+v, %v", c, err)
		}
		if body["refresh_token"] == nil {
			t.Error("no refresh token")
		}
		e.sw.set(muxA)
		if st, body := tokenRequest(t, e, pollForm(deviceCode, verifier)); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("second use of the device code at A: %d %v", st, body)
		}
	})
}

// TestNoTokensInDatabase: the table holds signatures, never a code or
// token that could be replayed.
func TestNoTokensInDatabase(t *testing.T) {
	sqlOnly(t)
	st := openStore(t, store.DialectSQLite)
	e := newEnv(t, fastDevices, func(c *Config) { c.Storage = st })
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	code := e.login(t, conf, verifier)
	tok, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := refreshWith(t, conf, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	_, da := deviceAuth(t, e, deviceForm(verifier))
	deviceCode, _ := da["device_code"].(string)
	pending := e.login(t, conf, verifier) // not exchanged: its PKCE and OIDC rows remain

	rows, err := st.DB().QueryContext(t.Context(), `SELECT kind, signature, request_id, client_id, subject, data FROM oauth_sessions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var all strings.Builder
	kinds := map[string]int{}
	for rows.Next() {
		var kind, sig, rid, cid, sub, data string
		if err := rows.Scan(&kind, &sig, &rid, &cid, &sub, &data); err != nil {
			t.Fatal(err)
		}
		kinds[kind]++
		fmt.Fprintln(&all, kind, sig, rid, cid, sub, data)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{kindAuthorizeCode, kindAccessToken, kindRefreshToken, kindPKCE, kindOIDC, kindDeviceCode, kindUserCode} {
		if kinds[k] == 0 {
			t.Errorf("no %s row: %v", k, kinds)
		}
	}
	secrets := map[string]string{
		"code": code, "pending code": pending, "device code": deviceCode, "verifier": verifier,
		"access token": tok.AccessToken, "refreshed access token": tok2.AccessToken,
		"refresh token": tok.RefreshToken, "refreshed refresh token": tok2.RefreshToken,
		"password": "correct horse",
	}
	// An HMAC token is <key>.<signature>: the key must not be stored either.
	for _, name := range []string{"code", "pending code", "refresh token", "refreshed refresh token"} {
		if k, _, ok := strings.Cut(secrets[name], "."); ok {
			secrets[name+" key"] = k
		}
	}
	for name, s := range secrets {
		if s == "" {
			t.Fatalf("empty %s", name)
		}
		if strings.Contains(all.String(), s) {
			t.Errorf("the database holds the %s in clear", name)
		}
	}
}

// TestExpiredRowsSwept: writing deletes expired rows.
func TestExpiredRowsSwept(t *testing.T) {
	sqlOnly(t)
	st := openStore(t, store.DialectSQLite)
	ctx := t.Context()
	old := store.OAuthSession{Kind: kindPKCE, Signature: "old", Active: true, Data: "{}", ExpiresAt: time.Now().Add(-time.Minute)}
	if err := st.CreateOAuthSession(ctx, old); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.Storage = st })
	conf := e.oauthConfig("127.0.0.1")
	e.login(t, conf, oauth2.GenerateVerifier())
	if _, err := st.OAuthSession(ctx, kindPKCE, "old"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired row after a login: err = %v, want ErrNotFound", err)
	}
}
