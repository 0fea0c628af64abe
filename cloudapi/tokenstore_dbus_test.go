//go:build linux

package cloudapi

import (
	"log/slog"
	"os"
	"os/exec"
	"testing"
)

// TestKeyringOverDBus runs the store against a real gnome-keyring on a
// private session bus. The outer test re-executes the test binary under
// dbus-run-session with an unlocked keyring; it skips when the tools are
// not installed.
func TestKeyringOverDBus(t *testing.T) {
	if os.Getenv("BM_AGENT_TEST_IN_DBUS") == "1" {
		t.Setenv(EnvKeyring, "")
		s := OpenStore(t.TempDir(), slog.New(slog.DiscardHandler))
		if s.Backend() != BackendKeyring {
			t.Fatalf("Backend() = %q under a session bus with gnome-keyring, want keyring", s.Backend())
		}
		exerciseStore(t, s)
		return
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	for _, tool := range []string{"dbus-run-session", "gnome-keyring-daemon"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := `printf test | gnome-keyring-daemon --unlock --components=secrets >/dev/null && exec "$0" -test.run='^TestKeyringOverDBus$' -test.v`
	cmd := exec.CommandContext(t.Context(), "dbus-run-session", "--", "sh", "-c", script, self)
	cmd.Env = append(os.Environ(), "BM_AGENT_TEST_IN_DBUS=1", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keyring test under dbus-run-session: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
