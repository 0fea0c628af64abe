package notify

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// privateSessionBus starts a dbus-daemon of its own for the test and
// points DBUS_SESSION_BUS_ADDRESS at it. Without dbus-daemon the test is
// skipped, or fails when CI is set (Debian package dbus, .ci/apt-packages).
func privateSessionBus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("dbus-daemon")
	testenv.Require(t, "dbus-daemon (Debian package dbus, see .ci/apt-packages)", err)
	cmd := exec.Command(bin, "--session", "--nofork", "--nopidfile", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case a := <-addr:
		if a == "" {
			t.Fatal("dbus-daemon printed no address")
		}
		t.Setenv("DBUS_SESSION_BUS_ADDRESS", a)
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon printed no address within 10 s")
	}
	return ""
}

// notifyCall is one Notify a notification server received.
type notifyCall struct {
	App, Icon, Summary, Body string
	Actions                  []string
	Urgency                  byte
	ID                       uint32
}

// notificationServer is a minimal org.freedesktop.Notifications, as a
// desktop runs one: it records each Notify.
type notificationServer struct {
	conn  *dbus.Conn
	mu    sync.Mutex
	calls []notifyCall
	next  uint32
}

func (s *notificationServer) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	c := notifyCall{App: app, Icon: icon, Summary: summary, Body: body, Actions: actions, ID: s.next}
	if v, ok := hints["urgency"]; ok {
		c.Urgency, _ = v.Value().(byte)
	}
	s.calls = append(s.calls, c)
	return s.next, nil
}

func (s *notificationServer) GetCapabilities() ([]string, *dbus.Error) {
	return []string{"actions", "body"}, nil
}

func (s *notificationServer) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "test", "bm-agent", "1", "1.2", nil
}

func (s *notificationServer) CloseNotification(uint32) *dbus.Error { return nil }

func (s *notificationServer) reset() []notifyCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

func (s *notificationServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// click emits ActionInvoked for id, as a server does when the person
// clicks the notification.
func (s *notificationServer) click(id uint32) error {
	return s.conn.Emit(busPath, busIface+".ActionInvoked", id, actionOpen)
}

func startNotificationServer(t *testing.T, addr string) *notificationServer {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connect to the test bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &notificationServer{conn: conn}
	if err := conn.Export(s, busPath, busIface); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: reply %v, err %v", busName, reply, err)
	}
	return s
}

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
	addr := privateSessionBus(t)
	srv := startNotificationServer(t, addr)
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
			srv.reset()
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
			waitUntil(t, "the notifications", func() bool { return srv.count() >= len(tt.wantSummary) })
			time.Sleep(3 * window) // and no more
			calls := srv.reset()
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
		srv.reset()
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
		waitUntil(t, "the notification", func() bool { return srv.count() >= 1 })
		calls := srv.reset()
		if err := srv.click(calls[0].ID); err != nil {
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
