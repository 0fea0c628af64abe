package cloudapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors. Test them with errors.Is; the *APIError that carries them
// (errors.As) holds the status code and the server's detail.
var (
	// ErrUnauthorized is a 401 from the tenant API: the access token was
	// rejected. Log in again (or refresh) before retrying.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrTenantNotFound is a 404 on a /tenant/ route: the account has no
	// tenant (yet) on this server.
	ErrTenantNotFound = errors.New("tenant not found")
	// ErrCredentialNotFound is a 404 on DELETE /tenant/mount/credentials/{id}.
	ErrCredentialNotFound = errors.New("credential not found")
	// ErrLoginRequired means the stored grant is gone: there is no refresh
	// token, or the issuer answered invalid_grant. Only an interactive login
	// helps; nothing retries it.
	ErrLoginRequired = errors.New("login required")
	// ErrAccessDenied is the user declining the authorization request
	// (error=access_denied on the redirect).
	ErrAccessDenied = errors.New("access denied by user")
	// ErrStateMismatch is a login callback whose state is not the one this
	// login sent: a stale tab or a forged request.
	ErrStateMismatch = errors.New("oauth state mismatch")
	// ErrTenantSuspended is a 403 tenant_suspended: the server's
	// administrator suspended (or deleted) the account's tenant. The
	// *APIError's Detail is the server's message, meant for the person.
	// Nothing syncs until it is reactivated; no login helps.
	ErrTenantSuspended = errors.New("tenant suspended")
	// ErrNotFound is returned by Store loads when the item was never saved
	// (or was cleared).
	ErrNotFound = errors.New("not found")
)

// APIError is a tenant API answer with a non-2xx status that has no more
// specific type. Kind, when set, is one of the sentinels above and is what
// errors.Is matches.
type APIError struct {
	Op     string // the client method, e.g. "mount info"
	Status int
	Detail string
	Kind   error
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("cloudapi: %s: %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the sentinel kind, if any.
func (e *APIError) Unwrap() error { return e.Kind }

// SubscriptionRequiredError is a 403 whose error code is
// "subscription_required": the account has no active subscription.
type SubscriptionRequiredError struct {
	Message      string
	SubscribeURL string
}

func (e *SubscriptionRequiredError) Error() string {
	s := "cloudapi: subscription required"
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.SubscribeURL != "" {
		s += " (subscribe at " + e.SubscribeURL + ")"
	}
	return s
}

// RateLimitedError is a 429. RetryAfter is the server's Retry-After, zero
// when it sent none. The client does not retry it by itself.
type RateLimitedError struct {
	Op         string
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("cloudapi: %s: rate limited, retry after %s", e.Op, e.RetryAfter)
	}
	return fmt.Sprintf("cloudapi: %s: rate limited", e.Op)
}
