//go:build linux && !race

// Not under -race: fyne.io/systray v1.12.2 (the newest) reads its menu
// version without its lock (systray_menu_unix.go:91, GetLayout) while the
// refresh it starts on the first layout request writes it (:423), and the
// race detector stops the test on that library race. `make test` runs
// these tests without -race.

package tray_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
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

const dbusmenu = "com.canonical.dbusmenu"

// menuItem is one entry of a dbusmenu layout.
type menuItem struct {
	id      int32
	label   string
	typ     string
	visible bool
	enabled bool
	depth   int
}

func (m menuItem) String() string {
	return fmt.Sprintf("%s%d %q visible=%v enabled=%v", strings.Repeat("  ", m.depth), m.id, m.label, m.visible, m.enabled)
}

// menu is a flattened layout: only what a person can see (the items of a
// hidden submenu are left out).
type menu []menuItem

// find returns the visible item whose label is label, or starts with it
// when label ends in "*", or ends with it when label starts with "*".
func (m menu) find(label string) (menuItem, bool) {
	prefix, isPrefix := strings.CutSuffix(label, "*")
	suffix, isSuffix := strings.CutPrefix(label, "*")
	for _, it := range m {
		if it.visible && (it.label == label || isPrefix && strings.HasPrefix(it.label, prefix) ||
			isSuffix && strings.HasSuffix(it.label, suffix)) {
			return it, true
		}
	}
	return menuItem{}, false
}

// shown reports whether label is a visible item.
func (m menu) shown(label string) bool {
	_, ok := m.find(label)
	return ok
}

func (m menu) String() string {
	var b strings.Builder
	for _, it := range m {
		b.WriteString("\n  " + it.String())
	}
	return b.String()
}

// panelClient is the panel's side: a connection to the bus and the tray's
// menu.
type panelClient struct {
	conn *dbus.Conn
	item dbus.BusObject
	menu dbus.BusObject
}

// layout calls GetLayout on the root and flattens the answer.
func (c *panelClient) layout(ctx context.Context) (menu, error) {
	var (
		rev  uint32
		root []any // (ia{sv}av)
	)
	call := c.menu.CallWithContext(ctx, dbusmenu+".GetLayout", 0, int32(0), int32(-1), []string{})
	if err := call.Store(&rev, &root); err != nil {
		return nil, fmt.Errorf("GetLayout: %w", err)
	}
	var out menu
	if err := flatten(root, &out, -1, true); err != nil {
		return nil, fmt.Errorf("GetLayout: %w", err)
	}
	return out, nil
}

// flatten appends the items of a (ia{sv}av) layout node, depth first; the
// root (depth -1) is not an item, nor is anything under a hidden item.
func flatten(node []any, out *menu, depth int, visible bool) error {
	if len(node) != 3 {
		return fmt.Errorf("layout node has %d fields, want 3", len(node))
	}
	id, ok1 := node[0].(int32)
	props, ok2 := node[1].(map[string]dbus.Variant)
	children, ok3 := node[2].([]dbus.Variant)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("layout node types %T %T %T", node[0], node[1], node[2])
	}
	if depth >= 0 {
		it := menuItem{id: id, visible: true, enabled: true, depth: depth}
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
		it.visible = it.visible && visible
		visible = it.visible
		*out = append(*out, it)
	}
	for _, ch := range children {
		sub, ok := ch.Value().([]any)
		if !ok {
			return fmt.Errorf("layout child is %T", ch.Value())
		}
		if err := flatten(sub, out, depth+1, visible); err != nil {
			return err
		}
	}
	return nil
}

// waitMenu polls the layout until ok holds, failing the test after a
// while with the last layout seen.
func (c *panelClient) waitMenu(t *testing.T, what string, ok func(menu) bool) menu {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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

// waitShown waits until every label is a visible item.
func (c *panelClient) waitShown(t *testing.T, labels ...string) menu {
	t.Helper()
	return c.waitState(t, labels, nil)
}

// waitState waits until every label of shown is a visible item and none
// of hidden is: the tray updates its items one at a time, so a layout
// read in between shows some of the new state only.
func (c *panelClient) waitState(t *testing.T, shown, hidden []string) menu {
	t.Helper()
	return c.waitMenu(t, fmt.Sprintf("%q and not %q", shown, hidden), func(m menu) bool {
		for _, l := range shown {
			if !m.shown(l) {
				return false
			}
		}
		for _, l := range hidden {
			if m.shown(l) {
				return false
			}
		}
		return true
	})
}

// click sends one "clicked" event for label (see [menu.find]), as a panel
// does.
func (c *panelClient) click(t *testing.T, label string) {
	t.Helper()
	m, err := c.layout(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	it, ok := m.find(label)
	if !ok || !it.enabled {
		t.Fatalf("no visible, enabled %q item to click; layout:%v", label, m)
	}
	err = c.menu.CallWithContext(t.Context(), dbusmenu+".Event", 0,
		it.id, "clicked", dbus.MakeVariant(""), uint32(time.Now().Unix())).Err
	if err != nil {
		t.Fatalf("Event(%q clicked): %v", label, err)
	}
}

// waitFor polls cond for a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForIn(t, 10*time.Second, what, cond)
}

// waitForIn polls cond for up to d.
func waitForIn(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("never happened: %s", what)
}

// recorder keeps what the tray opened and started.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
}

func (r *recorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.got, s)
}

// scenario is what both tests drive: a session bus connection that sees
// the tray's item, and hooks to take screenshots.
type scenario struct {
	conn *dbus.Conn
	// itemName is the tray's StatusNotifierItem's bus name, once it
	// registered (set by the test's register func).
	register func(t *testing.T) (itemName string)
	// shot is called once the menu shows state (nil: no screenshots);
	// menuShot once, with the conflict in the menu.
	shot     func(t *testing.T, state string)
	menuShot func(t *testing.T)
}

var ada = ipc.Status{State: ipc.StateIdle, LoggedIn: true, Account: "ada@example.com", Folder: "/home/ada/notes"}

// run starts the tray with no daemon and drives it through every state,
// clicking through the menu over D-Bus.
func (sc scenario) run(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fake := newFakeDaemon(ada)
	proc := newDaemonProc(t, fake)
	rec := &recorder{}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	trayDone := make(chan struct{})
	notified := make(chan func(string), 1)
	// The tray's clock stands still.
	stopped := time.Date(2026, 11, 23, 9, 41, 0, 0, time.UTC)
	clock := func() time.Time { return stopped }
	c := ipc.NewClient(proc.sock)
	go func() {
		defer close(trayDone)
		tray.Run(ctx, c, logger,
			tray.WithOpener(func(target string) error { rec.add("open " + target); return nil }),
			tray.WithStarter(func(_ context.Context, socket string) error {
				rec.add("start " + socket)
				return proc.start()
			}),
			tray.WithClock(clock),
			tray.WithNotifier(func(ctx context.Context, onClick func(string)) error {
				notified <- onClick
				<-ctx.Done()
				return nil
			}))
	}()
	defer func() {
		cancel()
		select {
		case <-trayDone:
		case <-time.After(5 * time.Second):
			t.Error("tray.Run did not return after its context ended")
		}
	}()

	name := sc.register(t)
	item := sc.conn.Object(name, "/StatusNotifierItem")
	menuProp, err := item.GetProperty("org.kde.StatusNotifierItem.Menu")
	if err != nil {
		t.Fatalf("StatusNotifierItem.Menu: %v", err)
	}
	menuPath, ok := menuProp.Value().(dbus.ObjectPath)
	if !ok || !menuPath.IsValid() {
		t.Fatalf("StatusNotifierItem.Menu = %v, want an object path", menuProp)
	}
	pc := &panelClient{conn: sc.conn, item: item, menu: sc.conn.Object(name, menuPath)}
	shot := func(state string) {
		if sc.shot != nil {
			sc.shot(t, state)
		}
	}
	var pix []any
	if v, err := item.GetProperty("org.kde.StatusNotifierItem.IconPixmap"); err != nil || v.Store(&pix) != nil || len(pix) == 0 {
		t.Errorf("StatusNotifierItem.IconPixmap = %v (err %v): the tray sets no icon", v, err)
	}

	// No daemon: the menu says so and offers to start it.
	pc.waitState(t, []string{"Agent not running", tray.StartLabel, "Sync now — agent not running", "Quit"},
		[]string{"Sync now", tray.LoginLabel, "Log out"})
	shot("not-running")

	// Start bm-agent: the tray starts it and follows its watch stream.
	pc.click(t, tray.StartLabel)
	waitFor(t, "the tray started the daemon", func() bool { return rec.has("start " + proc.sock) })
	m := pc.waitState(t, []string{"Up to date", "Account: ada@example.com", "Never synced", "Sync now", "Pause syncing",
		"Pause for 30 minutes", "Pause for 1 hour", "Pause until tomorrow", "Open notes folder", "Recent changes — none yet",
		"Conflicts — none", "Recently deleted — none", "Log out", "Open logs", "Quit"},
		[]string{tray.LoginLabel, tray.StartLabel, "Resume syncing", "Agent not running"})
	if it, _ := m.find("Up to date"); it.enabled {
		t.Errorf("idle menu: the status line is clickable")
	}
	var title string
	if v, err := item.GetProperty("org.kde.StatusNotifierItem.Title"); err != nil || v.Store(&title) != nil || title != "Basic Memory" {
		t.Errorf("StatusNotifierItem.Title = %q (err %v), want Basic Memory", title, err)
	}
	shot("up-to-date")

	pc.click(t, "Sync now")
	waitFor(t, "Sync now reached the daemon", func() bool { return fake.count("sync") == 1 })
	pc.click(t, "Open notes folder")
	waitFor(t, "the folder opened", func() bool { return rec.has("open /home/ada/notes") })

	// A pass with progress.
	fake.setStatus(func(s *ipc.Status) { s.State = ipc.StateSyncing })
	fake.progress(ipc.Progress{FilesDone: 12, FilesTotal: 40})
	m = pc.waitShown(t, "Syncing 12 of 40 files", "Sync now — syncing")
	if it, _ := m.find("Sync now — syncing"); it.enabled {
		t.Errorf("syncing menu: Sync now is enabled; layout:%v", m)
	}
	shot("syncing")

	// The pass ends with a conflict and a note deleted elsewhere. (A fixed
	// clock keeps the docs' screenshots the same from one run to the next.)
	passAt := stopped.Add(-time.Minute)
	fake.setLists(func(f *fakeDaemon) {
		f.history = []ipc.PassSummary{{Start: passAt, Uploaded: 3, DeletedLocal: 1, Conflicts: 1}}
		f.conflicts = []ipc.Conflict{{Path: "a.conflict-laptop.md", Original: "a.md", Device: "laptop", Time: passAt}}
		f.deleted = []ipc.Version{{ID: "v7", Path: "b.md", Kept: passAt, Reason: ipc.ReasonDeleted}}
	})
	fake.setStatus(func(s *ipc.Status) {
		s.State, s.LastSync = ipc.StateIdle, &ipc.PassSummary{Start: passAt, Uploaded: 3, DeletedLocal: 1, Conflicts: 1}
	})
	pc.waitShown(t, "Up to date — 1 conflict", "Conflicts (1)", "a.md (from laptop*", "Keep mine", "Keep theirs", "Keep both",
		"Show both", "Recently deleted", "Restore b.md*", "Recent changes", "*: 3 uploaded, 1 deleted, 1 conflict")
	shot("attention")
	if sc.menuShot != nil {
		sc.menuShot(t)
	}

	// Show both opens both files; Keep theirs settles it in the daemon.
	pc.click(t, "Show both")
	waitFor(t, "both versions opened", func() bool {
		return rec.has("open /home/ada/notes/a.md") && rec.has("open /home/ada/notes/a.conflict-laptop.md")
	})
	pc.click(t, "Keep theirs")
	waitFor(t, "Keep theirs reached the daemon", func() bool { return fake.count("resolve a.md a.conflict-laptop.md theirs") == 1 })
	pc.waitShown(t, "Conflicts — none")

	// Restore the deleted note.
	pc.click(t, "Restore b.md*")
	waitFor(t, "the restore reached the daemon", func() bool { return fake.count("restore b.md v7") == 1 })
	pc.waitShown(t, "Recently deleted — none")

	// Pause for 30 minutes, then resume.
	pc.click(t, "Pause for 30 minutes")
	waitFor(t, "a 30-minute pause reached the daemon", func() bool { return fake.count("pause for 30m0s") == 1 })
	pc.waitState(t, []string{"Paused until *", "Resume syncing", "Sync now — paused"}, []string{"Pause for 30 minutes", "Pause syncing"})
	shot("paused")
	pc.click(t, "Resume syncing")
	waitFor(t, "Resume reached the daemon", func() bool { return fake.count("resume") == 1 })
	pc.waitShown(t, "Up to date", "Pause for 30 minutes")

	// Until tomorrow: 08:00 the next day by the tray's clock.
	pc.click(t, "Pause until tomorrow")
	waitFor(t, "a pause until tomorrow reached the daemon", func() bool { return fake.count("pause for 22h19m0s") == 1 })
	pc.waitShown(t, "Resume syncing")
	pc.click(t, "Resume syncing")
	pc.waitShown(t, "Up to date", "Pause for 30 minutes")

	// Open logs: the daemon's records go to a file that opens.
	pc.click(t, "Open logs")
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(cache, "bm-tray", "bm-agent.log")
	waitFor(t, "the logs opened", func() bool { return rec.has("open " + logFile) })
	if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "WARN  conflict kept path=a.md") {
		t.Errorf("logs file: %q, %v", b, err)
	}

	// Offline.
	since := time.Now()
	fake.setStatus(func(s *ipc.Status) { s.State, s.OfflineSince = ipc.StateOffline, &since })
	pc.waitShown(t, "Offline since *")
	shot("offline")

	// Log out from the menu; then the login expires for good.
	pc.click(t, "Log out")
	waitFor(t, "Log out reached the daemon", func() bool { return fake.count("logout") == 1 })

	// The login expired: the menu offers to log in, and the page opens.
	fake.setStatus(func(s *ipc.Status) {
		s.State, s.LoggedIn, s.OfflineSince = ipc.StateLoginRequired, false, nil
	})
	pc.waitState(t, []string{"Login required", tray.LoginLabel, "Sync now — not logged in"}, []string{"Log out"})
	shot("logged-out")
	pc.click(t, tray.LoginLabel)
	waitFor(t, "the login page opened", func() bool { return fake.count("login") == 1 && rec.has("open https://example.test/login") })
	// Clicking the desktop notification of an expired login does the same.
	var onClick func(string)
	select {
	case onClick = <-notified:
	case <-time.After(5 * time.Second):
		t.Fatal("the tray never ran its notifier")
	}
	onClick(ipc.NotifyLoginRequired)
	waitFor(t, "the notification's click logged in", func() bool { return fake.count("login") == 2 })

	// The daemon restarts: the menu says it is gone, then follows the new
	// one by itself.
	proc.stop()
	pc.waitShown(t, "Agent not running", tray.StartLabel)
	if err := proc.start(); err != nil {
		t.Fatal(err)
	}
	pc.waitShown(t, "Login required")
	if n := fake.count("sync"); n != 1 {
		t.Errorf("daemon got %d sync requests, want 1", n)
	}
	t.Logf("daemon calls: %q", fake.callList())
}
