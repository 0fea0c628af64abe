package ipc

import "time"

// Daemon states reported in [Status.State].
const (
	StateStarting      = "starting"
	StateIdle          = "idle"
	StateSyncing       = "syncing"
	StatePaused        = "paused"
	StateOffline       = "offline"
	StateError         = "error"
	StateLoginRequired = "login_required"
	StateLoggedOut     = "logged_out"
)

// Routes of the local API.
const (
	PathStatus  = "/v0/status"
	PathSync    = "/v0/sync"
	PathLogin   = "/v0/login"
	PathLogout  = "/v0/logout"
	PathPause   = "/v0/pause"
	PathResume  = "/v0/resume"
	PathVersion = "/v0/version"
	PathWatch   = "/v0/watch"
)

// Status is the daemon's state as its clients see it (GET /v0/status).
type Status struct {
	// State is one of the State* constants.
	State string `json:"state"`
	// Since is when the daemon entered State.
	Since time.Time `json:"since"`
	// Error explains State "error" (or the last failure); never a secret.
	Error          string       `json:"error,omitempty"`
	LoggedIn       bool         `json:"logged_in"`
	Account        string       `json:"account,omitempty"`
	TenantID       string       `json:"tenant_id,omitempty"`
	Bucket         string       `json:"bucket,omitempty"`
	Endpoint       string       `json:"endpoint,omitempty"`
	Folder         string       `json:"folder,omitempty"`
	KeyringBackend string       `json:"keyring_backend,omitempty"`
	LastSync       *PassSummary `json:"last_sync,omitempty"`
	NextSync       *time.Time   `json:"next_sync,omitempty"`
	// LoginURL is the URL to open while a login is in progress.
	LoginURL string `json:"login_url,omitempty"`
	Version  string `json:"version,omitempty"`
	Paused   bool   `json:"paused"`
}

// PassSummary describes one sync pass.
type PassSummary struct {
	Start      time.Time `json:"start"`
	DurationMS int64     `json:"duration_ms"`
	// Trigger says what started the pass: "watch", "interval", "remote",
	// "manual", "startup".
	Trigger       string `json:"trigger,omitempty"`
	Uploaded      int    `json:"uploaded"`
	Downloaded    int    `json:"downloaded"`
	DeletedLocal  int    `json:"deleted_local"`
	DeletedRemote int    `json:"deleted_remote"`
	Conflicts     int    `json:"conflicts"`
	Resync        bool   `json:"resync"`
	Error         string `json:"error,omitempty"`
	// Skipped says why the pass did not run (paused, offline, ...), if so.
	Skipped string `json:"skipped,omitempty"`
}

// SyncRequest is the body of POST /v0/sync.
type SyncRequest struct {
	Resync bool `json:"resync"`
	DryRun bool `json:"dry_run"`
	// Wait makes the request block until the pass finishes and answer with
	// its summary; without it the daemon answers 202 Accepted at once.
	Wait bool `json:"wait"`
}

// LoginStart is the answer to POST /v0/login: the URL the user must open.
type LoginStart struct {
	URL string `json:"url"`
}

// VersionInfo is the answer to GET /v0/version.
type VersionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	// Code names a well-known error (see [ErrLoginRequired] and friends) so
	// the client can give back the same sentinel; empty otherwise.
	Code string `json:"code,omitempty"`
}
