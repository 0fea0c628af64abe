package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

func fastDevices(c *Config) { c.DeviceInterval = time.Second }

// deviceAuth asks for a device code the way the Basic Memory client does.
func deviceAuth(t *testing.T, e *env, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(e.srv.URL+PathDeviceAuthorization, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func deviceForm(verifier string) url.Values {
	return url.Values{
		"client_id":             {tenantapi.DefaultClientID},
		"scope":                 {tenantapi.DefaultScopes},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}
}

func pollForm(deviceCode, verifier string) url.Values {
	f := url.Values{"grant_type": {GrantTypeDeviceCode}, "device_code": {deviceCode}, "client_id": {tenantapi.DefaultClientID}}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return f
}

// TestDeviceFlow runs the whole grant with golang.org/x/oauth2's device
// client: device authorization with PKCE, approval through the verification
// page, polling, a verified access token, then a rotating refresh.
func TestDeviceFlow(t *testing.T) {
	e := newEnv(t, fastDevices)
	conf := &oauth2.Config{
		ClientID: tenantapi.DefaultClientID,
		Endpoint: oauth2.Endpoint{
			DeviceAuthURL: e.iss.Discovery().DeviceAuthorizationEndpoint,
			TokenURL:      e.iss.Discovery().TokenEndpoint,
			AuthStyle:     oauth2.AuthStyleInParams,
		},
		Scopes: strings.Fields(tenantapi.DefaultScopes),
	}
	verifier := oauth2.GenerateVerifier()
	da, err := conf.DeviceAuth(t.Context(), oauth2.S256ChallengeOption(verifier))
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if len(da.UserCode) != 9 || da.UserCode[4] != '-' || da.Interval != 1 ||
		da.VerificationURI != e.srv.URL+PathDevice || !strings.Contains(da.VerificationURIComplete, "user_code=") {
		t.Fatalf("device auth answer = %+v", da)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond) // let one poll see authorization_pending
		if err := issuertest.DeviceApprove(t.Context(), da.VerificationURIComplete, "", "ada@example.com", "correct horse"); err != nil {
			t.Errorf("DeviceApprove: %v", err)
		}
	}()
	tok, err := conf.DeviceAccessToken(t.Context(), da, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("DeviceAccessToken: %v", err)
	}
	c, err := e.iss.Verify(t.Context(), tok.AccessToken)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Subject != "user_ada" || c.TenantID != "tenant_1" || c.Email != "ada@example.com" {
		t.Errorf("claims = %+v", c)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for scope offline_access")
	}
	// The code is single use.
	if st, body := tokenRequest(t, e, pollForm(da.DeviceCode, verifier)); st != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("second use of the device code: %d %v", st, body)
	}
	// fosite's refresh grant works on the refresh token and rotates it.
	tok2, err := conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Error("refresh token not rotated")
	}
	if _, err := e.iss.Verify(t.Context(), tok2.AccessToken); err != nil {
		t.Errorf("Verify refreshed token: %v", err)
	}
}

func TestDeviceAuthorizationRefusals(t *testing.T) {
	e := newEnv(t)
	v := oauth2.GenerateVerifier()
	tests := []struct {
		name   string
		edit   func(url.Values)
		status int
		code   string
	}{
		{"no challenge", func(f url.Values) { f.Del("code_challenge") }, 400, "invalid_request"},
		{"plain method", func(f url.Values) { f.Set("code_challenge_method", "plain") }, 400, "invalid_request"},
		{"no method", func(f url.Values) { f.Del("code_challenge_method") }, 400, "invalid_request"},
		{"unknown client", func(f url.Values) { f.Set("client_id", "nope") }, 401, "invalid_client"},
		{"unknown scope", func(f url.Values) { f.Set("scope", "openid admin") }, 400, "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := deviceForm(v)
			tt.edit(f)
			st, body := deviceAuth(t, e, f)
			if st != tt.status || body["error"] != tt.code {
				t.Errorf("got %d %v, want %d %s", st, body, tt.status, tt.code)
			}
		})
	}
}

// TestDevicePolling checks the RFC 8628 answers of the token endpoint.
func TestDevicePolling(t *testing.T) {
	e := newEnv(t, fastDevices)
	now := time.Now()
	e.iss.devices.now = func() time.Time { return now }
	start := func(t *testing.T) (string, string, string) {
		v := oauth2.GenerateVerifier()
		st, body := deviceAuth(t, e, deviceForm(v))
		if st != http.StatusOK {
			t.Fatalf("device authorization: %d %v", st, body)
		}
		return body["device_code"].(string), body["user_code"].(string), v
	}
	expect := func(t *testing.T, form url.Values, code string) {
		t.Helper()
		st, body := tokenRequest(t, e, form)
		if st != http.StatusBadRequest || body["error"] != code {
			t.Fatalf("poll: %d %v, want 400 %s", st, body, code)
		}
	}

	t.Run("pkce required", func(t *testing.T) {
		dc, _, v := start(t)
		expect(t, pollForm(dc, ""), "invalid_request")
		expect(t, pollForm(dc, oauth2.GenerateVerifier()), "invalid_grant")
		expect(t, pollForm(dc, v), "authorization_pending")
	})
	t.Run("slow down", func(t *testing.T) {
		dc, _, v := start(t)
		expect(t, pollForm(dc, v), "authorization_pending")
		expect(t, pollForm(dc, v), "slow_down")
		now = now.Add(7 * time.Second) // the interval grew to 6 s
		expect(t, pollForm(dc, v), "authorization_pending")
	})
	t.Run("denied", func(t *testing.T) {
		dc, uc, v := start(t)
		page := e.srv.URL + PathDevice + "?user_code=" + url.QueryEscape(uc)
		// Without signing in, a deny (the old one-step form) decides nothing.
		form, jar := openDeviceForm(t, page)
		form.Set("action", "deny")
		resp := postDevice(t, e, jar, form)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("anonymous deny: %d, want 403", resp.StatusCode)
		}
		expect(t, pollForm(dc, v), "authorization_pending")
		now = now.Add(2 * time.Second)
		if err := issuertest.DeviceDecide(t.Context(), page, "", "ada@example.com", "correct horse", "deny"); err != nil {
			t.Fatalf("deny: %v", err)
		}
		expect(t, pollForm(dc, v), "access_denied")
	})
	t.Run("expired", func(t *testing.T) {
		dc, uc, v := start(t)
		now = now.Add(DefaultDeviceCodeTTL + time.Second)
		if err := issuertest.DeviceApprove(t.Context(), e.srv.URL+PathDevice, uc, "ada@example.com", "correct horse"); !errors.Is(err, issuertest.ErrLoginRejected) {
			t.Errorf("approving an expired code: %v, want ErrLoginRejected", err)
		}
		expect(t, pollForm(dc, v), "expired_token")
	})
	t.Run("wrong password then approve", func(t *testing.T) {
		dc, uc, v := start(t)
		if err := issuertest.DeviceApprove(t.Context(), e.srv.URL+PathDevice, strings.ToLower(uc), "ada@example.com", "wrong"); !errors.Is(err, issuertest.ErrLoginRejected) {
			t.Fatalf("wrong password: %v, want ErrLoginRejected", err)
		}
		now = now.Add(2 * time.Second)
		expect(t, pollForm(dc, v), "authorization_pending")
		if err := issuertest.DeviceApprove(t.Context(), e.srv.URL+PathDevice, uc, "ada@example.com", "correct horse"); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Second)
		st, body := tokenRequest(t, e, pollForm(dc, v))
		if st != http.StatusOK || body["access_token"] == nil || body["refresh_token"] == nil {
			t.Fatalf("poll after approval: %d %v", st, body)
		}
	})
}

func openDeviceForm(t *testing.T, page string) (url.Values, http.CookieJar) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	_, f, err := issuertest.OpenDeviceForm(t.Context(), &http.Client{Jar: jar}, page)
	if err != nil {
		t.Fatal(err)
	}
	return f.Values, jar
}

func postDevice(t *testing.T, e *env, jar http.CookieJar, form url.Values) *http.Response {
	t.Helper()
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(e.srv.URL+PathDevice, form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDevicePageCSRF(t *testing.T) {
	e := newEnv(t)
	v := oauth2.GenerateVerifier()
	_, body := deviceAuth(t, e, deviceForm(v))
	uc := body["user_code"].(string)
	form, jar := openDeviceForm(t, e.srv.URL+PathDevice+"?user_code="+uc)
	form.Set("email", "ada@example.com")
	form.Set("password", "correct horse")
	form.Set("action", "approve")
	form.Set("csrf_token", "forged")
	resp := postDevice(t, e, jar, form)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged CSRF token: status %d, want 403", resp.StatusCode)
	}
	noJar, _ := cookiejar.New(nil)
	form2, _ := openDeviceForm(t, e.srv.URL+PathDevice+"?user_code="+uc)
	form2.Set("email", "ada@example.com")
	form2.Set("password", "correct horse")
	resp = postDevice(t, e, noJar, form2)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no CSRF cookie: status %d, want 403", resp.StatusCode)
	}
	if e.iss.devices.lookupUser(context.Background(), uc) == nil {
		t.Error("the code is no longer pending after refused approvals")
	}
}

func TestDeviceDiscovery(t *testing.T) {
	e := newEnv(t)
	d := e.iss.Discovery()
	if d.DeviceAuthorizationEndpoint != e.srv.URL+PathDeviceAuthorization {
		t.Errorf("device_authorization_endpoint = %q", d.DeviceAuthorizationEndpoint)
	}
	found := false
	for _, g := range d.GrantTypesSupported {
		found = found || g == GrantTypeDeviceCode
	}
	if !found {
		t.Errorf("grant_types_supported = %v lacks the device code grant", d.GrantTypesSupported)
	}
}

func TestUserCodes(t *testing.T) {
	for range 100 {
		c := randomUserCode()
		if len(c) != userCodeLen || strings.Trim(c, userCodeAlphabet) != "" {
			t.Fatalf("user code %q", c)
		}
		if normalizeUserCode(strings.ToLower(formatUserCode(c))) != c {
			t.Fatalf("normalize(format(%q)) != itself", c)
		}
	}
}
