package issuer

import (
	"maps"
	"slices"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Top-level claim names of an access token beyond the registered ones.
const (
	claimTenantID           = "tenant_id"
	claimSubscriptionStatus = "subscription_status"
	claimSubscriptionTier   = "subscription_tier"
	claimEmail              = "email"
)

// session is what fosite stores with a code or refresh token and turns into
// tokens: the OpenID Connect session (id_token claims and headers, expiry
// times, subject) plus the access token's JWT claims and header. It
// satisfies both openid.Session and oauth2.JWTSessionContainer.
type session struct {
	*openid.DefaultSession
	JWTClaims *jwt.JWTClaims
	JWTHeader *jwt.Headers
}

// newSession is the session of a person who just logged in.
func (i *Issuer) newSession(subject string, c tenantapi.Claims, authTime time.Time) *session {
	s := &session{
		DefaultSession: &openid.DefaultSession{
			Claims: &jwt.IDTokenClaims{
				Subject:     subject,
				Issuer:      i.issuer,
				AuthTime:    authTime,
				RequestedAt: authTime,
			},
			Headers: &jwt.Headers{Extra: map[string]any{"kid": i.kid}},
			Subject: subject,
		},
		JWTClaims: &jwt.JWTClaims{Subject: subject, Issuer: i.issuer},
		JWTHeader: &jwt.Headers{Extra: map[string]any{"kid": i.kid}},
	}
	s.setClaims(c)
	return s
}

// emptySession is the session handed to fosite on the token endpoint; the
// store's copy replaces it.
func emptySession() *session {
	return &session{DefaultSession: &openid.DefaultSession{}}
}

// setClaims puts the account's claims into the access token (top level:
// fosite copies JWTClaims.Extra into the payload as is) and the id_token.
func (s *session) setClaims(c tenantapi.Claims) {
	s.JWTClaims.Extra = map[string]any{
		claimTenantID:           c.TenantID,
		claimSubscriptionStatus: c.SubscriptionStatus,
		claimSubscriptionTier:   c.SubscriptionTier,
	}
	if c.Email != "" {
		s.JWTClaims.Extra[claimEmail] = c.Email
		s.Username = c.Email
	}
	if idc := s.IDTokenClaims(); c.Email != "" {
		if idc.Extra == nil {
			idc.Extra = map[string]any{}
		}
		idc.Extra[claimEmail] = c.Email
	}
}

// GetJWTClaims implements oauth2.JWTSessionContainer.
func (s *session) GetJWTClaims() jwt.JWTClaimsContainer {
	if s.JWTClaims == nil {
		s.JWTClaims = &jwt.JWTClaims{}
	}
	return s.JWTClaims
}

// GetJWTHeader implements oauth2.JWTSessionContainer.
func (s *session) GetJWTHeader() *jwt.Headers {
	if s.JWTHeader == nil {
		s.JWTHeader = &jwt.Headers{}
	}
	return s.JWTHeader
}

// Clone implements fosite.Session with a deep copy.
func (s *session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := &session{}
	if s.DefaultSession != nil {
		c.DefaultSession = s.DefaultSession.Clone().(*openid.DefaultSession)
	}
	if s.JWTClaims != nil {
		jc := *s.JWTClaims
		jc.Audience = slices.Clone(jc.Audience)
		jc.Scope = slices.Clone(jc.Scope)
		jc.Extra = maps.Clone(jc.Extra)
		c.JWTClaims = &jc
	}
	if s.JWTHeader != nil {
		c.JWTHeader = &jwt.Headers{Extra: maps.Clone(s.JWTHeader.Extra)}
	}
	return c
}
