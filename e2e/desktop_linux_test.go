//go:build linux && !race

// Not under -race: it runs bm-tray, and ui/tray's tests say why the tray
// is not raced (fyne.io/systray's own race).

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/internal/desktoptest"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/server/issuer/issuertest"
	"github.com/basicmachines-co/bm-agent/ui/tray"
)

// TestDesktopFlow is issue 11's person on a fresh Linux desktop, with the
// real binaries: a session bus with an unlocked keyring and a notification
// server, Xvfb with xfce4-panel, and bm-server. `bm-agent setup --server`
// installs the service (no user systemd here: XDG autostart entries, the
// daemon started detached), opens the login page in the "browser" (an
// xdg-open that records it; the test logs in there over HTTP) and waits
// for the first sync. bm-tray, started as its autostart entry says, draws
// its icon in the panel and shows the daemon's state in its menu. A note
// changed here and by another device (over S3) makes a conflict: one
// desktop notification, whose click opens the notes folder, and "Keep
// mine" in the tray's Conflicts submenu (clicked over dbusmenu) settles
// it: the conflict file is gone, the note is this device's version here
// and in the bucket, and the other version is kept. `bm-agent uninstall`
// removes what setup wrote and stops the daemon, and the tray says so. A
// screenshot of the panel is taken after each step (into BM_TRAY_SHOTS
// when set).
func TestDesktopFlow(t *testing.T) {
	if !desktoptest.Enter(t, desktoptest.Session{Display: true, Width: 640, Height: 480,
		Tools: []string{"xfce4-panel", "xwd", "gnome-keyring-daemon"}, Timeout: 10 * time.Minute}) {
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	home, cfg := os.Getenv("HOME"), os.Getenv("XDG_CONFIG_HOME")
	folder := filepath.Join(home, "basic-memory") // the agent's default
	// The panel after each step, written at the end (also when the test
	// fails): the tray area with some panel around it, at twice the size.
	type shot struct {
		name string
		img  *image.NRGBA
	}
	var (
		shots []shot
		panel *desktoptest.Panel
	)
	shoot := func(name string, img *image.NRGBA) { shots = append(shots, shot{name, img}) }
	defer func() {
		if panel == nil {
			return
		}
		dir := desktoptest.ShotsDir(t)
		var area image.Rectangle
		for _, s := range shots {
			area = area.Union(panel.Icons(s.img))
		}
		area = image.Rect(max(0, area.Min.X-48), 0, min(panel.Rect.Max.X, area.Max.X+48), panel.Rect.Max.Y)
		for i, s := range shots {
			desktoptest.WritePNG(t, filepath.Join(dir, fmt.Sprintf("desktop-%d-%s.png", i+1, s.name)), desktoptest.Crop(s.img, area, 2))
		}
		t.Logf("screenshots in %s", dir)
	}()

	// The desktop: its bus, a keyring, notifications, the panel.
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		t.Fatalf("connect session bus: %v", err)
	}
	defer conn.Close()
	desktoptest.StartKeyring(t, conn)
	notes := desktoptest.StartNotificationServer(t, "")
	panel = desktoptest.StartPanel(t, conn)
	shoot("empty-panel", panel.Empty)

	// What a browser opens is recorded; there is no user systemd.
	bin := t.TempDir()
	opened := filepath.Join(bin, "opened")
	writeScript(t, filepath.Join(bin, "xdg-open"), "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '"+opened+"'\n")
	writeScript(t, filepath.Join(bin, "systemctl"), "#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n")
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// bm-tray beside bm-agent, as a package installs them (setup then
	// writes the tray's autostart entry too)
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(binDir, "bm-tray"), "../cmd/bm-tray")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build bm-tray: %v\n%s", err, out)
	}

	// The server, with the person's account, and notes they already have.
	h := newHarness(t)
	const email = "ada@example.com"
	pw := harness.RandomPassword()
	if err := h.StartServer(ctx, email, pw); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"note.md": "v1", "seed.md": "so the folder is never empty"} {
		if err := os.WriteFile(filepath.Join(folder, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cliIn := func(ctx context.Context, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, filepath.Join(binDir, "bm-agent"), args...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("bm-agent %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	cli := func(args ...string) (string, error) { return cliIn(ctx, args...) }
	sock := ipc.DefaultSocketPath()
	c := ipc.NewClient(sock)
	// Whatever happens, the daemon setup starts does not outlive the test.
	var daemonPID int
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.Status(ctx); err == nil {
			if pid, err := peerPID(sock); err == nil {
				daemonPID = pid
			}
			out, err := cliIn(ctx, "uninstall")
			t.Logf("cleanup: bm-agent uninstall: %v\n%s", err, out)
		}
		if daemonPID != 0 && isAgent(daemonPID) {
			_ = syscall.Kill(daemonPID, syscall.SIGKILL)
		}
	})
	dumpLogs := func() {
		if t.Failed() {
			out, _ := cli("logs", "-n", "300")
			t.Logf("---- bm-agent logs ----\n%s", out)
		}
	}
	defer dumpLogs()

	// 1. setup, as a person runs it.
	start := time.Now()
	setup := exec.CommandContext(ctx, filepath.Join(binDir, "bm-agent"), "setup", "--server", h.ServerURL)
	var setupOut syncBuffer
	setup.Stdout, setup.Stderr = &setupOut, &setupOut
	if err := setup.Start(); err != nil {
		t.Fatal(err)
	}
	setupDone := make(chan error, 1)
	go func() { setupDone <- setup.Wait() }()
	var loginURL string
	desktoptest.WaitFor(t, 60*time.Second, "setup opening the login page in the browser", func() bool {
		for _, l := range readLines(opened) {
			if strings.HasPrefix(l, "http") {
				loginURL = l
				return true
			}
		}
		select {
		case err := <-setupDone:
			t.Fatalf("setup exited (%v) before opening the login page:\n%s", err, setupOut.String())
		default:
		}
		return false
	})
	if err := issuertest.BrowserLogin(ctx, loginURL, email, pw); err != nil {
		t.Fatalf("the browser step: %v\nsetup so far:\n%s", err, setupOut.String())
	}
	select {
	case err := <-setupDone:
		if err != nil {
			t.Fatalf("setup: %v\n%s", err, setupOut.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("setup not done 3 minutes after the login:\n%s", setupOut.String())
	}
	t.Logf("setup took %s:\n%s", time.Since(start).Round(time.Millisecond), setupOut.String())
	agentEntry := filepath.Join(cfg, "autostart", "bm-agent.desktop")
	trayEntry := filepath.Join(cfg, "autostart", "bm-tray.desktop")
	// idle once the passes after the first sync are over (the change
	// events coming up start one)
	var st ipc.Status
	desktoptest.WaitFor(t, 30*time.Second, "the daemon idle after setup", func() bool {
		var err error
		st, err = c.Status(ctx)
		return err == nil && st.State == ipc.StateIdle
	})
	inOrder(t, "setup's output", setupOut.String(),
		"[done] server: "+h.ServerURL+", saved in bm-agent's config\n",
		"No daemon answers: installing the bm-agent service...\n",
		"No user systemd here (systemctl --user: Failed to connect to bus: No medium found): bm-agent starts at login through "+agentEntry+" instead.\n",
		"[done] service: installed, started now: an XDG autostart entry starts bm-agent at login (2 files written)\n",
		"[done] tray: bm-tray started: its icon is in the panel\n",
		"[done] daemon: running, version ",
		"To log in, open this URL in a browser:\n\n  "+loginURL+"\n",
		"(opened in your browser)\n",
		"[done] login: logged in as "+email+"\n",
		// this setup's first sync, whether it waited for it or the
		// daemon's pass was over before it looked
		fmt.Sprintf("[done] first sync: bucket %s in step with %s (", st.Bucket, folder),
		"\nAll set: bm-agent keeps "+folder+" and your cloud bucket in step, and starts at login.\n")
	if !st.LoggedIn || st.State != ipc.StateIdle || st.Folder != folder || st.LastSync == nil || st.LastSync.Error != "" {
		t.Fatalf("status after setup: %+v", st)
	}
	if daemonPID, err = peerPID(sock); err != nil {
		t.Fatal(err)
	}
	// a person's desktop has a keyring: the credentials are there, not in a file
	if _, err := os.Stat(filepath.Join(cfg, "bm-agent", cloudapi.SecretsFile)); err == nil {
		t.Errorf("the credentials went to %s, with a keyring on the session bus", cloudapi.SecretsFile)
	}
	dev, err := h.NewDevice(ctx, email, pw)
	if err != nil {
		t.Fatal(err)
	}
	poll := func(what string, fn func() error) { t.Helper(); pollOK(t, ctx, 90*time.Second, what, fn) }
	bucketIs := func(key, want string) func() error { return bucketHolds(ctx, dev, key, want) }
	poll("the first sync's notes in the bucket", func() error {
		return errors.Join(bucketIs("note.md", "v1")(), bucketIs("seed.md", "so the folder is never empty")())
	})

	// 2. bm-tray: setup started it (a desktop session is here), and its
	// autostart entry starts it at the next login.
	entry, err := os.ReadFile(trayEntry)
	if err != nil {
		t.Fatalf("setup wrote no autostart entry for bm-tray: %v", err)
	}
	if trayExec := desktopExec(t, entry); len(trayExec) != 1 || trayExec[0] != filepath.Join(binDir, "bm-tray") {
		t.Fatalf("%s: Exec %q, want bm-tray beside bm-agent", trayEntry, trayExec)
	}
	item, trayPID := trayItem(t, conn, 60*time.Second)
	trayStopped := false
	stopTray := func() error {
		trayStopped = true
		_ = syscall.Kill(trayPID, syscall.SIGTERM)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if !alive(trayPID) {
				return nil
			}
		}
		_ = syscall.Kill(trayPID, syscall.SIGKILL)
		return fmt.Errorf("bm-tray still running 10 s after SIGTERM")
	}
	defer func() {
		if !trayStopped {
			_ = stopTray()
		}
	}()
	panel.WaitItem(t, item, 60*time.Second)
	menu := desktoptest.NewMenuClient(t, conn, item)
	menu.Timeout = 60 * time.Second
	menu.WaitState(t, []string{"Up to date", "Last sync at *", "Account: " + email, tray.SyncNowLabel, tray.OpenFolderLabel,
		"Recent changes", "Conflicts — none", tray.LogoutLabel},
		[]string{"Agent not running", tray.StartLabel, tray.LoginLabel})
	upToDate := panel.Shot(t, "the tray's icon", panel.Empty)
	if panel.Icons(upToDate).Empty() {
		t.Fatal("the tray area is the empty panel's: no icon drawn")
	}
	shoot("up-to-date", upToDate)

	// 3. A conflict: the note changes here and on the other device
	// between two passes; the other device's edit is the newer one.
	const mine, theirs = "mine, written here", "theirs, from the other device"
	conflict := conflictOn(t, ctx, 90*time.Second, cli, dev, folder, "note.md", mine, theirs,
		func() { menu.WaitShown(t, tray.ResumeLabel) })
	t.Logf("conflict file %s (from %s)", conflict.Path, conflict.Device)
	if conflict.Original != "note.md" {
		t.Fatalf("conflict %+v, want one of note.md", conflict)
	}
	menu.WaitShown(t, "Up to date — 1 conflict", "Conflicts (1)", "note.md*", tray.KeepMineLabel, tray.KeepTheirsLabel)
	attention := panel.Shot(t, "the conflict's icon", upToDate)
	shoot("conflict", attention)

	// 4. One notification says so; its click opens the notes folder.
	desktoptest.WaitFor(t, 30*time.Second, "a desktop notification", func() bool { return len(notes.Calls()) > 0 })
	time.Sleep(6 * time.Second) // the notifier's window (5 s): nothing more comes
	calls := notes.Calls()
	if len(calls) != 1 || calls[0].Summary != "A sync conflict" || calls[0].App != "bm-agent" ||
		!slices.Contains(calls[0].Actions, desktoptest.DefaultAction) {
		t.Fatalf("notifications %+v, want one conflict notification (summary %q) with a default action", calls, "A sync conflict")
	}
	t.Logf("notification: %q: %q", calls[0].Summary, calls[0].Body)
	if err := notes.Click(calls[0].ID); err != nil {
		t.Fatal(err)
	}
	desktoptest.WaitFor(t, 15*time.Second, "the click opening the notes folder", func() bool {
		return slices.Contains(readLines(opened), folder)
	})
	shoot("notification-clicked", desktoptest.Grab(t))

	// 5. Keep mine, in the tray's Conflicts submenu.
	menu.Click(t, tray.KeepMineLabel)
	menu.WaitState(t, []string{"Up to date", "Conflicts — none"}, []string{"Conflicts (1)", tray.KeepMineLabel})
	if _, err := os.Stat(filepath.Join(folder, filepath.FromSlash(conflict.Path))); !os.IsNotExist(err) {
		t.Errorf("%s after Keep mine: %v, want it gone from the folder", conflict.Path, err)
	}
	out, err := cli("conflicts", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var cs ipc.Conflicts
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs.Conflicts) != 0 {
		t.Errorf("bm-agent conflicts after Keep mine: %s (%v), want none", out, err)
	}
	if b, err := os.ReadFile(filepath.Join(folder, "note.md")); err != nil || string(b) != mine {
		t.Errorf("note.md after Keep mine = %q, %v; want this device's version %q", b, err, mine)
	}
	poll("this device's version in the bucket", bucketIs("note.md", mine))
	poll("the conflict file gone from the bucket", bucketIs(conflict.Path, ""))
	out, err = cli("versions", "note.md", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var vs ipc.Versions
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(vs.Versions, func(v ipc.Version) bool {
		return v.Reason == ipc.ReasonResolved && v.Side == ipc.VersionSideLocal && v.Size == int64(len(theirs))
	}) {
		t.Errorf("versions of note.md: %s; want the other device's version kept as resolved", out)
	}
	desktoptest.WaitFor(t, 30*time.Second, "the up-to-date icon again", func() bool {
		return desktoptest.DiffCount(desktoptest.Grab(t), upToDate, panel.Rect) == 0
	})
	shoot("resolved", desktoptest.Grab(t))

	// 6. uninstall: what setup wrote is gone, the daemon stopped, and the
	// tray says so; then the tray quits on SIGTERM.
	out, err = cli("uninstall")
	if err != nil {
		t.Fatal(err)
	}
	inOrder(t, "uninstall's output", out, "removed "+agentEntry+"\n", "removed "+trayEntry+"\n",
		fmt.Sprintf("stopped the daemon (pid %d)\n", daemonPID),
		"Uninstalled: nothing starts bm-agent at login, and it is not running.\n")
	for _, f := range []string{agentEntry, trayEntry} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s after uninstall: %v", f, err)
		}
	}
	if _, err := c.Status(ctx); err == nil {
		t.Error("a daemon still answers after uninstall")
	}
	menu.WaitShown(t, "Agent not running", tray.StartLabel)
	shoot("uninstalled", panel.Shot(t, "the not-running icon", upToDate))
	if err := stopTray(); err != nil {
		t.Errorf("bm-tray on SIGTERM: %v", err)
	}
	if len(notes.Calls()) != 1 {
		t.Errorf("notifications after the conflict's: %+v", notes.Calls()[1:])
	}
}

// trayItem waits (up to d) for a bm-tray's StatusNotifierItem on the
// session bus (fyne.io/systray names it org.kde.StatusNotifierItem-PID-1)
// and returns its name and the tray's pid.
func trayItem(t *testing.T, conn *dbus.Conn, d time.Duration) (string, int) {
	t.Helper()
	var name string
	pid := 0
	desktoptest.WaitFor(t, d, "a bm-tray on the session bus", func() bool {
		var names []string
		if err := conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
			return false
		}
		for _, n := range names {
			if _, err := fmt.Sscanf(n, "org.kde.StatusNotifierItem-%d-1", &pid); err == nil {
				name = n
				return true
			}
		}
		return false
	})
	return name, pid
}

// alive reports whether the process pid runs (not gone, not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// readLines is the lines of the file at path (none if it is not there).
func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// inOrder fails t unless out holds each of parts, in that order.
func inOrder(t *testing.T, what, out string, parts ...string) {
	t.Helper()
	rest := out
	for _, p := range parts {
		i := strings.Index(rest, p)
		if i < 0 {
			t.Fatalf("%s lacks %q (after what came before):\n%s", what, p, out)
		}
		rest = rest[i+len(p):]
	}
}

// desktopExec is the Exec line of a desktop entry, split into words
// (double-quoted words unquoted, as the XDG spec quotes them).
func desktopExec(t *testing.T, entry []byte) []string {
	t.Helper()
	for _, l := range strings.Split(string(entry), "\n") {
		v, ok := strings.CutPrefix(l, "Exec=")
		if !ok {
			continue
		}
		var words []string
		var w strings.Builder
		inQuote, escaped, started := false, false, false
		for _, r := range v {
			switch {
			case escaped:
				w.WriteRune(r)
				escaped = false
			case inQuote && r == '\\':
				escaped = true
			case r == '"':
				inQuote, started = !inQuote, true
			case r == ' ' && !inQuote:
				if started {
					words = append(words, w.String())
					w.Reset()
					started = false
				}
			default:
				w.WriteRune(r)
				started = true
			}
		}
		if started {
			words = append(words, w.String())
		}
		return words
	}
	t.Fatalf("no Exec line in the desktop entry:\n%s", entry)
	return nil
}

// peerPID is the pid of the process serving the unix socket at path
// (SO_PEERCRED).
func peerPID(path string) (int, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) { cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return int(cred.Pid), nil
}

// isAgent reports whether pid is a bm-agent process.
func isAgent(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "bm-agent")
}
