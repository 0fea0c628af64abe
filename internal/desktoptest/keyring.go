//go:build linux

package desktoptest

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// SecretService is the bus name of the keyring (the freedesktop.org
// Secret Service).
const SecretService = "org.freedesktop.secrets"

// StartKeyring starts gnome-keyring-daemon's Secret Service on conn's bus
// (the session bus) with its login keyring unlocked, as a desktop login
// leaves it, so that a client stores secrets there without a prompt; the
// keyring lives under $XDG_DATA_HOME. It waits until the daemon owns
// org.freedesktop.secrets, and stops it when t ends. Without
// gnome-keyring-daemon the test is skipped (or fails under CI).
func StartKeyring(t testing.TB, conn *dbus.Conn) {
	t.Helper()
	RequireTools(t, "gnome-keyring-daemon")
	var out bytes.Buffer
	cmd := exec.Command("gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets")
	// --unlock reads the login keyring's password from stdin, creating
	// the keyring if there is none
	cmd.Stdin = strings.NewReader("desktoptest")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gnome-keyring-daemon: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("gnome-keyring-daemon's output:\n%s", out.String())
		}
	})
	WaitFor(t, 20*time.Second, "gnome-keyring-daemon owning "+SecretService, func() bool {
		var has bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, SecretService).Store(&has)
		return err == nil && has
	})
}
