package agent

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// statusStore is the only owner of the daemon's status: every change goes
// through Update, which publishes the new snapshot on the bus (with the
// transition, when the state changed, and the notifications the change
// calls for). Reading it has no side effects. A watcher gets its snapshot
// and its subscription under the store's lock, so it misses no change
// between the two.
type statusStore struct {
	mu  sync.Mutex
	st  ipc.Status
	hub *ipc.Hub
	log *slog.Logger
	now func() time.Time
}

func newStatusStore(initial ipc.Status, hub *ipc.Hub, log *slog.Logger) *statusStore {
	if initial.Since.IsZero() {
		initial.Since = time.Now()
	}
	return &statusStore{st: initial, hub: hub, log: log, now: time.Now}
}

// Get returns a snapshot of the status.
func (s *statusStore) Get() ipc.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Clone()
}

// View calls f with the status under the store's lock, for reads of a
// field or two without a copy; f must not keep st or what it points to.
func (s *statusStore) View(f func(st *ipc.Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.st)
}

// Update applies f to a copy of the status and, if that changed anything,
// makes it the status and publishes it. A change of State sets Since and
// is logged and published as a transition whose reason is the new Code.
func (s *statusStore) Update(f func(st *ipc.Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.st
	next := prev.Clone()
	f(&next)
	var tr *ipc.Transition
	if next.State != prev.State {
		now := s.now()
		next.Since = now
		tr = &ipc.Transition{From: prev.State, To: next.State, Since: prev.Since, At: now, Reason: next.Code}
		s.log.Info("state", "from", prev.State, "to", next.State, "reason", next.Code,
			"after", now.Sub(prev.Since).Round(time.Millisecond))
	}
	if reflect.DeepEqual(prev, next) {
		return
	}
	s.st = next
	if s.hub == nil {
		return
	}
	now := s.now()
	pub := next.Clone() // what watchers get never changes under them
	if next.LoginURL != "" && next.LoginURL != prev.LoginURL {
		s.hub.Publish(ipc.Event{Kind: ipc.EventLogin, Status: &pub, Time: now})
	}
	for _, n := range notificationsFor(prev, next) {
		s.hub.Publish(ipc.Event{Kind: ipc.EventNotification, Notification: &n, Time: now})
	}
	s.hub.Publish(ipc.Event{Kind: ipc.EventState, Status: &pub, Transition: tr, Time: now})
}

// Watch returns the watch stream: a snapshot, then every event, until ctx
// ends or the watcher falls behind.
func (s *statusStore) Watch(ctx context.Context) <-chan ipc.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st.Clone()
	return s.hub.Subscribe(ctx, ipc.Event{Kind: ipc.EventSnapshot, Status: &st, Time: s.now()})
}

// Notify publishes a notification that no status change carries (a key
// replaced, say).
func (s *statusStore) Notify(n ipc.Notification) {
	if s.hub != nil {
		s.hub.Publish(ipc.Event{Kind: ipc.EventNotification, Notification: &n, Time: s.now()})
	}
}
