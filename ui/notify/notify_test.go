package notify

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// fakeSender records what it is asked to show.
type fakeSender struct {
	mu      sync.Mutex
	sent    []Message
	clicked chan uint32
}

func newFakeSender() *fakeSender { return &fakeSender{clicked: make(chan uint32, 4)} }

func (f *fakeSender) Send(_ context.Context, m Message) (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, m)
	return uint32(len(f.sent)), nil
}

func (f *fakeSender) Clicked() <-chan uint32 { return f.clicked }
func (f *fakeSender) Close() error           { return nil }

func (f *fakeSender) messages() []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Message(nil), f.sent...)
}

// Test timings: a short window, a short "long" outage.
const (
	testWindow  = 60 * time.Millisecond
	testOffline = 150 * time.Millisecond
)

func stateEv(st ipc.Status) ipc.Event {
	return ipc.Event{Kind: ipc.EventState, Status: &st, Time: time.Now()}
}

func snapshotEv(st ipc.Status) ipc.Event {
	return ipc.Event{Kind: ipc.EventSnapshot, Status: &st, Time: time.Now()}
}

func passWithConflicts(i, n int) ipc.Status {
	return ipc.Status{State: ipc.StateIdle, LastSync: &ipc.PassSummary{Start: time.Unix(int64(1000+i), 0), Conflicts: n}}
}

func TestNotifier(t *testing.T) {
	idle := ipc.Status{State: ipc.StateIdle}
	now := time.Now()
	hold := ipc.Status{State: ipc.StateError, Hold: &ipc.Hold{Reason: ipc.HoldMaxDelete, NeedsForce: true, Message: "sync paused: more files were deleted"}}
	offline := func() ipc.Status { t := time.Now(); return ipc.Status{State: ipc.StateOffline, OfflineSince: &t} }
	failed := ipc.Status{State: ipc.StateIdle, NotSyncing: []ipc.FailedItem{{Path: "a"}, {Path: "b"}}}
	tests := []struct {
		name     string
		events   func() []ipc.Event
		off      bool
		want     []string // kind: title of each notification
		wantBody string
	}{
		{name: "a snapshot is the baseline", events: func() []ipc.Event {
			return []ipc.Event{snapshotEv(ipc.Status{State: ipc.StateLoginRequired, LastSync: &ipc.PassSummary{Start: now, Conflicts: 3}, Hold: hold.Hold})}
		}},
		{name: "a conflict", events: func() []ipc.Event {
			return []ipc.Event{snapshotEv(idle), stateEv(passWithConflicts(1, 1))}
		}, want: []string{"conflicts: A sync conflict"}},
		{name: "conflicts another device made, brought here", events: func() []ipc.Event {
			st := passWithConflicts(1, 0)
			st.LastSync.ConflictsArrived = 2
			return []ipc.Event{snapshotEv(idle), stateEv(st), stateEv(st)}
		}, want: []string{"conflicts: 2 sync conflicts"}, wantBody: "2 notes changed"},
		{name: "30 conflicts, one notification", events: func() []ipc.Event {
			evs := []ipc.Event{snapshotEv(idle)}
			for i := range 30 {
				evs = append(evs, stateEv(passWithConflicts(i, 1)))
			}
			return evs
		}, want: []string{"conflicts: 30 sync conflicts"}, wantBody: "30 notes changed"},
		{name: "a hold, the daemon's notification not doubled", events: func() []ipc.Event {
			n := ipc.Notification{Kind: ipc.NotifyHold, Level: ipc.LevelError, Title: "Sync on hold", Message: hold.Hold.Message}
			return []ipc.Event{snapshotEv(idle), {Kind: ipc.EventNotification, Notification: &n}, stateEv(hold), stateEv(hold)}
		}, want: []string{"hold: Sync is on hold"}, wantBody: "Sync paused: more files were deleted."},
		{name: "files that cannot sync", events: func() []ipc.Event {
			return []ipc.Event{snapshotEv(idle), stateEv(failed)}
		}, want: []string{"not_syncing: Files that cannot sync"}, wantBody: "2 files do not sync"},
		{name: "login required", events: func() []ipc.Event {
			return []ipc.Event{snapshotEv(idle), stateEv(ipc.Status{State: ipc.StateLoginRequired})}
		}, want: []string{"login_required: Log in to keep syncing"}},
		{name: "subscription required", events: func() []ipc.Event {
			return []ipc.Event{snapshotEv(idle), stateEv(ipc.Status{State: ipc.StateSubscriptionRequired})}
		}, want: []string{"subscription_required: Subscription required"}},
		{name: "offline for long", events: func() []ipc.Event {
			o := offline()
			return []ipc.Event{snapshotEv(idle), stateEv(o), stateEv(o)}
		}, want: []string{"offline: Offline"}},
		{name: "offline, back soon", events: func() []ipc.Event {
			return []ipc.Event{snapshotEv(idle), stateEv(offline()), stateEv(idle)}
		}},
		{name: "another notification of the daemon", events: func() []ipc.Event {
			n := ipc.Notification{Level: ipc.LevelInfo, Title: "Key replaced", Message: "the bucket key was replaced"}
			return []ipc.Event{snapshotEv(idle), {Kind: ipc.EventNotification, Notification: &n}}
		}, want: []string{"other: Key replaced"}, wantBody: "The bucket key was replaced."},
		{name: "turned off", off: true, events: func() []ipc.Event {
			return []ipc.Event{snapshotEv(idle), stateEv(passWithConflicts(1, 1)), stateEv(hold), stateEv(offline())}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newFakeSender()
			opts := Options{Sender: s, Window: testWindow, OfflineAfter: testOffline}
			if tt.off {
				opts.Enabled = func(context.Context) bool { return false }
			}
			n, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- n.Serve(ctx) }()
			for _, ev := range tt.events() {
				n.Handle(ev)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(s.messages()) < len(tt.want) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(testOffline + 3*testWindow) // and nothing more comes
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Serve: %v", err)
			}
			got := s.messages()
			var kinds []string
			for _, m := range got {
				kinds = append(kinds, m.Kind+": "+m.Title)
			}
			if strings.Join(kinds, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("notifications:\n%s\nwant:\n%s", strings.Join(kinds, "\n"), strings.Join(tt.want, "\n"))
			}
			if tt.wantBody != "" && !strings.Contains(got[0].Body, tt.wantBody) {
				t.Errorf("body %q lacks %q", got[0].Body, tt.wantBody)
			}
		})
	}
}

// TestNotifierClick: a click on a notification calls OnClick with its
// kind; a click on one it did not send does nothing.
func TestNotifierClick(t *testing.T) {
	s := newFakeSender()
	clicks := make(chan string, 4)
	n, err := New(Options{Sender: s, Window: testWindow, OnClick: func(kind string) { clicks <- kind }})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.Serve(t.Context()) }()
	n.Handle(snapshotEv(ipc.Status{State: ipc.StateIdle}))
	n.Handle(stateEv(passWithConflicts(1, 2)))
	deadline := time.Now().Add(5 * time.Second)
	for len(s.messages()) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.clicked <- 99 // not ours
	s.clicked <- 1
	select {
	case kind := <-clicks:
		if kind != KindConflicts {
			t.Errorf("OnClick(%q), want %q", kind, KindConflicts)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnClick never called")
	}
	select {
	case kind := <-clicks:
		t.Errorf("a second OnClick(%q)", kind)
	case <-time.After(50 * time.Millisecond):
	}
}
