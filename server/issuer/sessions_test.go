package issuer

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// endLog records what OnSessionsEnded is told.
type endLog struct {
	mu    sync.Mutex
	ended map[string]string // sid -> reason
}

func (l *endLog) hook(_ context.Context, sids []string, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended == nil {
		l.ended = map[string]string{}
	}
	for _, s := range sids {
		l.ended[s] = reason
	}
}

func (l *endLog) reason(sid string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended[sid]
}

// signIn logs in through the browser and returns the tokens and the sid
// of their session.
func (e *env) signIn(t *testing.T) (*oauth2.Token, string) {
	t.Helper()
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	tok, err := conf.Exchange(t.Context(), e.login(t, conf, verifier), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.iss.Verify(t.Context(), tok.AccessToken)
	if err != nil || c.SessionID == "" {
		t.Fatalf("Verify fresh token = %+v, %v", c, err)
	}
	return tok, c.SessionID
}

func (e *env) refresh(t *testing.T, rt string) (*oauth2.Token, error) {
	t.Helper()
	return e.oauthConfig("127.0.0.1").TokenSource(t.Context(), &oauth2.Token{RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}).Token()
}

func (e *env) revoke(t *testing.T, token, hint string) {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+PathRevoke, url.Values{
		"token": {token}, "token_type_hint": {hint}, "client_id": {tenantapi.DefaultClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d", resp.StatusCode)
	}
}

// TestSessionEnds: each way a session ends stops its refresh token and
// its access tokens (in this process at once), tells OnSessionsEnded why,
// and leaves the person's other sessions alone unless all were ended.
func TestSessionEnds(t *testing.T) {
	tests := []struct {
		name   string
		end    func(t *testing.T, e *env, tok *oauth2.Token, sid string) *oauth2.Token // returns the tokens that must now fail
		reason string
		others bool // the person's other session ends too
	}{
		{"logout with the refresh token", func(t *testing.T, e *env, tok *oauth2.Token, _ string) *oauth2.Token {
			e.revoke(t, tok.RefreshToken, "refresh_token")
			return tok
		}, EndLogout, false},
		{"logout with the access token", func(t *testing.T, e *env, tok *oauth2.Token, _ string) *oauth2.Token {
			e.revoke(t, tok.AccessToken, "access_token")
			return tok
		}, EndLogout, false},
		{"refresh token reuse", func(t *testing.T, e *env, tok *oauth2.Token, _ string) *oauth2.Token {
			tok2, err := e.refresh(t, tok.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if _, err := e.refresh(t, tok.RefreshToken); err == nil {
				t.Fatal("reusing a rotated refresh token succeeded")
			}
			return tok2 // the whole family
		}, EndTokenReuse, false},
		{"password changed", func(t *testing.T, e *env, tok *oauth2.Token, sid string) *oauth2.Token {
			sids, err := e.iss.EndSubjectSessions(t.Context(), "user_ada", EndPasswordChanged)
			if err != nil || !slices.Contains(sids, sid) || len(sids) != 2 {
				t.Fatalf("EndSubjectSessions = %v, %v; want both sessions", sids, err)
			}
			return tok
		}, EndPasswordChanged, true},
		{"operator ends one session", func(t *testing.T, e *env, tok *oauth2.Token, sid string) *oauth2.Token {
			if err := e.iss.EndSession(t.Context(), sid, EndByOperator); err != nil {
				t.Fatal(err)
			}
			return tok
		}, EndByOperator, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ends endLog
			e := newEnv(t, func(c *Config) { c.OnSessionsEnded = ends.hook })
			other, otherSID := e.signIn(t)
			tok, sid := e.signIn(t)
			if sid == otherSID {
				t.Fatal("two logins share a session id")
			}
			dead := tt.end(t, e, tok, sid)

			if _, err := e.iss.Verify(t.Context(), dead.AccessToken); !errors.Is(err, ErrSessionEnded) || !errors.Is(err, ErrInvalidToken) {
				t.Errorf("Verify after the end: %v, want ErrSessionEnded and ErrInvalidToken", err)
			}
			if live, err := e.iss.SessionLive(t.Context(), tenantapi.Claims{Subject: "user_ada", SessionID: sid}); err != nil || live {
				t.Errorf("SessionLive after the end = %v, %v", live, err)
			}
			var re *oauth2.RetrieveError
			if _, err := e.refresh(t, dead.RefreshToken); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Errorf("refresh after the end: %v, want invalid_grant", err)
			}
			if got := ends.reason(sid); got != tt.reason {
				t.Errorf("OnSessionsEnded reason = %q, want %q", got, tt.reason)
			}

			_, otherErr := e.iss.Verify(t.Context(), other.AccessToken)
			if tt.others != (otherErr != nil) {
				t.Errorf("the other session's token after the end: %v (want it ended: %v)", otherErr, tt.others)
			}
			// Signing in again always works: a new session.
			if _, sid2 := e.signIn(t); sid2 == sid {
				t.Error("a new login reused the ended session")
			}
		})
	}
}

// TestSessionCutoffRefusesOldLogins: a code of a login made before the
// person's sessions were ended cannot be exchanged afterwards.
func TestSessionCutoffRefusesOldLogins(t *testing.T) {
	e := newEnv(t)
	conf := e.oauthConfig("127.0.0.1")
	verifier := oauth2.GenerateVerifier()
	code := e.login(t, conf, verifier)
	if _, err := e.iss.EndSubjectSessions(t.Context(), "user_ada", EndPasswordChanged); err != nil {
		t.Fatal(err)
	}
	var re *oauth2.RetrieveError
	if _, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier)); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("exchanging a code of a login before the cutoff: %v, want invalid_grant", err)
	}
}

// TestSessionCacheTTL: another replica (same storage) accepts an ended
// session's access token until its cache entry expires, then refuses it;
// SessionLive refuses it there at once.
func TestSessionCacheTTL(t *testing.T) {
	const ttl = 300 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.SessionCacheTTL = ttl })
	tok, sid := e.signIn(t)
	other, _ := e.replica(t, e.iss.store.db)
	if _, err := other.Verify(t.Context(), tok.AccessToken); err != nil {
		t.Fatalf("replica Verify: %v", err)
	}
	if err := e.iss.EndSession(t.Context(), sid, EndByOperator); err != nil {
		t.Fatal(err)
	}
	if live, err := other.SessionLive(t.Context(), tenantapi.Claims{Subject: "user_ada", SessionID: sid}); err != nil || live {
		t.Errorf("replica SessionLive after the end = %v, %v; want false at once", live, err)
	}
	// SessionLive refreshed the replica's cache: build a third one that
	// cached the live answer before the end.
	third, _ := e.replica(t, e.iss.store.db)
	tok2, sid2 := e.signIn(t)
	if _, err := third.Verify(t.Context(), tok2.AccessToken); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.iss.EndSession(t.Context(), sid2, EndByOperator); err != nil {
		t.Fatal(err)
	}
	var refusedAfter time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := third.Verify(t.Context(), tok2.AccessToken); errors.Is(err, ErrSessionEnded) {
			refusedAfter = time.Since(start)
			break
		}
	}
	if refusedAfter == 0 {
		t.Fatal("the replica never refused the ended session's token")
	}
	t.Logf("FIGURE session cache: a replica refused an ended session's access token after %s (cache TTL %s)", refusedAfter.Round(time.Millisecond), ttl)
}

// TestSessionCacheNoTTL: with a negative TTL every Verify asks the store.
func TestSessionCacheNoTTL(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionCacheTTL = -1 })
	tok, sid := e.signIn(t)
	other, _ := e.replica(t, e.iss.store.db)
	if _, err := other.Verify(t.Context(), tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	if err := e.iss.EndSession(t.Context(), sid, EndByOperator); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verify(t.Context(), tok.AccessToken); !errors.Is(err, ErrSessionEnded) {
		t.Errorf("replica Verify without a cache after the end: %v, want ErrSessionEnded", err)
	}
}

// sessionsDown is a Storage whose session lookups fail (a database that
// went away).
type sessionsDown struct{ Storage }

func (sessionsDown) AuthSession(context.Context, string) (store.AuthSession, error) {
	return store.AuthSession{}, errors.New("database is locked")
}

// TestSessionCheckUnavailable: when the store cannot say whether a
// session is live and nothing is cached, Verify's error says the check is
// unavailable (AuthUnavailable, for the tenant API's 503), not that the
// token is invalid or its session ended (a 401 would send the client to
// sign in again); with an answer cached, that answer holds.
func TestSessionCheckUnavailable(t *testing.T) {
	e := newEnv(t)
	tok, _ := e.signIn(t)
	cold, _ := e.replica(t, sessionsDown{e.iss.store.db})
	_, err := cold.Verify(t.Context(), tok.AccessToken)
	var u interface{ AuthUnavailable() bool }
	if !errors.As(err, &u) || !u.AuthUnavailable() || errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrSessionEnded) {
		t.Errorf("Verify with the session store down and nothing cached: %v, want AuthUnavailable and not ErrInvalidToken", err)
	}
	if _, err := e.iss.Verify(t.Context(), tok.AccessToken); err != nil {
		t.Fatalf("Verify with the store up: %v", err)
	}
}
