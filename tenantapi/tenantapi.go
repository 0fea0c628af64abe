// Package tenantapi holds the wire types of the Basic Memory tenant API:
// request and response bodies, error bodies and token claims. It has no
// dependencies beyond the standard library, so both the server (package
// server) and the client (package cloudapi) import it, the way tailscale's
// tailcfg serves its client and its control server.
package tenantapi

import "time"

// Routes of the tenant API.
const (
	PathMountInfo        = "/tenant/mount/info"
	PathMountCredentials = "/tenant/mount/credentials" // POST mints, GET lists, DELETE .../{id} revokes
	PathSync             = "/sync"
	PathTenantStatus     = "/tenant/status"
	PathProxyHealth      = "/proxy/health"
	PathDiscovery        = "/.well-known/openid-configuration"
	// PathTenantEvents streams the caller's bucket changes as server-sent
	// events (event "bucket-changed", a JSON body per change).
	PathTenantEvents = "/tenant/events"
	// PathStorageWebhook + "{tenant}" receives the storage service's
	// notifications for a tenant's bucket (authenticated with a shared
	// secret, not a token).
	PathStorageWebhook = "/webhooks/storage/"
)

// MountInfo is the body of GET /tenant/mount/info.
type MountInfo struct {
	TenantID             string  `json:"tenant_id"`
	BucketName           string  `json:"bucket_name"`
	HasCredentials       bool    `json:"has_credentials"`
	CredentialsCreatedAt *string `json:"credentials_created_at"`
}

// MountCredentials is the body of POST /tenant/mount/credentials. The secret
// is in this response once and stored nowhere on the server.
type MountCredentials struct {
	TenantID    string `json:"tenant_id"`
	BucketName  string `json:"bucket_name"`
	AccessKey   string `json:"access_key"`
	SecretKey   string `json:"secret_key"`
	EndpointURL string `json:"endpoint_url"`
	Region      string `json:"region"`
	// CredentialID names the key for DELETE /tenant/mount/credentials/{id}.
	CredentialID string `json:"credential_id"`
}

// CreateCredentialsRequest is the optional body of POST /tenant/mount/credentials.
type CreateCredentialsRequest struct {
	Description string `json:"description,omitempty"`
}

// Credential is one active key as listed by GET /tenant/mount/credentials;
// it never carries a secret.
type Credential struct {
	ID             string     `json:"id"`
	AccessKey      string     `json:"access_key"`
	Description    string     `json:"description"`
	CreatedAt      time.Time  `json:"created_at"`
	LastUsedAt     *time.Time `json:"last_used_at"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	DeletionStatus string     `json:"deletion_status,omitempty"`
}

// CredentialList is the body of GET /tenant/mount/credentials.
type CredentialList struct {
	Credentials []Credential `json:"credentials"`
}

// RevokeResponse is the body of DELETE /tenant/mount/credentials/{id}.
type RevokeResponse struct {
	ID             string `json:"id"`
	Revoked        bool   `json:"revoked"`
	DeletionStatus string `json:"deletion_status"`
}

// SyncRequest is the body of POST /sync: "this tenant's bucket changed".
type SyncRequest struct {
	Device string `json:"device,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Paths, when set, are the object keys the device changed, all of
	// them (at most 64): the event the other devices get names them, so
	// they can sync just those. Without them the event says only that
	// something changed.
	Paths []string `json:"paths,omitempty"`
}

// SyncResponse is the body of POST /sync.
type SyncResponse struct {
	Accepted bool `json:"accepted"`
}

// TenantStatus is the body of GET /tenant/status.
type TenantStatus struct {
	TenantID           string `json:"tenant_id"`
	Email              string `json:"email,omitempty"`
	SubscriptionStatus string `json:"subscription_status"`
	SubscriptionTier   string `json:"subscription_tier"`
	BucketName         string `json:"bucket_name"`
	Devices            int    `json:"devices"`
	// StorageUsedBytes is what the tenant's bucket holds, its objects and
	// the parts of its unfinished multipart uploads; absent where the
	// server's storage does not report it.
	StorageUsedBytes *int64 `json:"storage_used_bytes,omitempty"`
	// StorageQuotaBytes is the most the bucket may hold (0: nothing, as
	// on a tier without cloud storage); absent where there is no quota
	// or the server's storage does not enforce one. A write that would
	// pass it is refused with S3's 403 QuotaExceeded.
	StorageQuotaBytes *int64 `json:"storage_quota_bytes,omitempty"`
}

// ErrorBody is the generic error shape: {"detail": "..."}.
type ErrorBody struct {
	Detail string `json:"detail"`
}

// SubscriptionError is the detail of a 403 subscription_required response:
// {"detail": {"error": "subscription_required", "message": ..., "subscribe_url": ...}}.
type SubscriptionError struct {
	Error        string `json:"error"`
	Message      string `json:"message"`
	SubscribeURL string `json:"subscribe_url"`
}

// SubscriptionErrorBody wraps SubscriptionError under "detail".
type SubscriptionErrorBody struct {
	Detail SubscriptionError `json:"detail"`
}

// ErrSubscriptionRequired is the error code of SubscriptionError.
const ErrSubscriptionRequired = "subscription_required"

// TenantError is the detail of a 403 for a tenant its server's
// administrator suspended or deleted:
// {"detail": {"error": "tenant_suspended", "message": ...}}. Message is
// meant to be shown as it is.
type TenantError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// TenantErrorBody wraps TenantError under "detail".
type TenantErrorBody struct {
	Detail TenantError `json:"detail"`
}

// ErrTenantSuspended is the error code of TenantError.
const ErrTenantSuspended = "tenant_suspended"

// Claims are the claims of an access token issued for the tenant API.
type Claims struct {
	Subject            string `json:"sub"`
	Email              string `json:"email,omitempty"`
	TenantID           string `json:"tenant_id"`
	SubscriptionStatus string `json:"subscription_status"`
	SubscriptionTier   string `json:"subscription_tier"`
	// SessionID names the built-in issuer's session (login) the token
	// belongs to; tokens of an external issuer have none.
	SessionID string `json:"sid,omitempty"`
}

// DetailSessionEnded is the detail of a 401 for a token whose session was
// ended (logout, password change, a disabled account, a reused refresh
// token): the client must sign in again.
const DetailSessionEnded = "Session ended; sign in again"

// Scopes the clients ask for.
const DefaultScopes = "openid profile email offline_access"

// DefaultClientID is the public OAuth client the agent registers as.
const DefaultClientID = "bm-agent"
