package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/hooks"
	"github.com/basicmachines-co/bm-agent/server/store"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Routes added by this package beyond tenantapi's.
const (
	// PathTenantEvents streams the caller's bucket changes as server-sent
	// events.
	PathTenantEvents = "/tenant/events"
	// PathStorageWebhook + "{tenant}" receives storage notifications (Tigris
	// object notifications, MinIO bucket notifications) for a tenant's bucket.
	PathStorageWebhook = "/webhooks/storage/"
)

// Defaults of the mint rate limit: 10 keys an hour, 5 at once.
const (
	DefaultMintLimit = rate.Limit(10.0 / 3600)
	DefaultMintBurst = 5
)

// maxWebhookBody bounds a storage notification body (MinIO batches records).
const maxWebhookBody = 1 << 20

// bucketChanged publishes ev and triggers the refresh hook.
func (h *Handler) bucketChanged(ev events.Event) {
	if h.Events != nil {
		h.Events.Publish(ev)
	}
	if h.Hook != nil {
		h.Hook.Trigger(ev)
	}
}

// allowMint takes a token of tenantID's mint limiter; when none is left it
// reports how long to wait.
func (h *Handler) allowMint(tenantID string) (bool, time.Duration) {
	if h.MintLimit < 0 {
		return true, 0
	}
	limit, burst := h.MintLimit, h.MintBurst
	if limit == 0 {
		limit = DefaultMintLimit
	}
	if burst <= 0 {
		burst = DefaultMintBurst
	}
	h.limMu.Lock()
	if h.limiters == nil {
		h.limiters = map[string]*rate.Limiter{}
	}
	l := h.limiters[tenantID]
	if l == nil {
		l = rate.NewLimiter(limit, burst)
		h.limiters[tenantID] = l
	}
	h.limMu.Unlock()
	now := h.now()
	r := l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Hour
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// GET /tenant/events
func (h *Handler) tenantEvents(w http.ResponseWriter, r *http.Request, c caller) {
	if h.Events == nil {
		writeJSON(w, http.StatusNotFound, tenantapi.ErrorBody{Detail: "change events are not enabled"})
		return
	}
	sub := h.Events.Subscribe(c.tenant.ID)
	h.logger().DebugContext(r.Context(), "events subscriber", "tenant", c.tenant.ID)
	if err := events.ServeSSE(w, r, sub, h.Heartbeat); err != nil {
		h.logger().DebugContext(r.Context(), "events stream ended", "tenant", c.tenant.ID, "err", err)
	}
}

// storageNotification is the union of the bodies storage services post:
// MinIO's bucket notification (S3 event records plus EventName and Key)
// and Tigris's object notification ({"events": [...]}).
type storageNotification struct {
	// MinIO
	EventName string `json:"EventName"`
	Key       string `json:"Key"` // "bucket/object"
	Records   []struct {
		EventName string `json:"eventName"`
		S3        struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object struct {
				Key string `json:"key"`
			} `json:"object"`
		} `json:"s3"`
	} `json:"Records"`
	// Tigris
	Events []struct {
		EventName string `json:"eventName"`
		Bucket    string `json:"bucket"`
		Object    struct {
			Key string `json:"key"`
		} `json:"object"`
	} `json:"events"`
}

// change is one object change of a notification.
type change struct{ event, bucket string }

func (n storageNotification) changes() []change {
	var out []change
	for _, r := range n.Records {
		out = append(out, change{r.EventName, r.S3.Bucket.Name})
	}
	if len(n.Records) == 0 && n.EventName != "" {
		bucket, _, _ := strings.Cut(n.Key, "/")
		out = append(out, change{n.EventName, bucket})
	}
	for _, e := range n.Events {
		out = append(out, change{e.EventName, e.Bucket})
	}
	return out
}

// WebhookResponse is the body of POST /webhooks/storage/{tenant}.
type WebhookResponse struct {
	Accepted int `json:"accepted"` // changes of the tenant's bucket in the body
	Ignored  int `json:"ignored"`  // changes of other buckets
}

// POST /webhooks/storage/{tenant}
//
// Authenticated with the shared secret, not a token: "Authorization:
// Bearer <secret>" (Tigris token auth, MinIO auth_token), Basic auth with
// the secret as password (Tigris basic auth), or an HMAC-SHA256 of the body
// in hooks.SignatureHeader. Any 2xx makes the sender stop retrying, so a
// body with no change of this tenant's bucket is still 200.
func (h *Handler) storageWebhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if h.WebhookSecret == "" {
		writeJSON(w, http.StatusNotFound, tenantapi.ErrorBody{Detail: "storage webhooks are not enabled"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, tenantapi.ErrorBody{Detail: "body too large"})
			return
		}
		badRequest(w, "unreadable body")
		return
	}
	if !h.webhookAuthorized(r, body) {
		h.logger().InfoContext(ctx, "storage webhook: bad credentials", "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer`)
		writeJSON(w, http.StatusUnauthorized, tenantapi.ErrorBody{Detail: "invalid webhook credentials"})
		return
	}
	var n storageNotification
	if err := json.Unmarshal(body, &n); err != nil {
		badRequest(w, "invalid notification body")
		return
	}
	tenantID := r.PathValue("tenant")
	t, err := h.Store.TenantByID(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, tenantapi.ErrorBody{Detail: "tenant not found"})
		return
	}
	if err != nil {
		h.internal(w, r, "load tenant", err)
		return
	}
	if t.BucketName == "" {
		noBucket(w)
		return
	}
	var resp WebhookResponse
	first := ""
	for _, c := range n.changes() {
		if c.bucket != t.BucketName {
			resp.Ignored++
			continue
		}
		resp.Accepted++
		if first == "" {
			first = c.event
		}
	}
	if resp.Accepted > 0 && t.Status == store.TenantActive {
		if err := h.Store.AddAudit(ctx, t.ID, AuditBucketChanged,
			fmt.Sprintf("source=storage changes=%d event=%q", resp.Accepted, first)); err != nil {
			h.internal(w, r, "record storage change", err)
			return
		}
		h.bucketChanged(events.Event{TenantID: t.ID, Reason: "storage:" + first, At: h.now().UTC()})
	}
	writeJSON(w, http.StatusOK, resp)
}

// webhookAuthorized checks the shared secret in constant time.
func (h *Handler) webhookAuthorized(r *http.Request, body []byte) bool {
	secret := []byte(h.WebhookSecret)
	if sig := r.Header.Get(hooks.SignatureHeader); sig != "" {
		return hooks.VerifySignature(secret, body, sig)
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return equalSecret(pass, h.WebhookSecret)
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return false
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok = auth // MinIO sends a bare auth_token as it was configured
	}
	return equalSecret(strings.TrimSpace(tok), h.WebhookSecret)
}

// equalSecret compares digests so that neither content nor length leaks
// through timing.
func equalSecret(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
