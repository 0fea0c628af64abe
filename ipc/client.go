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

// Login starts a login and returns the URL to open.
func (c *Client) Login(ctx context.Context) (LoginStart, error) {
	var ls LoginStart
	err := c.do(ctx, "login", http.MethodPost, PathLogin, nil, &ls)
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

// Watch streams the daemon's status to fn: first a full snapshot, then the
// status after each change. It returns nil when ctx ends, fn's error if fn
// fails, and an error when the daemon closes the stream (it stopped, or
// dropped this reader for being slow): reconnect then.
func (c *Client) Watch(ctx context.Context, fn func(Status) error) error {
	resp, err := c.send(ctx, "watch", http.MethodGet, PathWatch, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var st Status
		if err := dec.Decode(&st); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("ipc watch: stream closed by the daemon: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("ipc watch: %w", err)
		}
		if err := fn(st); err != nil {
			return err
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
