package cloudapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"
)

// DeviceLogin is a device authorization grant (RFC 8628) in progress, for
// machines without a browser: show UserCode and VerificationURI (or
// VerificationURIComplete) to the person, then Wait. Like the Basic Memory
// CLI, it adds a PKCE S256 challenge to the device request and the verifier
// to the token polls.
type DeviceLogin struct {
	conf     *oauth2.Config
	hc       *http.Client
	resp     *oauth2.DeviceAuthResponse
	verifier string
}

// StartDeviceLogin discovers the issuer of cfg.Domain and asks its device
// authorization endpoint for a user code.
func StartDeviceLogin(ctx context.Context, hc *http.Client, cfg Config) (*DeviceLogin, error) {
	ep, err := Discover(ctx, hc, cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("start device login: %w", err)
	}
	if ep.DeviceAuthURL == "" {
		return nil, errors.New("start device login: the issuer offers no device authorization endpoint")
	}
	d := &DeviceLogin{conf: cfg.OAuth2Config(ep, ""), hc: hc, verifier: oauth2.GenerateVerifier()}
	d.resp, err = d.conf.DeviceAuth(withHTTPClient(ctx, hc), oauth2.S256ChallengeOption(d.verifier))
	if err != nil {
		return nil, fmt.Errorf("start device login: %w", err)
	}
	return d, nil
}

// UserCode is the code the person types at VerificationURI.
func (d *DeviceLogin) UserCode() string { return d.resp.UserCode }

// VerificationURI is where the person enters the code.
func (d *DeviceLogin) VerificationURI() string { return d.resp.VerificationURI }

// VerificationURIComplete is VerificationURI with the code filled in, or
// VerificationURI when the issuer sent none.
func (d *DeviceLogin) VerificationURIComplete() string {
	if d.resp.VerificationURIComplete != "" {
		return d.resp.VerificationURIComplete
	}
	return d.resp.VerificationURI
}

// Wait polls the token endpoint at the issuer's interval until the person
// approves (the token), refuses (ErrAccessDenied), the code expires or ctx
// ends.
func (d *DeviceLogin) Wait(ctx context.Context) (*oauth2.Token, error) {
	tok, err := d.conf.DeviceAccessToken(withHTTPClient(ctx, d.hc), d.resp, oauth2.VerifierOption(d.verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "access_denied" {
			return nil, fmt.Errorf("device login: %w", ErrAccessDenied)
		}
		return nil, fmt.Errorf("device login: %w", err)
	}
	return tok, nil
}
