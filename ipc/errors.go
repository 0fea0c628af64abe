package ipc

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrNoDaemon means no daemon answered on the socket.
var ErrNoDaemon = errors.New("the daemon is not running (start it with `bm-agent setup`, `bm-agent install` or `bm-agent run`)")

// ErrDaemonRunning means [Listen] found a live daemon on the socket.
var ErrDaemonRunning = errors.New("another bm-agent is running")

// ErrNotSupported is returned where the local API has no transport yet
// (Windows named pipes).
var ErrNotSupported = errors.New("bm-agent local API is not supported on this platform yet")

// Well-known errors a [Backend] may return (wrapped or not). The server
// answers them with 409 Conflict (501 for ErrNotImplemented) and a code, and
// the [Client] gives back the same sentinel, so errors.Is works across the
// socket.
var (
	ErrLoginRequired = errors.New("not logged in (run `bm-agent login`)")
	ErrPaused        = errors.New("sync is paused (run `bm-agent resume`)")
	// ErrHeld: a safety check stopped syncing until the person acts
	// (Status.Hold says what happened and what to do).
	ErrHeld = errors.New("sync is held")
	// ErrBusy: the daemon cannot take the request now (it is starting,
	// say); trying again shortly works.
	ErrBusy = errors.New("the daemon is busy")
	// ErrSubscriptionRequired: logged in, but the account has no active
	// subscription (Status.SubscribeURL says where to get one).
	ErrSubscriptionRequired = errors.New("the account has no active subscription")
	// ErrOffline: the server or the bucket cannot be reached (Status.State
	// says which); the daemon keeps trying by itself.
	ErrOffline = errors.New("offline")
	// ErrNotConfigured: no server is configured.
	ErrNotConfigured = errors.New("no server configured")
	// ErrNoSession: the session with the server could not start for
	// another reason (Status.Error says which); the daemon retries.
	ErrNoSession      = errors.New("the session with the server did not start")
	ErrNotImplemented = errors.New("not implemented by this daemon")
	// ErrInvalid: the request is not valid (a bad config key or value,
	// an unknown profile); answered 400.
	ErrInvalid = errors.New("invalid request")
	// Mount errors: 409 for a mount over the sync folder or a second
	// mount, 404 when nothing is mounted, 501 where mounting is not
	// supported.
	ErrMountOverlap     = errors.New("the mount point overlaps the sync folder")
	ErrAlreadyMounted   = errors.New("already mounted (run `bm-agent unmount` first)")
	ErrNotMounted       = errors.New("not mounted")
	ErrMountUnsupported = errors.New("mount is not supported on this platform")
	// ErrNotFound: no such thing (a version to restore); answered 404.
	ErrNotFound = errors.New("not found")
)

// errorCodes maps each well-known error to its wire code and HTTP status.
var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrLoginRequired, "login_required", http.StatusConflict},
	{ErrPaused, "paused", http.StatusConflict},
	{ErrHeld, "held", http.StatusConflict},
	{ErrBusy, "busy", http.StatusConflict},
	{ErrSubscriptionRequired, "subscription_required", http.StatusConflict},
	{ErrOffline, "offline", http.StatusServiceUnavailable},
	{ErrNotConfigured, "not_configured", http.StatusConflict},
	{ErrNoSession, "no_session", http.StatusConflict},
	{ErrNotImplemented, "not_implemented", http.StatusNotImplemented},
	{ErrInvalid, "invalid", http.StatusBadRequest},
	{ErrMountOverlap, "mount_overlap", http.StatusConflict},
	{ErrAlreadyMounted, "already_mounted", http.StatusConflict},
	{ErrNotMounted, "not_mounted", http.StatusNotFound},
	{ErrMountUnsupported, "mount_unsupported", http.StatusNotImplemented},
	{ErrNotFound, "not_found", http.StatusNotFound},
}

// codeOf returns the wire code and HTTP status for err.
func codeOf(err error) (code string, status int) {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code, c.status
		}
	}
	return "", http.StatusInternalServerError
}

// APIError is an error answer from the daemon.
type APIError struct {
	StatusCode int    // HTTP status
	Message    string // the body's "error"
	Code       string // the body's "code", if any
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("bm-agent daemon: HTTP %d", e.StatusCode)
	}
	return e.Message
}

// Unwrap returns the well-known sentinel named by Code, if any.
func (e *APIError) Unwrap() error {
	for _, c := range errorCodes {
		if c.code == e.Code && e.Code != "" {
			return c.err
		}
	}
	return nil
}
