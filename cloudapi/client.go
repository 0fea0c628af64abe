package cloudapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/oauth2"

	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// Client defaults.
const (
	DefaultCallTimeout = 30 * time.Second
	DefaultMaxAttempts = 3
)

// maxBody bounds what the client reads of any response.
const maxBody = 1 << 20

// Client is a typed client of the tenant API. Its exported fields may be
// changed before the first call.
//
// Retries: a call is tried up to MaxAttempts times, with exponential
// backoff and jitter, when the request failed on the network or the server
// answered 5xx; never on 4xx. CreateCredentials is the exception: minting a
// key is not idempotent and its secret is shown only once, so a retry after
// the request may have reached the server could leave a key nobody holds.
// It is therefore retried only when the connection could not be made at all
// (a dial error); its 5xx and mid-request failures are returned to the
// caller, who can list and revoke keys. CallTimeout bounds each call,
// retries included.
type Client struct {
	base   *url.URL
	ts     oauth2.TokenSource
	hc     *http.Client
	logger *slog.Logger

	CallTimeout time.Duration
	MaxAttempts int
	// InitialBackoff is the first retry delay (doubled each time, ±50%).
	InitialBackoff time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// NewClient returns a client of the tenant API at baseURL (which must pass
// CheckURL) that authenticates with tokens from ts. hc nil means
// http.DefaultClient; logger nil means slog.Default().
func NewClient(baseURL string, ts oauth2.TokenSource, hc *http.Client, logger *slog.Logger) (*Client, error) {
	baseURL = strings.TrimRight(baseURL, "/")
	if err := CheckURL(baseURL); err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	if ts == nil {
		return nil, errors.New("new client: nil token source")
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Client{
		base:           u,
		ts:             ts,
		hc:             hc,
		logger:         logger.With("component", "cloudapi"),
		CallTimeout:    DefaultCallTimeout,
		MaxAttempts:    DefaultMaxAttempts,
		InitialBackoff: 500 * time.Millisecond,
		UserAgent:      "bm-agent",
	}, nil
}

// MountInfo returns GET /tenant/mount/info.
func (c *Client) MountInfo(ctx context.Context) (tenantapi.MountInfo, error) {
	var out tenantapi.MountInfo
	err := c.do(ctx, call{op: "mount info", method: http.MethodGet, path: tenantapi.PathMountInfo}, nil, &out)
	return out, err
}

// CreateCredentials mints a bucket-scoped key (POST
// /tenant/mount/credentials). The secret in the answer exists nowhere else:
// store it before doing anything else. See Client for its retry rule.
func (c *Client) CreateCredentials(ctx context.Context, description string) (tenantapi.MountCredentials, error) {
	var out tenantapi.MountCredentials
	err := c.do(ctx, call{op: "create credentials", method: http.MethodPost, path: tenantapi.PathMountCredentials, dialRetryOnly: true},
		tenantapi.CreateCredentialsRequest{Description: description}, &out)
	return out, err
}

// ListCredentials returns the tenant's active keys (GET
// /tenant/mount/credentials), without secrets.
func (c *Client) ListCredentials(ctx context.Context) ([]tenantapi.Credential, error) {
	var out tenantapi.CredentialList
	err := c.do(ctx, call{op: "list credentials", method: http.MethodGet, path: tenantapi.PathMountCredentials}, nil, &out)
	return out.Credentials, err
}

// RevokeCredential revokes one key (DELETE /tenant/mount/credentials/{id}).
// An unknown id fails with ErrCredentialNotFound.
func (c *Client) RevokeCredential(ctx context.Context, id string) (tenantapi.RevokeResponse, error) {
	var out tenantapi.RevokeResponse
	if id == "" {
		return out, errors.New("cloudapi: revoke credential: empty id")
	}
	err := c.do(ctx, call{op: "revoke credential", method: http.MethodDelete,
		path: tenantapi.PathMountCredentials + "/" + url.PathEscape(id), notFound: ErrCredentialNotFound}, nil, &out)
	return out, err
}

// NotifySync tells the server the tenant's bucket changed (POST /sync). It
// is retried like a read: a duplicate notification is harmless.
func (c *Client) NotifySync(ctx context.Context, req tenantapi.SyncRequest) (tenantapi.SyncResponse, error) {
	var out tenantapi.SyncResponse
	err := c.do(ctx, call{op: "notify sync", method: http.MethodPost, path: tenantapi.PathSync}, req, &out)
	return out, err
}

// TenantStatus returns GET /tenant/status.
func (c *Client) TenantStatus(ctx context.Context) (tenantapi.TenantStatus, error) {
	var out tenantapi.TenantStatus
	err := c.do(ctx, call{op: "tenant status", method: http.MethodGet, path: tenantapi.PathTenantStatus}, nil, &out)
	return out, err
}

// ProxyHealth checks GET /proxy/health: nil for an authenticated, healthy
// tenant; a *SubscriptionRequiredError without a subscription.
func (c *Client) ProxyHealth(ctx context.Context) error {
	return c.do(ctx, call{op: "proxy health", method: http.MethodGet, path: tenantapi.PathProxyHealth}, nil, nil)
}

// call describes one API call.
type call struct {
	op     string
	method string
	path   string
	// dialRetryOnly restricts retries to failures to connect.
	dialRetryOnly bool
	// notFound is the sentinel for a 404; default ErrTenantNotFound on
	// /tenant/ routes.
	notFound error
}

// do runs the call with retries and decodes a 2xx body into out (if not
// nil).
func (c *Client) do(ctx context.Context, cl call, in, out any) error {
	if c.CallTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.CallTimeout)
		defer cancel()
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("cloudapi: %s: encode: %w", cl.op, err)
		}
	}
	attempts := max(c.MaxAttempts, 1)
	eb := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(max(c.InitialBackoff, time.Millisecond)),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0), // the context bounds the call
	)
	b := backoff.WithContext(backoff.WithMaxRetries(eb, uint64(attempts-1)), ctx)

	var lastErr error
	op := func() error {
		err := c.once(ctx, cl, body, out)
		lastErr = err
		return err
	}
	notify := func(err error, wait time.Duration) {
		c.logger.Debug("retrying tenant API call", "op", cl.op, "err", err, "in", wait)
	}
	err := backoff.RetryNotify(op, b, notify)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && lastErr != nil && !errors.Is(lastErr, ctx.Err()) {
		// Stopped while waiting to retry: say why it was retrying.
		return fmt.Errorf("cloudapi: %s: %w (last error: %v)", cl.op, ctx.Err(), lastErr)
	}
	return err
}

// once makes one attempt. Errors that must not be retried are wrapped in
// backoff.Permanent.
func (c *Client) once(ctx context.Context, cl call, body []byte, out any) error {
	tok, err := c.ts.Token()
	if err != nil {
		err = fmt.Errorf("cloudapi: %s: token: %w", cl.op, err)
		var re *oauth2.RetrieveError
		if errors.Is(err, ErrLoginRequired) || ctx.Err() != nil ||
			(errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500) {
			return backoff.Permanent(err)
		}
		return err // the issuer was unreachable or failed: worth another try
	}
	// cl.path is escaped (ids go through url.PathEscape): keep that form.
	u := *c.base
	unescaped, err := url.PathUnescape(cl.path)
	if err != nil {
		return backoff.Permanent(fmt.Errorf("cloudapi: %s: path: %w", cl.op, err))
	}
	u.Path = strings.TrimRight(c.base.Path, "/") + unescaped
	u.RawPath = strings.TrimRight(c.base.EscapedPath(), "/") + cl.path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), rd)
	if err != nil {
		return backoff.Permanent(fmt.Errorf("cloudapi: %s: %w", cl.op, err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	tok.SetAuthHeader(req)

	resp, err := c.hc.Do(req)
	if err != nil {
		err = fmt.Errorf("cloudapi: %s: %w", cl.op, err)
		if ctx.Err() != nil || (cl.dialRetryOnly && !isDialError(err)) {
			return backoff.Permanent(err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		err = fmt.Errorf("cloudapi: %s: read response: %w", cl.op, err)
		if ctx.Err() != nil || cl.dialRetryOnly {
			return backoff.Permanent(err)
		}
		return err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil || len(bytes.TrimSpace(data)) == 0 {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return backoff.Permanent(fmt.Errorf("cloudapi: %s: decode response: %w", cl.op, err))
		}
		return nil
	}
	apiErr := c.decodeError(cl, resp, data)
	if resp.StatusCode >= 500 && !cl.dialRetryOnly {
		return apiErr
	}
	return backoff.Permanent(apiErr)
}

// isDialError reports whether err is a failure to open the connection, so
// the request cannot have reached the server.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// decodeError turns a non-2xx answer into the package's typed errors.
func (c *Client) decodeError(cl call, resp *http.Response, data []byte) error {
	var generic struct {
		Detail       json.RawMessage `json:"detail"`
		Error        string          `json:"error"`
		Message      string          `json:"message"`
		SubscribeURL string          `json:"subscribe_url"`
	}
	_ = json.Unmarshal(data, &generic) // a non-JSON body leaves it empty
	detail := detailText(generic.Detail)
	if detail == "" && len(generic.Detail) == 0 && generic.Error == "" {
		detail = strings.TrimSpace(string(data))
		if len(detail) > 200 {
			detail = detail[:200] + "..."
		}
	}

	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return &APIError{Op: cl.op, Status: resp.StatusCode, Detail: detail, Kind: ErrUnauthorized}
	case http.StatusForbidden:
		var sub tenantapi.SubscriptionError // an error code at the top level or under detail
		if generic.Error != "" {
			sub = tenantapi.SubscriptionError{Error: generic.Error, Message: generic.Message, SubscribeURL: generic.SubscribeURL}
		} else if len(generic.Detail) > 0 && generic.Detail[0] == '{' {
			_ = json.Unmarshal(generic.Detail, &sub)
		}
		if sub.Error == tenantapi.ErrSubscriptionRequired {
			return &SubscriptionRequiredError{Message: sub.Message, SubscribeURL: sub.SubscribeURL}
		}
		if sub.Error == tenantapi.ErrTenantSuspended {
			msg := sub.Message
			if msg == "" {
				msg = "the account is suspended on this server"
			}
			return &APIError{Op: cl.op, Status: resp.StatusCode, Detail: msg, Kind: ErrTenantSuspended}
		}
	case http.StatusNotFound:
		kind := cl.notFound
		if kind == nil && strings.HasPrefix(cl.path, "/tenant/") {
			kind = ErrTenantNotFound
		}
		return &APIError{Op: cl.op, Status: resp.StatusCode, Detail: detail, Kind: kind}
	case http.StatusTooManyRequests:
		return &RateLimitedError{Op: cl.op, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return &APIError{Op: cl.op, Status: resp.StatusCode, Detail: detail}
}

// detailText renders a "detail" value: a string as is, anything else
// (FastAPI validation lists, objects) as compact JSON.
func detailText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return ""
	}
	out := buf.String()
	if len(out) > 200 {
		out = out[:200] + "..."
	}
	return out
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
