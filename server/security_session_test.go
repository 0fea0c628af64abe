package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// The caches of the revocation tests: short, so that the bounds they set
// show within a test; the defaults are 30 s each.
const (
	revocationSessionTTL = 2 * time.Second
	revocationKeyTTL     = time.Second
	// revocationBound is the bound on an ended session's access
	// tokens everywhere (and, generously, on its keys at the S3 endpoint).
	revocationBound = 60 * time.Second
)

// liveSession is a login and a key it minted.
type liveSession struct {
	tok *oauth2.Token
	key tenantapi.MountCredentials
}

func startSession(t *testing.T, r *running, password string) liveSession {
	t.Helper()
	s := liveSession{tok: loginTokens(t, r.Server, demoEmail, password)}
	s.key = mint(t, r, s.tok.AccessToken)
	if _, err := s3Client(s.key).ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(s.key.BucketName), MaxKeys: aws.Int32(1)}); err != nil {
		t.Fatalf("a fresh key at the S3 endpoint: %v", err)
	}
	return s
}

// refused reports whether the S3 endpoint refuses the key (403).
func refused(mc tenantapi.MountCredentials) bool {
	_, err := s3Client(mc).ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(mc.BucketName), MaxKeys: aws.Int32(1)})
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden
}

// sessionEnded asserts what must hold once the session of tok (which
// minted keys) ended at ended, and prints the timings. With statusFirst
// it watches GET /tenant/status before anything else: minting asks the
// store and so also renews the verifier's cache, which would hide the
// cache's TTL.
func sessionEnded(t *testing.T, r *running, how string, ended time.Time, statusFirst bool, tok *oauth2.Token, keys ...tenantapi.MountCredentials) {
	t.Helper()
	// Every other route refuses the access token within the session
	// cache's TTL.
	var statusRefused time.Duration
	watchStatus := func() {
		for deadline := ended.Add(revocationBound); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if code, _ := do(t, http.MethodGet, r.URL()+tenantapi.PathTenantStatus, tok.AccessToken, "", nil); code == http.StatusUnauthorized {
				statusRefused = time.Since(ended)
				return
			}
		}
		t.Errorf("%s: GET /tenant/status still answers the old access token %s after the end", how, revocationBound)
	}
	if statusFirst {
		watchStatus()
	}
	// Minting and listing keys ask the store: refused at once, 401 with
	// the API's error body.
	code, body := do(t, http.MethodPost, r.URL()+tenantapi.PathMountCredentials, tok.AccessToken, `{"description":"after the end"}`, nil)
	mintRefused := time.Since(ended)
	var eb tenantapi.ErrorBody
	if code != http.StatusUnauthorized || json.Unmarshal([]byte(body), &eb) != nil || eb.Detail != tenantapi.DetailSessionEnded {
		t.Errorf("%s: minting a key with the old access token = %d %s; want 401 {\"detail\":%q} at once", how, code, body, tenantapi.DetailSessionEnded)
	}
	if code, body := do(t, http.MethodGet, r.URL()+tenantapi.PathMountCredentials, tok.AccessToken, "", nil); code != http.StatusUnauthorized {
		t.Errorf("%s: listing keys with the old access token = %d %s; want 401 at once", how, code, body)
	}
	// The refresh token is refused at once.
	var re *oauth2.RetrieveError
	if _, err := refresh(t, r.Server, tok.RefreshToken); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("%s: the old refresh token: %v; want invalid_grant", how, err)
	}
	if !statusFirst {
		watchStatus()
	}
	// The keys the session minted stop working at the embedded S3.
	var keysRefused time.Duration
	for deadline := ended.Add(revocationBound); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		all := true
		for _, k := range keys {
			all = all && refused(k)
		}
		if all {
			keysRefused = time.Since(ended)
			break
		}
	}
	if keysRefused == 0 {
		t.Errorf("%s: a key the session minted still works at the S3 endpoint %s after the end", how, revocationBound)
	}
	t.Logf("FIGURE session revocation (%s): minting with the old access token refused %s after the end (HTTP %d), GET /tenant/status refused after %s (session cache TTL %s; watched first: %v), old refresh token refused, its %d keys refused at the embedded S3 after %s (key cache TTL %s)",
		how, mintRefused.Round(time.Millisecond), code, statusRefused.Round(time.Millisecond), revocationSessionTTL, statusFirst,
		len(keys), keysRefused.Round(time.Millisecond), revocationKeyTTL)
}

func serveForRevocation(t *testing.T) *running {
	t.Helper()
	return serve(t, func(c *Config) {
		c.SessionCacheTTL = revocationSessionTTL
		c.KeyCacheTTL = revocationKeyTTL
		c.MintPerHour = -1
	})
}

// TestSecuritySessionRevocationLogout: after a logout (POST /oauth2/revoke
// with the refresh token), the session's access token can no longer mint
// or list keys, soon nothing else, its refresh token is refused and its
// keys stop working; another session of the same person keeps going.
// Before, the access token kept working for up to an hour and could mint
// keys, which never expired.
func TestSecuritySessionRevocationLogout(t *testing.T) {
	r := serveForRevocation(t)
	other := startSession(t, r, demoPassword)
	s := startSession(t, r, demoPassword)

	resp, err := http.PostForm(r.URL()+issuer.PathRevoke, url.Values{
		"token": {s.tok.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {tenantapi.DefaultClientID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ended := time.Now()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d", resp.StatusCode)
	}
	sessionEnded(t, r, "logout", ended, false, s.tok, s.key)

	if refused(other.key) {
		t.Error("the other session's key stopped working")
	}
	mint(t, r, other.tok.AccessToken) // the other session mints on
}

// TestSecuritySessionRevocationFamily: a refresh token used twice (stolen
// and replayed) ends the whole family: the rotated tokens and the keys
// minted with any access token of the session.
func TestSecuritySessionRevocationFamily(t *testing.T) {
	r := serveForRevocation(t)
	s := startSession(t, r, demoPassword)
	tok2, err := refresh(t, r.Server, s.tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	key2 := mint(t, r, tok2.AccessToken)

	_, err = refresh(t, r.Server, s.tok.RefreshToken) // the replay
	ended := time.Now()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("replaying a rotated refresh token: %v; want invalid_grant", err)
	}
	sessionEnded(t, r, "refresh token reuse", ended, false, tok2, s.key, key2)
}

// TestSecuritySessionRevocationPasswd: bm-server user passwd and user
// disable, run as the admin command does (another Server on the same data
// dir: another process's view), end every session of the account: minting
// is refused at once, the rest within the running server's cache TTLs.
func TestSecuritySessionRevocationPasswd(t *testing.T) {
	tests := []struct {
		name string
		act  func(ctx context.Context, admin *Server) (int, error)
		// password signs in afterwards, if signIn
		password string
		signIn   bool
	}{
		{"passwd", func(ctx context.Context, admin *Server) (int, error) {
			return admin.SetPassword(ctx, demoEmail, "a brand new password")
		}, "a brand new password", true},
		{"disable", func(ctx context.Context, admin *Server) (int, error) {
			return admin.DisableAccount(ctx, demoEmail)
		}, demoPassword, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := serveForRevocation(t)
			a := startSession(t, r, demoPassword)
			b := startSession(t, r, demoPassword)

			admin, err := New(context.Background(), Config{DataDir: r.cfg.DataDir, Addr: "127.0.0.1:0", S3Addr: "127.0.0.1:0",
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			// Listing keys asks the store and renews the running server's
			// cache entries: they now say "live" for a whole TTL.
			for _, s := range []liveSession{a, b} {
				if code, body := do(t, http.MethodGet, r.URL()+tenantapi.PathMountCredentials, s.tok.AccessToken, "", nil); code != http.StatusOK {
					t.Fatalf("list keys = %d %s", code, body)
				}
			}
			n, err := tt.act(context.Background(), admin)
			ended := time.Now()
			admin.Close()
			if err != nil || n != 2 {
				t.Errorf("%s = %d sessions, %v; want both sessions ended", tt.name, n, err)
			}
			// Session 1 shows minting refused at once, session 2 the
			// session cache's TTL at the other routes.
			sessionEnded(t, r, "user "+tt.name+", session 1", ended, false, a.tok, a.key)
			sessionEnded(t, r, "user "+tt.name+", session 2", ended, true, b.tok, b.key)

			if tt.signIn {
				mint(t, r, login(t, r.Server, demoEmail, tt.password)) // a new session works
			} else if _, err := (accounts{r.Store()}).Authenticate(context.Background(), demoEmail, tt.password); err == nil {
				t.Error("the disabled account still signs in")
			}
		})
	}
}
