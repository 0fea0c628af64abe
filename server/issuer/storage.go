package issuer

// The issuer's state: fosite's stored requests (authorization codes, PKCE
// and OpenID Connect sessions, access and refresh token sessions) and the
// device grants of device.go, kept as rows of one table (see
// server/store/oauth.go) so that a restart keeps everyone logged in and
// replicas sharing a database serve one login. Only signatures (HMACs of
// codes and refresh tokens, the signature part of access-token JWTs, a
// SHA-256 of device codes and OpenID Connect codes) are stored, never a
// usable code or token.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/basicmachines-co/bm-agent/server/store"
)

// Storage is where the issuer keeps its state; *store.Store implements it.
// Errors for missing rows wrap store.ErrNotFound, duplicate rows
// store.ErrConflict.
type Storage interface {
	CreateOAuthSession(ctx context.Context, sess store.OAuthSession) error
	OAuthSession(ctx context.Context, kind, signature string) (store.OAuthSession, error)
	DeleteOAuthSession(ctx context.Context, kind, signature string) error
	DeactivateOAuthSession(ctx context.Context, kind, signature string) (bool, error)
	DeactivateOAuthSessionsByRequest(ctx context.Context, kind, requestID string) error
	DeleteOAuthSessionsByRequest(ctx context.Context, kind, requestID string) error
	SwapOAuthSessionData(ctx context.Context, kind, signature, oldData, newData string, active bool) (bool, error)
	CountOAuthSessions(ctx context.Context, kind string, t time.Time) (int, error)
	// CreateOAuthSessionCapped is CreateOAuthSession unless maxRows rows
	// of the kind are unexpired at now (store.ErrFull then), atomically.
	CreateOAuthSessionCapped(ctx context.Context, sess store.OAuthSession, maxRows int, now time.Time) error
	DeleteExpiredOAuthSessions(ctx context.Context, t time.Time) (int64, error)

	// The sessions (logins) behind the tokens, which can be ended; see
	// store.AuthSession.
	OpenAuthSession(ctx context.Context, sess store.AuthSession) error
	AuthSession(ctx context.Context, id string) (store.AuthSession, error)
	EndAuthSession(ctx context.Context, id, reason string, at time.Time) (bool, error)
	// EndSubjectSessions ends the subject's live sessions and records at
	// as its cutoff (SessionsNotBefore), atomically.
	EndSubjectSessions(ctx context.Context, subject, reason string, at time.Time) ([]string, error)
	SessionsNotBefore(ctx context.Context, subject string) (time.Time, error)
	DeleteExpiredAuthSessions(ctx context.Context, t time.Time) (int64, error)
}

var _ Storage = (*store.Store)(nil)

// Kinds of rows.
const (
	kindAuthorizeCode = "authorize_code"
	kindAccessToken   = "access_token"
	kindRefreshToken  = "refresh_token"
	kindPKCE          = "pkce"
	kindOIDC          = "oidc"
	kindDeviceCode    = "device_code"
	kindUserCode      = "user_code"
)

// sweepInterval is how often at most an insert also deletes expired rows.
const sweepInterval = time.Minute

// secretFormKeys are form values never stored (fosite's sanitising already
// drops them; this is a second lock).
var secretFormKeys = []string{"password", "email", "csrf_token", "code", "code_verifier", "refresh_token",
	"device_code", "client_secret", "token", "access_token", "client_assertion"}

// oauthStore implements the fosite storage interfaces the issuer's
// handlers use on top of a Storage.
type oauthStore struct {
	client fosite.Client
	db     Storage
	log    *slog.Logger
	// ttl by token type, for requests whose session has no expiry.
	ttl       map[fosite.TokenType]time.Duration
	lastSweep atomic.Int64 // unix nanoseconds
	// sessions ends the session of a grant fosite revokes.
	sessions *sessionBook
}

// storedRequest is the JSON of a fosite request.
type storedRequest struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScope    []string   `json:"scopes,omitempty"`
	GrantedScope      []string   `json:"granted_scopes,omitempty"`
	Form              url.Values `json:"form,omitempty"`
	RequestedAudience []string   `json:"requested_audience,omitempty"`
	GrantedAudience   []string   `json:"granted_audience,omitempty"`
	Session           *session   `json:"session"`
}

func hashSig(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// sweep deletes expired rows at most once per sweepInterval.
func (s *oauthStore) sweep(ctx context.Context) {
	now := time.Now()
	last := s.lastSweep.Load()
	if now.UnixNano()-last < int64(sweepInterval) || !s.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	n, err := s.db.DeleteExpiredOAuthSessions(ctx, now)
	if err != nil {
		s.log.WarnContext(ctx, "issuer: sweeping expired sessions", "error", err)
		return
	}
	m, err := s.db.DeleteExpiredAuthSessions(ctx, now)
	if err != nil {
		s.log.WarnContext(ctx, "issuer: sweeping expired auth sessions", "error", err)
	}
	if n+m > 0 {
		s.log.DebugContext(ctx, "issuer: swept expired sessions", "rows", n, "auth_sessions", m)
	}
}

func (s *oauthStore) create(ctx context.Context, kind, sig string, tt fosite.TokenType, req fosite.Requester) error {
	sess, ok := req.GetSession().(*session)
	if !ok || sess == nil {
		return fmt.Errorf("issuer: store %s: unexpected session type %T", kind, req.GetSession())
	}
	form := url.Values{}
	for k, v := range req.GetRequestForm() {
		form[k] = v
	}
	for _, k := range secretFormKeys {
		form.Del(k)
	}
	data, err := json.Marshal(storedRequest{
		ID:                req.GetID(),
		RequestedAt:       req.GetRequestedAt(),
		ClientID:          req.GetClient().GetID(),
		RequestedScope:    req.GetRequestedScopes(),
		GrantedScope:      req.GetGrantedScopes(),
		Form:              form,
		RequestedAudience: req.GetRequestedAudience(),
		GrantedAudience:   req.GetGrantedAudience(),
		Session:           sess,
	})
	if err != nil {
		return fmt.Errorf("issuer: store %s: %w", kind, err)
	}
	exp := sess.GetExpiresAt(tt)
	if exp.IsZero() {
		exp = time.Now().Add(s.ttl[tt])
	}
	s.sweep(ctx)
	if err := s.db.CreateOAuthSession(ctx, store.OAuthSession{
		Kind: kind, Signature: sig, RequestID: req.GetID(), ClientID: req.GetClient().GetID(),
		Subject: sess.GetSubject(), Active: true, Data: string(data), ExpiresAt: exp,
	}); err != nil {
		return fmt.Errorf("issuer: store %s: %w", kind, err)
	}
	return nil
}

// load returns the stored request of kind and sig and whether it is
// active; fosite.ErrNotFound if there is none.
//
// The session given to fosite's Get methods is not filled in: handlers
// pass the request's live session, which an earlier handler may have
// changed (expiry times); the returned request carries the stored one.
func (s *oauthStore) load(ctx context.Context, kind, sig string) (fosite.Requester, bool, error) {
	row, err := s.db.OAuthSession(ctx, kind, sig)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, fosite.ErrNotFound
	} else if err != nil {
		return nil, false, fmt.Errorf("issuer: load %s: %w", kind, err)
	}
	var sr storedRequest
	if err := json.Unmarshal([]byte(row.Data), &sr); err != nil {
		return nil, false, fmt.Errorf("issuer: load %s: %w", kind, err)
	}
	if sr.ClientID != s.client.GetID() {
		return nil, false, fosite.ErrNotFound
	}
	if sr.Session == nil || sr.Session.DefaultSession == nil {
		return nil, false, fmt.Errorf("issuer: load %s: no session", kind)
	}
	if sr.Form == nil {
		sr.Form = url.Values{}
	}
	return &fosite.Request{
		ID:                sr.ID,
		RequestedAt:       sr.RequestedAt,
		Client:            s.client,
		RequestedScope:    sr.RequestedScope,
		GrantedScope:      sr.GrantedScope,
		Form:              sr.Form,
		Session:           sr.Session,
		RequestedAudience: sr.RequestedAudience,
		GrantedAudience:   sr.GrantedAudience,
	}, row.Active, nil
}

func (s *oauthStore) remove(ctx context.Context, kind, sig string) error {
	if err := s.db.DeleteOAuthSession(ctx, kind, sig); err != nil {
		return fmt.Errorf("issuer: delete %s: %w", kind, err)
	}
	return nil
}

// ClientAssertionJWTValid implements fosite.ClientManager; the only client
// is public and never authenticates with a JWT.
func (s *oauthStore) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT implements fosite.ClientManager (unused, see
// ClientAssertionJWTValid).
func (s *oauthStore) SetClientAssertionJWT(context.Context, string, time.Time) error { return nil }

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *oauthStore) CreateAuthorizeCodeSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.create(ctx, kindAuthorizeCode, sig, fosite.AuthorizeCode, req)
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage: an
// invalidated code returns its request with fosite.ErrInvalidatedAuthorizeCode,
// so that fosite revokes the tokens issued for it.
func (s *oauthStore) GetAuthorizeCodeSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, active, err := s.load(ctx, kindAuthorizeCode, sig)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
// Of two replicas exchanging one code at once only one succeeds.
func (s *oauthStore) InvalidateAuthorizeCodeSession(ctx context.Context, sig string) error {
	ok, err := s.db.DeactivateOAuthSession(ctx, kindAuthorizeCode, sig)
	if err != nil {
		return fmt.Errorf("issuer: invalidate authorize code: %w", err)
	}
	if !ok {
		return fosite.ErrInvalidatedAuthorizeCode
	}
	return nil
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *oauthStore) CreatePKCERequestSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.create(ctx, kindPKCE, sig, fosite.AuthorizeCode, req)
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *oauthStore) GetPKCERequestSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.load(ctx, kindPKCE, sig)
	return req, err
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *oauthStore) DeletePKCERequestSession(ctx context.Context, sig string) error {
	return s.remove(ctx, kindPKCE, sig)
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
// fosite hands over the authorization code itself: it is stored hashed.
func (s *oauthStore) CreateOpenIDConnectSession(ctx context.Context, code string, req fosite.Requester) error {
	return s.create(ctx, kindOIDC, hashSig(code), fosite.AuthorizeCode, req)
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *oauthStore) GetOpenIDConnectSession(ctx context.Context, code string, _ fosite.Requester) (fosite.Requester, error) {
	req, _, err := s.load(ctx, kindOIDC, hashSig(code))
	if errors.Is(err, fosite.ErrNotFound) {
		return nil, openid.ErrNoSessionFound
	}
	return req, err
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *oauthStore) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.remove(ctx, kindOIDC, hashSig(code))
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *oauthStore) CreateAccessTokenSession(ctx context.Context, sig string, req fosite.Requester) error {
	return s.create(ctx, kindAccessToken, sig, fosite.AccessToken, req)
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *oauthStore) GetAccessTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, _, err := s.load(ctx, kindAccessToken, sig)
	return req, err
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *oauthStore) DeleteAccessTokenSession(ctx context.Context, sig string) error {
	return s.remove(ctx, kindAccessToken, sig)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *oauthStore) CreateRefreshTokenSession(ctx context.Context, sig, _ string, req fosite.Requester) error {
	return s.create(ctx, kindRefreshToken, sig, fosite.RefreshToken, req)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage: a rotated
// or revoked token returns its request with fosite.ErrInactiveToken, so
// that fosite revokes the whole grant on reuse.
func (s *oauthStore) GetRefreshTokenSession(ctx context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	req, active, err := s.load(ctx, kindRefreshToken, sig)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *oauthStore) DeleteRefreshTokenSession(ctx context.Context, sig string) error {
	return s.remove(ctx, kindRefreshToken, sig)
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage: the refresh
// token sig is used up (of two replicas rotating it at once, one fails),
// and the grant's other refresh and access tokens are dropped. The
// session goes on.
func (s *oauthStore) RotateRefreshToken(ctx context.Context, requestID, sig string) error {
	ok, err := s.db.DeactivateOAuthSession(ctx, kindRefreshToken, sig)
	if err != nil {
		return fmt.Errorf("issuer: rotate refresh token: %w", err)
	}
	if !ok {
		return fosite.ErrSerializationFailure
	}
	if err := s.sessions.dropTokens(ctx, requestID); err != nil {
		return fmt.Errorf("issuer: rotate refresh token: %w", err)
	}
	return nil
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: fosite
// calls it on POST /oauth2/revoke and when a used refresh token or
// authorization code comes back. It ends the grant's session (see
// sessionBook.end); its refresh tokens stay as inactive rows until they
// expire, so that reuse is detected.
func (s *oauthStore) RevokeRefreshToken(ctx context.Context, requestID string) error {
	if err := s.sessions.end(ctx, requestID, endReason(ctx)); err != nil {
		return fmt.Errorf("issuer: revoke refresh token: %w", err)
	}
	return nil
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage, called with
// RevokeRefreshToken: it ends the grant's session too, so that Verify
// refuses its access tokens.
func (s *oauthStore) RevokeAccessToken(ctx context.Context, requestID string) error {
	if err := s.sessions.end(ctx, requestID, endReason(ctx)); err != nil {
		return fmt.Errorf("issuer: revoke access token: %w", err)
	}
	return nil
}

// memoryStorage is Storage in memory: the default of Config.Storage, for
// tests and single-process use. State is lost on restart.
type memoryStorage struct {
	mu       sync.Mutex
	rows     map[[2]string]store.OAuthSession
	sessions map[string]store.AuthSession
	cutoffs  map[string]time.Time
}

func newMemoryStorage() *memoryStorage {
	return &memoryStorage{rows: map[[2]string]store.OAuthSession{},
		sessions: map[string]store.AuthSession{}, cutoffs: map[string]time.Time{}}
}

func (m *memoryStorage) OpenAuthSession(_ context.Context, sess store.AuthSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.sessions[sess.ID]
	switch {
	case !ok:
		if sess.CreatedAt.IsZero() {
			sess.CreatedAt = time.Now().UTC()
		}
		sess.EndedAt, sess.EndReason = nil, ""
		m.sessions[sess.ID] = sess
	case old.Subject != sess.Subject:
		return fmt.Errorf("open auth session: %w", store.ErrConflict)
	case sess.ExpiresAt.After(old.ExpiresAt):
		old.ExpiresAt = sess.ExpiresAt
		m.sessions[sess.ID] = old
	}
	return nil
}

func (m *memoryStorage) AuthSession(_ context.Context, id string) (store.AuthSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok {
		return store.AuthSession{}, fmt.Errorf("auth session: %w", store.ErrNotFound)
	}
	return s, nil
}

func (m *memoryStorage) EndAuthSession(_ context.Context, id, reason string, at time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok || s.EndedAt != nil {
		return false, nil
	}
	s.EndedAt, s.EndReason = &at, reason
	m.sessions[id] = s
	return true, nil
}

func (m *memoryStorage) EndSubjectSessions(_ context.Context, subject, reason string, at time.Time) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if at.After(m.cutoffs[subject]) {
		m.cutoffs[subject] = at
	}
	var ids []string
	for id, s := range m.sessions {
		if s.Subject == subject && s.EndedAt == nil {
			s.EndedAt, s.EndReason = &at, reason
			m.sessions[id] = s
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (m *memoryStorage) SessionsNotBefore(_ context.Context, subject string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cutoffs[subject], nil
}

func (m *memoryStorage) DeleteExpiredAuthSessions(_ context.Context, t time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return deleteWhere(m.sessions, func(s store.AuthSession) bool { return s.ExpiresAt.Before(t) }), nil
}

// deleteWhere deletes the entries of m that drop says to and returns how
// many.
func deleteWhere[K comparable, V any](m map[K]V, drop func(V) bool) int64 {
	var n int64
	for k, v := range m {
		if drop(v) {
			delete(m, k)
			n++
		}
	}
	return n
}

func (m *memoryStorage) CreateOAuthSession(_ context.Context, sess store.OAuthSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{sess.Kind, sess.Signature}
	if _, ok := m.rows[k]; ok {
		return fmt.Errorf("create oauth session: %w", store.ErrConflict)
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = time.Now().UTC()
	}
	m.rows[k] = sess
	return nil
}

func (m *memoryStorage) CreateOAuthSessionCapped(_ context.Context, sess store.OAuthSession, maxRows int, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.rows {
		if r.Kind == sess.Kind && !r.ExpiresAt.Before(now) {
			n++
		}
	}
	if n >= maxRows {
		return fmt.Errorf("create oauth session: %d %s rows: %w", n, sess.Kind, store.ErrFull)
	}
	k := [2]string{sess.Kind, sess.Signature}
	if _, ok := m.rows[k]; ok {
		return fmt.Errorf("create oauth session: %w", store.ErrConflict)
	}
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now
	}
	m.rows[k] = sess
	return nil
}

func (m *memoryStorage) OAuthSession(_ context.Context, kind, sig string) (store.OAuthSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[[2]string{kind, sig}]
	if !ok {
		return store.OAuthSession{}, fmt.Errorf("oauth session: %w", store.ErrNotFound)
	}
	return r, nil
}

func (m *memoryStorage) DeleteOAuthSession(_ context.Context, kind, sig string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, [2]string{kind, sig})
	return nil
}

func (m *memoryStorage) DeactivateOAuthSession(_ context.Context, kind, sig string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{kind, sig}
	r, ok := m.rows[k]
	if !ok || !r.Active {
		return false, nil
	}
	r.Active = false
	m.rows[k] = r
	return true, nil
}

func (m *memoryStorage) DeactivateOAuthSessionsByRequest(_ context.Context, kind, requestID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, r := range m.rows {
		if r.Kind == kind && r.RequestID == requestID {
			r.Active = false
			m.rows[k] = r
		}
	}
	return nil
}

func (m *memoryStorage) DeleteOAuthSessionsByRequest(_ context.Context, kind, requestID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, r := range m.rows {
		if r.Kind == kind && r.RequestID == requestID {
			delete(m.rows, k)
		}
	}
	return nil
}

func (m *memoryStorage) SwapOAuthSessionData(_ context.Context, kind, sig, oldData, newData string, active bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{kind, sig}
	r, ok := m.rows[k]
	if !ok || r.Data != oldData {
		return false, nil
	}
	r.Data, r.Active = newData, active
	m.rows[k] = r
	return true, nil
}

func (m *memoryStorage) CountOAuthSessions(_ context.Context, kind string, t time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.rows {
		if r.Kind == kind && !r.ExpiresAt.Before(t) {
			n++
		}
	}
	return n, nil
}

func (m *memoryStorage) DeleteExpiredOAuthSessions(_ context.Context, t time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return deleteWhere(m.rows, func(r store.OAuthSession) bool { return r.ExpiresAt.Before(t) }), nil
}
