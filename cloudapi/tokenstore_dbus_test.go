//go:build linux

package cloudapi

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/zalando/go-keyring"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
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
		// Written through the Secret Service: readable by another client
		// of the keyring, and gone after Clear.
		if err := s.SaveToken(testToken()); err != nil {
			t.Fatal(err)
		}
		if raw, err := keyring.Get(KeyringService, itemTokens); err != nil || !strings.Contains(raw, testToken().RefreshToken) {
			t.Fatalf("keyring item after SaveToken: err %v", err)
		}
		if err := s.Clear(); err != nil {
			t.Fatal(err)
		}
		for _, item := range []string{itemTokens, itemS3Key} {
			if _, err := keyring.Get(KeyringService, item); !errors.Is(err, keyring.ErrNotFound) {
				t.Errorf("keyring item %s after Clear: %v, want not found", item, err)
			}
		}
		return
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	for _, tool := range []string{"dbus-run-session", "gnome-keyring-daemon"} {
		_, err := exec.LookPath(tool)
		testenv.Require(t, tool+" (Debian packages dbus and gnome-keyring, see .ci/apt-packages)", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// --unlock creates and unlocks the login keyring with the password on
	// stdin and serves the Secret Service; it returns before the daemon
	// owns its bus name, so wait for that (a second --start at that
	// moment would launch another, locked daemon).
	script := `printf test | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1
i=0
until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
	org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; do
	i=$((i+1)); [ $i -gt 100 ] && { echo "gnome-keyring never took org.freedesktop.secrets" >&2; exit 1; }
	sleep 0.1
done
exec "$0" -test.run='^TestKeyringOverDBus$' -test.v`
	cmd := exec.CommandContext(t.Context(), "dbus-run-session", "--", "sh", "-c", script, self)
	cmd.Env = append(os.Environ(), "BM_AGENT_TEST_IN_DBUS=1", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keyring test under dbus-run-session: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
