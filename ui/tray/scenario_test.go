//go:build linux && !race

// Not under -race: fyne.io/systray v1.12.2 (the newest) reads its menu
// version without its lock (systray_menu_unix.go:91, GetLayout) while the
// refresh it starts on the first layout request writes it (:423), and the
// race detector stops the test on that library race. `make test` runs
// these tests without -race.

package tray_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/basicmachines-co/bm-agent/internal/desktoptest"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/tray"
)

// waitFor polls cond for a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	desktoptest.WaitFor(t, 10*time.Second, what, cond)
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
	pc := desktoptest.NewMenuClient(t, sc.conn, name)
	item := pc.Item
	shot := func(state string) {
		if sc.shot != nil {
			sc.shot(t, state)
		}
	}
	// The item has its icon as soon as it is on the bus: a panel that
	// reads it then draws it (an empty pixmap, 0×0, is drawn as nothing).
	var pix []struct {
		W, H int32
		ARGB []byte
	}
	if v, err := item.GetProperty("org.kde.StatusNotifierItem.IconPixmap"); err != nil || v.Store(&pix) != nil ||
		len(pix) == 0 || pix[0].W <= 0 || pix[0].H <= 0 || len(pix[0].ARGB) != int(4*pix[0].W*pix[0].H) {
		t.Errorf("StatusNotifierItem.IconPixmap = %v (err %v): the item has no icon when registered", v, err)
	}

	// No daemon: the menu says so and offers to start it.
	pc.WaitState(t, []string{"Agent not running", tray.StartLabel, "Sync now — agent not running", "Quit"},
		[]string{"Sync now", tray.LoginLabel, "Log out"})
	shot("not-running")

	// Start bm-agent: the tray starts it and follows its watch stream.
	pc.Click(t, tray.StartLabel)
	waitFor(t, "the tray started the daemon", func() bool { return rec.has("start " + proc.sock) })
	m := pc.WaitState(t, []string{"Up to date", "Account: ada@example.com", "Never synced", "Sync now", "Pause syncing",
		"Pause for 30 minutes", "Pause for 1 hour", "Pause until tomorrow", "Open notes folder", "Recent changes — none yet",
		"Conflicts — none", "Recently deleted — none", "Log out", "Open logs", "Quit"},
		[]string{tray.LoginLabel, tray.StartLabel, "Resume syncing", "Agent not running"})
	if it, _ := m.Find("Up to date"); it.Enabled {
		t.Errorf("idle menu: the status line is clickable")
	}
	var title string
	if v, err := item.GetProperty("org.kde.StatusNotifierItem.Title"); err != nil || v.Store(&title) != nil || title != tray.Title {
		t.Errorf("StatusNotifierItem.Title = %q (err %v), want Basic Memory", title, err)
	}
	shot("up-to-date")

	pc.Click(t, "Sync now")
	waitFor(t, "Sync now reached the daemon", func() bool { return fake.count("sync") == 1 })
	pc.Click(t, "Open notes folder")
	waitFor(t, "the folder opened", func() bool { return rec.has("open /home/ada/notes") })

	// A pass with progress.
	fake.setStatus(func(s *ipc.Status) { s.State = ipc.StateSyncing })
	fake.progress(ipc.Progress{FilesDone: 12, FilesTotal: 40})
	m = pc.WaitShown(t, "Syncing 12 of 40 files", "Sync now — syncing")
	if it, _ := m.Find("Sync now — syncing"); it.Enabled {
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
	pc.WaitShown(t, "Up to date — 1 conflict", "Conflicts (1)", "a.md (from laptop*", "Keep mine", "Keep theirs", "Keep both",
		"Show both", "Recently deleted", "Restore b.md*", "Recent changes", "*: 3 uploaded, 1 deleted, 1 conflict")
	shot("attention")
	if sc.menuShot != nil {
		sc.menuShot(t)
	}

	// Show both opens both files; Keep theirs settles it in the daemon.
	pc.Click(t, "Show both")
	waitFor(t, "both versions opened", func() bool {
		return rec.has("open /home/ada/notes/a.md") && rec.has("open /home/ada/notes/a.conflict-laptop.md")
	})
	pc.Click(t, "Keep theirs")
	waitFor(t, "Keep theirs reached the daemon", func() bool { return fake.count("resolve a.md a.conflict-laptop.md theirs") == 1 })
	pc.WaitShown(t, "Conflicts — none")

	// Restore the deleted note.
	pc.Click(t, "Restore b.md*")
	waitFor(t, "the restore reached the daemon", func() bool { return fake.count("restore b.md v7") == 1 })
	pc.WaitShown(t, "Recently deleted — none")

	// Pause for 30 minutes, then resume.
	pc.Click(t, "Pause for 30 minutes")
	waitFor(t, "a 30-minute pause reached the daemon", func() bool { return fake.count("pause for 30m0s") == 1 })
	pc.WaitState(t, []string{"Paused until *", "Resume syncing", "Sync now — paused"}, []string{"Pause for 30 minutes", "Pause syncing"})
	shot("paused")
	pc.Click(t, "Resume syncing")
	waitFor(t, "Resume reached the daemon", func() bool { return fake.count("resume") == 1 })
	pc.WaitShown(t, "Up to date", "Pause for 30 minutes")

	// Until tomorrow: 08:00 the next day by the tray's clock.
	pc.Click(t, "Pause until tomorrow")
	waitFor(t, "a pause until tomorrow reached the daemon", func() bool { return fake.count("pause for 22h19m0s") == 1 })
	pc.WaitShown(t, "Resume syncing")
	pc.Click(t, "Resume syncing")
	pc.WaitShown(t, "Up to date", "Pause for 30 minutes")

	// Open logs: the daemon's records go to a file that opens.
	pc.Click(t, "Open logs")
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(cache, "bm-tray", "bm-agent.log")
	waitFor(t, "the logs opened", func() bool { return rec.has("open " + logFile) })
	if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "WARN  conflict kept path=a.md") {
		t.Errorf("logs file: %q, %v", b, err)
	}

	// Too many deletes: held, and Sync anyway says what it lets through
	// and sends the forced sync.
	fake.setStatus(func(s *ipc.Status) {
		s.State, s.Paused = ipc.StatePaused, true
		s.Hold = &ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many deletes", NeedsForce: true, Deletes: 60, Files: 100, Side: ipc.SideLocal}
	})
	pc.WaitShown(t, "Paused: too many deletes*", "Sync now — held: see Sync anyway", "Sync anyway: delete 60 files in the cloud too")
	pc.Click(t, "Sync anyway: delete 60 files in the cloud too")
	waitFor(t, "the forced sync reached the daemon", func() bool { return fake.count("sync --force") == 1 })
	fake.setStatus(func(s *ipc.Status) { s.State, s.Paused, s.Hold = ipc.StateIdle, false, nil })
	pc.WaitState(t, []string{"Up to date"}, []string{"Sync anyway*"})

	// Offline.
	since := time.Now()
	fake.setStatus(func(s *ipc.Status) { s.State, s.OfflineSince = ipc.StateOffline, &since })
	pc.WaitShown(t, "Offline since *")
	shot("offline")

	// Log out from the menu; then the login expires for good.
	pc.Click(t, "Log out")
	waitFor(t, "Log out reached the daemon", func() bool { return fake.count("logout") == 1 })

	// The login expired: the menu offers to log in, and the page opens.
	fake.setStatus(func(s *ipc.Status) {
		s.State, s.LoggedIn, s.OfflineSince = ipc.StateLoginRequired, false, nil
	})
	pc.WaitState(t, []string{"Login required", tray.LoginLabel, "Sync now — not logged in"}, []string{"Log out"})
	shot("logged-out")
	pc.Click(t, tray.LoginLabel)
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
	pc.WaitShown(t, "Agent not running", tray.StartLabel)
	if err := proc.start(); err != nil {
		t.Fatal(err)
	}
	pc.WaitShown(t, "Login required")
	if n := fake.count("sync"); n != 1 {
		t.Errorf("daemon got %d sync requests, want 1", n)
	}
	t.Logf("daemon calls: %q", fake.callList())
}
