// Package lifecycle runs bm-server's background jobs over credentials and
// buckets:
//
//   - deletion retry: revoked keys whose deletion at the storage provider is
//     pending or failed are deleted again, with exponential backoff per key;
//   - orphan revocation: keys unused for OrphanAfter (created before the
//     cutoff and not used since) are revoked, with audit event
//     "credential.orphaned";
//   - bucket fallback: for providers that can fingerprint a bucket
//     cheaply, a bucket whose fingerprint changed while no change event was
//     published for its tenant gets one (and the refresh hook runs), so
//     that a lost storage notification delays a refresh, never loses it;
//   - upload expiry: for providers that keep multipart uploads themselves
//     (the embedded S3 endpoint), uploads begun more than UploadMaxAge ago
//     and never completed are aborted and their parts deleted, which frees
//     the room they held in the bucket's quota.
//
// The state of the fallback and of the backoff is in memory: after a
// restart the first pass only records fingerprints, and failed deletions
// are retried at once.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/store"
)

// Audit kinds written by the jobs.
const (
	AuditCredentialOrphaned = "credential.orphaned"
	AuditCredentialDeleted  = "credential.deleted" // a retried deletion at the provider succeeded
)

// BucketFingerprinter is an optional interface of a storage.Provider: a
// cheap value that changes whenever an object of bucket is added, changed
// or removed (an ETag of the listing, a generation number, ...).
type BucketFingerprinter interface {
	BucketFingerprint(ctx context.Context, bucket string) (string, error)
}

// UploadExpirer is an optional interface of a storage.Provider that keeps
// multipart uploads itself: ExpireUploads aborts those begun before cutoff,
// deleting their parts, and returns how many.
type UploadExpirer interface {
	ExpireUploads(ctx context.Context, cutoff time.Time) (int, error)
}

// Defaults of the upload expiry.
const (
	DefaultUploadMaxAge         = 24 * time.Hour
	DefaultUploadExpiryInterval = time.Hour
)

// Hook is the refresh hook runner; *hooks.Runner implements it.
type Hook interface {
	Trigger(ev events.Event) bool
}

// Config configures the Worker. Store and Storage are required.
type Config struct {
	Store   *store.Store
	Storage storage.Provider

	// RetryInterval is how often failed deletions are looked at (default 1m).
	RetryInterval time.Duration
	// PendingGrace is how old a "pending" deletion must be before the job
	// takes it over from the request that started it (default 2m).
	PendingGrace time.Duration
	// MaxBackoff caps the wait between two tries of one key (default 1h;
	// the first wait is RetryInterval).
	MaxBackoff time.Duration

	// OrphanAfter revokes keys unused that long (0 disables; 90 days is a
	// sensible value). OrphanInterval is how often to look (default 1h).
	OrphanAfter    time.Duration
	OrphanInterval time.Duration

	// FallbackInterval is how often bucket fingerprints are compared
	// (default 5m; negative disables). Only providers implementing
	// BucketFingerprinter take part.
	FallbackInterval time.Duration
	// Events and Hook receive the fallback's bucket changes.
	Events *events.Hub
	Hook   Hook

	// UploadMaxAge is how long a multipart upload may stay unfinished
	// before it is aborted (default DefaultUploadMaxAge; negative
	// disables); UploadExpiryInterval is how often to look (default
	// DefaultUploadExpiryInterval, or half UploadMaxAge if that is
	// shorter, but not under a second).
	// Only providers implementing UploadExpirer take part.
	UploadMaxAge, UploadExpiryInterval time.Duration

	// Holder is this replica's name in the store's job leases: when set,
	// each job's pass runs only while this replica holds the job's lease
	// (store.TakeLease, for 1.5 of the job's intervals, renewed by each
	// pass), so replicas on one database run each job on one of them at a
	// time, and another takes it over when the holder stops. Empty: the
	// jobs always run (one process).
	Holder string

	Now    func() time.Time
	Logger *slog.Logger
}

// Worker runs the jobs. Create it with New and run Serve, or call the job
// methods directly.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	backoff map[string]retryState // credential id -> next try
	prints  map[string]fingerprint
}

type retryState struct {
	next time.Time
	wait time.Duration
}

type fingerprint struct {
	value string
	at    time.Time // when it was taken
}

// New returns a worker for cfg.
func New(cfg Config) (*Worker, error) {
	if cfg.Store == nil || cfg.Storage == nil {
		return nil, errors.New("lifecycle new: store and storage are required")
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Minute
	}
	if cfg.PendingGrace <= 0 {
		cfg.PendingGrace = 2 * time.Minute
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.OrphanInterval <= 0 {
		cfg.OrphanInterval = time.Hour
	}
	if cfg.FallbackInterval == 0 {
		cfg.FallbackInterval = 5 * time.Minute
	}
	if cfg.UploadMaxAge == 0 {
		cfg.UploadMaxAge = DefaultUploadMaxAge
	}
	if cfg.UploadExpiryInterval <= 0 {
		cfg.UploadExpiryInterval = DefaultUploadExpiryInterval
		if cfg.UploadMaxAge > 0 { // look at least twice per age, at most once a second
			cfg.UploadExpiryInterval = max(min(cfg.UploadExpiryInterval, cfg.UploadMaxAge/2), time.Second)
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{cfg: cfg, log: cfg.Logger, backoff: map[string]retryState{}, prints: map[string]fingerprint{}}, nil
}

// Serve runs the jobs on their intervals until ctx is cancelled.
// Cancellation is not an error; a failing pass is logged and retried on
// the next tick.
func (w *Worker) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	loop := func(name string, every time.Duration, pass func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			defer w.releaseLease(name)
			for {
				if err := w.leased(ctx, name, every, pass); err != nil && ctx.Err() == nil {
					w.log.Error("lifecycle pass failed", "job", name, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	loop("deletion-retry", w.cfg.RetryInterval, func(ctx context.Context) error {
		_, _, err := w.RetryDeletions(ctx)
		return err
	})
	if w.cfg.OrphanAfter > 0 {
		loop("orphans", w.cfg.OrphanInterval, func(ctx context.Context) error {
			_, err := w.RevokeOrphans(ctx)
			return err
		})
	}
	if _, ok := w.cfg.Storage.(BucketFingerprinter); ok && w.cfg.FallbackInterval > 0 {
		loop("bucket-fallback", w.cfg.FallbackInterval, func(ctx context.Context) error {
			_, err := w.CheckBuckets(ctx)
			return err
		})
	}
	if _, ok := w.cfg.Storage.(UploadExpirer); ok && w.cfg.UploadMaxAge > 0 {
		loop("upload-expiry", w.cfg.UploadExpiryInterval, func(ctx context.Context) error {
			_, err := w.ExpireUploads(ctx)
			return err
		})
	}
	wg.Wait()
	return nil
}

// leased runs pass when this worker holds (or now takes) job's lease, or
// when it has no Holder.
func (w *Worker) leased(ctx context.Context, job string, every time.Duration, pass func(context.Context) error) error {
	if w.cfg.Holder == "" {
		return pass(ctx)
	}
	ok, err := w.cfg.Store.TakeLease(ctx, job, w.cfg.Holder, w.cfg.Now(), every+every/2)
	if err != nil {
		return fmt.Errorf("lease of %s: %w", job, err)
	}
	if !ok {
		return nil // another replica runs it
	}
	return pass(ctx)
}

// releaseLease gives up job's lease as the worker stops, so another
// replica takes the job on its next tick rather than after the lease.
func (w *Worker) releaseLease(job string) {
	if w.cfg.Holder == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.cfg.Store.ReleaseLease(ctx, job, w.cfg.Holder); err != nil {
		w.log.Warn("release job lease", "job", job, "err", err)
	}
}

// ExpireUploads aborts the multipart uploads begun more than UploadMaxAge
// ago (by the worker's clock) and returns how many. A provider without
// UploadExpirer, or a negative UploadMaxAge, makes it a no-op.
func (w *Worker) ExpireUploads(ctx context.Context) (int, error) {
	ex, ok := w.cfg.Storage.(UploadExpirer)
	if !ok || w.cfg.UploadMaxAge <= 0 {
		return 0, nil
	}
	n, err := ex.ExpireUploads(ctx, w.cfg.Now().Add(-w.cfg.UploadMaxAge))
	if err != nil {
		return n, fmt.Errorf("expire uploads: %w", err)
	}
	if n > 0 {
		w.log.Info("expired unfinished multipart uploads", "uploads", n, "max_age", w.cfg.UploadMaxAge.String())
	}
	return n, nil
}

// RetryDeletions deletes at the provider the revoked keys whose deletion is
// failed (or pending for longer than PendingGrace) and whose backoff has
// passed. It returns how many completed and how many failed again.
func (w *Worker) RetryDeletions(ctx context.Context) (completed, failed int, err error) {
	const op = "retry deletions"
	creds, err := w.cfg.Store.PendingDeletions(ctx, 100)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", op, err)
	}
	now := w.cfg.Now()
	for _, c := range creds {
		if ctx.Err() != nil {
			return completed, failed, nil
		}
		if c.DeletionStatus == store.DeletionPending && c.RevokedAt != nil && now.Sub(*c.RevokedAt) < w.cfg.PendingGrace {
			continue // the revoking request may still be at it
		}
		w.mu.Lock()
		st, seen := w.backoff[c.ID]
		w.mu.Unlock()
		if seen && now.Before(st.next) {
			continue
		}
		rerr := w.cfg.Storage.RevokeKey(ctx, storage.Key{AccessKey: c.AccessKey, Ref: c.ProviderRef})
		if rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
			failed++
			wait := w.cfg.RetryInterval
			if seen {
				wait = min(st.wait*2, w.cfg.MaxBackoff)
			}
			w.mu.Lock()
			w.backoff[c.ID] = retryState{next: now.Add(wait), wait: wait}
			w.mu.Unlock()
			if c.DeletionStatus != store.DeletionFailed {
				if err := w.cfg.Store.SetDeletionStatus(ctx, c.ID, store.DeletionFailed); err != nil {
					w.log.Error("record deletion status", "credential_id", c.ID, "err", err)
				}
			}
			w.log.Warn("delete revoked key at provider failed", "tenant", c.TenantID, "credential_id", c.ID, "retry_in", wait, "err", rerr)
			continue
		}
		if err := w.cfg.Store.SetDeletionStatus(ctx, c.ID, store.DeletionCompleted); err != nil {
			return completed, failed, fmt.Errorf("%s: %w", op, err)
		}
		w.mu.Lock()
		delete(w.backoff, c.ID)
		w.mu.Unlock()
		completed++
		w.audit(ctx, c.TenantID, AuditCredentialDeleted, fmt.Sprintf("credential_id=%s access_key=%s", c.ID, c.AccessKey))
	}
	return completed, failed, nil
}

// RevokeOrphans revokes the keys created before now-OrphanAfter and not
// used since, and deletes them at the provider (a failure is left to
// RetryDeletions). It returns how many were revoked.
func (w *Worker) RevokeOrphans(ctx context.Context) (int, error) {
	const op = "revoke orphans"
	if w.cfg.OrphanAfter <= 0 {
		return 0, nil
	}
	now := w.cfg.Now()
	cutoff := now.Add(-w.cfg.OrphanAfter)
	n := 0
	for {
		creds, err := w.cfg.Store.UnusedCredentials(ctx, cutoff, 100)
		if err != nil {
			return n, fmt.Errorf("%s: %w", op, err)
		}
		if len(creds) == 0 {
			return n, nil
		}
		for _, c := range creds {
			if ctx.Err() != nil {
				return n, nil
			}
			rc, err := w.cfg.Store.RevokeCredential(ctx, c.TenantID, c.ID, now)
			if err != nil {
				return n, fmt.Errorf("%s: %w", op, err)
			}
			status := store.DeletionCompleted
			if rerr := w.cfg.Storage.RevokeKey(ctx, storage.Key{AccessKey: rc.AccessKey, Ref: rc.ProviderRef}); rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
				status = store.DeletionFailed
				w.log.Warn("delete orphaned key at provider failed", "tenant", c.TenantID, "credential_id", c.ID, "err", rerr)
			}
			if err := w.cfg.Store.SetDeletionStatus(ctx, c.ID, status); err != nil {
				w.log.Error("record deletion status", "credential_id", c.ID, "err", err)
			}
			last := "never"
			if c.LastUsedAt != nil {
				last = c.LastUsedAt.UTC().Format(time.RFC3339)
			}
			w.audit(ctx, c.TenantID, AuditCredentialOrphaned, fmt.Sprintf("credential_id=%s access_key=%s last_used=%s deletion_status=%s",
				c.ID, c.AccessKey, last, status))
			w.log.Info("revoked unused key", "tenant", c.TenantID, "credential_id", c.ID, "last_used", last)
			n++
		}
	}
}

// CheckBuckets compares each active tenant's bucket fingerprint with the
// one of the previous pass; a change with no event published for the
// tenant since that pass publishes one (reason "fallback") and triggers
// the hook. It returns the number of tenants so refreshed. A provider
// without BucketFingerprinter makes it a no-op.
func (w *Worker) CheckBuckets(ctx context.Context) (int, error) {
	const op = "check buckets"
	fp, ok := w.cfg.Storage.(BucketFingerprinter)
	if !ok {
		return 0, nil
	}
	tenants, err := w.cfg.Store.TenantsWithBuckets(ctx)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	n := 0
	for _, t := range tenants {
		if ctx.Err() != nil {
			return n, nil
		}
		at := w.cfg.Now()
		v, err := fp.BucketFingerprint(ctx, t.BucketName)
		if errors.Is(err, storage.ErrBusy) {
			continue // a write in flight: its own event is coming; the next pass compares with the last value recorded
		}
		if err != nil {
			w.log.Warn("bucket fingerprint", "tenant", t.ID, "err", err)
			continue
		}
		w.mu.Lock()
		prev, seen := w.prints[t.ID]
		w.prints[t.ID] = fingerprint{value: v, at: at}
		w.mu.Unlock()
		if !seen || prev.value == v {
			continue
		}
		if w.cfg.Events != nil && w.cfg.Events.LastPublished(t.ID).After(prev.at) {
			continue // a notification or POST /sync already told everyone
		}
		ev := events.Event{TenantID: t.ID, Reason: "fallback", At: at.UTC()}
		if w.cfg.Events != nil {
			w.cfg.Events.Publish(ev)
		}
		if w.cfg.Hook != nil {
			w.cfg.Hook.Trigger(ev)
		}
		w.audit(ctx, t.ID, "bucket.changed", "source=fallback")
		n++
	}
	return n, nil
}

func (w *Worker) audit(ctx context.Context, tenantID, kind, detail string) {
	if err := w.cfg.Store.AddAudit(ctx, tenantID, kind, detail); err != nil {
		w.log.Error("audit", "kind", kind, "tenant", tenantID, "err", err)
	}
}
