package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ReasonResync is the reason of the event a stream starts with when the
// client asked to resume after an event the hub can no longer vouch for
// (older than it keeps, from before it started, or from another hub):
// anything may have changed meanwhile, so the client compares everything.
const ReasonResync = "resync"

// What a hub keeps for replay: the events of the last DefaultRetainFor,
// at most DefaultRetainMax of them (all tenants together). A client that
// was away longer resyncs.
const (
	DefaultRetainFor = 10 * time.Minute
	DefaultRetainMax = 100_000
)

// Relay takes the events published on a hub, to deliver them (with
// Deliver, numbered for the whole fleet) to the hub of every replica.
// Relay must not block: it queues. When done is not nil the relay sends
// it one value (it has room for it): nil once ev is recorded, so that
// every replica will deliver it even if this one dies, or the error that
// made the relay drop it.
type Relay interface {
	Relay(ev Event, done chan<- error)
}

// PublishWait is Publish that, with a relay, returns once the relay has
// recorded ev (or failed to, or ctx ended first: an error); so a caller
// answers only when every replica will hear of the change. Without a
// relay it is Publish.
func (h *Hub) PublishWait(ctx context.Context, ev Event) error {
	if ev.At.IsZero() {
		ev.At = h.now().UTC()
	}
	h.mu.Lock()
	r := h.relay
	h.mu.Unlock()
	if r == nil {
		h.Publish(ev)
		return nil
	}
	h.Expect(ev.TenantID, ev.At)
	done := make(chan error, 1)
	r.Relay(ev, done)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("events: publish: %w", ctx.Err())
	}
}

// SetRelay makes Publish hand events to r, whose numbering (called epoch)
// the hub takes over: from is the last number r delivered before this
// hub listened, so that the hub resumes no client from before it. Call it
// before the hub has subscribers.
func (h *Hub) SetRelay(r Relay, epoch string, from uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.relay, h.epoch = r, epoch
	h.log.reset(from)
}

// Deliver hands ev, numbered seq by the relay, to the subscribers of its
// tenant and keeps it for replay. Numbers must grow: an event numbered
// at or below one delivered before is a duplicate and is ignored. It
// returns the number of subscribers that received ev.
func (h *Hub) Deliver(ev Event, seq uint64) int {
	if ev.At.IsZero() {
		ev.At = h.now().UTC()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if seq <= h.log.last {
		return 0
	}
	if ev.At.After(h.last[ev.TenantID]) {
		h.last[ev.TenantID] = ev.At
	}
	return h.deliverLocked(ev, seq)
}

// Replay is what a resumed stream starts with.
type Replay struct {
	// Events are the tenant's events after the client's last one, in order.
	Events []Event
	// Resumed says that the hub could vouch for Events being all the
	// client missed. When a client asked to resume and the hub could not,
	// Events is one event of reason ReasonResync.
	Resumed bool
	// Position is where the subscription starts: the ID a client may
	// resume after once it has Events (see Subscription.Position).
	Position string
}

// SubscribeAfter is Subscribe for a client that last saw the event lastID
// (SSE's Last-Event-ID; "" for a client that starts afresh): the replay
// holds the tenant's events it missed since then, and the subscription
// every event after them, none twice, none left out.
func (h *Hub) SubscribeAfter(tenantID, lastID string) (*Subscription, Replay) {
	s := &Subscription{hub: h, tenant: tenantID, c: make(chan Event, h.buffer), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	var rp Replay
	if lastID != "" {
		after, ok := h.parseID(lastID)
		switch {
		case ok && after > h.log.last && h.relay != nil:
			// Seen on another replica whose relay delivered it first:
			// this hub is a moment behind. The events up to it are the
			// client's already.
			s.skip, rp.Resumed = after, true
		case ok:
			rp.Events, rp.Resumed = h.log.since(tenantID, after, h.now())
		}
		if !rp.Resumed {
			rp.Events = []Event{{ID: h.idOf(h.log.last), TenantID: tenantID, Reason: ReasonResync, At: h.now().UTC()}}
		}
	}
	rp.Position = h.idOf(max(h.log.last, s.skip))
	m := h.subs[tenantID]
	if m == nil {
		m = map[*Subscription]struct{}{}
		h.subs[tenantID] = m
	}
	m[s] = struct{}{}
	return s, rp
}

// Position is the ID a client of s may resume after once it has written
// every event it took from C: the last event the hub delivered, of any
// tenant. It is "" while events wait in C (their IDs say it then).
func (s *Subscription) Position() string {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(s.c) > 0 {
		return ""
	}
	return h.idOf(max(h.log.last, s.skip))
}

// idOf is the ID of event seq of this hub: its epoch, a dot, the number.
func (h *Hub) idOf(seq uint64) string {
	return h.epoch + "." + strconv.FormatUint(seq, 10)
}

// parseID returns the number of an ID of this hub's epoch.
func (h *Hub) parseID(id string) (uint64, bool) {
	epoch, n, ok := strings.Cut(id, ".")
	if !ok || epoch != h.epoch {
		return 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	return seq, err == nil
}

// newEpoch names the numbering of a hub on its own: random, so that a
// restarted server (which forgot its events) resumes no client.
func newEpoch() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "h" + hex.EncodeToString(b)
}

// retained is the events a hub keeps for replay, in the order of their
// numbers.
type retained struct {
	keepFor time.Duration
	keepMax int

	entries []entry // kept from head on
	head    int
	floor   uint64 // every event numbered at or below it is no longer kept
	last    uint64 // the number of the last event delivered (or the floor)
}

type entry struct {
	seq uint64
	at  time.Time // when it was delivered
	ev  Event
}

func (r *retained) next() uint64 { return r.last + 1 }

// reset forgets every event and starts the numbering after from.
func (r *retained) reset(from uint64) {
	r.entries, r.head, r.floor, r.last = nil, 0, from, from
}

func (r *retained) add(seq uint64, ev Event, now time.Time) {
	r.entries = append(r.entries, entry{seq: seq, at: now, ev: ev})
	r.last = seq
	r.prune(now)
}

// prune drops the events past their time or beyond the count.
func (r *retained) prune(now time.Time) {
	for r.head < len(r.entries) && (len(r.entries)-r.head > r.keepMax || now.Sub(r.entries[r.head].at) > r.keepFor) {
		r.floor = r.entries[r.head].seq
		r.entries[r.head] = entry{}
		r.head++
	}
	if r.head > 1024 && r.head > len(r.entries)/2 {
		r.entries = append([]entry(nil), r.entries[r.head:]...)
		r.head = 0
	}
}

// since returns tenant's events numbered after after, and whether they
// are all of them (after is neither older than what is kept nor newer
// than the last delivered).
func (r *retained) since(tenant string, after uint64, now time.Time) ([]Event, bool) {
	r.prune(now)
	if after < r.floor || after > r.last {
		return nil, false
	}
	kept := r.entries[r.head:]
	i := sort.Search(len(kept), func(i int) bool { return kept[i].seq > after })
	var out []Event
	for _, e := range kept[i:] {
		if e.ev.TenantID == tenant {
			out = append(out, e.ev)
		}
	}
	return out, true
}
