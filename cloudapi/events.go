package cloudapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/jitter"
)

// PathTenantEvents is the tenant API's stream of bucket changes
// (server-sent events).
const PathTenantEvents = "/tenant/events"

// EventBucketChanged is the SSE event type of a bucket change.
const EventBucketChanged = "bucket-changed"

// EventReconnect is the SSE event type by which the server asks the client
// to reconnect (it is shutting down: another replica, or this one after
// its restart, takes the stream over), after the stream's retry: field.
// It is no bucket change, and no failure.
const EventReconnect = "reconnect"

// ChangeEvent is one bucket change of the caller's tenant.
type ChangeEvent struct {
	TenantID string `json:"tenant_id"`
	Device   string `json:"device,omitempty"` // the device that reported it, if any
	Reason   string `json:"reason,omitempty"`
	// Keys, when set, are the object keys that changed, all of them; an
	// event without them may stand for any change.
	Keys []string  `json:"keys,omitempty"`
	At   time.Time `json:"at"`
	// ID is the event's place in the server's order (the stream's id
	// field), what Events resumes after when it reconnects.
	ID string `json:"-"`
	// Reconnected is set (and nothing else) on a synthetic event Events
	// sends after it reconnected without resuming: changes may have been
	// missed meanwhile.
	Reconnected bool `json:"-"`
}

// ReasonResync is the reason of the event a resumed stream starts with
// when the server could not tell what the client missed (it was away
// longer than the server keeps events): anything may have changed.
const ReasonResync = "resync"

// ResumedHeader is the event stream's response header that says ("1")
// the server resumed it after the client's Last-Event-ID with nothing
// missed.
const ResumedHeader = "Bm-Events-Resumed"

// Reconnection delays of Events: the first retry waits about
// eventsMinBackoff (or the server's retry: field), doubling up to
// eventsMaxBackoff, with ±50% jitter; a connection that stayed up for
// eventsStable resets the delay.
var (
	eventsMinBackoff = time.Second
	eventsMaxBackoff = time.Minute
	eventsStable     = 30 * time.Second
)

// maxEventLine bounds one line of the event stream.
const maxEventLine = 64 << 10

// Events follows GET /tenant/events and calls fn with every bucket change,
// reconnecting with backoff and jitter when the stream fails or ends (or,
// when the server asks with an EventReconnect, after its retry: time with
// jitter, without backoff). A reconnection names the last event seen
// (Last-Event-ID), and the server replays what was missed meanwhile;
// when it cannot (or the stream never had a position), fn first gets a
// ChangeEvent with Reconnected set. It
// returns nil when ctx ends, fn's error if fn fails, and the error of an
// answer that retrying cannot fix (401, 403, 404: login required, no
// subscription, events not enabled).
func (c *Client) Events(ctx context.Context, fn func(ChangeEvent) error) error {
	return c.FollowEvents(ctx, fn, nil)
}

// FollowEvents is Events that also tells live (when not nil) each time
// the stream opens (true) and each time an open stream ends (false), so a
// caller can rely on the events while they flow and on its own schedule
// otherwise.
func (c *Client) FollowEvents(ctx context.Context, fn func(ChangeEvent) error, live func(bool)) error {
	if live == nil {
		live = func(bool) {}
	}
	hc := *c.hc
	hc.Timeout = 0 // a stream lasts; ctx bounds it
	delay := time.Duration(0)
	connected := false
	lastID := ""
	for {
		start := time.Now()
		retry, err := c.eventsOnce(ctx, &hc, connected, &lastID, fn, live)
		if ctx.Err() != nil {
			return nil
		}
		var fnErr *callbackError
		if errors.As(err, &fnErr) {
			return fnErr.err
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		if err == errStreamOpened {
			err = nil
		}
		if retry.opened {
			connected = true
		}
		var wait time.Duration
		if retry.asked {
			// The server asked (it is shutting down): not a failure, so
			// no backoff, after its retry: time with jitter, so that its
			// clients do not all reconnect at once.
			delay = 0
			wait = eventsMinBackoff // without a retry: field
			if retry.server > 0 {
				wait = min(retry.server, eventsMaxBackoff)
			}
			wait = jitter.Spread(wait)
			c.logger.Debug("tenant events: the server asked to reconnect", "in", wait.Round(time.Millisecond))
		} else {
			if time.Since(start) >= eventsStable {
				delay = 0
			}
			delay = min(max(delay*2, eventsMinBackoff, retry.server), eventsMaxBackoff)
			wait = jitter.Spread(delay)
			c.logger.Debug("tenant events: reconnecting", "in", wait.Round(time.Millisecond), "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

var errStreamOpened = errors.New("event stream ended")

// errReconnectAsked ends the reading of a stream whose server sent an
// EventReconnect.
var errReconnectAsked = errors.New("event stream ended: the server asked to reconnect")

// retryInfo is what one connection learnt for the next.
type retryInfo struct {
	opened bool          // the stream was opened (2xx)
	server time.Duration // the server's retry: field, if any
	asked  bool          // the server asked to reconnect (EventReconnect)
}

// eventsOnce opens the stream once, resuming after *lastID when set, and
// reads it until it ends, keeping *lastID at the last event handled.
func (c *Client) eventsOnce(ctx context.Context, hc *http.Client, reconnect bool, lastID *string, fn func(ChangeEvent) error, live func(bool)) (retryInfo, error) {
	var ri retryInfo
	tok, err := c.ts.Token()
	if err != nil {
		err = fmt.Errorf("cloudapi: events: token: %w", err)
		if errors.Is(err, ErrLoginRequired) {
			return ri, &permanentError{err}
		}
		return ri, err
	}
	u := *c.base
	u.Path = strings.TrimRight(c.base.Path, "/") + PathTenantEvents
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ri, &permanentError{fmt.Errorf("cloudapi: events: %w", err)}
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-store")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	tok.SetAuthHeader(req)
	resp, err := hc.Do(req)
	if err != nil {
		return ri, fmt.Errorf("cloudapi: events: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		apiErr := c.decodeError(call{op: "events", method: http.MethodGet, path: PathTenantEvents}, resp, data)
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return ri, &permanentError{apiErr}
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			ri.server = time.Duration(s) * time.Second
		}
		return ri, apiErr
	}
	ri.opened = true
	live(true)
	defer live(false)
	if reconnect && resp.Header.Get(ResumedHeader) != "1" {
		if err := fn(ChangeEvent{Reconnected: true}); err != nil {
			return ri, &callbackError{err}
		}
	}
	err = readSSE(resp.Body, func(event, data, id string) error {
		if event == EventReconnect {
			ri.asked = true
			return errReconnectAsked
		}
		if event != EventBucketChanged {
			return nil
		}
		var ev ChangeEvent
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			c.logger.Debug("tenant events: undecodable event", "err", err)
			return nil
		}
		ev.ID = id
		if err := fn(ev); err != nil {
			return &callbackError{err}
		}
		return nil
	}, func(id string) { *lastID = id }, func(d time.Duration) { ri.server = d })
	if err != nil && !errors.Is(err, errReconnectAsked) {
		return ri, err
	}
	return ri, errStreamOpened
}

// readSSE parses a server-sent event stream (the WHATWG event stream
// format): dispatch is called for every event with its type ("message" when
// none is given), data and the last event ID; position with the last
// event ID once a block that set it was handled (dispatched without
// error, or with no data, like the server's heartbeats); retry with the
// server's reconnection time.
func readSSE(r io.Reader, dispatch func(event, data, id string) error, position func(id string), retry func(time.Duration)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxEventLine)
	var event, id string
	var data strings.Builder
	hasData, hasID := false, false
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			if hasData {
				ev := event
				if ev == "" {
					ev = "message"
				}
				if err := dispatch(ev, strings.TrimSuffix(data.String(), "\n"), id); err != nil {
					return err
				}
			}
			if hasID {
				position(id)
			}
			event, hasData, hasID = "", false, false
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment (heartbeat)
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				id, hasID = value, true
			}
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				retry(time.Duration(ms) * time.Millisecond)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("cloudapi: events: read: %w", err)
	}
	return nil
}
