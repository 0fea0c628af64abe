package issuer

// The device authorization grant (RFC 8628), for agents on machines without
// a browser. fosite v0.49.0, the newest release the Go module proxy serves,
// has no RFC 8628 handler, so this file adds the part fosite lacks and
// nothing more:
//
//   - the bookkeeping of pending device codes (deviceStore): the device and
//     user codes, the PKCE challenge, the polling interval, approval;
//   - the device authorization endpoint and the verification page, built
//     like the login page (html/template, a CSRF token bound to a cookie);
//   - deviceGrantHandler, a fosite.TokenEndpointHandler for grant_type
//     urn:ietf:params:oauth:grant-type:device_code registered in the compose
//     list, so that fosite still parses the token request, authenticates the
//     client, mints and signs the access token (the same JWT strategy as the
//     code grant), stores the refresh token (so the refresh grant and
//     revocation work on it unchanged) and writes the RFC 6749 answers.
//
// PKCE is required for this grant as for the code grant: the device
// authorization request carries an S256 code_challenge, and every poll the
// code_verifier, as the Basic Memory client sends them.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	hoauth2 "github.com/ory/fosite/handler/oauth2"
	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/server/limit"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// Routes and names of the device authorization grant.
const (
	PathDeviceAuthorization = "/oauth2/device_authorization"
	PathDevice              = "/oauth2/device"
	GrantTypeDeviceCode     = "urn:ietf:params:oauth:grant-type:device_code"
)

// Defaults of the device grant.
const (
	DefaultDeviceCodeTTL  = 10 * time.Minute
	DefaultDeviceInterval = 5 * time.Second
	// userCodeAlphabet has no vowels (no words) and no look-alikes (RFC
	// 8628 6.1: no 0, 1 or 5 beside O, I, L and S): 27 symbols, so the 8
	// of a code carry 38 bits (RFC 8628's example alphabet of 20 letters,
	// 34.5 bits). With the verification page's rate limits (per client,
	// per code) and at most MaxPendingDevices codes pending, a guess hits
	// a pending code with odds of 10,000 in 2.8e11.
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ2346789"
	userCodeLen      = 8
	deviceCSRFCookie = "bm_issuer_device_csrf"
	// confirmTTL bounds the time between signing in at the verification
	// page and confirming (or denying) the device.
	confirmTTL = 5 * time.Minute
)

// RFC 8628 section 3.5 error codes.
var (
	errAuthorizationPending = &fosite.RFC6749Error{ErrorField: "authorization_pending", CodeField: http.StatusBadRequest,
		DescriptionField: "The authorization request is still pending: the user has not approved it yet."}
	errSlowDown = &fosite.RFC6749Error{ErrorField: "slow_down", CodeField: http.StatusBadRequest,
		DescriptionField: "Polling too fast: wait the interval (now 5 seconds longer) between requests."}
	errExpiredToken = &fosite.RFC6749Error{ErrorField: "expired_token", CodeField: http.StatusBadRequest,
		DescriptionField: "The device code has expired: start a new device authorization."}
	errDeviceAccessDenied = &fosite.RFC6749Error{ErrorField: "access_denied", CodeField: http.StatusBadRequest,
		DescriptionField: "The user denied the authorization request."}
)

type deviceState int

const (
	devicePending deviceState = iota
	deviceApproved
	deviceDenied
	deviceUsed
)

// deviceGrant is one device authorization in progress, stored as JSON in
// a device_code row keyed by the SHA-256 of the device code; a user_code
// row (keyed by the user code, request_id the device code's hash) finds it
// from the verification page.
type deviceGrant struct {
	ID        string        `json:"id"` // request id of the tokens it becomes
	ClientID  string        `json:"client_id"`
	Scopes    []string      `json:"scopes"`
	Challenge string        `json:"challenge"` // S256 code challenge
	UserCode  string        `json:"user_code"` // normalized: 8 letters, no dash
	Expires   time.Time     `json:"expires"`
	Interval  time.Duration `json:"interval"`
	LastPoll  time.Time     `json:"last_poll,omitzero"`
	State     deviceState   `json:"state"`
	Session   *session      `json:"session,omitempty"` // set on approval
}

// deviceStore keeps device grants in a Storage, so that a device code
// approved at one replica is polled to tokens at another. Changes are
// compare-and-swap on the row's data.
type deviceStore struct {
	ttl, interval time.Duration
	maxPending    int // device codes pending at once, in all
	now           func() time.Time
	db            Storage
	sweeper       *oauthStore
}

func newDeviceStore(db Storage, sweeper *oauthStore, ttl, interval time.Duration) *deviceStore {
	return &deviceStore{ttl: ttl, interval: interval, maxPending: DefaultMaxPendingDevices, now: time.Now, db: db, sweeper: sweeper}
}

func hashCode(code string) string {
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:])
}

// normalizeUserCode uppercases and drops everything but letters and
// digits, so "bcdf-gh2k" and "BCDFGH2K" are the same code. It keeps at most
// 64 of them: a longer input is no code.
func normalizeUserCode(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			if b.Len() >= 64 {
				break
			}
		}
	}
	return b.String()
}

// formatUserCode is the display form, XXXX-XXXX.
func formatUserCode(c string) string {
	if len(c) != userCodeLen {
		return c
	}
	return c[:4] + "-" + c[4:]
}

func randomUserCode() string {
	out := make([]byte, userCodeLen)
	b := make([]byte, 1)
	// Rejection sampling: no symbol more likely than another.
	for i := 0; i < len(out); {
		rand.Read(b) // never fails (crypto/rand)
		if v := int(b[0]); v < 256-256%len(userCodeAlphabet) {
			out[i] = userCodeAlphabet[v%len(userCodeAlphabet)]
			i++
		}
	}
	return string(out)
}

// create adds a pending grant and returns its device code.
func (s *deviceStore) create(ctx context.Context, clientID string, scopes []string, challenge string) (deviceCode string, g *deviceGrant, err error) {
	b := make([]byte, 32)
	rand.Read(b)
	deviceCode = base64.RawURLEncoding.EncodeToString(b)
	idb := make([]byte, 16)
	rand.Read(idb)
	now := s.now()
	s.sweeper.sweep(ctx)
	g = &deviceGrant{
		ID:        hex.EncodeToString(idb),
		ClientID:  clientID,
		Scopes:    scopes,
		Challenge: challenge,
		Expires:   now.Add(s.ttl),
		Interval:  s.interval,
	}
	key := hashCode(deviceCode)
	// The user code rows are the pending grants (a grant's goes once
	// it is polled to tokens, denied or expired): their count and the
	// insert are one step, so concurrent callers never pass the bound.
	for attempt := 0; ; attempt++ {
		g.UserCode = randomUserCode()
		err = s.db.CreateOAuthSessionCapped(ctx, store.OAuthSession{Kind: kindUserCode, Signature: g.UserCode,
			RequestID: key, ClientID: clientID, Active: true, ExpiresAt: g.Expires}, s.maxPending, now)
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrFull) {
			return "", nil, fosite.ErrTemporarilyUnavailable.WithHint("Too many device authorizations in progress; try again later.").WithWrap(err)
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= 10 {
			return "", nil, fosite.ErrServerError.WithWrap(err)
		}
	}
	data, err := json.Marshal(g)
	if err != nil {
		return "", nil, fosite.ErrServerError.WithWrap(err)
	}
	if err := s.db.CreateOAuthSession(ctx, store.OAuthSession{Kind: kindDeviceCode, Signature: key,
		RequestID: g.ID, ClientID: clientID, Active: true, Data: string(data), ExpiresAt: g.Expires}); err != nil {
		_ = s.db.DeleteOAuthSession(ctx, kindUserCode, g.UserCode)
		return "", nil, fosite.ErrServerError.WithWrap(err)
	}
	return deviceCode, g, nil
}

// load reads the grant of a device code hash with its raw data (for the
// compare-and-swap); nil if there is none.
func (s *deviceStore) load(ctx context.Context, key string) (*deviceGrant, string, error) {
	row, err := s.db.OAuthSession(ctx, kindDeviceCode, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	} else if err != nil {
		return nil, "", fosite.ErrServerError.WithWrap(err)
	}
	var g deviceGrant
	if err := json.Unmarshal([]byte(row.Data), &g); err != nil {
		return nil, "", fosite.ErrServerError.WithWrap(err)
	}
	return &g, row.Data, nil
}

// swap replaces the grant of key if its data is still old.
func (s *deviceStore) swap(ctx context.Context, key, old string, g *deviceGrant) (bool, error) {
	data, err := json.Marshal(g)
	if err != nil {
		return false, fosite.ErrServerError.WithWrap(err)
	}
	ok, err := s.db.SwapOAuthSessionData(ctx, kindDeviceCode, key, old, string(data), g.State == devicePending || g.State == deviceApproved)
	if err != nil {
		return false, fosite.ErrServerError.WithWrap(err)
	}
	return ok, nil
}

// drop deletes a grant and its user code.
func (s *deviceStore) drop(ctx context.Context, key string, g *deviceGrant) {
	_ = s.db.DeleteOAuthSession(ctx, kindDeviceCode, key)
	_ = s.db.DeleteOAuthSession(ctx, kindUserCode, g.UserCode)
}

// byUser returns the device code hash, grant and raw data of a pending
// user code, or a nil grant.
func (s *deviceStore) byUser(ctx context.Context, userCode string) (string, *deviceGrant, string) {
	row, err := s.db.OAuthSession(ctx, kindUserCode, normalizeUserCode(userCode))
	if err != nil {
		return "", nil, ""
	}
	g, data, err := s.load(ctx, row.RequestID)
	if err != nil || g == nil || g.State != devicePending || s.now().After(g.Expires) {
		return "", nil, ""
	}
	return row.RequestID, g, data
}

// lookupUser returns the pending grant of a user code, or nil.
func (s *deviceStore) lookupUser(ctx context.Context, userCode string) *deviceGrant {
	_, g, _ := s.byUser(ctx, userCode)
	return g
}

// decide approves (sess non-nil) or denies the pending grant of userCode;
// false if there is no such pending grant.
func (s *deviceStore) decide(ctx context.Context, userCode string, sess *session) bool {
	for range 5 {
		key, g, old := s.byUser(ctx, userCode)
		if g == nil {
			return false
		}
		if sess == nil {
			g.State = deviceDenied
		} else {
			g.State, g.Session = deviceApproved, sess
		}
		ok, err := s.swap(ctx, key, old, g)
		if err != nil {
			return false
		}
		if ok {
			return true
		}
	}
	return false
}

// poll answers one token request for deviceCode: the approved grant
// (which it marks used), or one of the RFC 8628 errors.
func (s *deviceStore) poll(ctx context.Context, deviceCode, clientID, verifier string) (*deviceGrant, error) {
	key := hashCode(deviceCode)
	for range 5 {
		g, old, err := s.load(ctx, key)
		if err != nil {
			return nil, err
		}
		now := s.now()
		switch {
		case g == nil:
			return nil, fosite.ErrInvalidGrant.WithHint("The device code is unknown or was already used.")
		case g.ClientID != clientID:
			return nil, fosite.ErrInvalidGrant.WithHint("The device code was issued to another client.")
		case now.After(g.Expires):
			s.drop(ctx, key, g)
			return nil, errExpiredToken
		case subtle.ConstantTimeCompare([]byte(oauth2.S256ChallengeFromVerifier(verifier)), []byte(g.Challenge)) != 1:
			return nil, fosite.ErrInvalidGrant.WithHint("The code_verifier does not match the code_challenge of the device authorization (PKCE).")
		case g.State == deviceUsed:
			return nil, fosite.ErrInvalidGrant.WithHint("The device code was already used.")
		}
		// A poll that comes a quarter interval early is too fast.
		var answer error
		if !g.LastPoll.IsZero() && now.Sub(g.LastPoll) < g.Interval-g.Interval/4 {
			g.Interval += 5 * time.Second
			answer = errSlowDown
		} else {
			switch g.State {
			case devicePending:
				answer = errAuthorizationPending
			case deviceDenied:
				s.drop(ctx, key, g)
				return nil, errDeviceAccessDenied
			case deviceApproved:
				g.State = deviceUsed
			}
		}
		g.LastPoll = now
		ok, err := s.swap(ctx, key, old, g)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // changed meanwhile (approved, or polled at another replica): look again
		}
		if answer != nil {
			return nil, answer
		}
		_ = s.db.DeleteOAuthSession(ctx, kindUserCode, g.UserCode)
		return g, nil
	}
	return nil, errSlowDown
}

// deviceAuthResponse is the RFC 8628 section 3.2 answer.
type deviceAuthResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// serveDeviceAuthorization answers POST /oauth2/device_authorization
// (RFC 8628 section 3.1): client_id, scope, and a PKCE S256 challenge.
func (i *Issuer) serveDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if ok, wait := i.lim.deviceAuth.Allow(ctx, limit.RequestKey(r)); !ok {
		i.writeDeviceLimited(w, wait)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		i.writeDeviceError(w, r, fosite.ErrInvalidRequest.WithHint("The request body is not a form."))
		return
	}
	form := r.PostForm
	client, err := i.store.GetClient(ctx, form.Get("client_id"))
	if err != nil {
		i.writeDeviceError(w, r, fosite.ErrInvalidClient.WithHint("Unknown client_id."))
		return
	}
	if !slices.Contains(client.GetGrantTypes(), GrantTypeDeviceCode) {
		i.writeDeviceError(w, r, fosite.ErrUnauthorizedClient.WithHint("The client may not use the device authorization grant."))
		return
	}
	scopes := fosite.RemoveEmpty(strings.Fields(form.Get("scope")))
	for _, s := range scopes {
		if !slices.Contains(client.GetScopes(), s) {
			i.writeDeviceError(w, r, fosite.ErrInvalidScope.WithHintf("The client may not ask for scope %q.", s))
			return
		}
	}
	if err := checkPKCEParams(form); err != nil {
		i.writeDeviceError(w, r, err)
		return
	}
	deviceCode, g, err := i.devices.create(ctx, client.GetID(), scopes, form.Get("code_challenge"))
	if err != nil {
		i.writeDeviceError(w, r, err)
		return
	}
	verify := i.issuer + PathDevice
	resp := deviceAuthResponse{
		DeviceCode:              deviceCode,
		UserCode:                formatUserCode(g.UserCode),
		VerificationURI:         verify,
		VerificationURIComplete: verify + "?" + url.Values{"user_code": {formatUserCode(g.UserCode)}}.Encode(),
		ExpiresIn:               int(i.devices.ttl / time.Second),
		Interval:                max(int(g.Interval/time.Second), 1),
	}
	i.log.InfoContext(ctx, "device authorization started", "client", client.GetID())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

// writeDeviceLimited answers a device authorization over its client's
// limit: 429, Retry-After, an RFC 6749 error body. It logs nothing (the
// request line says it; a flood must not become one line each).
func (i *Issuer) writeDeviceLimited(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", limit.RetryAfter(wait))
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "slow_down",
		"error_description": "Too many device authorizations from this address; retry after " + limit.RetryAfter(wait) + " s."})
}

func (i *Issuer) writeDeviceError(w http.ResponseWriter, r *http.Request, err error) {
	e := fosite.ErrorToRFC6749Error(err)
	i.log.InfoContext(r.Context(), "device authorization refused", "error", e.ErrorField, "description", e.GetDescription())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.StatusCode())
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e.ErrorField, "error_description": e.GetDescription()})
}

// devicePage is the verification page, in two steps: the code and a
// sign-in, then (Confirm set) the device to connect to that account, to
// connect or deny. Nothing is decided before the person signed in and
// confirmed. The ids "bm-device", "bm-device-confirm", "bm-login-error"
// and "bm-device-done" are what issuertest.DeviceApprove looks for.
var devicePage = template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect a device · Basic Memory</title>
<style>
body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=email],input[type=password]{width:100%;padding:.4rem}
button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#b00020}.code{font-family:monospace;font-size:1.4rem;letter-spacing:.1rem}
</style>
</head>
<body>
{{if .Done}}<h1 id="bm-device-done">{{.Done}}</h1><p>{{.Message}}</p>{{else if .Confirm}}
<h1>Connect this device?</h1>
<p>A device asked to sign in to <strong>{{.Email}}</strong> {{.Age}} with the code</p>
<p class="code">{{.Display}}</p>
<p>Connect it only if you started this sign-in yourself, on a device of yours that shows this very code. Anyone you let in can read and change your notes.</p>
{{if .Error}}<p class="error" id="bm-login-error" role="alert">{{.Error}}</p>{{end}}
<form id="bm-device-confirm" method="post" action="{{.Action}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<input type="hidden" name="user_code" value="{{.UserCode}}">
<input type="hidden" name="ticket" value="{{.Ticket}}">
<button type="submit" name="action" value="approve">Connect</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>{{else}}
<h1>Connect a device</h1>
<p>Check that this code is the one your device shows, then sign in.</p>
{{if .Error}}<p class="error" id="bm-login-error" role="alert">{{.Error}}</p>{{end}}
<form id="bm-device" method="post" action="{{.Action}}">
<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<label for="user_code">Code</label>
<input id="user_code" name="user_code" type="text" class="code" autocomplete="off" required value="{{.UserCode}}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{{.Email}}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" name="action" value="signin">Sign in</button>
</form>{{end}}
</body>
</html>
`))

type devicePageData struct {
	Action, CSRF, UserCode, Email, Error string
	Done, Message                        string
	// Confirm shows the second step: Ticket proves the sign-in, Display
	// is the code as the device shows it, Age how long ago it asked.
	Confirm              bool
	Ticket, Display, Age string
}

// deviceCSRFForm is what the verification form's CSRF token is bound to
// (besides the cookie): the page, not a code the person may still type.
var deviceCSRFForm = url.Values{"page": {"device"}}

// Messages of the verification page.
const (
	msgBadCode     = "That code is not valid or has expired. Start again on your device."
	msgBadLogin    = "Wrong email or password."
	msgPageExpired = "Your page expired. Please try again."
)

// serveDeviceForm answers GET /oauth2/device[?user_code=...]. Looking a
// code up counts against the client's verification limit.
func (i *Issuer) serveDeviceForm(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("user_code")
	data := devicePageData{UserCode: code}
	if code != "" {
		if ok, wait := i.lim.verify.Allow(r.Context(), limit.RequestKey(r)); !ok {
			i.renderDeviceLimited(w, r, wait, data)
			return
		}
		if i.devices.lookupUser(r.Context(), code) == nil {
			data.Error = msgBadCode
		}
	}
	i.renderDevice(w, r, http.StatusOK, data)
}

// serveDeviceSubmit answers POST /oauth2/device: action signin checks the
// code and the person's password and shows the confirmation step;
// approve or deny, from that step (its ticket), decides. Every submission
// counts against the client's verification limit and the code's own; a
// sign-in also against the sign-in limits (see signIn).
func (i *Issuer) serveDeviceSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	code, email, password := f.Get("user_code"), f.Get(fieldEmail), f.Get(fieldPassword)
	data := devicePageData{UserCode: code, Email: email}
	if ok, wait := i.lim.verify.Allow(r.Context(), limit.RequestKey(r)); !ok {
		i.renderDeviceLimited(w, r, wait, data)
		return
	}
	if !i.checkDeviceCSRF(r, f.Get(fieldCSRF)) {
		i.log.InfoContext(ctx, "device approval refused: bad or missing CSRF token")
		data.Error = msgPageExpired
		i.renderDevice(w, r, http.StatusForbidden, data)
		return
	}
	norm := normalizeUserCode(code)
	if ok, wait := i.lim.code.Allow(ctx, norm); !ok {
		i.renderDeviceLimited(w, r, wait, data)
		return
	}
	g := i.devices.lookupUser(ctx, norm)
	if g == nil {
		data.Error = msgBadCode
		i.renderDevice(w, r, http.StatusOK, data)
		return
	}
	action := f.Get("action")
	if action != "approve" && action != "deny" {
		i.deviceSignIn(w, r, g, data, password)
		return
	}
	subject, ok := i.checkTicket(r, f.Get("ticket"), norm)
	if !ok {
		i.log.InfoContext(ctx, "device decision refused: bad or expired sign-in ticket")
		data.Error = msgPageExpired
		i.renderDevice(w, r, http.StatusForbidden, data)
		return
	}
	if action == "deny" {
		i.devices.decide(ctx, norm, nil)
		i.log.InfoContext(ctx, "device authorization denied", "subject", subject)
		i.renderDevice(w, r, http.StatusOK, devicePageData{Done: "Device not connected",
			Message: "You denied the request. You can close this page."})
		return
	}
	claims, err := i.accounts.Claims(ctx, subject)
	if err != nil {
		i.log.ErrorContext(ctx, "device approval: account claims", "subject", subject, "error", err)
		data.Error = "Your account is not available right now. Please try again later."
		i.renderDevice(w, r, http.StatusInternalServerError, data)
		return
	}
	if !i.devices.decide(ctx, norm, i.newSession(subject, claims, time.Now().UTC())) {
		data.Error = msgBadCode
		i.renderDevice(w, r, http.StatusOK, data)
		return
	}
	i.log.InfoContext(ctx, "device approved", "subject", subject)
	i.renderDevice(w, r, http.StatusOK, devicePageData{Done: "Device connected",
		Message: "Your device is now signed in to Basic Memory. You can close this page."})
}

// deviceSignIn is the first step's submission: sign in, then show the
// confirmation step for grant g.
func (i *Issuer) deviceSignIn(w http.ResponseWriter, r *http.Request, g *deviceGrant, data devicePageData, password string) {
	ctx := r.Context()
	subject, err := i.signIn(ctx, r, data.Email, password)
	var lim *LimitedError
	switch {
	case errors.As(err, &lim):
		i.renderDeviceLimited(w, r, lim.Wait, data)
		return
	case err != nil:
		i.log.InfoContext(ctx, "device approval: login failed", "error", err)
		data.Error = msgBadLogin
		i.renderDevice(w, r, http.StatusOK, data)
		return
	}
	age := max(i.devices.now().Sub(g.Expires.Add(-i.devices.ttl)), 0).Round(time.Second)
	data.Confirm = true
	data.UserCode = g.UserCode
	data.Display = formatUserCode(g.UserCode)
	data.Age = age.String() + " ago"
	data.Ticket = i.ticket(w, r, g.UserCode, subject, time.Now().Add(confirmTTL))
	i.renderDevice(w, r, http.StatusOK, data)
}

// renderDeviceLimited shows the page again with 429 and Retry-After.
func (i *Issuer) renderDeviceLimited(w http.ResponseWriter, r *http.Request, wait time.Duration, data devicePageData) {
	w.Header().Set("Retry-After", limit.RetryAfter(wait))
	data.Error = retryMessage(wait)
	data.Confirm = false
	i.renderDevice(w, r, http.StatusTooManyRequests, data)
}

func (i *Issuer) renderDevice(w http.ResponseWriter, r *http.Request, status int, data devicePageData) {
	if data.Done == "" {
		data.CSRF = i.csrfToken(i.csrfNonce(w, r, deviceCSRFCookie, PathDevice), deviceCSRFForm)
		data.Action = PathDevice
	}
	i.writePage(w, r, status, devicePage, data, "device page")
}

func (i *Issuer) checkDeviceCSRF(r *http.Request, token string) bool {
	return i.checkCSRFCookie(r, deviceCSRFCookie, token, deviceCSRFForm)
}

// ticket proves, in the confirmation step, that subject signed in for
// userCode in this browser (the CSRF cookie's nonce) until exp:
// base64url(subject).exp.HMAC(nonce, code, subject, exp).
func (i *Issuer) ticket(w http.ResponseWriter, r *http.Request, userCode, subject string, exp time.Time) string {
	nonce := i.csrfNonce(w, r, deviceCSRFCookie, PathDevice)
	e := strconv.FormatInt(exp.Unix(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(subject)) + "." + e + "." + i.ticketMAC(nonce, userCode, subject, e)
}

func (i *Issuer) ticketMAC(nonce, userCode, subject, exp string) string {
	return i.csrfToken(nonce, url.Values{"page": {"device-confirm"}, "code": {userCode}, "sub": {subject}, "exp": {exp}})
}

// checkTicket returns the subject of a valid, unexpired ticket for
// userCode and this browser.
func (i *Issuer) checkTicket(r *http.Request, ticket, userCode string) (string, bool) {
	c, err := r.Cookie(deviceCSRFCookie)
	if err != nil || len(c.Value) < 32 {
		return "", false
	}
	parts := strings.Split(ticket, ".")
	if len(parts) != 3 {
		return "", false
	}
	sub, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || len(sub) == 0 {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(i.ticketMAC(c.Value, userCode, string(sub), parts[1]))) {
		return "", false
	}
	return string(sub), true
}

// deviceGrantHandler is the token endpoint's device_code grant, as a fosite
// TokenEndpointHandler: fosite's own strategies mint the tokens and its
// store keeps the refresh token.
type deviceGrantHandler struct {
	devices *deviceStore
	access  hoauth2.AccessTokenStrategy
	refresh hoauth2.RefreshTokenStrategy
	storage hoauth2.CoreStorage
	config  *fosite.Config
}

var _ fosite.TokenEndpointHandler = (*deviceGrantHandler)(nil)

// deviceGrantFactory is a compose.Factory for deviceGrantHandler.
func deviceGrantFactory(devices *deviceStore, fcfg *fosite.Config) func(fosite.Configurator, any, any) any {
	return func(_ fosite.Configurator, storage, strategy any) any {
		return &deviceGrantHandler{
			devices: devices,
			access:  strategy.(hoauth2.AccessTokenStrategy),
			refresh: strategy.(hoauth2.RefreshTokenStrategy),
			storage: storage.(hoauth2.CoreStorage),
			config:  fcfg,
		}
	}
}

func (h *deviceGrantHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

func (h *deviceGrantHandler) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantTypeDeviceCode)
}

// HandleTokenEndpointRequest checks the device code and the PKCE verifier
// and, once the person approved, loads the session the tokens are made of.
func (h *deviceGrantHandler) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	client := r.GetClient()
	if !client.GetGrantTypes().Has(GrantTypeDeviceCode) {
		return fosite.ErrUnauthorizedClient.WithHint("The client may not use the device_code grant.")
	}
	form := r.GetRequestForm()
	deviceCode, verifier := form.Get("device_code"), form.Get("code_verifier")
	switch {
	case deviceCode == "":
		return fosite.ErrInvalidRequest.WithHint("device_code is required.")
	case verifier == "":
		return fosite.ErrInvalidRequest.WithHint("code_verifier is required (PKCE).")
	case len(verifier) < 43 || len(verifier) > 128:
		return fosite.ErrInvalidRequest.WithHint("code_verifier must be 43 to 128 characters long.")
	}
	g, err := h.devices.poll(ctx, deviceCode, client.GetID(), verifier)
	if err != nil {
		return err
	}
	if g.Session == nil || g.Session.DefaultSession == nil {
		return fosite.ErrServerError.WithHint("The approved device grant has no session.")
	}
	sess := g.Session.Clone().(*session)
	r.SetID(g.ID)
	r.SetSession(sess)
	r.SetRequestedScopes(g.Scopes)
	for _, s := range g.Scopes {
		r.GrantScope(s)
	}
	r.SetRequestedAudience(fosite.Arguments{Audience})
	r.GrantAudience(Audience)
	now := time.Now().UTC()
	sess.SetExpiresAt(fosite.AccessToken, now.Add(h.config.GetAccessTokenLifespan(ctx)).Round(time.Second))
	sess.SetExpiresAt(fosite.RefreshToken, now.Add(h.config.GetRefreshTokenLifespan(ctx)).Round(time.Second))
	return nil
}

// PopulateTokenEndpointResponse mints the access token and, with scope
// offline_access, a refresh token, and stores their sessions as the code
// grant does.
func (h *deviceGrantHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	access, accessSig, err := h.access.GenerateAccessToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	if err := h.storage.CreateAccessTokenSession(ctx, accessSig, r.Sanitize(nil)); err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	refresh := ""
	if r.GetGrantedScopes().HasOneOf(h.config.GetRefreshTokenScopes(ctx)...) && r.GetClient().GetGrantTypes().Has("refresh_token") {
		var refreshSig string
		refresh, refreshSig, err = h.refresh.GenerateRefreshToken(ctx, r)
		if err != nil {
			return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
		}
		if err := h.storage.CreateRefreshTokenSession(ctx, refreshSig, accessSig, r.Sanitize(nil)); err != nil {
			return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
		}
	}
	resp.SetAccessToken(access)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(time.Until(r.GetSession().GetExpiresAt(fosite.AccessToken)))
	resp.SetScopes(r.GetGrantedScopes())
	if refresh != "" {
		resp.SetExtra("refresh_token", refresh)
	}
	return nil
}
