package issuer

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
	page, err := readPage(resp)
	if err != nil {
		return fmt.Errorf("browser login: open login page: %w", err)
	}
	form, ok := findLoginForm(page.doc)
	if !ok {
		return fmt.Errorf("browser login: open login page: no login form (HTTP %d at %s)", page.status, redactURL(page.url))
	}
	action, err := page.url.Parse(form.action)
	if err != nil {
		return fmt.Errorf("browser login: form action: %w", err)
	}
	form.values.Set(fieldEmail, email)
	form.values.Set(fieldPassword, password)

	req, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.values.Encode()))
	if err != nil {
		return fmt.Errorf("browser login: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = client.Do(req)
	if err != nil {
		return fmt.Errorf("browser login: submit: %w", err)
	}
	page, err = readPage(resp)
	if err != nil {
		return fmt.Errorf("browser login: submit: %w", err)
	}
	if msg, ok := findLoginError(page.doc); ok {
		return fmt.Errorf("browser login: %w: %s", ErrLoginRejected, msg)
	}
	if _, ok := findLoginForm(page.doc); ok {
		return fmt.Errorf("browser login: %w: login form shown again (HTTP %d)", ErrLoginRejected, page.status)
	}
	if e := page.url.Query().Get("error"); e != "" {
		return fmt.Errorf("browser login: authorization error %q: %s", e, page.url.Query().Get("error_description"))
	}
	if page.status < 200 || page.status > 299 {
		return fmt.Errorf("browser login: HTTP %d at %s", page.status, redactURL(page.url))
	}
	return nil
}

type browserPage struct {
	status int
	url    *url.URL // after redirects
	doc    *html.Node
}

func readPage(resp *http.Response) (browserPage, error) {
	defer resp.Body.Close()
	p := browserPage{status: resp.StatusCode, url: resp.Request.URL}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return p, err
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		p.doc = &html.Node{Type: html.DocumentNode}
		return p, nil
	}
	p.doc, err = html.Parse(strings.NewReader(string(body)))
	return p, err
}

type loginForm struct {
	action string
	values url.Values
}

// findLoginForm finds the form with id "bm-login" and collects its inputs.
func findLoginForm(doc *html.Node) (loginForm, bool) { return findForm(doc, "bm-login") }

// findForm finds the form with the given id and collects its inputs.
func findForm(doc *html.Node, id string) (loginForm, bool) {
	n := findByID(doc, id)
	if n == nil || n.Data != "form" {
		return loginForm{}, false
	}
	f := loginForm{action: attr(n, "action"), values: url.Values{}}
	for c := range n.Descendants() {
		if c.Type == html.ElementNode && c.Data == "input" {
			if name := attr(c, "name"); name != "" {
				f.values.Add(name, attr(c, "value"))
			}
		}
	}
	return f, true
}

func findLoginError(doc *html.Node) (string, bool) {
	n := findByID(doc, "bm-login-error")
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
// cookie jar, signs in with email and password, and approves userCode (empty:
// keep the code the page was opened with). It fails with ErrLoginRejected
// when the page comes back with an error (wrong password, unknown or expired
// code), and when the confirmation page does not follow.
func DeviceApprove(ctx context.Context, verificationURL, userCode, email, password string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return fmt.Errorf("device approve: %w", err)
	}
	client := &http.Client{Jar: jar}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, verificationURL, nil)
	if err != nil {
		return fmt.Errorf("device approve: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("device approve: open page: %w", err)
	}
	page, err := readPage(resp)
	if err != nil {
		return fmt.Errorf("device approve: open page: %w", err)
	}
	form, ok := findForm(page.doc, "bm-device")
	if !ok {
		return fmt.Errorf("device approve: open page: no device form (HTTP %d at %s)", page.status, redactURL(page.url))
	}
	action, err := page.url.Parse(form.action)
	if err != nil {
		return fmt.Errorf("device approve: form action: %w", err)
	}
	if userCode != "" {
		form.values.Set("user_code", userCode)
	}
	form.values.Set(fieldEmail, email)
	form.values.Set(fieldPassword, password)
	form.values.Set("action", "approve")
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.values.Encode()))
	if err != nil {
		return fmt.Errorf("device approve: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = client.Do(req)
	if err != nil {
		return fmt.Errorf("device approve: submit: %w", err)
	}
	page, err = readPage(resp)
	if err != nil {
		return fmt.Errorf("device approve: submit: %w", err)
	}
	if msg, ok := findLoginError(page.doc); ok {
		return fmt.Errorf("device approve: %w: %s", ErrLoginRejected, msg)
	}
	if findByID(page.doc, "bm-device-done") == nil || page.status != http.StatusOK {
		return fmt.Errorf("device approve: no confirmation (HTTP %d at %s)", page.status, redactURL(page.url))
	}
	return nil
}
