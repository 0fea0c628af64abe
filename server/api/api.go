// Package api serves bm-server's tenant API: mount info, bucket-scoped mount
// credentials (rate-limited per tenant), change notifications (POST /sync
// and storage webhooks, which publish to the change-event hub and trigger
// the refresh hook), server-sent change events (GET /tenant/events), tenant
// status and the health check the Basic Memory client calls after login.
// Bodies are the wire types of package tenantapi.
//
// The tenant of a request comes only from the verified token's claims, never
// from the request. A mount key's secret appears in the response of
// POST /tenant/mount/credentials and nowhere else: not in the store, not in
// a log line.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/hooks"
	"github.com/basicmachines-co/bm-agent/server/limit"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Authenticator verifies the bearer token of a request and returns its
// claims. The issuer (or an external verifier) provides it. Any error means
// 401.
type Authenticator interface {
	Authenticate(r *http.Request) (tenantapi.Claims, error)
}

// Sessions tells whether the built-in issuer's session behind verified
// claims is still live, asking the store (no cache); *issuer.Issuer
// implements it.
type Sessions interface {
	SessionLive(ctx context.Context, c tenantapi.Claims) (bool, error)
}

// sessionEnder is implemented by the errors of Authenticate that mean the
// token's session was ended (issuer.ErrSessionEnded): the 401 then says
// DetailSessionEnded.
type sessionEnder interface{ SessionEnded() bool }

// authUnavailable is implemented by the errors of Authenticate that mean
// the token could not be checked now (the issuer's store failed): the
// answer is then 503 with Retry-After, not a 401 that would send the
// client to sign in again.
type authUnavailable interface{ AuthUnavailable() bool }

// DetailAuthUnavailable is the detail of that 503.
const DetailAuthUnavailable = "The server cannot check sign-ins right now; try again shortly"

// Handler serves the tenant API. Store, Storage and Auth are required.
type Handler struct {
	Store   *store.Store
	Storage storage.Provider
	Auth    Authenticator
	// Sessions, if set, is asked on the routes that mint, list and revoke
	// keys whether the token's session is live: a session ended a moment
	// ago (logout, password change) is refused there at once, whatever
	// Auth cached. Nil (an external OIDC issuer, whose tokens carry no
	// session of ours) skips the check.
	Sessions Sessions
	Logger   *slog.Logger
	// SubscribeURL goes into subscription_required errors.
	SubscribeURL string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnSync is told about POST /sync after it is recorded. It runs before
	// the response is written, with a context that outlives the request, so
	// it must hand the work off rather than block.
	OnSync func(ctx context.Context, tenantID string, req tenantapi.SyncRequest)

	// Events, if set, gets an event per bucket change (POST /sync, storage
	// webhooks) and serves GET /tenant/events; nil answers that route 404.
	Events *events.Hub
	// Hook, if set, is triggered per bucket change (the refresh hook, see
	// server/hooks). Trigger must not block.
	Hook Hook
	// WebhookSecret authenticates POST /webhooks/storage/{tenant} and
	// POST /webhooks/storage; empty disables the routes (404).
	WebhookSecret string
	// WebhookReplays remembers the signed storage notifications received
	// within hooks.MaxSkew, refusing a replay; nil means a default
	// hooks.NewReplayCache(0), made on first use.
	WebhookReplays *hooks.ReplayCache
	// StorageChanges, if set, takes the changes the storage webhooks
	// report and announces them (publish, hook, audit) coalesced per
	// tenant; nil announces each notification at once.
	StorageChanges ChangeSink
	// MintLimit and MintBurst bound how fast one tenant may mint keys
	// (default 10 per hour, burst 5); a negative MintLimit disables the
	// limit. Beyond it POST /tenant/mount/credentials answers 429 with
	// Retry-After.
	MintLimit rate.Limit
	MintBurst int
	// MintLimiter, when set, is that limit per tenant id, counted where
	// every replica counts it (bm-server passes pglimit's on PostgreSQL);
	// otherwise this process counts it.
	MintLimiter limit.Limiter
	// Heartbeat is the comment interval of GET /tenant/events (default 15s).
	Heartbeat time.Duration
	// Quota, if set, is the storage quota of a subscription tier in bytes
	// (negative: none) that the storage enforces, reported by GET
	// /tenant/status with the bucket's usage (from a Storage that is a
	// storage.UsageReporter); nil reports no quota.
	Quota func(tier string) int64
	// SubscriptionClaimOptional makes a token without a subscription status
	// claim defer to the store (external issuers that do not carry one).
	// A claim that is present is still checked.
	SubscriptionClaimOptional bool

	replayOnce sync.Once
	mintOnce   sync.Once
	minting    *limit.Keyed // the mint limit per tenant
}

// Hook is the refresh hook runner; *hooks.Runner implements it.
type Hook interface {
	Trigger(ev events.Event) bool
}

// maxBody bounds the JSON bodies the API reads.
const maxBody = 16 << 10

// maxDescription bounds a credential's description.
const maxDescription = 200

// SubscriptionMessage is the message of a subscription_required error.
const SubscriptionMessage = "Active subscription required"

// policy says what a route demands of the caller's tenant beyond a valid
// token and an existing tenant.
type policy struct {
	subscription bool // subscription_status must be active or trialing
	active       bool // tenant status must be active
	session      bool // the token's session must be live in the store (see Handler.Sessions)
}

var (
	// full: using the service (mount info, sync, health).
	full = policy{subscription: true, active: true}
	// minting keys is full, with the session checked in the store.
	minting = policy{subscription: true, active: true, session: true}
	// lenient: reading one's status stays possible without a subscription
	// or when suspended.
	lenient = policy{}
	// revoking one's keys too, with the session checked.
	revoking = policy{session: true}
	// listing keys needs an active tenant but no subscription, so that a
	// lapsed tenant can see what to revoke.
	listing = policy{active: true, session: true}
)

// Register adds the tenant API routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET "+tenantapi.PathMountInfo, h.tenant(full, h.mountInfo))
	mux.Handle("POST "+tenantapi.PathMountCredentials, h.tenant(minting, h.createCredential))
	mux.Handle("GET "+tenantapi.PathMountCredentials, h.tenant(listing, h.listCredentials))
	mux.Handle("DELETE "+tenantapi.PathMountCredentials+"/{id}", h.tenant(revoking, h.revokeCredential))
	mux.Handle("POST "+tenantapi.PathSync, h.tenant(full, h.sync))
	mux.Handle("GET "+tenantapi.PathTenantStatus, h.tenant(lenient, h.status))
	mux.Handle("GET "+tenantapi.PathProxyHealth, h.tenant(full, h.health))
	mux.Handle("GET "+PathTenantEvents, h.tenant(full, h.tenantEvents))
	mux.HandleFunc("POST "+PathStorageWebhook+"{tenant}", h.storageWebhook)
	mux.HandleFunc("POST "+PathStorageNotifications, h.storageNotifications)
}

// caller is the verified identity of a request and its tenant's row.
type caller struct {
	claims tenantapi.Claims
	tenant store.Tenant
}

type tenantFunc func(w http.ResponseWriter, r *http.Request, c caller)

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// subscribed reports whether a subscription status allows using the service.
func subscribed(status string) bool { return status == "active" || status == "trialing" }

// tenant authenticates the request, loads the caller's tenant and applies
// p before calling next.
func (h *Handler) tenant(p policy, next tenantFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := h.Auth.Authenticate(r)
		var unavailable authUnavailable
		if err != nil && errors.As(err, &unavailable) && unavailable.AuthUnavailable() {
			h.logger().WarnContext(r.Context(), "tenant api: the token could not be checked", "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusServiceUnavailable, tenantapi.ErrorBody{Detail: DetailAuthUnavailable})
			return
		}
		if err != nil {
			detail := "Invalid or expired token"
			var ended sessionEnder
			switch {
			case r.Header.Get("Authorization") == "":
				detail = "Not authenticated"
			case errors.As(err, &ended) && ended.SessionEnded():
				detail = tenantapi.DetailSessionEnded
			}
			// The error may quote the token: log only that it failed.
			h.logger().InfoContext(r.Context(), "unauthenticated request", "method", r.Method, "path", r.URL.Path, "reason", detail)
			w.Header().Set("WWW-Authenticate", `Bearer`)
			writeJSON(w, http.StatusUnauthorized, tenantapi.ErrorBody{Detail: detail})
			return
		}
		if claims.TenantID == "" {
			writeJSON(w, http.StatusForbidden, tenantapi.ErrorBody{Detail: "no tenant for this account"})
			return
		}
		if p.session && !h.sessionLive(w, r, claims) {
			return
		}
		claimAbsent := h.SubscriptionClaimOptional && claims.SubscriptionStatus == ""
		if p.subscription && !claimAbsent && !subscribed(claims.SubscriptionStatus) {
			h.subscriptionRequired(w)
			return
		}
		t, err := h.Store.TenantByID(r.Context(), claims.TenantID)
		if errors.Is(err, store.ErrNotFound) {
			writeJSON(w, http.StatusForbidden, tenantapi.ErrorBody{Detail: "tenant not found"})
			return
		}
		if err != nil {
			h.internal(w, r, "load tenant", err)
			return
		}
		if p.active && t.Status != store.TenantActive {
			tenantSuspended(w, t.Status)
			return
		}
		// The Free tier has no cloud sync: its tenants are told to
		// subscribe, as a lapsed one is (its quota is 0 as well).
		if p.subscription && (!subscribed(t.SubscriptionStatus) || strings.EqualFold(t.SubscriptionTier, storage.TierFree)) {
			h.subscriptionRequired(w)
			return
		}
		next(w, r, caller{claims: claims, tenant: t})
	})
}

// sessionLive asks Sessions (if set) whether the session of claims is
// live; if not, it answers 401 with DetailSessionEnded (500 if the store
// failed) and returns false.
func (h *Handler) sessionLive(w http.ResponseWriter, r *http.Request, claims tenantapi.Claims) bool {
	if h.Sessions == nil {
		return true
	}
	live, err := h.Sessions.SessionLive(r.Context(), claims)
	if err != nil {
		h.internal(w, r, "session check", err)
		return false
	}
	if !live {
		h.logger().InfoContext(r.Context(), "request of an ended session refused", "method", r.Method, "path", r.URL.Path, "subject", claims.Subject)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, tenantapi.ErrorBody{Detail: tenantapi.DetailSessionEnded})
		return false
	}
	return true
}

func (h *Handler) subscriptionRequired(w http.ResponseWriter) {
	writeJSON(w, http.StatusForbidden, tenantapi.SubscriptionErrorBody{Detail: tenantapi.SubscriptionError{
		Error:        tenantapi.ErrSubscriptionRequired,
		Message:      SubscriptionMessage,
		SubscribeURL: h.SubscribeURL,
	}})
}

// Messages of a 403 tenant_suspended, by the tenant's status.
const (
	SuspendedMessage = "This account is suspended on this server: its notes are kept, but nothing syncs until the server's administrator reactivates it."
	DeletedMessage   = "This account was deleted on this server: nothing syncs any more. Its notes are kept by the server's administrator."
)

// tenantSuspended answers 403 with the tenant_suspended body for a
// tenant of status (suspended or deleted).
func tenantSuspended(w http.ResponseWriter, status string) {
	msg := SuspendedMessage
	if status == store.TenantDeleted {
		msg = DeletedMessage
	}
	writeJSON(w, http.StatusForbidden, tenantapi.TenantErrorBody{Detail: tenantapi.TenantError{
		Error: tenantapi.ErrTenantSuspended, Message: msg}})
}

// internal logs err (which never carries a secret here) and answers 500
// with a generic detail.
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, op string, err error) {
	h.logger().ErrorContext(r.Context(), "tenant api: "+op, "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, tenantapi.ErrorBody{Detail: "internal server error"})
}

// noBucket answers for a tenant whose bucket does not exist yet.
func noBucket(w http.ResponseWriter) {
	writeJSON(w, http.StatusConflict, tenantapi.ErrorBody{Detail: "tenant has no bucket yet"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readJSON decodes an optional JSON body into v: an empty body leaves v
// as it is.
func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

func badRequest(w http.ResponseWriter, detail string) {
	writeJSON(w, http.StatusBadRequest, tenantapi.ErrorBody{Detail: detail})
}
