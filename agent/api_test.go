package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func TestConfigSetGetPersists(t *testing.T) {
	home := t.TempDir()
	d := testDaemon(t, home)
	ctx := context.Background()
	elsewhere := t.TempDir()
	tests := []struct {
		key, value  string
		wantErr     bool
		wantRestart bool
		check       func(t *testing.T)
	}{
		{"interval", "2h", false, false, func(t *testing.T) {
			if d.liveSettings().interval != 2*time.Hour {
				t.Errorf("live interval = %v", d.liveSettings().interval)
			}
		}},
		{"profile", "safe", false, false, func(t *testing.T) {
			if d.liveSettings().profile != "safe" || d.Status(ctx).Profile != "safe" {
				t.Errorf("profile not applied")
			}
		}},
		{"debounce", "3s", false, false, nil},
		{"folder", elsewhere, false, true, nil},
		{"cloud_host", "https://example.test", false, true, nil},
		{"interval", "1s", true, false, nil},
		{"interval", "soon", true, false, nil},
		{"profile", "reckless", true, false, nil},
		{"cloud_host", "ftp://x", true, false, nil},
		{"colour", "blue", true, false, nil},
		{"versions_days", "0", false, false, func(t *testing.T) {
			if d.versionSettings().days != 0 {
				t.Errorf("versions_days not applied: %+v", d.versionSettings())
			}
		}},
		{"versions_days", "7", false, false, nil},
		{"versions_max_mb", "200", false, false, func(t *testing.T) {
			if d.versionSettings().maxBytes != 200<<20 {
				t.Errorf("versions_max_mb not applied: %+v", d.versionSettings())
			}
		}},
		{"versions_days", "-1", true, false, nil},
		{"versions_days", "a week", true, false, nil},
		{"versions_max_mb", "0", true, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			m, err := d.ConfigSet(ctx, tt.key, tt.value)
			if tt.wantErr {
				if !errors.Is(err, ipc.ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (m[ipc.ConfigRestartRequired] == true) != tt.wantRestart {
				t.Errorf("restart_required = %v, want %v", m[ipc.ConfigRestartRequired], tt.wantRestart)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
	c, err := LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Interval) != 2*time.Hour || c.Profile != "safe" || c.Folder != elsewhere ||
		time.Duration(c.Debounce) != 3*time.Second || c.CloudHost != "https://example.test" ||
		c.versionsDays() != 7 || c.versionsMaxBytes() != 200<<20 {
		t.Errorf("persisted config = %+v", c)
	}
	if _, err := d.Versions(ctx, ipc.VersionsRequest{Path: "a.md"}); !errors.Is(err, ipc.ErrLoginRequired) {
		t.Errorf("versions while logged out: %v, want ErrLoginRequired", err)
	}
	if _, err := d.Restore(ctx, ipc.RestoreRequest{Deleted: true}); !errors.Is(err, ipc.ErrLoginRequired) {
		t.Errorf("restore while logged out: %v, want ErrLoginRequired", err)
	}
	m, err := d.ConfigGet(ctx)
	if err != nil || m["interval"] != "2h0m0s" || m["folder"] == elsewhere {
		t.Errorf("ConfigGet = %v, %v (the folder applies after a restart)", m, err)
	}
}

func TestLogRingAndFollow(t *testing.T) {
	ring := NewLogRing(3)
	log := slog.New(NewLogTee(slog.DiscardHandler, ring)).With("component", "x")
	for _, m := range []string{"a", "b", "c", "d"} {
		log.Info(m, "n", 1)
	}
	log.Debug("hidden") // below Info and not enabled downstream
	var got []string
	ctx := context.Background()
	if err := ring.Logs(ctx, ipc.LogsRequest{Lines: 10}, func(l ipc.LogLine) error {
		got = append(got, l.Msg)
		if l.Attrs["component"] != "x" || l.Attrs["n"] != int64(1) || l.Level != "INFO" {
			t.Errorf("line %+v", l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "") != "bcd" {
		t.Errorf("ring = %v, want the last 3", got)
	}

	fctx, cancel := context.WithCancel(ctx)
	lines := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- ring.Logs(fctx, ipc.LogsRequest{Lines: 1, Follow: true}, func(l ipc.LogLine) error {
			lines <- l.Msg
			return nil
		})
	}()
	if m := <-lines; m != "d" {
		t.Fatalf("backlog = %q", m)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		log.Info("e")
		select {
		case m := <-lines:
			if m != "e" {
				t.Fatalf("followed %q", m)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Logs = %v", err)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower got no new line")
		}
	}
}

func TestDoctorChecks(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		date   string
		wantOK bool
	}{
		{"in step", now.UTC().Format(http.TimeFormat), true},
		{"10 minutes ahead", now.Add(10 * time.Minute).UTC().Format(http.TimeFormat), false},
		{"10 minutes behind", now.Add(-10 * time.Minute).UTC().Format(http.TimeFormat), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clockSkew(tt.date, now)
			if c == nil || c.OK != tt.wantOK || (!c.OK && c.Fix == "") {
				t.Errorf("clockSkew = %+v", c)
			}
		})
	}

	home := t.TempDir()
	if c := checkFolder(filepath.Join(home, "missing")); c.OK || c.Fix == "" {
		t.Errorf("missing folder: %+v", c)
	}
	if c := checkFolder(home); !c.OK {
		t.Errorf("present folder: %+v", c)
	}
	if c := checkKeyring("file"); !c.OK || !c.Warn || c.Fix == "" {
		t.Errorf("file keyring: %+v", c)
	}
	if c := checkDisk(filepath.Join(home, "missing", "deeper")); !c.OK && c.Fix == "" {
		t.Errorf("disk: %+v", c)
	}

	// inotify: a limit below the folder's directory count fails.
	for i := range 3 {
		if err := os.MkdirAll(filepath.Join(home, "d", string(rune('a'+i))), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	lim := filepath.Join(t.TempDir(), "max_user_watches")
	old := inotifyWatchesFile
	inotifyWatchesFile = lim
	defer func() { inotifyWatchesFile = old }()
	for _, tt := range []struct {
		limit  string
		wantOK bool
	}{{"2\n", false}, {"100000\n", true}} {
		if err := os.WriteFile(lim, []byte(tt.limit), 0o600); err != nil {
			t.Fatal(err)
		}
		if c := checkInotify(home); c.OK != tt.wantOK || (!c.OK && c.Fix == "") {
			t.Errorf("limit %q: %+v", tt.limit, c)
		}
	}

	// The whole report of a logged-out daemon, with the server's clock 10
	// minutes off.
	srv := newDateServer(t, now.Add(10*time.Minute))
	d := testDaemon(t, t.TempDir())
	d.cloud.Host = srv
	rep := d.Doctor(context.Background())
	byName := map[string]ipc.DoctorCheck{}
	for _, c := range rep.Checks {
		byName[c.Name] = c
	}
	if c := byName["server reachable"]; c.OK || !strings.Contains(c.Fix, "clock") {
		t.Errorf("server with a skewed clock: %+v", c)
	}
	if c := byName["token valid"]; c.OK {
		t.Errorf("logged out: %+v", c)
	}
}

func newDateServer(t *testing.T, at time.Time) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", at.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}
