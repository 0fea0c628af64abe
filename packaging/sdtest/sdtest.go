//go:build linux

// Package sdtest runs a test against a real, private systemd user instance:
// the test re-runs itself in a private mount namespace (unshare -m) under
// dbus-run-session, with its own HOME, XDG_CONFIG_HOME and
// XDG_RUNTIME_DIR, and starts `systemd --user` there. It is for tests of
// what `bm-agent install` does with a user systemd, on machines (a CI
// container) that were not booted with systemd and have no session bus.
package sdtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

// envInside marks the re-run test: it is inside the namespace and session.
const envInside = "BM_SDTEST_INSIDE"

// Enter puts the calling test in a private systemd user instance. Outside
// it, Enter re-runs the test (t.Name()) inside one, reports the re-run's
// result as the test's own, and returns false: the caller returns. Inside,
// it starts `systemd --user` (stopped when the test ends), waits until
// `systemctl --user` answers, and returns true: the caller goes on, with
// HOME, XDG_CONFIG_HOME and XDG_RUNTIME_DIR fresh temp dirs. env is added
// to the environment of the re-run test and of systemd --user, and so of
// the units it starts.
//
// systemd and dbus-run-session are packages CI installs (a missing one is
// testenv.Require's business); a machine that does not let the test make a
// mount namespace skips it, saying so.
func Enter(t *testing.T, env ...string) bool {
	t.Helper()
	if os.Getenv(envInside) == "" {
		outside(t, env)
		return false
	}
	inside(t)
	return true
}

// systemdPath finds the systemd binary (it is not on PATH).
func systemdPath() (string, error) {
	for _, p := range []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("no /lib/systemd/systemd nor /usr/lib/systemd/systemd")
}

func outside(t *testing.T, env []string) {
	t.Helper()
	_, err := systemdPath()
	testenv.Require(t, "systemd (Debian package systemd)", err)
	_, err = exec.LookPath("systemctl")
	testenv.Require(t, "systemctl (Debian package systemd)", err)
	drs, err := exec.LookPath("dbus-run-session")
	testenv.Require(t, "dbus-run-session (Debian package dbus)", err)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("no unshare (util-linux) to make a mount namespace for a private systemd: %v", err)
	}
	if out, err := exec.Command(unshare, "-m", "--propagation", "private", "true").CombinedOutput(); err != nil {
		t.Skipf("this machine does not allow a mount namespace (unshare -m: %v: %s), so no private systemd user instance can run here", err, bytes.TrimSpace(out))
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "-m", "--propagation", "private", drs, "--", self,
		"-test.run="+strings.Join(run, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(append(os.Environ(), envInside+"=1"), env...)
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("the test in a private systemd user instance: %v\n%s", err, out)
	case bytes.Contains(out, []byte("--- SKIP")):
		t.Skipf("skipped in the private systemd user instance:\n%s", out)
	case !bytes.Contains(out, []byte("--- PASS")):
		t.Fatalf("the test in a private systemd user instance ran nothing:\n%s", out)
	}
	t.Logf("in a private systemd user instance:\n%s", out)
}

func inside(t *testing.T) {
	t.Helper()
	sd, err := systemdPath()
	if err != nil {
		t.Fatal(err)
	}
	// systemd --user runs only on a system "booted with systemd", which it
	// tells by this directory; the mount is private to the namespace.
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		if err := os.MkdirAll("/run/systemd", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755"); err != nil {
			t.Fatalf("mount a tmpfs on /run/systemd in the private namespace: %v", err)
		}
		if err := os.Mkdir("/run/systemd/system", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := t.TempDir()
	rt, err := os.MkdirTemp("", "sdrt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	if err := os.Chmod(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("XDG_RUNTIME_DIR", rt)
	var logs lockedBuffer
	cmd := exec.Command(sd, "--user")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemd --user: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := exec.Command("systemctl", "--user", "show-environment").CombinedOutput()
		if err == nil {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("systemd --user ended: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemctl --user does not answer after 15 s: %v: %s\nsystemd --user:\n%s", err, out, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Unit says what systemctl --user says of unit's property prop ("" when
// it cannot say), for the test's checks.
func Unit(t *testing.T, unit, prop string) string {
	t.Helper()
	out, _ := exec.Command("systemctl", "--user", "show", "-p", prop, "--value", unit).Output()
	return strings.TrimSpace(string(out))
}

// lockedBuffer is systemd's output, written while a failing test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
