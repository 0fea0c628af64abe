package notify

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/desktoptest"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// notifyDaemon is an ipc.Backend with a watch stream and a config.
type notifyDaemon struct {
	hub *ipc.Hub
	mu  sync.Mutex
	cfg map[string]any
}

func (d *notifyDaemon) Status(context.Context) ipc.Status { return ipc.Status{State: ipc.StateIdle} }
func (d *notifyDaemon) Sync(context.Context, ipc.SyncRequest) (ipc.PassSummary, error) {
	return ipc.PassSummary{}, nil
}
func (d *notifyDaemon) Login(context.Context, ipc.LoginOptions) (ipc.LoginStart, error) {
	return ipc.LoginStart{}, nil
}
func (d *notifyDaemon) Logout(context.Context) error { return nil }
func (d *notifyDaemon) Pause(context.Context) error  { return nil }
func (d *notifyDaemon) Resume(context.Context) error { return nil }
func (d *notifyDaemon) WatchEvents(ctx context.Context) <-chan ipc.Event {
	st := ipc.Status{State: ipc.StateIdle}
	return d.hub.Subscribe(ctx, ipc.Event{Kind: ipc.EventSnapshot, Status: &st, Time: time.Now()})
}
func (d *notifyDaemon) ConfigGet(context.Context) (map[string]any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := map[string]any{}
	for k, v := range d.cfg {
		m[k] = v
	}
	return m, nil
}
func (d *notifyDaemon) ConfigSet(_ context.Context, key, value string) (map[string]any, error) {
	d.mu.Lock()
	d.cfg[key] = value
	d.mu.Unlock()
	return d.ConfigGet(context.Background())
}

// startNotifyDaemon serves d on a fresh unix socket and returns a client.
func startNotifyDaemon(t *testing.T, d *notifyDaemon) *ipc.Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "bmn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := ipc.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ipc.NewServer(d, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ipc.NewClient(sock)
}

// TestDesktopNotificationsOverDBus runs the notifier (Run, as the tray
// calls it) against a fake daemon on a unix socket and a notification
// server on a private session bus: one notification for a conflict, one
// for thirty, one for a hold (which the daemon also announces), none when
// the daemon's notifications setting is off, and a click reaches OnClick.
func TestDesktopNotificationsOverDBus(t *testing.T) {
	addr := desktoptest.PrivateSessionBus(t)
	srv := desktoptest.StartNotificationServer(t, addr)
	window := 300 * time.Millisecond
	hold := &ipc.Hold{Reason: ipc.HoldMaxDelete, NeedsForce: true, Message: "sync paused: more files were deleted in the notes folder than the balanced profile allows"}
	tests := []struct {
		name        string
		off         bool
		publish     func(hub *ipc.Hub)
		wantSummary []string
	}{
		{name: "a conflict", publish: func(hub *ipc.Hub) {
			hub.Publish(stateEv(passWithConflicts(1, 1)))
		}, wantSummary: []string{"A sync conflict"}},
		{name: "thirty conflicts in a window", publish: func(hub *ipc.Hub) {
			for i := range 30 {
				hub.Publish(stateEv(passWithConflicts(i, 1)))
			}
		}, wantSummary: []string{"30 sync conflicts"}},
		{name: "a hold", publish: func(hub *ipc.Hub) {
			n := ipc.Notification{Kind: ipc.NotifyHold, Level: ipc.LevelError, Title: "Sync on hold", Message: hold.Message}
			hub.Publish(ipc.Event{Kind: ipc.EventNotification, Notification: &n, Time: time.Now()})
			hub.Publish(stateEv(ipc.Status{State: ipc.StateError, Hold: hold}))
		}, wantSummary: []string{"Sync is on hold"}},
		{name: "turned off", off: true, publish: func(hub *ipc.Hub) {
			hub.Publish(stateEv(passWithConflicts(1, 1)))
			hub.Publish(stateEv(ipc.Status{State: ipc.StateError, Hold: hold}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			d := &notifyDaemon{hub: ipc.NewHub(64), cfg: map[string]any{"folder": "/n"}}
			if tt.off {
				d.cfg[SettingKey] = "off"
			}
			c := startNotifyDaemon(t, d)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- Run(ctx, c, Options{Logger: slog.New(slog.DiscardHandler), Window: window}) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			waitUntil(t, "the notifier to watch", func() bool { return d.hub.Watchers() > 0 })
			time.Sleep(50 * time.Millisecond) // the snapshot first
			tt.publish(d.hub)
			waitUntil(t, "the notifications", func() bool { return len(srv.Calls()) >= len(tt.wantSummary) })
			time.Sleep(3 * window) // and no more
			calls := srv.Reset()
			var got []string
			for _, c := range calls {
				got = append(got, c.Summary)
				if c.App != appName || len(c.Actions) < 2 || c.Actions[0] != actionOpen || c.Body == "" {
					t.Errorf("Notify call %+v: want app %s, a default action and a body", c, appName)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantSummary) {
				t.Errorf("notifications %q, want %q", got, tt.wantSummary)
			}
		})
	}

	t.Run("a click", func(t *testing.T) {
		srv.Reset()
		d := &notifyDaemon{hub: ipc.NewHub(64), cfg: map[string]any{}}
		c := startNotifyDaemon(t, d)
		clicked := make(chan string, 4)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, c, Options{Window: window, OnClick: func(kind string) { clicked <- kind }})
		}()
		defer func() {
			cancel()
			<-done
		}()
		waitUntil(t, "the notifier to watch", func() bool { return d.hub.Watchers() > 0 })
		time.Sleep(50 * time.Millisecond)
		d.hub.Publish(stateEv(ipc.Status{State: ipc.StateLoginRequired}))
		waitUntil(t, "the notification", func() bool { return len(srv.Calls()) >= 1 })
		calls := srv.Reset()
		if err := srv.Click(calls[0].ID); err != nil {
			t.Fatal(err)
		}
		select {
		case kind := <-clicked:
			if kind != KindLoginRequired {
				t.Errorf("OnClick(%q), want %q", kind, KindLoginRequired)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the click never reached OnClick")
		}
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
