package api

import (
	"context"
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
	"github.com/basicmachines-co/bm-agent/server/limit"
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
	// PathStorageNotifications receives storage notifications about any
	// tenant's bucket: each change goes to the tenant whose bucket it
	// names (one MinIO webhook target for the whole deployment).
	PathStorageNotifications = "/webhooks/storage"
)

// ChangeSink takes the bucket changes the storage webhooks report;
// *events.Coalescer implements it.
type ChangeSink interface {
	Add(ev events.Event, changes int)
}

// Defaults of the mint rate limit: 10 keys an hour, 5 at once.
const (
	DefaultMintLimit = rate.Limit(10.0 / 3600)
	DefaultMintBurst = 5
)

// maxLastEventID bounds the Last-Event-ID header taken as an event ID.
const maxLastEventID = 64

// maxWebhookBody bounds a storage notification body (MinIO batches records).
const maxWebhookBody = 1 << 20

// publishTimeout bounds the wait for a change event to be recorded
// (PostgreSQL: written for the fleet) before its request is answered.
const publishTimeout = 5 * time.Second

// bucketChanged publishes ev, returning once it is recorded (on
// PostgreSQL, once every replica will deliver it, even if this one dies
// next), and triggers the refresh hook. An error means the devices may
// not hear of it: the caller answers 503, so that the sender retries.
func (h *Handler) bucketChanged(ctx context.Context, ev events.Event) error {
	if h.Events != nil {
		ctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		if err := h.Events.PublishWait(ctx, ev); err != nil {
			return err
		}
	}
	if h.Hook != nil {
		h.Hook.Trigger(ev)
	}
	return nil
}

// eventUnrecorded answers a change whose event could not be recorded.
func (h *Handler) eventUnrecorded(w http.ResponseWriter, r *http.Request, err error) {
	h.logger().WarnContext(r.Context(), "change event not recorded", "err", err)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, tenantapi.ErrorBody{Detail: "the change could not be recorded; retry"})
}

// allowMint takes a token of tenantID's mint limiter; when none is left it
// reports how long to wait.
func (h *Handler) allowMint(ctx context.Context, tenantID string) (bool, time.Duration) {
	if h.MintLimit < 0 {
		return true, 0
	}
	if h.MintLimiter != nil {
		return h.MintLimiter.Allow(ctx, tenantID)
	}
	h.mintOnce.Do(func() {
		perSecond, burst := h.MintLimit, h.MintBurst
		if perSecond == 0 {
			perSecond = DefaultMintLimit
		}
		if burst <= 0 {
			burst = DefaultMintBurst
		}
		h.minting = limit.NewKeyedRate(perSecond, burst, h.now)
	})
	return h.minting.Allow(tenantID)
}

// GET /tenant/events
func (h *Handler) tenantEvents(w http.ResponseWriter, r *http.Request, c caller) {
	if h.Events == nil {
		writeJSON(w, http.StatusNotFound, tenantapi.ErrorBody{Detail: "change events are not enabled"})
		return
	}
	// A client that reconnects names the last event it saw: it gets what
	// it missed meanwhile (from this replica's hub, which every replica's
	// events reach), or one resync event when that cannot be told.
	last := r.Header.Get("Last-Event-ID")
	if len(last) > maxLastEventID {
		last = "?" // no ID of ours: resync
	}
	sub, replay := h.Events.SubscribeAfter(c.tenant.ID, last)
	h.logger().DebugContext(r.Context(), "events subscriber", "tenant", c.tenant.ID,
		"resume", last != "", "resumed", replay.Resumed, "replayed", len(replay.Events))
	// A tenant suspended, deleted or no longer subscribed while its
	// devices listen is heard at the next heartbeat: the stream ends,
	// and the reconnect gets the 403 that says why.
	allowed := func(ctx context.Context) error {
		t, err := h.Store.TenantByID(ctx, c.tenant.ID)
		switch {
		case err != nil:
			return fmt.Errorf("tenant: %w", err)
		case t.Status != store.TenantActive:
			return fmt.Errorf("tenant is %s", t.Status)
		case !subscribed(t.SubscriptionStatus):
			return fmt.Errorf("subscription is %s", t.SubscriptionStatus)
		}
		return nil
	}
	if err := events.ServeSSE(w, r, sub, replay, h.Heartbeat, allowed); err != nil {
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
// the secret as password (Tigris basic auth), or an HMAC-SHA256 in
// hooks.SignatureHeader of the Unix-seconds timestamp in
// hooks.TimestampHeader, ".", and the body (hooks.SignTimestamped).
//
// The bearer and basic modes send the secret itself on every delivery and
// rely on TLS: anyone who sees one delivery can send more, forever. They
// stay because MinIO's webhook target can only send a static token. The
// HMAC mode is the replay-safe one: a timestamp more than hooks.MaxSkew
// (5 minutes) from the server's clock either way is refused, and so is a
// signature already received within that window (a bounded in-memory
// cache; a server restart forgets it). A signature without the timestamp
// header (the old body-only HMAC) is refused with a 401 that says so.
//
// Any 2xx makes the sender stop retrying, so a body with no change of this
// tenant's bucket is still 200.
func (h *Handler) storageWebhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	n, ok := h.readNotification(w, r)
	if !ok {
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
	if err := h.storageChanged(ctx, t, resp.Accepted, first); err != nil {
		h.internal(w, r, "record storage change", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// POST /webhooks/storage
//
// The storage webhook of the whole deployment: each change of the body
// goes to the tenant whose bucket it names (changes of buckets no tenant
// has are counted as ignored), and each such tenant gets a change event
// and its refresh hook. Authentication and answers are those of
// POST /webhooks/storage/{tenant}; without a configured secret
// (BM_SERVER_STORAGE_WEBHOOK_SECRET) the route answers 404.
//
// MinIO: define a webhook notification target aimed here, with the
// shared secret as its auth token (MinIO then sends "Authorization:
// Bearer <secret>"), once per deployment:
//
//	mc admin config set ALIAS notify_webhook:bm endpoint=https://BM-SERVER/webhooks/storage auth_token=SECRET
//	mc admin service restart ALIAS
//
// (or, in MinIO's environment, MINIO_NOTIFY_WEBHOOK_ENABLE_BM=on,
// MINIO_NOTIFY_WEBHOOK_ENDPOINT_BM=... and MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_BM=...).
// MinIO checks that the endpoint answers when the target is set, so start
// bm-server first. Then send each tenant bucket's object events to the
// target:
//
//	mc event add ALIAS/BUCKET arn:minio:sqs::bm:webhook --event put,delete
//
// bm-server does that itself for each bucket it creates when it runs with
// --storage-notify-arn arn:minio:sqs::bm:webhook; buckets created before
// need the mc event add once. MinIO posts one request per object change
// (the S3 event record, plus EventName and Key); the server coalesces
// them (events.Coalescer: a burst becomes one event a quarter second
// after its last change, or one every 2 s while it lasts). MinIO
// names the key's parent user, not the service account, as the writer,
// so these events carry no device: the writing agent wakes up too.
//
// Tigris: its object notifications ({"events": [...]}, see
// storageNotification) are accepted here as well, with the secret as the
// webhook's bearer token or basic-auth password. That format is taken
// from Tigris's documentation and has not been tried against Tigris.
func (h *Handler) storageNotifications(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	n, ok := h.readNotification(w, r)
	if !ok {
		return
	}
	type bucketChanges struct {
		bucket, first string
		n             int
	}
	var groups []*bucketChanges
	byBucket := map[string]*bucketChanges{}
	for _, c := range n.changes() {
		g := byBucket[c.bucket]
		if g == nil {
			g = &bucketChanges{bucket: c.bucket, first: c.event}
			byBucket[c.bucket] = g
			groups = append(groups, g)
		}
		g.n++
	}
	var resp WebhookResponse
	for _, g := range groups {
		t, err := h.Store.TenantByBucket(ctx, g.bucket)
		if errors.Is(err, store.ErrNotFound) {
			resp.Ignored += g.n
			continue
		}
		if err != nil {
			h.internal(w, r, "load tenant by bucket", err)
			return
		}
		resp.Accepted += g.n
		if err := h.storageChanged(ctx, t, g.n, g.first); err != nil {
			h.internal(w, r, "record storage change", err)
			return
		}
	}
	if resp.Ignored > 0 {
		h.logger().DebugContext(ctx, "storage webhook: changes of unknown buckets", "ignored", resp.Ignored)
	}
	writeJSON(w, http.StatusOK, resp)
}

// readNotification reads and authenticates a storage notification; on
// failure it has answered.
func (h *Handler) readNotification(w http.ResponseWriter, r *http.Request) (storageNotification, bool) {
	var n storageNotification
	if h.WebhookSecret == "" {
		writeJSON(w, http.StatusNotFound, tenantapi.ErrorBody{Detail: "storage webhooks are not enabled"})
		return n, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, tenantapi.ErrorBody{Detail: "body too large"})
			return n, false
		}
		badRequest(w, "unreadable body")
		return n, false
	}
	if err := h.webhookAuthorized(r, body); err != nil {
		h.logger().InfoContext(r.Context(), "storage webhook: refused", "path", r.URL.Path, "err", err)
		if errors.Is(err, hooks.ErrReplayCacheFull) {
			w.Header().Set("Retry-After", "60")
			writeJSON(w, http.StatusServiceUnavailable, tenantapi.ErrorBody{Detail: err.Error()})
			return n, false
		}
		w.Header().Set("WWW-Authenticate", `Bearer`)
		writeJSON(w, http.StatusUnauthorized, tenantapi.ErrorBody{Detail: err.Error()})
		return n, false
	}
	if err := json.Unmarshal(body, &n); err != nil {
		badRequest(w, "invalid notification body")
		return n, false
	}
	return n, true
}

// storageChanged announces n changes of t's bucket reported by storage
// (first is the first one's event name): through StorageChanges when set,
// which coalesces and records them, else at once, with an audit record.
// A tenant that is not active is told nothing.
func (h *Handler) storageChanged(ctx context.Context, t store.Tenant, n int, first string) error {
	if n == 0 || t.Status != store.TenantActive {
		return nil
	}
	ev := events.Event{TenantID: t.ID, Reason: "storage:" + first, At: h.now().UTC()}
	if h.StorageChanges != nil {
		h.StorageChanges.Add(ev, n)
		return nil
	}
	if err := h.Store.AddAudit(ctx, t.ID, AuditBucketChanged,
		fmt.Sprintf("source=storage changes=%d event=%q", n, first)); err != nil {
		return err
	}
	return h.bucketChanged(ctx, ev)
}

// errWebhookCredentials: no valid bearer token, basic-auth password or
// signature.
var errWebhookCredentials = errors.New("invalid webhook credentials")

// webhookAuthorized checks the shared secret in constant time. A signed
// delivery must carry hooks.TimestampHeader, be within hooks.MaxSkew of
// now and not have been received before (h's replay cache). It returns nil
// or an error whose text is a safe 401 detail (never the secret).
func (h *Handler) webhookAuthorized(r *http.Request, body []byte) error {
	secret := []byte(h.WebhookSecret)
	if r.Header.Get(hooks.SignatureHeader) != "" {
		return hooks.VerifyRequest(secret, body, r.Header, h.now(), h.replays())
	}
	if _, pass, ok := r.BasicAuth(); ok {
		if equalSecret(pass, h.WebhookSecret) {
			return nil
		}
		return errWebhookCredentials
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return errWebhookCredentials
	}
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok = auth // MinIO sends a bare auth_token as it was configured
	}
	if equalSecret(strings.TrimSpace(tok), h.WebhookSecret) {
		return nil
	}
	return errWebhookCredentials
}

// replays returns the replay cache of signed storage notifications,
// creating it on first use.
func (h *Handler) replays() *hooks.ReplayCache {
	h.replayOnce.Do(func() {
		if h.WebhookReplays == nil {
			h.WebhookReplays = hooks.NewReplayCache(0)
		}
	})
	return h.WebhookReplays
}

// equalSecret compares digests so that neither content nor length leaks
// through timing.
func equalSecret(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
