package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Audit event kinds written by the handlers.
const (
	AuditCredentialCreated = "credential.created"
	AuditCredentialRevoked = "credential.revoked"
	AuditBucketChanged     = "bucket.changed"
)

// GET /tenant/mount/info
func (h *Handler) mountInfo(w http.ResponseWriter, r *http.Request, c caller) {
	if c.tenant.BucketName == "" {
		noBucket(w)
		return
	}
	creds, err := h.Store.ListCredentials(r.Context(), c.tenant.ID)
	if err != nil {
		h.internal(w, r, "mount info", err)
		return
	}
	info := tenantapi.MountInfo{
		TenantID:       c.tenant.ID,
		BucketName:     c.tenant.BucketName,
		HasCredentials: len(creds) > 0,
	}
	if len(creds) > 0 { // newest first
		at := creds[0].CreatedAt.UTC().Format(time.RFC3339Nano)
		info.CredentialsCreatedAt = &at
	}
	writeJSON(w, http.StatusOK, info)
}

// POST /tenant/mount/credentials
func (h *Handler) createCredential(w http.ResponseWriter, r *http.Request, c caller) {
	ctx := r.Context()
	var req tenantapi.CreateCredentialsRequest
	if err := readJSON(r, &req); err != nil {
		badRequest(w, "invalid request body")
		return
	}
	if len(req.Description) > maxDescription {
		badRequest(w, fmt.Sprintf("description longer than %d bytes", maxDescription))
		return
	}
	if c.tenant.BucketName == "" {
		noBucket(w)
		return
	}
	if ok, wait := h.allowMint(r.Context(), c.tenant.ID); !ok {
		h.logger().WarnContext(ctx, "mint rate limit", "tenant", c.tenant.ID, "retry_after", wait)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeJSON(w, http.StatusTooManyRequests, tenantapi.ErrorBody{Detail: "too many new credentials for this tenant; retry later"})
		return
	}
	key, err := h.Storage.MintKey(ctx, c.tenant.BucketName)
	if err != nil {
		h.internal(w, r, "mint key", err)
		return
	}
	if key.AccessKey == "" || key.SecretKey == "" {
		h.internal(w, r, "mint key", errors.New("provider returned an incomplete key"))
		return
	}
	cred := store.Credential{
		ID:          store.NewID(),
		TenantID:    c.tenant.ID,
		AccessKey:   key.AccessKey,
		ProviderRef: key.Ref,
		Description: req.Description,
		CreatedAt:   h.now(),
		SessionID:   c.claims.SessionID,
	}
	if err := h.Store.InsertCredential(ctx, cred); err != nil {
		// A key nobody tracks must not stay usable.
		if rerr := h.Storage.RevokeKey(context.WithoutCancel(ctx), storage.Key{AccessKey: key.AccessKey, Ref: key.Ref}); rerr != nil {
			h.logger().ErrorContext(ctx, "revoke untracked key", "tenant", c.tenant.ID, "access_key", key.AccessKey, "err", rerr)
		}
		h.internal(w, r, "record credential", err)
		return
	}
	if err := h.Store.AddAudit(ctx, c.tenant.ID, AuditCredentialCreated,
		fmt.Sprintf("credential_id=%s access_key=%s", cred.ID, cred.AccessKey)); err != nil {
		h.logger().ErrorContext(ctx, "audit", "kind", AuditCredentialCreated, "tenant", c.tenant.ID, "err", err)
	}
	// A session that ended while the key was minted may have had its keys
	// revoked before this one was recorded: ask again, and revoke it too.
	if h.Sessions != nil {
		if live, err := h.Sessions.SessionLive(ctx, c.claims); err != nil || !live {
			if _, rerr := h.revoke(context.WithoutCancel(ctx), c.tenant.ID, cred.ID, "session_ended"); rerr != nil {
				h.logger().ErrorContext(ctx, "revoke a key of an ended session", "tenant", c.tenant.ID, "credential_id", cred.ID, "err", rerr)
			}
			if err != nil {
				h.internal(w, r, "session check", err)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, tenantapi.ErrorBody{Detail: tenantapi.DetailSessionEnded})
			return
		}
	}
	h.logger().InfoContext(ctx, "mount credential created", "tenant", c.tenant.ID, "credential_id", cred.ID, "access_key", cred.AccessKey)
	endpoint, region := h.Storage.Endpoint()
	writeJSON(w, http.StatusOK, tenantapi.MountCredentials{
		TenantID:     c.tenant.ID,
		BucketName:   c.tenant.BucketName,
		AccessKey:    key.AccessKey,
		SecretKey:    key.SecretKey,
		EndpointURL:  endpoint,
		Region:       region,
		CredentialID: cred.ID,
	})
}

// GET /tenant/mount/credentials
func (h *Handler) listCredentials(w http.ResponseWriter, r *http.Request, c caller) {
	creds, err := h.Store.ListCredentials(r.Context(), c.tenant.ID)
	if err != nil {
		h.internal(w, r, "list credentials", err)
		return
	}
	out := tenantapi.CredentialList{Credentials: make([]tenantapi.Credential, 0, len(creds))}
	for _, cr := range creds {
		out.Credentials = append(out.Credentials, wireCredential(cr))
	}
	writeJSON(w, http.StatusOK, out)
}

func wireCredential(c store.Credential) tenantapi.Credential {
	return tenantapi.Credential{
		ID:             c.ID,
		AccessKey:      c.AccessKey,
		Description:    c.Description,
		CreatedAt:      c.CreatedAt,
		LastUsedAt:     c.LastUsedAt,
		RevokedAt:      c.RevokedAt,
		DeletionStatus: c.DeletionStatus,
	}
}

// DELETE /tenant/mount/credentials/{id}
//
// The key is revoked in the store first (the embedded provider then rejects
// it at once), then at the provider. A provider failure leaves deletion
// status "failed" and the response still 200: the key is revoked for the
// tenant, and calling DELETE again (or a retry job, see
// store.PendingDeletions) retries the provider.
func (h *Handler) revokeCredential(w http.ResponseWriter, r *http.Request, c caller) {
	ctx := r.Context()
	id := r.PathValue("id")
	cred, err := h.Store.CredentialByID(ctx, c.tenant.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, tenantapi.ErrorBody{Detail: "credential not found"})
		return
	}
	if err != nil {
		h.internal(w, r, "load credential", err)
		return
	}
	if cred.DeletionStatus == store.DeletionCompleted {
		writeJSON(w, http.StatusOK, tenantapi.RevokeResponse{ID: cred.ID, Revoked: true, DeletionStatus: cred.DeletionStatus})
		return
	}
	status, err := h.revoke(ctx, c.tenant.ID, id, "")
	if err != nil {
		h.internal(w, r, "revoke credential", err)
		return
	}
	writeJSON(w, http.StatusOK, tenantapi.RevokeResponse{ID: id, Revoked: true, DeletionStatus: status})
}

// revoke revokes credential id of tenantID in the store, then at the
// provider, records the deletion status and the audit event (by, when not
// empty, says who) and returns the status. Only the store's revocation is
// an error: a provider failure is status DeletionFailed, retried later.
func (h *Handler) revoke(ctx context.Context, tenantID, id, by string) (string, error) {
	cred, err := h.Store.RevokeCredential(ctx, tenantID, id, h.now())
	if err != nil {
		return "", err
	}
	status := store.DeletionCompleted
	rerr := h.Storage.RevokeKey(context.WithoutCancel(ctx), storage.Key{AccessKey: cred.AccessKey, Ref: cred.ProviderRef})
	if rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
		status = store.DeletionFailed
		h.logger().ErrorContext(ctx, "revoke key at provider", "tenant", tenantID, "credential_id", cred.ID, "err", rerr)
	}
	if err := h.Store.SetDeletionStatus(context.WithoutCancel(ctx), cred.ID, status); err != nil {
		h.logger().ErrorContext(ctx, "record deletion status", "tenant", tenantID, "credential_id", cred.ID, "err", err)
	}
	detail := fmt.Sprintf("credential_id=%s access_key=%s deletion_status=%s", cred.ID, cred.AccessKey, status)
	if by != "" {
		detail += " by=" + by
	}
	if err := h.Store.AddAudit(ctx, tenantID, AuditCredentialRevoked, detail); err != nil {
		h.logger().ErrorContext(ctx, "audit", "kind", AuditCredentialRevoked, "tenant", tenantID, "err", err)
	}
	return status, nil
}

// POST /sync
func (h *Handler) sync(w http.ResponseWriter, r *http.Request, c caller) {
	ctx := r.Context()
	var req tenantapi.SyncRequest
	if err := readJSON(r, &req); err != nil {
		badRequest(w, "invalid request body")
		return
	}
	req.Device = clip(req.Device, 200)
	req.Reason = clip(req.Reason, 200)
	if err := h.Store.AddAudit(ctx, c.tenant.ID, AuditBucketChanged,
		fmt.Sprintf("device=%q reason=%q", req.Device, req.Reason)); err != nil {
		h.internal(w, r, "record sync", err)
		return
	}
	if h.OnSync != nil {
		h.OnSync(context.WithoutCancel(ctx), c.tenant.ID, req)
	}
	reason := req.Reason
	if reason == "" {
		reason = "sync"
	}
	if err := h.bucketChanged(ctx, events.Event{TenantID: c.tenant.ID, Device: req.Device, Reason: reason, Keys: events.KeysOf(req.Paths), At: h.now().UTC()}); err != nil {
		h.eventUnrecorded(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, tenantapi.SyncResponse{Accepted: true})
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// GET /tenant/status
func (h *Handler) status(w http.ResponseWriter, r *http.Request, c caller) {
	n, err := h.Store.CountActiveCredentials(r.Context(), c.tenant.ID)
	if err != nil {
		h.internal(w, r, "tenant status", err)
		return
	}
	// The store is the authority on the subscription; claims may be stale.
	sub, tier := c.tenant.SubscriptionStatus, c.tenant.SubscriptionTier
	if sub == "" {
		sub = c.claims.SubscriptionStatus
	}
	if tier == "" {
		tier = c.claims.SubscriptionTier
	}
	st := tenantapi.TenantStatus{
		TenantID:           c.tenant.ID,
		Email:              c.claims.Email,
		SubscriptionStatus: sub,
		SubscriptionTier:   tier,
		BucketName:         c.tenant.BucketName,
		Devices:            n,
	}
	if ur, ok := h.Storage.(storage.UsageReporter); ok && c.tenant.BucketName != "" {
		used, err := ur.BucketUsage(r.Context(), c.tenant.BucketName)
		if err != nil {
			// The status stays useful without the figure.
			h.logger().WarnContext(r.Context(), "tenant status: bucket usage", "tenant", c.tenant.ID, "err", err)
		} else {
			st.StorageUsedBytes = &used
		}
	}
	if h.Quota != nil {
		if q := h.Quota(c.tenant.SubscriptionTier); q >= 0 {
			st.StorageQuotaBytes = &q
		}
	}
	writeJSON(w, http.StatusOK, st)
}

// GET /proxy/health
func (h *Handler) health(w http.ResponseWriter, _ *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
