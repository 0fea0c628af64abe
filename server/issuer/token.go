package issuer

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/ory/fosite"
)

// serveToken answers POST /oauth2/token: the authorization code grant (with
// code_verifier), the device code grant (with code_verifier) and the
// refresh token grant (refresh_token and client_id
// only). Each access token carries the account's current claims from
// Accounts.Claims, so a changed subscription shows up at the next refresh.
//
// Tokens are issued only for a live session authenticated after the
// account's cutoff (see sessionBook.admit), and carry its id as sid.
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	ctx := withEndReason(r.Context(), EndTokenReuse)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	ar, err := i.provider.NewAccessRequest(ctx, r, emptySession())
	if err != nil {
		i.log.InfoContext(ctx, "token request refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField,
			"description", fosite.ErrorToRFC6749Error(err).GetDescription())
		i.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	s, ok := ar.GetSession().(*session)
	if !ok || s.JWTClaims == nil {
		i.provider.WriteAccessError(ctx, w, ar, fosite.ErrServerError.WithDebug("unexpected session type"))
		return
	}
	// Work on a copy: the stored code or refresh session is not ours to edit.
	s = s.Clone().(*session)
	ar.SetSession(s)
	claims, err := i.accounts.Claims(ctx, s.Subject)
	if err != nil {
		i.log.InfoContext(ctx, "token request refused: account claims", "subject", s.Subject, "error", err)
		i.provider.WriteAccessError(ctx, w, ar, fosite.ErrInvalidGrant.WithHint("The account is no longer available.").WithWrap(err))
		return
	}
	sid := ar.GetID()
	if err := i.sessions.admit(ctx, sid, s.Subject, s.authTime()); err != nil {
		if errors.Is(err, ErrSessionEnded) {
			i.log.InfoContext(ctx, "token request refused: session ended", "subject", s.Subject)
			i.provider.WriteAccessError(ctx, w, ar, fosite.ErrInvalidGrant.WithHint("The session has ended; sign in again.").WithWrap(err))
			return
		}
		i.provider.WriteAccessError(ctx, w, ar, fosite.ErrServerError.WithWrap(err))
		return
	}
	s.setClaims(claims)
	s.JWTClaims.Extra[claimSessionID] = sid
	s.JWTClaims.JTI = ""               // a fresh jti per token
	s.JWTClaims.IssuedAt = time.Time{} // iat is now
	s.JWTClaims.Issuer = i.issuer
	s.JWTClaims.Subject = s.Subject
	// Signed by the key that signs now, named in the header.
	keys := i.keys.state(ctx)
	s.setKeyID(keys.kid)
	ctx = withSigningKey(ctx, keys)

	resp, err := i.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		i.log.InfoContext(ctx, "token response refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		i.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	i.log.InfoContext(ctx, "token issued", "subject", s.Subject, "grant", ar.GetGrantTypes())
	i.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// serveRevoke answers POST /oauth2/revoke (RFC 7009): revoking a refresh
// or access token ends its session (a logout; see sessionBook.end).
func (i *Issuer) serveRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := withEndReason(r.Context(), EndLogout)
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	err := i.provider.NewRevocationRequest(ctx, r)
	if err != nil {
		i.log.InfoContext(ctx, "revocation refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
	}
	i.provider.WriteRevocationResponse(ctx, w, err)
}

// Discovery is the OpenID Provider metadata served at
// /.well-known/openid-configuration.
type Discovery struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
}

// Discovery returns the issuer's metadata document.
func (i *Issuer) Discovery() Discovery {
	return Discovery{
		Issuer:                            i.issuer,
		AuthorizationEndpoint:             i.issuer + PathAuthorize,
		TokenEndpoint:                     i.issuer + PathToken,
		JWKSURI:                           i.issuer + PathJWKS,
		RevocationEndpoint:                i.issuer + PathRevoke,
		DeviceAuthorizationEndpoint:       i.issuer + PathDeviceAuthorization,
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", GrantTypeDeviceCode},
		CodeChallengeMethodsSupported:     []string{"S256"},
		ScopesSupported:                   Scopes,
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		TokenEndpointAuthMethodsSupported: []string{"none"},
		ClaimsSupported: []string{"iss", "sub", "aud", "exp", "iat", "jti",
			claimEmail, claimTenantID, claimSubscriptionStatus, claimSubscriptionTier, claimSessionID},
	}
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	i.writeJSON(w, r, i.Discovery())
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	i.writeJSON(w, r, i.JWKS())
}

func (i *Issuer) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		i.log.DebugContext(r.Context(), "write json", "path", r.URL.Path, "error", err)
	}
}
