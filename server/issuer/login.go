package issuer

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ory/fosite"

	"github.com/basicmachines-co/bm-agent/server/limit"
)

// Names of the login form's own fields; every other field is a parameter of
// the authorize request, carried through hidden inputs.
const (
	fieldEmail    = "email"
	fieldPassword = "password"
	fieldCSRF     = "csrf_token"
	csrfCookie    = "bm_issuer_csrf"
	maxFormBytes  = 64 << 10
)

// loginPage is the login form. The ids "bm-login" and "bm-login-error" are
// what issuertest.BrowserLogin looks for.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Basic Memory</title>
<style>
body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}
label{display:block;margin:.8rem 0 .2rem}input[type=email],input[type=password]{width:100%;padding:.4rem}
button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#b00020}
</style>
</head>
<body>
<h1>Sign in</h1>
{{if .Error}}<p class="error" id="bm-login-error" role="alert">{{.Error}}</p>{{end}}
<form id="bm-login" method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{{.Email}}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</body>
</html>
`))

type hiddenField struct{ Name, Value string }

type loginData struct {
	Action string
	Hidden []hiddenField
	CSRF   string
	Email  string
	Error  string
}

// serveLoginForm answers GET /oauth2/authorize: it validates the authorize
// request with fosite (client, redirect URI, scopes, PKCE parameters) and
// shows the login form, or sends the error to the client as fosite does.
func (i *Issuer) serveLoginForm(w http.ResponseWriter, r *http.Request) {
	ctx := withRedirect(r.Context(), r.URL.Query().Get("redirect_uri"))
	ar, err := i.provider.NewAuthorizeRequest(ctx, r)
	if err == nil {
		err = checkPKCEParams(ar.GetRequestForm())
	}
	if err != nil {
		i.log.InfoContext(ctx, "authorize request refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		i.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	i.renderLogin(w, r, http.StatusOK, ar.GetRequestForm(), "", "")
}

// serveLoginSubmit answers POST /oauth2/authorize: it checks the CSRF token
// and the credentials, and on success completes the authorize response (a
// redirect to the loopback callback with code and state). On bad
// credentials it shows the form again with an error and issues no code;
// past the sign-in limits of the client or the account (see signIn) it
// shows it with 429 and Retry-After, without checking the password.
func (i *Issuer) serveLoginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	email, password, csrf := r.PostForm.Get(fieldEmail), r.PostForm.Get(fieldPassword), r.PostForm.Get(fieldCSRF)
	// Keep the credentials out of the authorize request fosite keeps.
	for _, k := range []string{fieldEmail, fieldPassword, fieldCSRF} {
		r.Form.Del(k)
		r.PostForm.Del(k)
	}
	ctx := withRedirect(r.Context(), r.Form.Get("redirect_uri"))
	ar, err := i.provider.NewAuthorizeRequest(ctx, r)
	if err == nil {
		err = checkPKCEParams(ar.GetRequestForm())
	}
	if err != nil {
		i.log.InfoContext(ctx, "authorize request refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		i.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	form := ar.GetRequestForm()
	if !i.checkCSRF(r, csrf, form) {
		i.log.InfoContext(ctx, "login refused: bad or missing CSRF token")
		i.renderLogin(w, r, http.StatusForbidden, form, email, "Your sign-in page expired. Please try again.")
		return
	}
	subject, err := i.signIn(ctx, r, email, password)
	var lim *LimitedError
	switch {
	case errors.As(err, &lim):
		w.Header().Set("Retry-After", limit.RetryAfter(lim.Wait))
		i.renderLogin(w, r, http.StatusTooManyRequests, form, email, retryMessage(lim.Wait))
		return
	case err != nil:
		i.log.InfoContext(ctx, "login failed", "error", err)
		i.renderLogin(w, r, http.StatusOK, form, email, "Wrong email or password.")
		return
	}
	claims, err := i.accounts.Claims(ctx, subject)
	if err != nil {
		i.log.ErrorContext(ctx, "login: account claims", "subject", subject, "error", err)
		i.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s) // fosite checked them against the client's scopes
	}
	ar.GrantAudience(Audience)
	resp, err := i.provider.NewAuthorizeResponse(ctx, ar, i.newSession(subject, claims, time.Now().UTC()))
	if err != nil {
		i.log.InfoContext(ctx, "authorize response refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		i.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	i.log.InfoContext(ctx, "login", "subject", subject)
	i.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// checkPKCEParams refuses, before anyone types a password, an authorize
// request without an S256 code challenge. fosite's PKCE handler checks the
// same again when the response is built.
func checkPKCEParams(form url.Values) error {
	switch {
	case form.Get("code_challenge") == "":
		return fosite.ErrInvalidRequest.WithHint("code_challenge is required (PKCE).")
	case form.Get("code_challenge_method") != "S256":
		return fosite.ErrInvalidRequest.WithHint("code_challenge_method must be S256.")
	}
	return nil
}

// renderLogin writes the login form carrying the authorize parameters in
// form. It sets (or keeps) the CSRF cookie and binds the form's token to
// both the cookie and the parameters.
func (i *Issuer) renderLogin(w http.ResponseWriter, r *http.Request, status int, form url.Values, email, msg string) {
	nonce := i.csrfNonce(w, r, csrfCookie, PathAuthorize)
	data := loginData{
		Action: PathAuthorize,
		CSRF:   i.csrfToken(nonce, form),
		Email:  email,
		Error:  msg,
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range form {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		for _, v := range form[k] {
			data.Hidden = append(data.Hidden, hiddenField{k, v})
		}
	}
	i.writePage(w, r, status, loginPage, data, "login page")
}

// csrfNonce is the value of the browser's CSRF cookie name; when it is
// missing or too short, a new random one is set for path.
func (i *Issuer) csrfNonce(w http.ResponseWriter, r *http.Request, name, path string) string {
	if c, err := r.Cookie(name); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	nonce := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    nonce,
		Path:     path,
		HttpOnly: true,
		Secure:   i.secure,
		SameSite: http.SameSiteLaxMode,
	})
	return nonce
}

// writePage writes page with data as an HTML response that is not cached,
// framed or referred; what names the page in the log of a failed write.
func (i *Issuer) writePage(w http.ResponseWriter, r *http.Request, status int, page *template.Template, data any, what string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	if err := page.Execute(w, data); err != nil {
		i.log.ErrorContext(r.Context(), what, "error", err)
	}
}

// csrfToken is HMAC(csrfKey, nonce, authorize parameters): valid only with
// the browser's cookie and for this very authorize request.
func (i *Issuer) csrfToken(nonce string, form url.Values) string {
	mac := hmac.New(sha256.New, i.csrfKey)
	mac.Write([]byte(nonce))
	mac.Write([]byte{0})
	mac.Write([]byte(form.Encode()))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (i *Issuer) checkCSRF(r *http.Request, token string, form url.Values) bool {
	return i.checkCSRFCookie(r, csrfCookie, token, form)
}

// checkCSRFCookie reports whether token is the CSRF token of the browser's
// cookie name and form.
func (i *Issuer) checkCSRFCookie(r *http.Request, name, token string, form url.Values) bool {
	c, err := r.Cookie(name)
	if err != nil || len(c.Value) < 32 || token == "" {
		return false
	}
	return hmac.Equal([]byte(token), []byte(i.csrfToken(c.Value, form)))
}
