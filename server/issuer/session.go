package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
	"golang.org/x/sync/singleflight"

	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Top-level claim names of an access token beyond the registered ones.
const (
	claimTenantID           = "tenant_id"
	claimSubscriptionStatus = "subscription_status"
	claimSubscriptionTier   = "subscription_tier"
	claimEmail              = "email"
	claimSessionID          = "sid"
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
			Headers: &jwt.Headers{Extra: map[string]any{"kid": i.KeyID()}},
			Subject: subject,
		},
		JWTClaims: &jwt.JWTClaims{Subject: subject, Issuer: i.issuer},
		JWTHeader: &jwt.Headers{Extra: map[string]any{"kid": i.KeyID()}},
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

// setKeyID names kid in the headers of the tokens minted from s (the key
// signing them is chosen at the token endpoint, not at login).
func (s *session) setKeyID(kid string) {
	s.JWTHeader = withKid(s.JWTHeader, kid)
	if s.DefaultSession != nil {
		s.DefaultSession.Headers = withKid(s.DefaultSession.Headers, kid)
	}
}

func withKid(h *jwt.Headers, kid string) *jwt.Headers {
	out := &jwt.Headers{Extra: map[string]any{}}
	if h != nil {
		out.Extra = maps.Clone(h.Extra)
		if out.Extra == nil {
			out.Extra = map[string]any{}
		}
	}
	out.Extra["kid"] = kid
	return out
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

// Reasons a session ends, as recorded in the store and given to
// Config.OnSessionsEnded.
const (
	EndLogout          = "logout"           // POST /oauth2/revoke
	EndTokenReuse      = "token_reuse"      // a used refresh token or authorization code came back
	EndPasswordChanged = "password_changed" // EndSubjectSessions by the operator
	EndAccountDisabled = "account_disabled"
	EndByOperator      = "operator"
	endCutoff          = "authenticated_before_cutoff"
)

// ErrSessionEnded: the token's session was ended (or never recorded). It
// comes wrapped with ErrInvalidToken from Verify and Authenticate; its
// SessionEnded method lets the tenant API tell it apart without importing
// this package.
var ErrSessionEnded error = sessionEndedError{}

type sessionEndedError struct{}

func (sessionEndedError) Error() string      { return "session ended" }
func (sessionEndedError) SessionEnded() bool { return true }

// checkUnavailable wraps a store failure met while checking a session:
// the token may be good, the server cannot tell now. Its AuthUnavailable
// method lets the tenant API answer 503 (try again) rather than 401
// (sign in again) without importing this package.
type checkUnavailable struct{ err error }

func (e checkUnavailable) Error() string       { return "session check unavailable: " + e.err.Error() }
func (e checkUnavailable) Unwrap() error       { return e.err }
func (checkUnavailable) AuthUnavailable() bool { return true }

// DefaultSessionCacheTTL is how long Verify trusts what the store said of
// a session (Config.SessionCacheTTL).
const DefaultSessionCacheTTL = 30 * time.Second

// maxCachedSessions bounds the session cache; past it, the cache starts
// over.
const maxCachedSessions = 100_000

type endReasonKey struct{}

// withEndReason names why the sessions fosite revokes while handling the
// request of ctx end.
func withEndReason(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, endReasonKey{}, reason)
}

func endReason(ctx context.Context) string {
	if r, ok := ctx.Value(endReasonKey{}).(string); ok {
		return r
	}
	return EndTokenReuse
}

// sessionBook records the issuer's sessions (one per login: the grant's
// request id, the sid claim of its access tokens), ends them, and caches
// for Verify whether one is live.
type sessionBook struct {
	db         Storage
	log        *slog.Logger
	ttl        time.Duration // of cache entries; <= 0: no cache
	refreshTTL time.Duration
	onEnd      func(ctx context.Context, sids []string, reason string)

	group singleflight.Group
	mu    sync.Mutex
	cache map[string]cachedSession
}

type cachedSession struct {
	live    bool
	subject string
	until   time.Time
}

// admit is asked before tokens of session sid are issued for subject,
// authenticated at authTime: a session that ended, or that was
// authenticated before the subject's cutoff, is refused (and ended) with
// ErrSessionEnded; otherwise the session is recorded, or its expiry moved.
func (b *sessionBook) admit(ctx context.Context, sid, subject string, authTime time.Time) error {
	if sid == "" {
		return errors.New("issuer: admit session: no session id")
	}
	row, err := b.db.AuthSession(ctx, sid)
	switch {
	case err == nil && (row.EndedAt != nil || row.Subject != subject):
		return fmt.Errorf("issuer: admit session: %w", ErrSessionEnded)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("issuer: admit session: %w", err)
	}
	nb, err := b.db.SessionsNotBefore(ctx, subject)
	if err != nil {
		return fmt.Errorf("issuer: admit session: %w", err)
	}
	if !nb.IsZero() && (authTime.IsZero() || authTime.Before(nb)) {
		if eerr := b.end(ctx, sid, endCutoff); eerr != nil {
			b.log.WarnContext(ctx, "issuer: ending a session authenticated before the cutoff", "error", eerr)
		}
		return fmt.Errorf("issuer: admit session: authenticated before the account's cutoff: %w", ErrSessionEnded)
	}
	now := time.Now()
	if err := b.db.OpenAuthSession(ctx, store.AuthSession{ID: sid, Subject: subject, CreatedAt: now,
		ExpiresAt: now.Add(b.refreshTTL)}); err != nil {
		return fmt.Errorf("issuer: admit session: %w", err)
	}
	return nil
}

// end ends session sid for reason: its refresh tokens stop working, Verify
// refuses its access tokens (in this process at once, in others within the
// cache TTL), and, if it was live, OnSessionsEnded is told.
func (b *sessionBook) end(ctx context.Context, sid, reason string) error {
	ended, err := b.db.EndAuthSession(ctx, sid, reason, time.Now())
	if err != nil {
		return fmt.Errorf("issuer: end session: %w", err)
	}
	b.forget(sid)
	if err := b.dropTokens(ctx, sid); err != nil {
		return err
	}
	if ended {
		b.log.InfoContext(ctx, "session ended", "reason", reason)
		b.notify(ctx, []string{sid}, reason)
	}
	return nil
}

// endSubject ends every session of subject, and those it authenticated
// before now that are yet to be recorded (see admit).
func (b *sessionBook) endSubject(ctx context.Context, subject, reason string) ([]string, error) {
	sids, err := b.db.EndSubjectSessions(ctx, subject, reason, time.Now())
	if err != nil {
		return nil, fmt.Errorf("issuer: end sessions: %w", err)
	}
	var errs []error
	for _, sid := range sids {
		b.forget(sid)
		errs = append(errs, b.dropTokens(ctx, sid))
	}
	b.log.InfoContext(ctx, "sessions ended", "subject", subject, "reason", reason, "sessions", len(sids))
	b.notify(ctx, sids, reason)
	if err := errors.Join(errs...); err != nil {
		return sids, err
	}
	return sids, nil
}

// dropTokens makes the refresh tokens of session sid inactive (kept, so
// that a reuse is still recognised) and drops its access-token rows.
func (b *sessionBook) dropTokens(ctx context.Context, sid string) error {
	if err := b.db.DeactivateOAuthSessionsByRequest(ctx, kindRefreshToken, sid); err != nil {
		return fmt.Errorf("issuer: end session: refresh tokens: %w", err)
	}
	if err := b.db.DeleteOAuthSessionsByRequest(ctx, kindAccessToken, sid); err != nil {
		return fmt.Errorf("issuer: end session: access tokens: %w", err)
	}
	return nil
}

func (b *sessionBook) notify(ctx context.Context, sids []string, reason string) {
	if b.onEnd != nil && len(sids) > 0 {
		b.onEnd(context.WithoutCancel(ctx), sids, reason)
	}
}

// live reports whether session sid of subject may be used. With fresh it
// asks the store; otherwise a cache entry younger than the TTL answers.
// Should the store fail, an expired entry answers if there is one.
func (b *sessionBook) live(ctx context.Context, sid, subject string, fresh bool) (bool, error) {
	now := time.Now()
	b.mu.Lock()
	e, cached := b.cache[sid]
	b.mu.Unlock()
	if !fresh && cached && b.ttl > 0 && now.Before(e.until) {
		return e.live && e.subject == subject, nil
	}
	v, err, _ := b.group.Do(sid, func() (any, error) {
		row, err := b.db.AuthSession(ctx, sid)
		if errors.Is(err, store.ErrNotFound) {
			return cachedSession{}, nil
		}
		if err != nil {
			return nil, err
		}
		return cachedSession{live: row.Live(time.Now()), subject: row.Subject}, nil
	})
	if err != nil {
		if cached {
			b.log.WarnContext(ctx, "issuer: session check: store failed; using the cached answer", "error", err)
			return e.live && e.subject == subject, nil
		}
		return false, fmt.Errorf("issuer: session check: %w", checkUnavailable{err})
	}
	got := v.(cachedSession)
	b.remember(sid, got)
	return got.live && got.subject == subject, nil
}

// remember caches what the store said of sid. An ended session stays
// ended: a live answer read before the session ended never replaces the
// entry its ending left.
func (b *sessionBook) remember(sid string, e cachedSession) {
	if b.ttl <= 0 {
		return
	}
	now := time.Now()
	e.until = now.Add(b.ttl)
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.cache[sid]; ok && !old.live && now.Before(old.until) {
		return
	}
	if len(b.cache) >= maxCachedSessions {
		clear(b.cache) // what is dropped is asked of the store again
	}
	b.cache[sid] = e
}

// forget marks sid ended in the cache.
func (b *sessionBook) forget(sid string) {
	if b.ttl <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cache[sid] = cachedSession{until: time.Now().Add(b.ttl)}
}

// EndSession ends session sid (the sid claim of its access tokens) for
// reason: see EndSubjectSessions for what that does.
func (i *Issuer) EndSession(ctx context.Context, sid, reason string) error {
	return i.sessions.end(ctx, sid, reason)
}

// EndSubjectSessions ends every session of subject for reason (a password
// change, a disabled account) and returns their ids: their refresh tokens
// stop working at once, as does any authorization code or device approval
// of subject not yet exchanged; their access tokens can no longer mint or
// list keys (SessionLive) and Verify refuses them within the session cache
// TTL (in this process at once). Config.OnSessionsEnded is told.
func (i *Issuer) EndSubjectSessions(ctx context.Context, subject, reason string) ([]string, error) {
	return i.sessions.endSubject(ctx, subject, reason)
}

// SessionLive asks the store whether the session of the verified claims c
// is live, for the routes that must not trust the cache (minting and
// listing keys). Claims without a session are not live.
func (i *Issuer) SessionLive(ctx context.Context, c tenantapi.Claims) (bool, error) {
	if c.SessionID == "" {
		return false, nil
	}
	return i.sessions.live(ctx, c.SessionID, c.Subject, true)
}

// authTime is when the person behind s signed in.
func (s *session) authTime() time.Time {
	if s.DefaultSession == nil || s.DefaultSession.Claims == nil {
		return time.Time{}
	}
	return s.DefaultSession.Claims.AuthTime
}
