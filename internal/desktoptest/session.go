//go:build linux

// Package desktoptest runs tests against a real Linux desktop, the way a
// person's session has one: a session D-Bus of the test's own with an
// unlocked keyring (gnome-keyring), an X server (Xvfb) with a panel
// (xfce4-panel) hosting StatusNotifierItems, and a notification server
// that records what it is asked to show. It reads a tray's menu and clicks
// it over com.canonical.dbusmenu, as a panel does, and takes screenshots
// (xwd) to tell whether an icon is drawn.
//
// It is test support, like internal/testenv, whose rule it follows: a
// missing tool (Debian packages in .ci/apt-packages) skips the test, and
// fails it under CI. The tests of ui/tray, ui/notify and e2e use it.
package desktoptest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

// envInside marks the re-run test: it runs inside the session Enter made.
const envInside = "BM_DESKTOPTEST_INSIDE"

// EnvShots names the folder screenshots go to (see [ShotsDir]).
const EnvShots = "BM_TRAY_SHOTS"

// Session is the desktop session [Enter] runs a test in.
type Session struct {
	// Display starts an X server (Xvfb) of Width×Height for the session
	// and sets DISPLAY to it; without it DISPLAY is empty.
	Display       bool
	Width, Height int
	// Tools are programs the test needs on PATH besides dbus-run-session
	// (and Xvfb with Display): a missing one skips the test, or fails it
	// under CI.
	Tools []string
	// Env is added to the re-run test's environment.
	Env []string
	// Timeout bounds the re-run (default 3 minutes).
	Timeout time.Duration
}

// Enter puts the calling test in a desktop session of its own. Outside it,
// Enter re-runs the test (t.Name()) under dbus-run-session, with fresh HOME
// and XDG_{CONFIG,CACHE,DATA,STATE,RUNTIME}_HOME/DIR temp dirs, reports the
// re-run's result as the test's own, and returns false: the caller returns.
// Inside, it returns true, and the caller goes on: DBUS_SESSION_BUS_ADDRESS
// is the session's bus (which ends with the test), DISPLAY the X server's;
// the Go toolchain's caches stay the outer run's. In short mode the test
// is skipped.
func Enter(t *testing.T, s Session) bool {
	t.Helper()
	if os.Getenv(envInside) == t.Name() {
		return true
	}
	if testing.Short() {
		t.Skip("short mode: runs a desktop session")
	}
	tools := append([]string{"dbus-run-session"}, s.Tools...)
	if s.Display {
		tools = append(tools, "Xvfb")
	}
	RequireTools(t, tools...)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A short path: unix sockets under XDG_RUNTIME_DIR have a ~104 byte limit.
	dir, err := os.MkdirTemp("", "bm-desktop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	home := filepath.Join(dir, "home")
	env := []string{
		envInside + "=" + t.Name(),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"WAYLAND_DISPLAY=", "NO_AT_BRIDGE=1", "GDK_BACKEND=x11",
	}
	// The Go toolchain keeps its caches where they are (they default to
	// places under HOME), so a test that builds does not start from none.
	if out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output(); err == nil {
		if v := strings.Fields(string(out)); len(v) == 3 {
			env = append(env, "GOCACHE="+v[0], "GOMODCACHE="+v[1], "GOPATH="+v[2])
		}
	}
	for _, d := range []string{home, filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if s.Display {
		w, h := s.Width, s.Height
		if w == 0 || h == 0 {
			w, h = 640, 480
		}
		env = append(env, "DISPLAY="+StartXvfb(t, w, h))
	} else {
		env = append(env, "DISPLAY=")
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "dbus-run-session", "--", self,
		"-test.run="+strings.Join(run, "/"), "-test.v", "-test.count=1", "-test.timeout="+timeout.String())
	cmd.Env = append(append(os.Environ(), env...), s.Env...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("%s in a desktop session: %v\n%s", t.Name(), err, out)
	case bytes.Contains(out, []byte("--- SKIP")):
		t.Skipf("skipped in the desktop session:\n%s", out)
	case !bytes.Contains(out, []byte("--- PASS")):
		t.Fatalf("%s in a desktop session ran nothing:\n%s", t.Name(), out)
	}
	t.Logf("in a desktop session:\n%s", out)
	return false
}

// RequireTools skips the test when a tool is not on PATH, or fails it
// under CI (which installs them: .ci/apt-packages).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		testenv.Require(t, tool+" (Debian packages: see .ci/apt-packages)", err)
	}
}

// ShotsDir is where a test writes its screenshots: $BM_TRAY_SHOTS when set
// (`make tray-screenshots` sets it to docs/), else a temp dir of t's.
func ShotsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvShots)
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WaitFor polls cond every 20 ms for up to d, and fails t if it never
// holds.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("never happened within %s: %s", d, what)
}
