//go:build linux && !race

// Not under -race: fyne.io/systray v1.12.2 (the newest) reads its menu
// version without its lock (systray_menu_unix.go:91, GetLayout) while the
// refresh it starts on the first layout request writes it (:423), and the
// race detector stops the test on that library race. `make test` runs
// this test without -race.

package tray_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/tray"
)

// envInDBus marks the inner run of TestTrayMenuOverDBus, under its own
// session bus.
const envInDBus = "BM_TRAY_TEST_IN_DBUS"

// TestTrayMenuOverDBus drives the real tray (fyne.io/systray) the way a
// desktop panel does: it owns org.kde.StatusNotifierWatcher on a private
// session bus, waits for the tray to register its StatusNotifierItem, reads
// the menu with com.canonical.dbusmenu.GetLayout and clicks items with
// Event, against a fake daemon on a unix socket. The outer test re-executes
// the test binary under dbus-run-session; it skips when that tool is not
// installed (and fails when CI is set).
func TestTrayMenuOverDBus(t *testing.T) {
	if os.Getenv(envInDBus) == "1" {
		testTrayMenu(t)
		return
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	if _, err := exec.LookPath("dbus-run-session"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dbus-run-session not installed (Debian package dbus, see .ci/apt-packages)")
		}
		t.Skip("dbus-run-session not installed (Debian package dbus)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", "--", self,
		"-test.run=^TestTrayMenuOverDBus$", "-test.v", "-test.count=1")
	// No display: the tray must not need one, it is pure D-Bus.
	cmd.Env = append(os.Environ(), envInDBus+"=1", "HOME="+t.TempDir(), "DISPLAY=", "WAYLAND_DISPLAY=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tray test under dbus-run-session: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// fakeDaemon is an ipc.Backend that records calls and acts on pause and
// resume like the daemon does.
type fakeDaemon struct {
	mu     sync.Mutex
	status ipc.Status
	calls  []string
}

func (f *fakeDaemon) record(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func (f *fakeDaemon) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

func (f *fakeDaemon) setStatus(fn func(*ipc.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.status)
}

func (f *fakeDaemon) Status(context.Context) ipc.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeDaemon) Sync(_ context.Context, req ipc.SyncRequest) (ipc.PassSummary, error) {
	f.record("sync")
	return ipc.PassSummary{Trigger: "manual"}, nil
}

func (f *fakeDaemon) Login(context.Context, ipc.LoginOptions) (ipc.LoginStart, error) {
	f.record("login")
	return ipc.LoginStart{URL: "https://example.test/login"}, nil
}

func (f *fakeDaemon) Logout(context.Context) error { f.record("logout"); return nil }

func (f *fakeDaemon) Pause(context.Context) error {
	f.record("pause")
	f.setStatus(func(s *ipc.Status) { s.Paused, s.State = true, ipc.StatePaused })
	return nil
}

func (f *fakeDaemon) Resume(context.Context) error {
	f.record("resume")
	f.setStatus(func(s *ipc.Status) { s.Paused, s.State = false, ipc.StateIdle })
	return nil
}

// watcher is a minimal org.kde.StatusNotifierWatcher, as a desktop panel
// implements it: it hands over each registration.
type watcher struct{ reg chan registration }

type registration struct{ sender, service string }

// RegisterStatusNotifierItem is the watcher's D-Bus method.
func (w *watcher) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	select {
	case w.reg <- registration{string(sender), service}:
	default:
	}
	return nil
}

// menuItem is one entry of a dbusmenu layout.
type menuItem struct {
	id      int32
	label   string
	typ     string
	visible bool
	enabled bool
}

func (m menuItem) String() string {
	return fmt.Sprintf("%d %q visible=%v enabled=%v", m.id, m.label, m.visible, m.enabled)
}

// menu is a flattened layout.
type menu []menuItem

// find returns the item labelled label.
func (m menu) find(label string) (menuItem, bool) {
	for _, it := range m {
		if it.label == label {
			return it, true
		}
	}
	return menuItem{}, false
}

// shown reports whether label is a visible item.
func (m menu) shown(label string) bool {
	it, ok := m.find(label)
	return ok && it.visible
}

func (m menu) String() string {
	var b strings.Builder
	for _, it := range m {
		b.WriteString("\n  " + it.String())
	}
	return b.String()
}

// client is the panel's side: a connection to the bus and the tray's menu.
type client struct {
	conn *dbus.Conn
	menu dbus.BusObject
}

const dbusmenu = "com.canonical.dbusmenu"

// layout calls GetLayout on the root and flattens the answer.
func (c *client) layout(ctx context.Context) (menu, error) {
	var (
		rev  uint32
		root []any // (ia{sv}av)
	)
	call := c.menu.CallWithContext(ctx, dbusmenu+".GetLayout", 0, int32(0), int32(-1), []string{})
	if err := call.Store(&rev, &root); err != nil {
		return nil, fmt.Errorf("GetLayout: %w", err)
	}
	var out menu
	if err := flatten(root, &out, true); err != nil {
		return nil, fmt.Errorf("GetLayout: %w", err)
	}
	return out, nil
}

// flatten appends the items of a (ia{sv}av) layout node, depth first; the
// root itself (skipRoot) is not an item.
func flatten(node []any, out *menu, skipRoot bool) error {
	if len(node) != 3 {
		return fmt.Errorf("layout node has %d fields, want 3", len(node))
	}
	id, ok1 := node[0].(int32)
	props, ok2 := node[1].(map[string]dbus.Variant)
	children, ok3 := node[2].([]dbus.Variant)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("layout node types %T %T %T", node[0], node[1], node[2])
	}
	if !skipRoot {
		it := menuItem{id: id, visible: true, enabled: true}
		if v, ok := props["label"].Value().(string); ok {
			it.label = v
		}
		if v, ok := props["type"].Value().(string); ok {
			it.typ = v
		}
		if v, ok := props["visible"].Value().(bool); ok {
			it.visible = v
		}
		if v, ok := props["enabled"].Value().(bool); ok {
			it.enabled = v
		}
		*out = append(*out, it)
	}
	for _, ch := range children {
		sub, ok := ch.Value().([]any)
		if !ok {
			return fmt.Errorf("layout child is %T", ch.Value())
		}
		if err := flatten(sub, out, false); err != nil {
			return err
		}
	}
	return nil
}

// waitMenu polls the layout until ok holds, failing the test after a
// while with the last layout seen.
func (c *client) waitMenu(t *testing.T, what string, ok func(menu) bool) menu {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var (
		m   menu
		err error
	)
	for time.Now().Before(deadline) {
		m, err = c.layout(t.Context())
		if err == nil && ok(m) {
			return m
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("menu never showed %s (last error %v); last layout:%v", what, err, m)
	return nil
}

// click sends one "clicked" event for label, as a panel does, and waits
// until the daemon got call: a click must never be lost, even while the
// tray is busy talking to the daemon.
func (c *client) click(t *testing.T, f *fakeDaemon, label, call string) {
	t.Helper()
	m, err := c.layout(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	it, ok := m.find(label)
	if !ok || !it.visible || !it.enabled {
		t.Fatalf("no visible, enabled %q item to click; layout:%v", label, m)
	}
	before := f.count(call)
	err = c.menu.CallWithContext(t.Context(), dbusmenu+".Event", 0,
		it.id, "clicked", dbus.MakeVariant(""), uint32(time.Now().Unix())).Err
	if err != nil {
		t.Fatalf("Event(%q clicked): %v", label, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if f.count(call) > before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("clicking %q never reached the daemon's %s", label, call)
}

// testTrayMenu is the inner test, on a private session bus.
func testTrayMenu(t *testing.T) {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		t.Fatal("no DBUS_SESSION_BUS_ADDRESS under dbus-run-session")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	// The panel: a private connection owning the watcher name before the
	// tray starts.
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("connect session bus: %v", err)
	}
	defer conn.Close()
	w := &watcher{reg: make(chan registration, 4)}
	if err := conn.Export(w, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName("org.kde.StatusNotifierWatcher", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.kde.StatusNotifierWatcher: reply %v, err %v", reply, err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(dbusmenu), dbus.WithMatchMember("LayoutUpdated")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 256)
	conn.Signal(signals)

	// The daemon: idle, logged in.
	dir, err := os.MkdirTemp("", "bmtray")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "agent.sock")
	ln, err := ipc.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeDaemon{status: ipc.Status{State: ipc.StateIdle, LoggedIn: true, Account: "ada@example.com"}}
	served := make(chan error, 1)
	go func() { served <- ipc.NewServer(fake, nil).Serve(ctx, ln) }()

	// The tray, in this process.
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	trayDone := make(chan struct{})
	go func() {
		defer close(trayDone)
		tray.Run(ctx, ipc.NewClient(sock), logger, tray.WithRefreshInterval(100*time.Millisecond))
	}()
	defer func() {
		cancel()
		select {
		case <-trayDone:
		case <-time.After(5 * time.Second):
			t.Error("tray.Run did not return after its context ended")
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()

	// Registration, as a panel sees it.
	var reg registration
	select {
	case reg = <-w.reg:
	case <-time.After(10 * time.Second):
		t.Fatal("the tray never called RegisterStatusNotifierItem")
	}
	if reg.service != "/StatusNotifierItem" {
		t.Errorf("registered service %q, want the object path /StatusNotifierItem", reg.service)
	}
	wantName := fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", os.Getpid())
	var owner string
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, wantName).Store(&owner); err != nil {
		t.Fatalf("GetNameOwner(%s): %v", wantName, err)
	}
	if owner != reg.sender {
		t.Errorf("%s is owned by %s, but the registration came from %s", wantName, owner, reg.sender)
	}
	item := conn.Object(wantName, "/StatusNotifierItem")
	menuProp, err := item.GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatalf("StatusNotifierItem.Menu: %v", err)
	}
	menuPath, ok := menuProp.Value().(dbus.ObjectPath)
	if !ok || !menuPath.IsValid() {
		t.Fatalf("StatusNotifierItem.Menu = %v, want an object path", menuProp)
	}
	c := &client{conn: conn, menu: conn.Object(wantName, menuPath)}

	// Idle and logged in.
	m := c.waitMenu(t, "the idle, logged-in state", func(m menu) bool { return m.shown("Up to date") })
	t.Logf("idle menu:%v", m)
	for _, label := range []string{"Up to date", "Account: ada@example.com", "Never synced", "Sync now", "Pause syncing", "Quit tray"} {
		if !m.shown(label) {
			t.Errorf("idle menu: no visible %q item; layout:%v", label, m)
		}
	}
	for _, label := range []string{tray.LoginLabel, tray.LoginDeviceLabel, "Subscribe…", "Resume syncing"} {
		if m.shown(label) {
			t.Errorf("idle menu shows %q; layout:%v", label, m)
		}
	}
	if it, _ := m.find("Sync now"); !it.enabled {
		t.Errorf("idle menu: Sync now is disabled")
	}
	if it, _ := m.find("Up to date"); it.enabled {
		t.Errorf("idle menu: the status line is clickable")
	}
	if got := slices.IndexFunc(m, func(it menuItem) bool { return it.typ == "separator" }); got < 0 {
		t.Errorf("idle menu has no separator; layout:%v", m)
	}
	var title string
	if v, err := item.GetProperty("org.kde.StatusNotifierItem.Title"); err != nil || v.Store(&title) != nil || title != "Basic Memory" {
		t.Errorf("StatusNotifierItem.Title = %q (err %v), want Basic Memory", title, err)
	}

	// Sync now reaches the daemon.
	c.click(t, fake, "Sync now", "sync")

	// Pause: the daemon pauses and the next refresh offers Resume.
	drain(signals)
	c.click(t, fake, "Pause syncing", "pause")
	m = c.waitMenu(t, `"Resume syncing"`, func(m menu) bool { return m.shown("Resume syncing") && m.shown("Paused") })
	if it, _ := m.find("Sync now"); it.enabled {
		t.Errorf("paused menu: Sync now is enabled; layout:%v", m)
	}
	if m.shown("Pause syncing") {
		t.Errorf("paused menu still offers Pause syncing; layout:%v", m)
	}
	if n := countLayoutUpdated(signals, reg.sender, menuPath); n == 0 {
		t.Error("no LayoutUpdated signal from the tray's menu after pausing: a panel would not redraw")
	}

	// Resume from the menu.
	c.click(t, fake, "Resume syncing", "resume")
	c.waitMenu(t, `"Pause syncing" again`, func(m menu) bool { return m.shown("Pause syncing") && m.shown("Up to date") })

	// The daemon loses its login: the menu says so and offers to log in.
	fake.setStatus(func(s *ipc.Status) {
		*s = ipc.Status{State: ipc.StateLoginRequired, Error: "refresh token: login required"}
	})
	m = c.waitMenu(t, "the login-required state", func(m menu) bool { return m.shown("Login required") })
	for _, label := range []string{"Login required", "Not logged in", tray.LoginLabel} {
		if !m.shown(label) {
			t.Errorf("login-required menu: no visible %q item; layout:%v", label, m)
		}
	}
	if it, _ := m.find("Sync now"); it.enabled {
		t.Errorf("login-required menu: Sync now is enabled; layout:%v", m)
	}
	if it, _ := m.find(tray.LoginLabel); !it.enabled {
		t.Errorf("login-required menu: %q is disabled", tray.LoginLabel)
	}
	if n := fake.count("sync"); n != 1 {
		t.Errorf("daemon got %d sync requests, want 1", n)
	}
}

// drain empties ch.
func drain(ch <-chan *dbus.Signal) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// countLayoutUpdated counts the LayoutUpdated signals queued on ch that
// came from the menu object path of the connection sender (a unique name).
func countLayoutUpdated(ch <-chan *dbus.Signal, sender string, path dbus.ObjectPath) int {
	n := 0
	for {
		select {
		case s := <-ch:
			if s != nil && s.Sender == sender && s.Path == path && s.Name == dbusmenu+".LayoutUpdated" {
				n++
			}
		default:
			return n
		}
	}
}
