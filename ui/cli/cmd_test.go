package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/packaging"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestMain(m *testing.M) {
	if os.Getenv(envStandIn) != "" && len(os.Args) > 1 && os.Args[1] == "run" {
		os.Exit(standInDaemon(os.Args[2:]))
	}
	time.Local = time.UTC
	now = func() time.Time { return t0 }
	watchReconnectDelay = 10 * time.Millisecond
	plainProgressEvery = 0
	os.Exit(m.Run())
}

// fakeDaemon is an ipc.Backend with every optional interface, answering
// with canned values.
type fakeDaemon struct {
	mu      sync.Mutex
	status  ipc.Status
	history []ipc.PassSummary // what History answers (nil: one pass at t0)
	calls   []string
	events  []ipc.Event // sent after the snapshot on the first watch
	watches int
	// onRewatch is called when a second watch starts (the first ended).
	onRewatch func()
	logs      []ipc.LogLine
	config    map[string]any
	mount     ipc.MountStatus
	doctor    ipc.DoctorReport
	sum       ipc.PassSummary
	// syncGate, if set, is waited for in Sync after publishing progress.
	syncGate chan struct{}
	progress []ipc.Progress
	hub      *ipc.Hub
	// afterLogin is the status Login switches to, after loginDelay.
	afterLogin *ipc.Status
}

func (f *fakeDaemon) call(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func (f *fakeDaemon) Status(context.Context) ipc.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeDaemon) Sync(ctx context.Context, req ipc.SyncRequest) (ipc.PassSummary, error) {
	f.call(fmt.Sprintf("sync force=%v", req.Force))
	if f.syncGate != nil {
		for f.hub.Watchers() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		for _, p := range f.progress {
			f.hub.Publish(ipc.Event{Kind: ipc.EventProgress, Progress: &p, Time: t0})
		}
		select {
		case <-f.syncGate:
		case <-time.After(5 * time.Second):
		}
	}
	return f.sum, nil
}

func (f *fakeDaemon) Login(_ context.Context, opts ipc.LoginOptions) (ipc.LoginStart, error) {
	f.call(fmt.Sprintf("login device=%v", opts.Device))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.afterLogin != nil {
		f.status = *f.afterLogin
	}
	return ipc.LoginStart{URL: "https://cloud.example/device?user_code=ABCD-EFGH", UserCode: "ABCD-EFGH", Method: ipc.LoginDevice}, nil
}

func (f *fakeDaemon) Logout(context.Context) error { f.call("logout"); return nil }
func (f *fakeDaemon) Pause(context.Context) error  { f.call("pause"); return nil }
func (f *fakeDaemon) Resume(context.Context) error { f.call("resume"); return nil }

func (f *fakeDaemon) WatchEvents(ctx context.Context) <-chan ipc.Event {
	f.mu.Lock()
	f.watches++
	n, st, evs, rewatch := f.watches, f.status, f.events, f.onRewatch
	f.mu.Unlock()
	if f.hub != nil {
		return f.hub.Subscribe(ctx, ipc.Event{Kind: ipc.EventSnapshot, Status: &st, Time: t0})
	}
	ch := make(chan ipc.Event, len(evs)+1)
	if n > 1 && rewatch != nil {
		rewatch()
		close(ch)
		return ch
	}
	ch <- ipc.Event{Kind: ipc.EventSnapshot, Status: &st, Time: t0}
	for _, ev := range evs {
		ch <- ev
	}
	close(ch)
	return ch
}

func (f *fakeDaemon) Logs(_ context.Context, req ipc.LogsRequest, fn func(ipc.LogLine) error) error {
	lines := f.logs
	if req.Lines > 0 && len(lines) > req.Lines {
		lines = lines[len(lines)-req.Lines:]
	}
	for _, l := range lines {
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeDaemon) ConfigGet(context.Context) (map[string]any, error) { return f.config, nil }

func (f *fakeDaemon) ConfigSet(_ context.Context, key, value string) (map[string]any, error) {
	if _, ok := f.config[key]; !ok {
		return nil, fmt.Errorf("config set %s: unknown key: %w", key, ipc.ErrInvalid)
	}
	m := map[string]any{}
	for k, v := range f.config {
		m[k] = v
	}
	m[key] = value
	m[ipc.ConfigRestartRequired] = key == "folder"
	return m, nil
}

func (f *fakeDaemon) Mount(_ context.Context, req ipc.MountRequest) (ipc.MountStatus, error) {
	f.call("mount " + req.Profile + " " + req.MountPoint)
	return f.mount, nil
}

func (f *fakeDaemon) Unmount(context.Context) (ipc.MountStatus, error) {
	f.call("unmount")
	return ipc.MountStatus{}, ipc.ErrNotMounted
}

func (f *fakeDaemon) MountStatus(context.Context) ipc.MountStatus { return f.mount }
func (f *fakeDaemon) Doctor(context.Context) ipc.DoctorReport     { return f.doctor }

func (f *fakeDaemon) History(context.Context, int) (ipc.History, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.history != nil {
		return ipc.History{Passes: f.history}, nil
	}
	return ipc.History{Passes: []ipc.PassSummary{{Start: t0, DurationMS: 1200, Trigger: "manual", Uploaded: 3}}}, nil
}

func (f *fakeDaemon) Conflicts(context.Context) (ipc.Conflicts, error) {
	return ipc.Conflicts{Folder: "/n"}, nil
}

func (f *fakeDaemon) PauseFor(_ context.Context, d time.Duration) error {
	f.call("pause " + d.String())
	return nil
}

// socketPath returns a socket path short enough for unix sockets.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bmcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// serve serves b on path until the test ends.
func serve(t *testing.T, path string, b ipc.Backend) {
	t.Helper()
	ln, err := ipc.Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ipc.NewServer(b, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// startDaemon serves f on a fresh socket and returns its path.
func startDaemon(t *testing.T, f *fakeDaemon) string {
	t.Helper()
	p := socketPath(t)
	serve(t, p, f)
	return p
}

// runCLI runs bm-agent args in-process against the socket and returns
// stdout, stderr and the exit code.
func runCLI(ctx context.Context, t *testing.T, socket string, opts *Options, args ...string) (string, string, int) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	root := &cobra.Command{Use: "bm-agent", SilenceUsage: true, SilenceErrors: true}
	AddCommands(root, opts)
	Finish(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(args, "--socket", socket))
	err := root.ExecuteContext(ctx)
	code := ReportError(&errOut, err, opts.JSON)
	return out.String(), errOut.String(), code
}

func TestCommandsGolden(t *testing.T) {
	f := &fakeDaemon{
		status: ipc.Status{State: ipc.StateIdle, LoggedIn: true, Account: "me@example.com", Folder: "/n", Version: "v1.0.0"},
		logs: []ipc.LogLine{
			{Time: t0, Level: "INFO", Msg: "daemon started", Attrs: map[string]any{"version": "v1.0.0", "folder": "/home/me/basic memory"}},
			{Time: t0.Add(time.Second), Level: "WARN", Msg: "pass failed", Attrs: map[string]any{"err": "dial tcp: refused", "failures": 2.0}},
			{Time: t0.Add(2 * time.Second), Level: "INFO", Msg: "pass done", Attrs: map[string]any{"stats": map[string]any{"up": 3.0}}},
		},
		config: map[string]any{"folder": "/home/me/basic-memory", "interval": "1m0s", "profile": "balanced", "max_delete": 50.0, "watch": true},
		mount: ipc.MountStatus{Mounted: true, MountPoint: "/home/me/basic-memory-t-1", Profile: "safe", Bucket: "bm-t-1",
			Since: t0.Add(-90 * time.Minute), Pending: 2},
		doctor: ipc.DoctorReport{Checks: []ipc.DoctorCheck{
			{Name: "keychain", OK: true, Detail: "keyring"},
			{Name: "token", OK: true, Detail: "valid for 58m"},
			{Name: "server reachable", OK: true, Detail: "https://cloud.example 42ms"},
			{Name: "s3 reachable", OK: false, Detail: "HEAD bucket: 403 Forbidden", Fix: "the device key was revoked: bm-agent logout && bm-agent login"},
			{Name: "clock skew", OK: true, Warn: true, Detail: "3s ahead of the server", Fix: "enable NTP: timedatectl set-ntp true"},
		}},
	}
	sock := startDaemon(t, f)
	tests := []struct {
		golden string
		args   []string
		code   int
	}{
		{"doctor", []string{"doctor"}, ExitError},
		{"doctor_json", []string{"doctor", "--json"}, ExitError},
		{"config_get", []string{"config", "get"}, 0},
		{"config_get_json", []string{"config", "get", "--json"}, 0},
		{"config_get_key", []string{"config", "get", "interval"}, 0},
		{"config_get_key_json", []string{"config", "get", "max_delete", "--json"}, 0},
		{"config_set", []string{"config", "set", "folder", "/tmp/x"}, 0},
		{"logs", []string{"logs"}, 0},
		{"logs_n2", []string{"logs", "-n", "2"}, 0},
		{"logs_json", []string{"logs", "--json"}, 0},
		{"mount_status", []string{"mount-status"}, 0},
		{"mount_status_json", []string{"mount-status", "--json"}, 0},
		{"history_cmd", []string{"history"}, 0},
		{"history_cmd_json", []string{"history", "--json"}, 0},
		{"pause_for_json", []string{"pause", "--for", "1h", "--json"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			out, errOut, code := runCLI(context.Background(), t, sock, nil, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			out = strings.ReplaceAll(out, sock, "/run/user/1000/bm-agent.sock")
			checkGolden(t, "cmd_"+tt.golden+".golden", []byte(out))
		})
	}
}

func TestCommandErrors(t *testing.T) {
	f := &fakeDaemon{config: map[string]any{"folder": "/n"}}
	sock := startDaemon(t, f)
	tests := []struct {
		name    string
		args    []string
		code    int
		errWant string
	}{
		{"unknown key", []string{"config", "get", "nope"}, ExitUsage, "no such setting"},
		{"bad set", []string{"config", "set", "nope", "1"}, ExitError, "invalid request"},
		{"set needs two args", []string{"config", "set", "folder"}, ExitUsage, "accepts 2 arg"},
		{"bad flag", []string{"status", "--nope"}, ExitUsage, "unknown flag"},
		{"unknown command", []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"bad profile", []string{"mount", "--profile", "turbo"}, ExitUsage, "want fast, balanced or safe"},
		{"not mounted", []string{"unmount"}, ExitError, "not mounted"},
		{"negative pause", []string{"pause", "--for", "-1h"}, ExitUsage, "must be positive"},
		{"json error", []string{"unmount", "--json"}, ExitError, `"exit_code": 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := &Options{}
			_, errOut, code := runCLI(context.Background(), t, sock, opts, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if !strings.Contains(errOut, tt.errWant) {
				t.Errorf("stderr %q lacks %q", errOut, tt.errWant)
			}
		})
	}
}

func TestNoDaemonExitCode(t *testing.T) {
	sock := socketPath(t) // nothing listens
	for _, args := range [][]string{{"status"}, {"logs"}, {"config", "get"}, {"mount-status"}, {"sync"}} {
		_, errOut, code := runCLI(context.Background(), t, sock, nil, args...)
		if code != ExitNoDaemon {
			t.Errorf("%v: exit code %d, want %d (stderr %q)", args, code, ExitNoDaemon, errOut)
		}
	}
}

func TestStatusWatch(t *testing.T) {
	syncing := ipc.Status{State: ipc.StateSyncing, LoggedIn: true, Account: "a@example.com", Folder: "/n", Profile: "balanced"}
	held := ipc.Status{State: ipc.StatePaused, LoggedIn: true, Account: "a@example.com", Folder: "/n", Paused: true,
		Hold: &ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many deletes", Deletes: 60, Files: 100, Side: ipc.SideLocal, NeedsForce: true}}
	f := &fakeDaemon{
		status: ipc.Status{State: ipc.StateIdle, LoggedIn: true, Account: "a@example.com", Folder: "/n"},
		events: []ipc.Event{
			{Kind: ipc.EventState, Status: &syncing, Time: t0.Add(time.Second)},
			{Kind: ipc.EventProgress, Progress: &ipc.Progress{Pass: "watch", BytesDone: 1500, BytesTotal: 3_000_000, FilesDone: 1, FilesTotal: 40, Rate: 250_000, ETA: 12 * time.Second}, Time: t0.Add(2 * time.Second)},
			{Kind: ipc.EventNotification, Notification: &ipc.Notification{Level: ipc.LevelWarning, Title: "Sync paused", Message: "60 files would be deleted"}, Time: t0.Add(3 * time.Second)},
			{Kind: ipc.EventState, Status: &held, Time: t0.Add(3 * time.Second)},
		},
	}
	sock := startDaemon(t, f)
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprint("json=", asJSON), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			f.mu.Lock()
			f.watches = 0
			f.onRewatch = cancel // the first stream was read to its end
			f.mu.Unlock()
			args := []string{"status", "--watch"}
			name := "status_watch.golden"
			if asJSON {
				args = append(args, "--json")
				name = "status_watch_json.golden"
			}
			out, errOut, code := runCLI(ctx, t, sock, &Options{}, args...)
			if code != 0 {
				t.Fatalf("exit code %d: %s", code, errOut)
			}
			checkGolden(t, name, []byte(out))
		})
	}
}

// signalWriter signals when what was written contains want.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	once sync.Once
	hit  chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.hit) })
	}
	return n, err
}

func TestSyncShowsProgressAndHold(t *testing.T) {
	f := &fakeDaemon{
		hub:      ipc.NewHub(16),
		syncGate: make(chan struct{}),
		progress: []ipc.Progress{
			{Pass: "manual", BytesDone: 0, BytesTotal: 2_000_000, FilesTotal: 3},
			{Pass: "manual", BytesDone: 2_000_000, BytesTotal: 2_000_000, FilesDone: 3, FilesTotal: 3, Rate: 1_000_000, ETA: 0},
		},
		sum:    ipc.PassSummary{Start: t0, DurationMS: 2000, Trigger: "manual", Error: "too many deletes (60 of 100)"},
		status: ipc.Status{State: ipc.StatePaused, Paused: true, Hold: &ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many deletes", NeedsForce: true}},
	}
	sock := startDaemon(t, f)
	w := &signalWriter{want: "3/3 files", hit: f.syncGate}
	root := &cobra.Command{Use: "bm-agent", SilenceUsage: true, SilenceErrors: true}
	AddCommands(root, &Options{})
	Finish(root)
	root.SetOut(w)
	root.SetArgs([]string{"sync", "--socket", sock})
	err := root.ExecuteContext(context.Background())
	if got := ExitCode(err); got != ExitSyncHeld {
		t.Errorf("exit code %d (%v), want %d", got, err, ExitSyncHeld)
	}
	if err == nil || !strings.Contains(err.Error(), "sync --force") {
		t.Errorf("error %v does not say how to continue", err)
	}
	want := "Syncing (manual): 0/3 files, 0 B of 2.0 MB\nSyncing (manual): 3/3 files, 2.0 MB of 2.0 MB, 1.0 MB/s\n"
	if got := w.buf.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestPauseResume(t *testing.T) {
	f := &fakeDaemon{}
	sock := startDaemon(t, f)
	if out, _, code := runCLI(context.Background(), t, sock, nil, "pause", "--for", "30m"); code != 0 || !strings.Contains(out, "Paused for 30m0s (until 12:30)") {
		t.Errorf("pause --for: %d %q", code, out)
	}
	if out, _, code := runCLI(context.Background(), t, sock, nil, "resume", "--json"); code != 0 || out != "{\n  \"paused\": false\n}\n" {
		t.Errorf("resume --json: %d %q", code, out)
	}
	if got := strings.Join(f.calls, ","); got != "pause 30m0s,resume" {
		t.Errorf("calls %q", got)
	}
}

func TestMount(t *testing.T) {
	f := &fakeDaemon{mount: ipc.MountStatus{Mounted: true, MountPoint: "/m", Profile: "fast", Bucket: "b"}}
	sock := startDaemon(t, f)
	out, errOut, code := runCLI(context.Background(), t, sock, nil, "mount", "--profile", "fast", "--path", "/m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "Mounted:  /m") || f.calls[0] != "mount fast /m" {
		t.Errorf("out %q calls %q", out, f.calls)
	}
}

// fakeInstaller records installs; install may start the daemon.
type fakeInstaller struct {
	installed bool
	starts    []bool
	onInstall func()
	err       error // what Install fails with
}

func (f *fakeInstaller) Installed(context.Context) string {
	if f.installed {
		return packaging.ManagerSystemd
	}
	return ""
}

func (f *fakeInstaller) Install(_ context.Context, _, _ string, start bool) (packaging.Result, error) {
	f.starts = append(f.starts, start)
	if f.err != nil {
		return packaging.Result{}, f.err
	}
	f.installed = true
	if f.onInstall != nil {
		f.onInstall()
	}
	return packaging.Result{Manager: packaging.ManagerSystemd, Files: []string{"/u/bm-agent.service"}, Started: start}, nil
}

func (f *fakeInstaller) Uninstall(context.Context) (packaging.Result, error) {
	f.installed = false
	return packaging.Result{Manager: packaging.ManagerSystemd, Files: []string{"/u/bm-agent.service"}}, nil
}

func syncedStatus() ipc.Status {
	return ipc.Status{State: ipc.StateIdle, LoggedIn: true, Account: "me@example.com", Bucket: "bm-t-1", Folder: "/n", Version: "v1",
		LastSync: &ipc.PassSummary{Start: t0, DurationMS: 900, Trigger: "startup", Uploaded: 4, Downloaded: 1}}
}

func TestSetup(t *testing.T) {
	t.Run("already set up", func(t *testing.T) {
		f := &fakeDaemon{status: syncedStatus()}
		inst := &fakeInstaller{installed: true}
		sock := startDaemon(t, f)
		out, errOut, code := runCLI(context.Background(), t, sock, &Options{Installer: inst}, "setup")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		checkGolden(t, "setup_idempotent.golden", []byte(out))
		if len(inst.starts) != 0 || len(f.calls) != 0 {
			t.Errorf("setup of a set-up machine installed %v, called %v", inst.starts, f.calls)
		}
	})
	t.Run("no daemon, logged out", func(t *testing.T) {
		sock := socketPath(t)
		after := syncedStatus()
		f := &fakeDaemon{status: ipc.Status{State: ipc.StateLoggedOut, Folder: "/n", Version: "v1"}, afterLogin: &after}
		inst := &fakeInstaller{onInstall: func() { serve(t, sock, f) }}
		opts := &Options{Installer: inst, JSON: false}
		out, errOut, code := runCLI(context.Background(), t, sock, opts, "setup", "--device", "--no-browser")
		if code != 0 {
			t.Fatalf("exit %d: %s\n%s", code, errOut, out)
		}
		if len(inst.starts) != 1 || !inst.starts[0] {
			t.Errorf("installs %v, want one that starts the service", inst.starts)
		}
		for _, want := range []string{"[done] service", "ABCD-EFGH", "[done] login: logged in as me@example.com", "[ok  ] first sync", "All set"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("the first sync ran during the login: setup did it, and says so", func(t *testing.T) {
		sock := socketPath(t)
		after := syncedStatus()
		now := time.Now()
		after.LastSync = &ipc.PassSummary{Start: now.Add(time.Second), Trigger: "startup", Uploaded: 2}
		f := &fakeDaemon{status: ipc.Status{State: ipc.StateLoggedOut, Folder: "/n", Version: "v1"}, afterLogin: &after,
			history: []ipc.PassSummary{{Start: now.Add(time.Second), Uploaded: 2}, {Start: now.Add(500 * time.Millisecond), Downloaded: 3},
				{Start: t0, Uploaded: 40}}} // the last one before this setup
		inst := &fakeInstaller{onInstall: func() { serve(t, sock, f) }}
		out, errOut, code := runCLI(context.Background(), t, sock, &Options{Installer: inst}, "setup", "--device", "--no-browser")
		if code != 0 {
			t.Fatalf("exit %d: %s\n%s", code, errOut, out)
		}
		if want := "[done] first sync: bucket bm-t-1 in step with /n (2 up, 3 down)\n"; !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	})
	t.Run("a daemon answers and the service cannot be installed: login and sync go on, and it says so", func(t *testing.T) {
		f := &fakeDaemon{status: syncedStatus()}
		sock := startDaemon(t, f)
		inst := &fakeInstaller{err: errors.New("install: systemctl --user enable bm-agent.service: exit status 1: Job failed")}
		out, errOut, code := runCLI(context.Background(), t, sock, &Options{Installer: inst}, "setup")
		wantOut := "[ok  ] daemon: running, version v1\n" +
			"[failed] service: install: systemctl --user enable bm-agent.service: exit status 1: Job failed\n" +
			"[ok  ] login: logged in as me@example.com\n" +
			"[ok  ] first sync: bucket bm-t-1 in step with /n\n"
		wantErr := "bm-agent: setup: syncing works while this daemon runs, but nothing starts bm-agent at login: install the service: install: systemctl --user enable bm-agent.service: exit status 1: Job failed\n"
		if out != wantOut || errOut != wantErr || code != ExitError {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant:\n%s%s", code, out, errOut, wantOut, wantErr)
		}
	})
	t.Run("subscription required", func(t *testing.T) {
		f := &fakeDaemon{status: ipc.Status{State: ipc.StateSubscriptionRequired, LoggedIn: true, SubscribeURL: "https://x/subscribe"}}
		sock := startDaemon(t, f)
		_, _, code := runCLI(context.Background(), t, sock, &Options{Installer: &fakeInstaller{installed: true}}, "setup")
		if code != ExitSubscriptionRequired {
			t.Errorf("exit %d, want %d", code, ExitSubscriptionRequired)
		}
	})
	t.Run("waits for the first sync", func(t *testing.T) {
		f := &fakeDaemon{status: ipc.Status{State: ipc.StateSyncing, LoggedIn: true, Account: "me@example.com", Version: "v1"}, hub: ipc.NewHub(16)}
		sock := startDaemon(t, f)
		go func() {
			for f.hub.Watchers() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			st := syncedStatus()
			f.mu.Lock()
			f.status = st
			f.mu.Unlock()
			f.hub.Publish(ipc.Event{Kind: ipc.EventState, Status: &st, Time: t0})
		}()
		opts := &Options{Installer: &fakeInstaller{installed: true}, JSON: true}
		out, errOut, code := runCLI(context.Background(), t, sock, opts, "setup", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		checkGolden(t, "setup_first_sync_json.golden", []byte(out))
	})
}

func TestDoctorWithoutDaemon(t *testing.T) {
	folder := t.TempDir()
	for i := range 12 {
		if err := os.MkdirAll(filepath.Join(folder, fmt.Sprint("d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := doctorEnv{
		goos:      "linux",
		keychain:  func(string) string { return "file" },
		readFile:  func(string) ([]byte, error) { return []byte("10\n"), nil },
		freeBytes: func(string) (uint64, error) { return 50 << 20, nil },
	}
	opts := &Options{Local: func() (LocalConfig, error) { return LocalConfig{Home: t.TempDir(), Folder: folder}, nil }}
	out, err := runDoctor(context.Background(), ipc.NewClient(socketPath(t)), opts, env)
	if got := ExitCode(err); got != ExitNoDaemon {
		t.Errorf("exit code %d (%v), want %d", got, err, ExitNoDaemon)
	}
	want := map[string]struct{ ok, warn bool }{
		CheckDaemon: {false, false}, CheckKeychain: {true, true}, CheckFolder: {true, false},
		CheckInotify: {false, false}, CheckDisk: {false, false},
	}
	if len(out.Checks) != len(want) || out.OK {
		t.Errorf("checks %+v", out)
	}
	for _, ch := range out.Checks {
		w, ok := want[ch.Name]
		if !ok || ch.OK != w.ok || ch.Warn != w.warn {
			t.Errorf("check %+v, want ok=%v warn=%v", ch, w.ok, w.warn)
		}
		if !ch.OK && ch.Fix == "" {
			t.Errorf("failing check %q says no fix", ch.Name)
		}
	}
	var buf bytes.Buffer
	writeDoctor(&buf, out)
	if !strings.Contains(buf.String(), "4 of 5 checks failed") && !strings.Contains(buf.String(), "3 of 5 checks failed") {
		t.Errorf("summary:\n%s", buf.String())
	}

	// a missing folder fails with a fix; inotify then has 0 dirs
	opts.Local = func() (LocalConfig, error) {
		return LocalConfig{Home: t.TempDir(), Folder: filepath.Join(folder, "missing")}, nil
	}
	env.freeBytes = func(string) (uint64, error) { return 10 << 30, nil }
	out, _ = runDoctor(context.Background(), ipc.NewClient(socketPath(t)), opts, env)
	for _, ch := range out.Checks {
		if ch.Name == CheckFolder && (ch.OK || !strings.Contains(ch.Fix, "mkdir -p")) {
			t.Errorf("missing folder check %+v", ch)
		}
		if ch.Name == CheckDisk && !ch.OK {
			t.Errorf("disk check with 10 GiB free %+v", ch)
		}
	}
}

func TestExitCodesGolden(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"plain", errors.New("boom")},
		{"usage", usageErrorf("--limit 0: must be at least 1")},
		{"cobra unknown command", errors.New(`unknown command "x" for "bm-agent"`)},
		{"no daemon", fmt.Errorf("%w (socket /run/x)", ipc.ErrNoDaemon)},
		{"login required (api)", &ipc.APIError{StatusCode: 409, Code: "login_required", Message: "not logged in"}},
		{"subscription required", fmt.Errorf("login: %w", ErrSubscriptionRequired)},
		{"sync held", fmt.Errorf("sync failed: x: %w", ErrSyncHeld)},
		{"paused (api)", &ipc.APIError{StatusCode: 409, Code: "paused", Message: "paused"}},
		{"doctor failed", &reportedError{err: fmt.Errorf("doctor: %w", ErrChecksFailed)}},
		{"offline", fmt.Errorf("sync failed: %w: no route", ErrOffline)},
		{"held (api)", &ipc.APIError{StatusCode: 409, Code: "held", Message: "held"}},
		{"subscription (api)", &ipc.APIError{StatusCode: 409, Code: "subscription_required", Message: "no plan"}},
		{"offline (api)", &ipc.APIError{StatusCode: 503, Code: "offline", Message: "offline"}},
		{"busy (api)", &ipc.APIError{StatusCode: 409, Code: "busy", Message: "starting"}},
		{"not configured (api)", &ipc.APIError{StatusCode: 409, Code: "not_configured", Message: "no server"}},
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%-28s %s\n", "ERROR", "EXIT")
	for _, tt := range tests {
		fmt.Fprintf(&buf, "%-28s %d\n", tt.name, ExitCode(tt.err))
	}
	buf.WriteString("\n" + exitCodeHelp())
	checkGolden(t, "exit_codes.golden", buf.Bytes())

	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for code := ExitOK; code <= ExitOffline; code++ {
		if !strings.Contains(string(doc), fmt.Sprintf("//\t%d     ", code)) {
			t.Errorf("doc.go's exit code table lacks %d", code)
		}
	}
}

func TestEveryCommandHasExamplesAndJSON(t *testing.T) {
	root := &cobra.Command{Use: "bm-agent"}
	AddCommands(root, &Options{})
	Finish(root)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || strings.HasPrefix(sub.CommandPath(), "bm-agent completion") {
				continue
			}
			if sub.Example == "" {
				t.Errorf("%s has no --help examples", sub.CommandPath())
			}
			if sub.Flag("json") == nil {
				t.Errorf("%s has no --json", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)
	if c, _, err := root.Find([]string{"completion"}); err != nil || c.Name() != "completion" {
		t.Errorf("no completion command: %v", err)
	}
	if !strings.Contains(root.Long, "Exit codes:") {
		t.Error("the root's help lacks the exit codes")
	}
}
