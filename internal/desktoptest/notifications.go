//go:build linux

package desktoptest

import (
	"bufio"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

// PrivateSessionBus starts a dbus-daemon of the test's own (stopped when t
// ends), points DBUS_SESSION_BUS_ADDRESS at it and returns its address.
// Without dbus-daemon the test is skipped, or fails under CI (Debian
// package dbus, .ci/apt-packages).
func PrivateSessionBus(t testing.TB) string {
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

// The freedesktop.org notification service
// (https://specifications.freedesktop.org/notification-spec/).
const (
	NotificationsName  = "org.freedesktop.Notifications"
	NotificationsPath  = dbus.ObjectPath("/org/freedesktop/Notifications")
	NotificationsIface = "org.freedesktop.Notifications"
	// DefaultAction is the action a click on a notification invokes.
	DefaultAction = "default"
)

// Notification is one Notify call a [NotificationServer] received.
type Notification struct {
	App, Icon, Summary, Body string
	Actions                  []string
	Urgency                  byte // the "urgency" hint: 0 low, 1 normal, 2 critical
	ID                       uint32
}

// NotificationServer is a minimal org.freedesktop.Notifications, as a
// desktop runs one: it records each Notify, and clicks one on request.
type NotificationServer struct {
	conn *dbus.Conn

	mu    sync.Mutex
	calls []Notification
	next  uint32
}

// StartNotificationServer connects to the bus at addr ("": the session
// bus, DBUS_SESSION_BUS_ADDRESS) and serves org.freedesktop.Notifications
// there until t ends; it fails t if another owns the name.
func StartNotificationServer(t testing.TB, addr string) *NotificationServer {
	t.Helper()
	var (
		conn *dbus.Conn
		err  error
	)
	if addr == "" {
		conn, err = dbus.ConnectSessionBus()
	} else {
		conn, err = dbus.Connect(addr)
	}
	if err != nil {
		t.Fatalf("notification server: connect to the bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &NotificationServer{conn: conn}
	if err := conn.Export(notificationsMethods{s}, NotificationsPath, NotificationsIface); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(NotificationsName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: reply %v, err %v", NotificationsName, reply, err)
	}
	return s
}

// Calls are the notifications received since the start or the last Reset.
func (s *NotificationServer) Calls() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Reset returns the notifications received and forgets them.
func (s *NotificationServer) Reset() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// Click emits ActionInvoked for the notification id and its default
// action, as a server does when the person clicks it.
func (s *NotificationServer) Click(id uint32) error {
	return s.conn.Emit(NotificationsPath, NotificationsIface+".ActionInvoked", id, DefaultAction)
}

// notificationsMethods are the D-Bus methods of a NotificationServer (so
// that its Go methods are not exported on the bus).
type notificationsMethods struct{ s *NotificationServer }

func (m notificationsMethods) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s := m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	c := Notification{App: app, Icon: icon, Summary: summary, Body: body, Actions: actions, ID: s.next}
	if v, ok := hints["urgency"]; ok {
		c.Urgency, _ = v.Value().(byte)
	}
	s.calls = append(s.calls, c)
	return s.next, nil
}

func (notificationsMethods) GetCapabilities() ([]string, *dbus.Error) {
	return []string{"actions", "body"}, nil
}

func (notificationsMethods) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "desktoptest", "bm-agent", "1", "1.2", nil
}

func (notificationsMethods) CloseNotification(uint32) *dbus.Error { return nil }
