// Package issuertest plays the person at the browser in front of the
// built-in issuer's pages (package issuer): it signs in on the login page
// (BrowserLogin), approves a device code (DeviceApprove), and reads the
// pages for the issuer's own tests (ReadPage). It is for tests and the demo
// only: bm-server never links it (cmd/bm-server's tests check), and it
// does not import package issuer, so the issuer's own tests can use it.
package issuertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// The contract with the issuer's pages (server/issuer's login.go and
// device.go render them; the issuer's tests drive those pages through this
// package and compare the field names, so a change on one side fails there).
const (
	FormLogin     = "bm-login"          // id of the login form
	FormDevice    = "bm-device"         // id of the device page's sign-in form
	FormConfirm   = "bm-device-confirm" // id of the device page's connect-or-deny form
	LoginErrorID  = "bm-login-error"    // id of the error message on either page
	DeviceDoneID  = "bm-device-done"    // id of the device page's confirmation
	FieldEmail    = "email"
	FieldPassword = "password"
)

// ErrLoginRejected is returned by BrowserLogin when the issuer shows the
// login form again with an error (wrong email or password, say).
var ErrLoginRejected = errors.New("login rejected")

// BrowserLogin plays the person at the browser, for the demo and
// end-to-end tests: it opens authURL (an authorize URL of this issuer) with
// a cookie jar, fills in the login form with email and password, submits it
// and follows the redirect to the client's loopback callback. It fails if
// the form comes back with an error (ErrLoginRejected), if the redirect
// carries an OAuth error, or if the final response is not 2xx. It is a test
// and demo aid, not part of the server.
func BrowserLogin(ctx context.Context, authURL, email, password string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return fmt.Errorf("browser login: %w", err)
	}
	client := &http.Client{Jar: jar}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return fmt.Errorf("browser login: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("browser login: open login page: %w", err)
	}
	page, err := ReadPage(resp)
	if err != nil {
		return fmt.Errorf("browser login: open login page: %w", err)
	}
	form, ok := page.LoginForm()
	if !ok {
		return fmt.Errorf("browser login: open login page: no login form (HTTP %d at %s)", page.Status, redactURL(page.URL))
	}
	action, err := page.URL.Parse(form.Action)
	if err != nil {
		return fmt.Errorf("browser login: form action: %w", err)
	}
	form.Values.Set(FieldEmail, email)
	form.Values.Set(FieldPassword, password)

	req, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.Values.Encode()))
	if err != nil {
		return fmt.Errorf("browser login: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = client.Do(req)
	if err != nil {
		return fmt.Errorf("browser login: submit: %w", err)
	}
	page, err = ReadPage(resp)
	if err != nil {
		return fmt.Errorf("browser login: submit: %w", err)
	}
	if msg, ok := page.LoginError(); ok {
		return fmt.Errorf("browser login: %w: %s", ErrLoginRejected, msg)
	}
	if _, ok := page.LoginForm(); ok {
		return fmt.Errorf("browser login: %w: login form shown again (HTTP %d)", ErrLoginRejected, page.Status)
	}
	if e := page.URL.Query().Get("error"); e != "" {
		return fmt.Errorf("browser login: authorization error %q: %s", e, page.URL.Query().Get("error_description"))
	}
	if page.Status < 200 || page.Status > 299 {
		return fmt.Errorf("browser login: HTTP %d at %s", page.Status, redactURL(page.URL))
	}
	return nil
}

// Page is a page as the browser read it.
type Page struct {
	Status int
	URL    *url.URL   // after redirects
	Doc    *html.Node // an empty document unless the page is HTML
}

// ReadPage reads and closes resp's body (at most 1 MiB) and parses it
// when it is HTML.
func ReadPage(resp *http.Response) (Page, error) {
	defer resp.Body.Close()
	p := Page{Status: resp.StatusCode, URL: resp.Request.URL}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return p, err
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		p.Doc = &html.Node{Type: html.DocumentNode}
		return p, nil
	}
	p.Doc, err = html.Parse(strings.NewReader(string(body)))
	return p, err
}

// Form is a form of a page: where it posts and the values of its inputs.
type Form struct {
	Action string
	Values url.Values
}

// LoginForm is the page's login form (id FormLogin).
func (p Page) LoginForm() (Form, bool) { return p.Form(FormLogin) }

// Form finds the form with the given id and collects its inputs.
func (p Page) Form(id string) (Form, bool) {
	n := findByID(p.Doc, id)
	if n == nil || n.Data != "form" {
		return Form{}, false
	}
	f := Form{Action: attr(n, "action"), Values: url.Values{}}
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && c.Data == "input" {
			if name := attr(c, "name"); name != "" {
				f.Values.Add(name, attr(c, "value"))
			}
		}
	}
	return f, true
}

// Has reports whether the page has an element with the given id.
func (p Page) Has(id string) bool { return findByID(p.Doc, id) != nil }

// LoginError is the text of the page's error message (id LoginErrorID),
// if it shows one.
func (p Page) LoginError() (string, bool) {
	n := findByID(p.Doc, LoginErrorID)
	if n == nil {
		return "", false
	}
	var sb strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			sb.WriteString(c.Data)
		}
	}
	return strings.TrimSpace(sb.String()), true
}

func findByID(doc *html.Node, id string) *html.Node {
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && attr(n, "id") == id {
			return n
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// redactURL drops the query, which may hold a code or state.
func redactURL(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}

// DeviceApprove plays the person approving a device login, for the demo and
// end-to-end tests: it opens verificationURL (the verification_uri_complete
// of a device authorization, or its verification_uri with code set) with a
// cookie jar, signs in with email and password for userCode (empty: keep
// the code the page was opened with), and connects the device on the
// confirmation step. It fails with ErrLoginRejected when the page comes
// back with an error (wrong password, unknown or expired code, too many
// attempts), and when the confirmation does not follow.
func DeviceApprove(ctx context.Context, verificationURL, userCode, email, password string) error {
	return DeviceDecide(ctx, verificationURL, userCode, email, password, "approve")
}

// DeviceDecide is DeviceApprove with the decision of the confirmation
// step: "approve" or "deny".
func DeviceDecide(ctx context.Context, verificationURL, userCode, email, password, decision string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return fmt.Errorf("device approve: %w", err)
	}
	client := &http.Client{Jar: jar}
	page, form, err := OpenDeviceForm(ctx, client, verificationURL)
	if err != nil {
		return fmt.Errorf("device approve: %w", err)
	}
	action, err := page.URL.Parse(form.Action)
	if err != nil {
		return fmt.Errorf("device approve: form action: %w", err)
	}
	if userCode != "" {
		form.Values.Set("user_code", userCode)
	}
	form.Values.Set(FieldEmail, email)
	form.Values.Set(FieldPassword, password)
	form.Values.Set("action", "signin")
	page, err = post(ctx, client, action.String(), form.Values)
	if err != nil {
		return fmt.Errorf("device approve: sign in: %w", err)
	}
	if msg, ok := page.LoginError(); ok {
		return fmt.Errorf("device approve: %w: %s", ErrLoginRejected, msg)
	}
	confirm, ok := page.Form(FormConfirm)
	if !ok {
		return fmt.Errorf("device approve: no confirmation step (HTTP %d at %s)", page.Status, redactURL(page.URL))
	}
	if action, err = page.URL.Parse(confirm.Action); err != nil {
		return fmt.Errorf("device approve: form action: %w", err)
	}
	confirm.Values.Set("action", decision)
	if page, err = post(ctx, client, action.String(), confirm.Values); err != nil {
		return fmt.Errorf("device approve: %s: %w", decision, err)
	}
	if msg, ok := page.LoginError(); ok {
		return fmt.Errorf("device approve: %w: %s", ErrLoginRejected, msg)
	}
	if !page.Has(DeviceDoneID) || page.Status != http.StatusOK {
		return fmt.Errorf("device approve: no confirmation (HTTP %d at %s)", page.Status, redactURL(page.URL))
	}
	return nil
}

// OpenDeviceForm opens the verification page at pageURL with client (whose
// cookie jar then holds the page's CSRF cookie) and returns the page and
// its first step's form.
func OpenDeviceForm(ctx context.Context, client *http.Client, pageURL string) (Page, Form, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
	if err != nil {
		return Page{}, Form{}, fmt.Errorf("open device page: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Page{}, Form{}, fmt.Errorf("open device page: %w", err)
	}
	page, err := ReadPage(resp)
	if err != nil {
		return Page{}, Form{}, fmt.Errorf("open device page: %w", err)
	}
	form, ok := page.Form(FormDevice)
	if !ok {
		return page, Form{}, fmt.Errorf("open device page: no device form (HTTP %d at %s)", page.Status, redactURL(page.URL))
	}
	return page, form, nil
}

// post submits a form and reads the page that comes back.
func post(ctx context.Context, client *http.Client, action string, values url.Values) (Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action, strings.NewReader(values.Encode()))
	if err != nil {
		return Page{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return Page{}, err
	}
	return ReadPage(resp)
}
