package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/issuer"
	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// deviceAuthForm is a device authorization request as the Basic Memory
// client sends it.
func deviceAuthForm() url.Values {
	return url.Values{
		"client_id":             {tenantapi.DefaultClientID},
		"scope":                 {tenantapi.DefaultScopes},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())},
		"code_challenge_method": {"S256"},
	}
}

// flood sends req() from the loopback address ip with workers goroutines
// for d (or, with d < 0, -d requests in all) and counts the answers by
// status.
func flood(ip string, workers int, d time.Duration, req func(c *http.Client) (int, error)) map[int]int {
	var mu sync.Mutex
	counts := map[int]int{}
	c := clientFrom(ip)
	c.Transport.(*http.Transport).DisableKeepAlives = false
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = workers
	end := time.Now().Add(d)
	var sent atomic.Int64
	more := func() bool {
		if d < 0 {
			return sent.Add(1) <= int64(-d)
		}
		return time.Now().Before(end)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for more() {
				code, err := req(c)
				if err != nil {
					code = -1
				}
				mu.Lock()
				counts[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return counts
}

func postForm(c *http.Client, u string, form url.Values) (int, error) {
	resp, err := c.PostForm(u, form)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		return 0, fmt.Errorf("429 without Retry-After")
	}
	return resp.StatusCode, nil
}

func total(counts map[int]int) int {
	n := 0
	for _, v := range counts {
		n += v
	}
	return n
}

// TestSecurityDeviceCodeFlood: an anonymous caller asking for device codes
// as fast as it can gets a few, then 429s with Retry-After; a device
// login from another address still gets its code. Before, every request
// got a code and the 10,000 pending filled in under 2 minutes, after
// which every device login got 503.
func TestSecurityDeviceCodeFlood(t *testing.T) {
	r := serve(t, nil)
	u := r.URL() + issuer.PathDeviceAuthorization
	const d = 3 * time.Second
	counts := flood("127.0.3.1", 8, d, func(c *http.Client) (int, error) { return postForm(c, u, deviceAuthForm()) })
	got := counts[http.StatusOK]
	want := issuer.DefaultDeviceAuthBurst + int(issuer.DefaultDeviceAuthPerMinute*d.Minutes()) + 1
	if got > want || counts[http.StatusTooManyRequests] == 0 {
		t.Errorf("one address got %d device codes in %s (answers %v), want at most %d and the rest 429", got, d, counts, want)
	}
	code, err := postForm(clientFrom("127.0.3.2"), u, deviceAuthForm())
	if err != nil || code != http.StatusOK {
		t.Errorf("a device login from another address: %d, %v; want 200", code, err)
	}
	t.Logf("FIGURE device codes: one address asked %d times in %s, got %d codes (burst %d, then %g a minute: at most %d an hour, the 10,000 pending take %d addresses); another address got HTTP %d",
		total(counts), d, got, issuer.DefaultDeviceAuthBurst, float64(issuer.DefaultDeviceAuthPerMinute),
		issuer.DefaultDeviceAuthBurst+60*issuer.DefaultDeviceAuthPerMinute, issuer.DefaultMaxPendingDevices/(issuer.DefaultDeviceAuthBurst+10*issuer.DefaultDeviceAuthPerMinute), code)
}

// TestSecurityDeviceCodeCapIsAtomic: many callers at once never pass the
// cap of pending device codes (it was counted, then inserted).
func TestSecurityDeviceCodeCapIsAtomic(t *testing.T) {
	const maxPending = 40
	r := serve(t, func(c *Config) {
		c.Limits.MaxPendingDevices = maxPending
		c.Limits.DeviceAuthPerMinute = -1
	})
	u := r.URL() + issuer.PathDeviceAuthorization
	var ok, full atomic.Int64
	var wg sync.WaitGroup
	for a := range 16 {
		c := clientFrom(fmt.Sprintf("127.0.4.%d", a+1))
		wg.Go(func() {
			for range 10 {
				code, err := postForm(c, u, deviceAuthForm())
				switch {
				case err != nil:
					t.Error(err)
				case code == http.StatusOK:
					ok.Add(1)
				case code == http.StatusServiceUnavailable:
					full.Add(1)
				}
			}
		})
	}
	wg.Wait()
	n, err := r.Store().CountOAuthSessions(t.Context(), "user_code", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != maxPending || n != maxPending {
		t.Errorf("160 concurrent requests against a cap of %d: %d codes given, %d pending, %d refused; want exactly %d", maxPending, ok.Load(), n, full.Load(), maxPending)
	}
	t.Logf("FIGURE device codes: 160 concurrent requests from 16 addresses against a cap of %d pending: %d given, %d pending, %d answered 503", maxPending, ok.Load(), n, full.Load())
}

// devicePage opens the verification page from ip with a cookie jar and
// returns its form's values and the client.
func devicePage(t *testing.T, r *running, ip, query string) (url.Values, *http.Client) {
	t.Helper()
	c := clientFrom(ip)
	c.Jar, _ = cookiejar.New(nil)
	_, f, err := issuertest.OpenDeviceForm(t.Context(), c, r.URL()+issuer.PathDevice+query)
	if err != nil {
		t.Fatal(err)
	}
	return f.Values, c
}

// startDevice starts a device login and returns its user code, device
// code and verifier.
func startDevice(t *testing.T, r *running) (userCode, deviceCode, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	form := deviceAuthForm()
	form.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
	resp, err := clientFrom("127.0.5.250").PostForm(r.URL()+issuer.PathDeviceAuthorization, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ DeviceCode, UserCode string }
	var raw map[string]any
	json.NewDecoder(resp.Body).Decode(&raw)
	body.DeviceCode, _ = raw["device_code"].(string)
	body.UserCode, _ = raw["user_code"].(string)
	if body.UserCode == "" {
		t.Fatalf("device authorization: HTTP %d %v", resp.StatusCode, raw)
	}
	return body.UserCode, body.DeviceCode, verifier
}

// pollDevice is one token request for the device code: the error code, or
// "" with tokens.
func pollDevice(t *testing.T, r *running, deviceCode, verifier string) string {
	t.Helper()
	resp, err := http.PostForm(r.URL()+issuer.PathToken, url.Values{"grant_type": {issuer.GrantTypeDeviceCode},
		"device_code": {deviceCode}, "client_id": {tenantapi.DefaultClientID}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	if body["access_token"] != nil {
		return ""
	}
	e, _ := body["error"].(string)
	return e
}

// TestSecurityUserCodeGuessing: guessing user codes at the verification
// page from one address gets a few guesses checked, then 429s; one code
// takes a few submissions, from anyone, then 429s; nothing is decided
// without a sign-in and a confirmation. Before, 188,658 guesses a minute
// were checked and a guessed code could be denied anonymously or approved
// with the attacker's account in one step.
func TestSecurityUserCodeGuessing(t *testing.T) {
	r := serve(t, nil)
	victimCode, _, _ := startDevice(t, r)

	// Guesses from one address, with a valid page (CSRF token and cookie).
	form, c := devicePage(t, r, "127.0.5.1", "")
	form.Set("email", "mallory@example.com")
	form.Set("password", "whatever1")
	form.Set("action", "signin")
	const d = 3 * time.Second
	var n atomic.Int64
	counts := flood("127.0.5.1", 8, d, func(*http.Client) (int, error) {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set("user_code", fmt.Sprintf("GUESS%04d", n.Add(1)))
		return postForm(c, r.URL()+issuer.PathDevice, f)
	})
	checked := counts[http.StatusOK]
	want := issuer.DefaultVerifyBurst + int(issuer.DefaultVerifyPerMinute*d.Minutes()) + 1
	if checked > want || counts[http.StatusTooManyRequests] == 0 {
		t.Errorf("one address had %d user codes checked in %s (answers %v), want at most %d", checked, d, counts, want)
	}
	t.Logf("FIGURE user codes: one address submitted %d guesses in %s, %d checked (burst %d, then %g a minute); odds of a hit per checked guess with 10,000 codes pending: 1 in %.0f",
		total(counts), d, checked, issuer.DefaultVerifyBurst, float64(issuer.DefaultVerifyPerMinute), 2.82e11/1e4)

	// The victim's code, from many addresses: the code's own limit.
	codeCounts := map[int]int{}
	for a := range 12 {
		f, c := devicePage(t, r, fmt.Sprintf("127.0.6.%d", a+1), "")
		f.Set("user_code", victimCode)
		f.Set("email", demoEmail)
		f.Set("password", fmt.Sprintf("guess-%d", a))
		f.Set("action", "signin")
		code, err := postForm(c, r.URL()+issuer.PathDevice, f)
		if err != nil {
			t.Fatal(err)
		}
		codeCounts[code]++
	}
	if codeCounts[http.StatusOK] > issuer.DefaultCodeBurst || codeCounts[http.StatusTooManyRequests] == 0 {
		t.Errorf("12 addresses submitting one code: %v, want at most %d checked", codeCounts, issuer.DefaultCodeBurst)
	}
	t.Logf("FIGURE user codes: 12 addresses submitting one code: %d checked, %d refused 429 (burst %d, then %g a minute per code)",
		codeCounts[http.StatusOK], codeCounts[http.StatusTooManyRequests], issuer.DefaultCodeBurst, float64(issuer.DefaultCodePerMinute))

	// Denying without signing in decides nothing.
	victimCode, victimDevice, victimVerifier := startDevice(t, r)
	f, c := devicePage(t, r, "127.0.7.1", "?user_code="+url.QueryEscape(victimCode))
	f.Set("action", "deny")
	if code, _ := postForm(c, r.URL()+issuer.PathDevice, f); code != http.StatusForbidden {
		t.Errorf("anonymous deny: HTTP %d, want 403", code)
	}
	if e := pollDevice(t, r, victimDevice, victimVerifier); e != "authorization_pending" {
		t.Errorf("after an anonymous deny the device polls %q, want authorization_pending", e)
	}
}

// TestSecurityDeviceApprovalNeedsConfirmation: signing in at the
// verification page approves nothing; the confirmation step does.
func TestSecurityDeviceApprovalNeedsConfirmation(t *testing.T) {
	r := serve(t, nil)
	uc, dc, v := startDevice(t, r)
	f, c := devicePage(t, r, "127.0.8.1", "?user_code="+url.QueryEscape(uc))
	f.Set("email", demoEmail)
	f.Set("password", demoPassword)
	f.Set("action", "approve") // the old one-step approval
	resp, err := c.PostForm(r.URL()+issuer.PathDevice, f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := issuertest.ReadPage(resp)
	if err != nil {
		t.Fatal(err)
	}
	if p.Has(issuertest.DeviceDoneID) {
		t.Fatal("approve with a password but no confirmation step connected the device")
	}
	f.Set("action", "signin")
	resp, err = c.PostForm(r.URL()+issuer.PathDevice, f)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = issuertest.ReadPage(resp); err != nil {
		t.Fatal(err)
	}
	confirm, ok := p.Form(issuertest.FormConfirm)
	if !ok {
		t.Fatalf("no confirmation step after signing in (HTTP %d)", p.Status)
	}
	if e := pollDevice(t, r, dc, v); e != "authorization_pending" {
		t.Fatalf("signed in, not confirmed: the device polls %q, want authorization_pending", e)
	}
	// A ticket is bound to its code.
	other, _, _ := startDevice(t, r)
	forged := url.Values{}
	for k, vs := range confirm.Values {
		forged[k] = vs
	}
	forged.Set("user_code", other)
	forged.Set("action", "approve")
	if code, _ := postForm(c, r.URL()+issuer.PathDevice, forged); code != http.StatusForbidden {
		t.Errorf("a ticket used for another code: HTTP %d, want 403", code)
	}
	confirm.Values.Set("action", "approve")
	if code, _ := postForm(c, r.URL()+issuer.PathDevice, confirm.Values); code != http.StatusOK {
		t.Fatalf("confirm: HTTP %d", code)
	}
	time.Sleep(4 * time.Second) // the polling interval (5 s, a quarter early is fine)
	if e := pollDevice(t, r, dc, v); e != "" {
		t.Errorf("confirmed: the device polls %q, want tokens", e)
	}
}

// loginPage opens the login page of an authorize request from ip and
// returns its form values and the client (with the CSRF cookie).
func loginPage(t *testing.T, r *running, ip string) (url.Values, *http.Client) {
	t.Helper()
	c := clientFrom(ip)
	c.Jar, _ = cookiejar.New(nil)
	q := url.Values{
		"client_id": {tenantapi.DefaultClientID}, "response_type": {"code"}, "scope": {tenantapi.DefaultScopes},
		"redirect_uri": {"http://127.0.0.1:1/callback"}, "state": {"state-1234567890"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
	}
	resp, err := c.Get(r.URL() + issuer.PathAuthorize + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	p, err := issuertest.ReadPage(resp)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := p.LoginForm()
	if !ok {
		t.Fatalf("no login form (HTTP %d)", p.Status)
	}
	return f.Values, c
}

// TestSecurityPasswordGuessing: wrong passwords for one account from one
// address get a few checks, then 429 with Retry-After; from many
// addresses the account's own backoff stops them. Before, 279 wrong
// passwords a minute were checked for one account, with no 429.
func TestSecurityPasswordGuessing(t *testing.T) {
	r := serve(t, nil)
	form, c := loginPage(t, r, "127.0.9.1")
	form.Set("email", demoEmail)
	const guesses = 200
	var n atomic.Int64
	start := time.Now()
	counts := flood("127.0.9.1", 4, -guesses, func(*http.Client) (int, error) {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set("password", fmt.Sprintf("guess-%d", n.Add(1)))
		return postForm(c, r.URL()+issuer.PathAuthorize, f)
	})
	took := time.Since(start)
	checked := counts[http.StatusOK]
	// The free failures, then one per doubling wait (plus the workers
	// already past the check when a failure started one).
	if checked > issuer.DefaultLoginFreeFailures+8 || counts[http.StatusTooManyRequests] == 0 {
		t.Errorf("one address had %d of %d passwords checked in %s (answers %v), want about %d (then the account's backoff)", checked, guesses, took, counts, issuer.DefaultLoginFreeFailures)
	}
	t.Logf("FIGURE passwords: one address sent %d guesses for one account in %s: %d checked, %d refused 429 with Retry-After (before: 279 checked a minute)",
		total(counts), took.Round(time.Millisecond), checked, counts[http.StatusTooManyRequests])

	// Many addresses, one account: the account waits, whoever asks.
	spread := map[int]int{}
	for a := range 20 {
		f, c := loginPage(t, r, fmt.Sprintf("127.0.10.%d", a+1))
		f.Set("email", demoEmail)
		f.Set("password", fmt.Sprintf("spread-%d", a))
		code, err := postForm(c, r.URL()+issuer.PathAuthorize, f)
		if err != nil {
			t.Fatal(err)
		}
		spread[code]++
	}
	if spread[http.StatusOK] > 3 { // one per doubling wait that ended meanwhile
		t.Errorf("20 addresses, one account: %v, want the account's backoff to refuse (429) nearly all", spread)
	}
	t.Logf("FIGURE passwords: 20 more addresses, one guess each for the same account: %d checked, %d refused 429 (the account waits from 1 s, doubling to 15 min, per wrong password past %d)",
		spread[http.StatusOK], spread[http.StatusTooManyRequests], issuer.DefaultLoginFreeFailures)

	// Another account from another address is not affected.
	if _, err := r.CreateAccount(t.Context(), "bob@example.com", "bobs password"); err != nil {
		t.Fatal(err)
	}
	f, c := loginPage(t, r, "127.0.11.1")
	f.Set("email", "bob@example.com")
	f.Set("password", "bobs password")
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	code, err := postForm(c, r.URL()+issuer.PathAuthorize, f)
	if err != nil || (code != http.StatusFound && code != http.StatusSeeOther) {
		t.Errorf("another account's sign-in: HTTP %d, %v; want a redirect with the code", code, err)
	}
}
