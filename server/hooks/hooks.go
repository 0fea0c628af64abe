// Package hooks runs the refresh hook of bm-server: when a tenant's bucket
// changes (POST /sync, a storage notification, the periodic fallback), the
// service that indexes the notes is told, by running a command or by
// POSTing a signed JSON body to a webhook.
//
// A webhook delivery with a secret carries X-BM-Timestamp, the Unix time
// (seconds) it was signed at, and X-BM-Signature-256, "sha256=" and the hex
// HMAC-SHA256, keyed with the secret, of the timestamp's decimal digits, a
// ".", and the body as sent. A receiver recomputes it (in constant time),
// refuses a timestamp more than MaxSkew (5 min) from its clock, and
// remembers the signatures it accepted for 2*MaxSkew to refuse a replay:
// VerifyRequest with a ReplayCache does all of it. Each attempt is signed
// anew. The storage notifications bm-server receives are signed the same
// way (SignRequest and VerifyRequest serve both directions).
//
// Trigger never blocks: events go into a bounded queue, a pending event of
// a tenant absorbs later ones until it runs, and a few workers run the hook
// with a per-attempt timeout and retries with exponential backoff.
package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/server/events"
)

// SignatureHeader carries an HMAC-SHA256 keyed with the shared secret, as
// "sha256=<hex>" (the form GitHub uses), of TimestampHeader, ".", and the
// body (SignTimestamped): in the refresh hook's webhook and in a storage
// notification to bm-server alike.
const SignatureHeader = "X-BM-Signature-256"

// Environment variables a hook command receives.
const (
	EnvTenantID = "BM_TENANT_ID"
	EnvDevice   = "BM_DEVICE"
	EnvReason   = "BM_REASON"
	EnvAt       = "BM_EVENT_AT"
)

// Audit kinds the runner records when Config.Recorder is set.
const (
	AuditHookOK     = "hook.ok"
	AuditHookFailed = "hook.failed"
)

// Recorder records the outcome of a hook run; *store.Store implements it.
type Recorder interface {
	AddAudit(ctx context.Context, tenantID, kind, detail string) error
}

// Config configures a Runner. Command and WebhookURL may both be set (both
// run); with neither, Trigger does nothing.
type Config struct {
	// Command is the argv of the hook command; it gets the event in
	// BM_TENANT_ID, BM_DEVICE, BM_REASON and BM_EVENT_AT, on top of the
	// server's environment.
	Command []string
	// WebhookURL receives a POST with the event as JSON and, when
	// WebhookSecret is set, TimestampHeader and SignatureHeader (see
	// SignRequest and the package doc).
	WebhookURL    string
	WebhookSecret []byte
	// Now is the clock deliveries are signed with (default time.Now).
	Now func() time.Time
	// Timeout bounds one attempt (default 30s).
	Timeout time.Duration
	// Attempts is the number of tries of one event (default 3).
	Attempts int
	// Backoff is the wait after the first failure, doubled after each
	// further one (default 1s).
	Backoff time.Duration
	// QueueSize bounds the queue of tenants waiting for their hook (default 1024).
	QueueSize int
	// Workers is the number of hooks run at once (default 2).
	Workers int
	// HTTPClient posts to the webhook (default: a client without redirects).
	HTTPClient *http.Client
	// Recorder, if set, gets an audit event per hook run.
	Recorder Recorder
	Logger   *slog.Logger
}

// Runner runs the refresh hook. Create it with New, start it with Serve.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	queue chan string // tenant ids

	mu      sync.Mutex
	pending map[string]events.Event // tenant -> latest event not yet started
}

// New checks cfg and returns a runner.
func New(cfg Config) (*Runner, error) {
	if cfg.WebhookURL != "" && !strings.HasPrefix(cfg.WebhookURL, "http://") && !strings.HasPrefix(cfg.WebhookURL, "https://") {
		return nil, errors.New("hooks new: webhook URL must be http or https")
	}
	if len(cfg.Command) > 0 && cfg.Command[0] == "" {
		return nil, errors.New("hooks new: empty command")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Runner{cfg: cfg, log: log, queue: make(chan string, cfg.QueueSize), pending: map[string]events.Event{}}, nil
}

// Enabled reports whether a command or a webhook is configured.
func (r *Runner) Enabled() bool {
	return r != nil && (len(r.cfg.Command) > 0 || r.cfg.WebhookURL != "")
}

// Trigger queues the hook for ev's tenant without blocking. If the tenant
// already waits for its hook, ev replaces the waiting event (one run covers
// both). It reports false when the hook is disabled or the queue is full.
func (r *Runner) Trigger(ev events.Event) bool {
	if !r.Enabled() || ev.TenantID == "" {
		return false
	}
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pending[ev.TenantID]; ok {
		r.pending[ev.TenantID] = ev
		return true
	}
	select {
	case r.queue <- ev.TenantID:
		r.pending[ev.TenantID] = ev
		return true
	default:
		r.log.Warn("refresh hook queue full: event dropped", "tenant", ev.TenantID)
		return false
	}
}

// Serve runs the workers until ctx is cancelled. Cancellation is not an
// error; a hook running then is cancelled too.
func (r *Runner) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case tenant := <-r.queue:
					r.mu.Lock()
					ev := r.pending[tenant]
					delete(r.pending, tenant)
					r.mu.Unlock()
					r.run(ctx, ev)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// run runs the hook for ev with retries and records the outcome.
func (r *Runner) run(ctx context.Context, ev events.Event) {
	start := time.Now()
	err := r.Run(ctx, ev)
	if ctx.Err() != nil {
		return
	}
	kind, detail := AuditHookOK, fmt.Sprintf("reason=%q device=%q took=%s", ev.Reason, ev.Device, time.Since(start).Round(time.Millisecond))
	if err != nil {
		kind = AuditHookFailed
		detail += " err=" + err.Error()
		r.log.Error("refresh hook failed", "tenant", ev.TenantID, "reason", ev.Reason, "err", err)
	} else {
		r.log.Info("refresh hook ran", "tenant", ev.TenantID, "reason", ev.Reason, "took", time.Since(start))
	}
	if r.cfg.Recorder != nil {
		if err := r.cfg.Recorder.AddAudit(context.WithoutCancel(ctx), ev.TenantID, kind, detail); err != nil {
			r.log.Error("record hook run", "tenant", ev.TenantID, "err", err)
		}
	}
}

// Run runs the hook for ev now, with retries, and returns the last error.
// Serve calls it; it is exported for tests and one-off runs.
func (r *Runner) Run(ctx context.Context, ev events.Event) error {
	var err error
	wait := r.cfg.Backoff
	for attempt := 1; attempt <= r.cfg.Attempts; attempt++ {
		if err = r.once(ctx, ev); err == nil {
			return nil
		}
		if attempt == r.cfg.Attempts {
			break
		}
		r.log.Warn("refresh hook attempt failed", "tenant", ev.TenantID, "attempt", attempt, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("refresh hook: %w", ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
	return fmt.Errorf("refresh hook: %d attempts: %w", r.cfg.Attempts, err)
}

// once makes one attempt: the command, then the webhook.
func (r *Runner) once(ctx context.Context, ev events.Event) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if len(r.cfg.Command) > 0 {
		if err := r.command(ctx, ev); err != nil {
			return err
		}
	}
	if r.cfg.WebhookURL != "" {
		if err := r.webhook(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) command(ctx context.Context, ev events.Event) error {
	cmd := exec.CommandContext(ctx, r.cfg.Command[0], r.cfg.Command[1:]...)
	cmd.Env = append(os.Environ(),
		EnvTenantID+"="+ev.TenantID,
		EnvDevice+"="+ev.Device,
		EnvReason+"="+ev.Reason,
		EnvAt+"="+ev.At.UTC().Format(time.RFC3339Nano),
	)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("hook command: %w: %s", err, clip(strings.TrimSpace(string(out)), 200))
	}
	return nil
}

func (r *Runner) webhook(ctx context.Context, ev events.Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("hook webhook: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("hook webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bm-server-hook")
	if len(r.cfg.WebhookSecret) > 0 {
		SignRequest(req.Header, r.cfg.WebhookSecret, body, r.cfg.Now())
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("hook webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("hook webhook: status %d", resp.StatusCode)
	}
	return nil
}

// Sign returns the body-only signature of older versions: "sha256=" and
// the hex HMAC-SHA256 of body keyed with secret. It can be replayed
// forever: bm-server neither sends nor accepts it (tests use it to show
// that it is refused).
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// signatureIs reports, in constant time, whether header ("sha256=<hex>")
// holds mac; an empty secret never verifies.
func signatureIs(secret []byte, header string, mac []byte) bool {
	if len(secret) == 0 {
		return false
	}
	got, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	sum, err := hex.DecodeString(got)
	return err == nil && hmac.Equal(sum, mac)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
