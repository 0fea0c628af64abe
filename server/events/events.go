// Package events fans bucket-change events out to the devices of a tenant.
//
// A Hub keeps, per tenant, the set of live subscriptions (one per
// GET /tenant/events connection). Publish never waits: a subscriber whose
// buffer is full is dropped (its Done channel closes and the connection
// ends), the way a slow reader of the daemon's watch stream is dropped.
//
// Every event the hub delivers has an ID, in the order of delivery, and
// the hub keeps the events of the last RetainFor (see replay.go): a
// client that reconnects with the last ID it saw (SSE's Last-Event-ID)
// gets what it missed meanwhile, or, when the hub cannot tell (the ID is
// older than what it keeps, or from another hub), one event that says to
// resync. By itself a hub numbers the events it is given; with a Relay
// (package pgevents) every replica of a fleet hands its events to the
// relay, which numbers them for the whole fleet and delivers each to
// every replica's hub, so that a device hears every change whichever
// replica it is connected to and may resume on any of them.
//
// ServeSSE writes a subscription to an HTTP response as server-sent
// events. A Coalescer turns bursts of storage changes (thousands of
// object writes) into few events.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// KindBucketChanged is the SSE event name of a bucket change.
const KindBucketChanged = "bucket-changed"

// Event says that a tenant's bucket changed.
type Event struct {
	// ID is the event's place in its hub's order (SSE's id field), set
	// when the hub delivers it; it is not part of the JSON data.
	ID       string `json:"-"`
	TenantID string `json:"tenant_id"`
	Device   string `json:"device,omitempty"` // the device that reported it, if any
	Reason   string `json:"reason,omitempty"` // "sync", "storage:OBJECT_CREATED_PUT", "fallback", ...
	// Keys, when set, are the object keys that changed, all of them (at
	// most MaxKeys): a device that knew the bucket before can sync just
	// those. An event without keys may stand for any change.
	Keys []string  `json:"keys,omitempty"`
	At   time.Time `json:"at"`
}

// MaxKeys bounds the keys one event names; a change of more keys is
// announced without them (a full pass on every device).
const MaxKeys = 64

// KeysOf returns keys if they can name a change exactly (1 to MaxKeys
// keys, none empty or longer than S3's 1,024 bytes), else nil.
func KeysOf(keys []string) []string {
	if len(keys) == 0 || len(keys) > MaxKeys {
		return nil
	}
	for _, k := range keys {
		if k == "" || len(k) > 1024 {
			return nil
		}
	}
	return keys
}

// DefaultBuffer is the number of events a subscriber may lag behind before
// it is dropped.
const DefaultBuffer = 16

// Hub is an in-process fan-out of events by tenant. The zero value is not
// usable; call NewHub. It is safe for concurrent use.
type Hub struct {
	buffer int
	epoch  string // names this numbering of events (see replay.go)
	now    func() time.Time

	mu    sync.Mutex
	subs  map[string]map[*Subscription]struct{}
	last  map[string]time.Time // tenant -> time of the last published event
	relay Relay                // nil: Publish delivers here
	log   retained             // the events kept for replay

	dropped atomic.Int64
}

// NewHub returns a hub whose subscribers may lag buffer events (<= 0 means
// DefaultBuffer) before they are dropped.
func NewHub(buffer int) *Hub {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Hub{
		buffer: buffer,
		epoch:  newEpoch(),
		now:    time.Now,
		subs:   map[string]map[*Subscription]struct{}{},
		last:   map[string]time.Time{},
		log:    retained{keepFor: DefaultRetainFor, keepMax: DefaultRetainMax},
	}
}

// Subscription receives the events of one tenant until it is closed or
// dropped.
type Subscription struct {
	hub    *Hub
	tenant string
	c      chan Event
	done   chan struct{}
	once   sync.Once
	skip   uint64 // events numbered at or below it are the client's already
}

// C delivers the events.
func (s *Subscription) C() <-chan Event { return s.c }

// Done is closed when the subscription is closed or dropped for being slow.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.removeLocked(s)
}

// Subscribe returns a subscription to tenantID's events. Close it when done.
func (h *Hub) Subscribe(tenantID string) *Subscription {
	sub, _ := h.SubscribeAfter(tenantID, "")
	return sub
}

// removeLocked detaches s and closes its Done channel; h.mu is held.
func (h *Hub) removeLocked(s *Subscription) {
	if m := h.subs[s.tenant]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.subs, s.tenant)
		}
	}
	s.once.Do(func() { close(s.done) })
}

// Publish delivers ev to every subscriber of ev.TenantID without waiting:
// a subscriber whose buffer is full is dropped. A zero ev.At becomes now.
// It returns the number of subscribers that received ev. With a relay
// (SetRelay), the relay takes ev instead, to deliver it to the hub of
// every replica, this one included, a moment later; Publish then returns
// 0.
func (h *Hub) Publish(ev Event) int {
	if ev.At.IsZero() {
		ev.At = h.now().UTC()
	}
	h.mu.Lock()
	if ev.At.After(h.last[ev.TenantID]) {
		h.last[ev.TenantID] = ev.At
	}
	if r := h.relay; r != nil {
		h.mu.Unlock()
		r.Relay(ev, nil)
		return 0
	}
	defer h.mu.Unlock()
	return h.deliverLocked(ev, h.log.next())
}

// deliverLocked numbers ev seq, keeps it for replay and hands it to the
// subscribers of its tenant; h.mu is held.
func (h *Hub) deliverLocked(ev Event, seq uint64) int {
	ev.ID = h.idOf(seq)
	h.log.add(seq, ev, h.now())
	n := 0
	for s := range h.subs[ev.TenantID] {
		if seq <= s.skip {
			continue
		}
		select {
		case s.c <- ev:
			n++
		default:
			h.removeLocked(s)
			h.dropped.Add(1)
		}
	}
	return n
}

// Expect records that an event of tenantID about a change at at is on
// its way (a Coalescer holds it): LastPublished counts it from now on, so
// that the fallback does not announce the same change again meanwhile.
func (h *Hub) Expect(tenantID string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if at.After(h.last[tenantID]) {
		h.last[tenantID] = at
	}
}

// LastPublished is the time of the latest event of tenantID published or
// expected (zero if none since the hub started).
func (h *Hub) LastPublished(tenantID string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last[tenantID]
}

// Subscribers is the number of live subscriptions of tenantID.
func (h *Hub) Subscribers(tenantID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[tenantID])
}

// Dropped is the number of subscribers dropped for being slow.
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

// ErrStreamEnded is ServeSSE's error when its allowed check ended the
// stream.
var ErrStreamEnded = errors.New("event stream ended: the caller may no longer listen")

// DefaultHeartbeat is how often ServeSSE writes a comment to keep proxies
// and clients from timing the connection out.
const DefaultHeartbeat = 15 * time.Second

// writeTimeout bounds one write to the client: a connection that cannot
// take a few bytes in that time is dead.
const writeTimeout = 30 * time.Second

// ResumedHeader is the response header of the event stream that says
// ("1") the stream resumed after the client's Last-Event-ID with nothing
// missed: no comparison of everything is needed.
const ResumedHeader = "Bm-Events-Resumed"

// ServeSSE streams replay's events, then replay's position (an id field
// alone), then sub's events, to w as server-sent events
// (`event: bucket-changed`, the event's ID as `id:`, JSON data),
// with a heartbeat every heartbeat (<= 0 means DefaultHeartbeat): a
// comment and, when sub can tell it, the position to resume after (an id
// field alone, which dispatches no event). It ends when the request's
// context ends, the subscription is dropped, a write fails or allowed,
// asked before each heartbeat when not nil, says the caller may no longer
// listen (its error is returned, wrapped in ErrStreamEnded). It closes
// sub. Cancellation is not an error.
func ServeSSE(w http.ResponseWriter, r *http.Request, sub *Subscription, replay Replay, heartbeat time.Duration, allowed func(context.Context) error) error {
	defer sub.Close()
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeat
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	if replay.Resumed {
		h.Set(ResumedHeader, "1")
	}
	w.WriteHeader(http.StatusOK)
	write := func(s string) error {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout)) // not every writer supports it
		if _, err := fmt.Fprint(w, s); err != nil {
			return fmt.Errorf("sse write: %w", err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("sse flush: %w", err)
		}
		return nil
	}
	send := func(ev Event) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("sse encode: %w", err)
		}
		return write("id: " + ev.ID + "\nevent: " + KindBucketChanged + "\ndata: " + string(b) + "\n\n")
	}
	if err := write(": connected\nretry: 5000\n\n"); err != nil {
		return err
	}
	for _, ev := range replay.Events {
		if err := send(ev); err != nil {
			return err
		}
	}
	if replay.Position != "" {
		// a position from the start, so that a client that hears nothing
		// before it reconnects can still resume
		if err := write("id: " + replay.Position + "\n\n"); err != nil {
			return err
		}
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-sub.Done():
			// Dropped (or closed): the client reconnects and resumes
			// after the last event written, from the hub's replay.
			return nil
		case ev := <-sub.C():
			if err := send(ev); err != nil {
				return err
			}
		case <-t.C:
			if allowed != nil {
				if err := allowed(r.Context()); err != nil {
					return fmt.Errorf("%w: %w", ErrStreamEnded, err)
				}
			}
			beat := ": heartbeat\n\n"
			if pos := sub.Position(); pos != "" {
				beat = ": heartbeat\nid: " + pos + "\n\n"
			}
			if err := write(beat); err != nil {
				return err
			}
		}
	}
}

// Publisher is what publishes events; *Hub implements it.
type Publisher interface {
	Publish(ev Event) int
}

var _ Publisher = (*Hub)(nil)
