package ipc

import (
	"context"
	"sync"
)

// DefaultHubBuffer is how many events a watcher may fall behind before
// [Hub] drops it.
const DefaultHubBuffer = 64

// Hub fans events out to watchers. Publish never blocks: each watcher has
// a buffered channel, and a watcher whose channel is full is dropped (its
// channel closed, which ends its watch stream) rather than waited for.
// The zero Hub is not usable; call [NewHub].
type Hub struct {
	buf int

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	dropped  int
}

type watcher struct {
	ch     chan Event
	closed bool
}

// NewHub returns a hub whose watchers may fall buf events behind (<= 0:
// [DefaultHubBuffer]).
func NewHub(buf int) *Hub {
	if buf <= 0 {
		buf = DefaultHubBuffer
	}
	return &Hub{buf: buf, watchers: make(map[*watcher]struct{})}
}

// Subscribe returns a channel that first receives first (the snapshot),
// then every published event, until ctx ends or the watcher falls behind;
// the channel is closed then.
func (h *Hub) Subscribe(ctx context.Context, first Event) <-chan Event {
	w := &watcher{ch: make(chan Event, h.buf+1)}
	w.ch <- first
	h.mu.Lock()
	h.watchers[w] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.dropLocked(w)
	})
	return w.ch
}

// Publish sends ev to every watcher without waiting; a watcher whose
// buffer is full is dropped.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		select {
		case w.ch <- ev:
		default:
			h.dropLocked(w)
			h.dropped++
		}
	}
}

// Watchers returns how many watchers are subscribed.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// Dropped returns how many watchers were dropped for falling behind.
func (h *Hub) Dropped() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped
}

func (h *Hub) dropLocked(w *watcher) {
	if w.closed {
		return
	}
	w.closed = true
	delete(h.watchers, w)
	close(w.ch)
}
