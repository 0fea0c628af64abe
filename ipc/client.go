package ipc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// maxResponseBody bounds a non-streaming answer from the daemon.
const maxResponseBody = 1 << 20

// DefaultStartupWait is a sensible [Client.StartupWait] for commands that
// may run right after the daemon was started.
const DefaultStartupWait = 2 * time.Second

// Client talks to the daemon over its socket. Its methods return an error
// wrapping [ErrNoDaemon] when no daemon answers, an [*APIError] for an
// error answer (which unwraps to the well-known sentinels), or the
// transport's error.
type Client struct {
	// StartupWait is how long each request keeps trying to reach the socket
	// while no daemon answers (it may be starting). Zero tries once. Set it
	// before the first request.
	StartupWait time.Duration

	path string
	hc   *http.Client
}

// NewClient returns a client for the daemon listening at socketPath.
func NewClient(socketPath string) *Client {
	c := &Client{path: socketPath}
	c.hc = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return DialWait(ctx, c.path, c.StartupWait)
			},
			DisableCompression: true,
			MaxIdleConns:       2,
			IdleConnTimeout:    30 * time.Second,
		},
	}
	return c
}

// SocketPath returns the socket the client dials.
func (c *Client) SocketPath() string { return c.path }

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, "status", http.MethodGet, PathStatus, nil, &st)
	return st, err
}

// Sync asks for a pass. With req.Wait it returns the pass's summary once it
// is over; otherwise it returns a zero summary as soon as the pass is queued.
func (c *Client) Sync(ctx context.Context, req SyncRequest) (PassSummary, error) {
	var sum PassSummary
	err := c.do(ctx, "sync", http.MethodPost, PathSync, req, &sum)
	return sum, err
}

// Login starts a browser login and returns the URL to open.
func (c *Client) Login(ctx context.Context) (LoginStart, error) {
	return c.LoginWith(ctx, LoginOptions{})
}

// LoginWith starts a login with opts (a device login with opts.Device) and
// returns the URL to open and, for a device login, the code to enter.
func (c *Client) LoginWith(ctx context.Context, opts LoginOptions) (LoginStart, error) {
	var ls LoginStart
	err := c.do(ctx, "login", http.MethodPost, PathLogin, opts, &ls)
	return ls, err
}

// Logout forgets the daemon's tokens and keys.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, "logout", http.MethodPost, PathLogout, nil, nil)
}

// Pause stops syncing until [Client.Resume].
func (c *Client) Pause(ctx context.Context) error {
	return c.do(ctx, "pause", http.MethodPost, PathPause, nil, nil)
}

// PauseFor stops syncing for d; the daemon resumes by itself afterwards
// (also across a restart).
func (c *Client) PauseFor(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return c.Pause(ctx)
	}
	return c.do(ctx, "pause", http.MethodPost, PathPause, PauseRequest{ForMS: max(d.Milliseconds(), 1)}, nil)
}

// History returns up to limit passes, newest first (limit <= 0: the
// daemon's default).
func (c *Client) History(ctx context.Context, limit int) (History, error) {
	var h History
	path := PathHistory
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	err := c.do(ctx, "history", http.MethodGet, path, nil, &h)
	return h, err
}

// Conflicts lists the conflict files in the notes folder.
func (c *Client) Conflicts(ctx context.Context) (Conflicts, error) {
	var cs Conflicts
	err := c.do(ctx, "conflicts", http.MethodGet, PathConflicts, nil, &cs)
	return cs, err
}

// Resume restarts syncing after [Client.Pause].
func (c *Client) Resume(ctx context.Context) error {
	return c.do(ctx, "resume", http.MethodPost, PathResume, nil, nil)
}

// Version returns the daemon's version.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := c.do(ctx, "version", http.MethodGet, PathVersion, nil, &v)
	return v, err
}

// Watch streams the daemon's events to fn: first a snapshot (Kind
// [EventSnapshot], Status set), then each change (state, progress, login,
// notification). It returns nil when ctx ends, fn's error if fn fails, and
// an error when the daemon closes the stream (it stopped, or dropped this
// reader for being slow): reconnect then.
func (c *Client) Watch(ctx context.Context, fn func(Event) error) error {
	return c.stream(ctx, "watch", PathWatch, func(dec *json.Decoder) error {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			return err
		}
		return fn(ev)
	})
}

// Logs sends the daemon's recent log records to fn, oldest first; with
// req.Follow it then keeps sending new records until ctx ends (and returns
// nil) or the daemon closes the stream.
func (c *Client) Logs(ctx context.Context, req LogsRequest, fn func(LogLine) error) error {
	q := url.Values{}
	if req.Lines > 0 {
		q.Set("lines", strconv.Itoa(req.Lines))
	}
	if req.Follow {
		q.Set("follow", "1")
	}
	path := PathLogs
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err := c.stream(ctx, "logs", path, func(dec *json.Decoder) error {
		var l LogLine
		if err := dec.Decode(&l); err != nil {
			return err
		}
		return fn(l)
	})
	if !req.Follow && errors.Is(err, io.ErrUnexpectedEOF) {
		return nil // the daemon ends a non-following stream after the last line
	}
	return err
}

// ConfigGet returns the agent's settings (the keys of its config.json).
func (c *Client) ConfigGet(ctx context.Context) (map[string]any, error) {
	var m map[string]any
	err := c.do(ctx, "config get", http.MethodGet, PathConfig, nil, &m)
	return m, err
}

// ConfigSet changes one setting and returns the settings after the change;
// the key [ConfigRestartRequired] is true when the change applies only
// after the daemon restarts. A bad key or value gives an error wrapping
// [ErrInvalid].
func (c *Client) ConfigSet(ctx context.Context, key, value string) (map[string]any, error) {
	var m map[string]any
	err := c.do(ctx, "config set", http.MethodPost, PathConfig, ConfigSetRequest{Key: key, Value: value}, &m)
	return m, err
}

// Mount mounts the tenant's bucket in the daemon and returns the mount's
// status. Errors wrap [ErrMountOverlap], [ErrAlreadyMounted],
// [ErrMountUnsupported], [ErrLoginRequired] or [ErrInvalid] when they apply.
func (c *Client) Mount(ctx context.Context, req MountRequest) (MountStatus, error) {
	var ms MountStatus
	err := c.do(ctx, "mount", http.MethodPost, PathMount, req, &ms)
	return ms, err
}

// Unmount unmounts the bucket (an error wrapping [ErrNotMounted] if none is
// mounted) and returns the mount's status afterwards.
func (c *Client) Unmount(ctx context.Context) (MountStatus, error) {
	var ms MountStatus
	err := c.do(ctx, "unmount", http.MethodPost, PathUnmount, nil, &ms)
	return ms, err
}

// MountStatus returns the mount's status.
func (c *Client) MountStatus(ctx context.Context) (MountStatus, error) {
	var ms MountStatus
	err := c.do(ctx, "mount status", http.MethodGet, PathMount, nil, &ms)
	return ms, err
}

// Versions lists the kept versions of the note req.Path, or with
// req.Deleted the notes deleted since req.Since and not back. Errors wrap
// [ErrInvalid] for a bad path.
func (c *Client) Versions(ctx context.Context, req VersionsRequest) (Versions, error) {
	q := url.Values{}
	if req.Path != "" {
		q.Set("path", req.Path)
	}
	if req.Deleted {
		q.Set("deleted", "1")
	}
	if !req.Since.IsZero() {
		q.Set("since", req.Since.UTC().Format(time.RFC3339Nano))
	}
	var vs Versions
	err := c.do(ctx, "versions", http.MethodGet, PathVersions+"?"+q.Encode(), nil, &vs)
	return vs, err
}

// Restore brings kept versions back into the notes folder. Errors wrap
// [ErrNotFound] when no version matches.
func (c *Client) Restore(ctx context.Context, req RestoreRequest) (RestoreResult, error) {
	var res RestoreResult
	err := c.do(ctx, "restore", http.MethodPost, PathRestore, req, &res)
	return res, err
}

// Doctor runs the daemon's health checks.
func (c *Client) Doctor(ctx context.Context) (DoctorReport, error) {
	var r DoctorReport
	err := c.do(ctx, "doctor", http.MethodGet, PathDoctor, nil, &r)
	return r, err
}

// stream GETs path and calls next for each JSON value of the answer until
// ctx ends (nil), next fails (its error) or the stream ends (an error
// wrapping io.ErrUnexpectedEOF).
func (c *Client) stream(ctx context.Context, op, path string, next func(*json.Decoder) error) error {
	resp, err := c.send(ctx, op, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		err := next(dec)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		var syn *json.SyntaxError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("ipc %s: stream closed by the daemon: %w", op, io.ErrUnexpectedEOF)
		case errors.As(err, &syn), errors.As(err, &ute):
			return fmt.Errorf("ipc %s: %w", op, err)
		default:
			return err // fn's error, or the transport's
		}
	}
}

// do sends a request and decodes a successful answer into out (if not nil).
func (c *Client) do(ctx context.Context, op, method, path string, in, out any) error {
	resp, err := c.send(ctx, op, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBody)).Decode(out); err != nil {
		return fmt.Errorf("ipc %s: decode answer: %w", op, err)
	}
	return nil
}

// send sends a request and returns a 2xx response; any other answer is
// turned into an *APIError.
func (c *Client) send(ctx context.Context, op, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("ipc %s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://local-bm-agent"+path, body)
	if err != nil {
		return nil, fmt.Errorf("ipc %s: %w", op, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, ErrNoDaemon) {
			return nil, fmt.Errorf("%w (socket %s)", ErrNoDaemon, c.path)
		}
		return nil, fmt.Errorf("ipc %s: %w", op, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	apiErr := &APIError{StatusCode: resp.StatusCode}
	var eb ErrorBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBody)).Decode(&eb); err == nil {
		apiErr.Message, apiErr.Code = eb.Error, eb.Code
	}
	return nil, apiErr
}
