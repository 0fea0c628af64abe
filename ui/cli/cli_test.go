package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestWriteStatusGolden(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		st   ipc.Status
	}{
		{"logged_out", ipc.Status{State: "logged_out", Folder: "/home/me/basic-memory", KeyringBackend: "file"}},
		{"idle", ipc.Status{
			State: "idle", LoggedIn: true, Account: "me@example.com", TenantID: "t-1", Bucket: "basic-memory-t-1",
			Folder: "/home/me/basic-memory", KeyringBackend: "keyring",
			SubscriptionStatus: "active", SubscriptionTier: "pro", Devices: 2,
			LastSync: &ipc.PassSummary{Start: now.Add(-42 * time.Second), DurationMS: 1234, Trigger: "watch", Uploaded: 2, Downloaded: 1},
		}},
		{"failed_paused", ipc.Status{
			State: "paused", Error: "", LoggedIn: true, Account: "me@example.com", TenantID: "t-1", Bucket: "b", Folder: "/n", Paused: true,
			LastSync: &ipc.PassSummary{Start: now.Add(-time.Hour), DurationMS: 10, Trigger: "interval", Error: "local folder missing"},
		}},
		{"watch_limit", ipc.Status{
			State: "idle", LoggedIn: true, Account: "me@example.com", TenantID: "t-1", Bucket: "b", Folder: "/n", KeyringBackend: "keyring",
			Watcher: "file changes are not watched, syncing every 1m0s instead: watch: add /n/a: file watch limit reached: on Linux raise it with `sudo sysctl fs.inotify.max_user_watches=524288`",
		}},
		{"not_syncing", ipc.Status{
			State: "idle", LoggedIn: true, Account: "me@example.com", TenantID: "t-1", Bucket: "b", Folder: "/n", KeyringBackend: "keyring",
			NotSyncing: []ipc.FailedItem{
				{Path: "locked.md", Side: "local", Reason: ipc.FailPermission, Advice: "bm-agent may not read or write it in the notes folder: check its permissions (and its folder's)", RetryAt: now.Add(4 * time.Minute)},
				{Path: "projects", Dir: true, Side: "local", Reason: ipc.FailKindClash, Advice: "a folder and a file have the same name, one on each side (or on the way to it): rename one of them", RetryAt: now.Add(-time.Second)},
			},
		}},
		{"login_required", ipc.Status{
			State: "login_required", Error: "tenant status: refresh token: login required", Folder: "/n", KeyringBackend: "keyring",
		}},
		{"device_login", ipc.Status{
			State: "logged_out", Folder: "/n", KeyringBackend: "file", LoginMethod: ipc.LoginDevice,
			LoginURL: "https://cloud.example/oauth2/device?user_code=BCDF-GHJK", LoginUserCode: "BCDF-GHJK",
		}},
		{"subscription_required", ipc.Status{
			State: "subscription_required", Error: "mount info: cloudapi: subscription required", LoggedIn: true,
			Account: "me@example.com", TenantID: "t-1", Bucket: "b", Folder: "/n", KeyringBackend: "keyring",
			SubscriptionStatus: "canceled", SubscriptionTier: "free", SubscribeURL: "https://basicmemory.com/subscribe",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			writeStatus(&buf, tt.st, now)
			golden := filepath.Join("testdata", "status_"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("got:\n%s\nwant:\n%s", buf.Bytes(), want)
			}
		})
	}
}

func TestHeadless(t *testing.T) {
	tests := []struct {
		goos string
		env  map[string]string
		want bool
	}{
		{"linux", map[string]string{"DISPLAY": ":0"}, false},
		{"linux", map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, false},
		{"linux", nil, true},
		{"freebsd", nil, true},
		{"linux", map[string]string{"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 22 10.0.0.2 22"}, true},
		{"darwin", nil, false},
		{"darwin", map[string]string{"SSH_TTY": "/dev/ttys001"}, true},
		{"windows", nil, false},
	}
	for _, tt := range tests {
		if got := headlessEnv(tt.goos, func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("headlessEnv(%s, %v) = %v, want %v", tt.goos, tt.env, got, tt.want)
		}
	}
}

func TestSubscriptionMessage(t *testing.T) {
	got := subscriptionMessage("https://basicmemory.com/subscribe")
	want := "Active subscription required\nSubscribe at: https://basicmemory.com/subscribe"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := subscriptionMessage(""); got != "Active subscription required" {
		t.Errorf("without a URL: %q", got)
	}
}

func TestWriteLoginStart(t *testing.T) {
	var buf bytes.Buffer
	writeLoginStart(&buf, ipc.LoginStart{URL: "https://x/oauth2/device?user_code=BCDF-GHJK", UserCode: "BCDF-GHJK", Method: ipc.LoginDevice})
	for _, want := range []string{"https://x/oauth2/device?user_code=BCDF-GHJK", "BCDF-GHJK", "any device"} {
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Errorf("device login output lacks %q:\n%s", want, buf.String())
		}
	}
}
