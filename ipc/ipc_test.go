//go:build !windows

package ipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend records calls and answers with canned values.
type fakeBackend struct {
	mu      sync.Mutex
	calls   []string
	syncReq SyncRequest
	status  Status
	err     error         // returned by every method that can fail
	block   chan struct{} // if set, Sync with Wait blocks until closed or ctx ends
	watch   chan Event    // if set, WatchEvents returns it
}

func (f *fakeBackend) record(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	return f.err
}

func (f *fakeBackend) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeBackend) Status(ctx context.Context) Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeBackend) Sync(ctx context.Context, req SyncRequest) (PassSummary, error) {
	f.mu.Lock()
	f.syncReq = req
	f.mu.Unlock()
	if err := f.record("sync"); err != nil {
		return PassSummary{}, err
	}
	if !req.Wait {
		return PassSummary{}, nil
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return PassSummary{}, fmt.Errorf("sync: %w", ctx.Err())
		}
	}
	return PassSummary{Trigger: "manual", Uploaded: 3, Resync: req.Resync}, nil
}

func (f *fakeBackend) Login(ctx context.Context, _ LoginOptions) (LoginStart, error) {
	if err := f.record("login"); err != nil {
		return LoginStart{}, err
	}
	return LoginStart{URL: "https://example.test/device?code=ABCD"}, nil
}

func (f *fakeBackend) Logout(ctx context.Context) error { return f.record("logout") }
func (f *fakeBackend) Pause(ctx context.Context) error  { return f.record("pause") }
func (f *fakeBackend) Resume(ctx context.Context) error { return f.record("resume") }

// watchingBackend adds WatchEvents to fakeBackend.
type watchingBackend struct{ *fakeBackend }

func (w watchingBackend) WatchEvents(ctx context.Context) <-chan Event { return w.watch }

// shortDir returns a short temp dir (t.TempDir paths can exceed the unix
// socket path limit).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ipc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startServer serves b on a fresh socket and returns its path; the server
// stops at the end of the test.
func startServer(t *testing.T, b Backend) string {
	t.Helper()
	path := filepath.Join(shortDir(t), "s", SocketName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(b, nil).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func TestRoutes(t *testing.T) {
	fb := &fakeBackend{status: Status{State: StateIdle, LoggedIn: true, Account: "a@example.test", Version: "v1.2.3"}}
	c := NewClient(startServer(t, fb))
	ctx := context.Background()

	tests := []struct {
		name     string
		call     func() error
		wantCall string
	}{
		{"status", func() error {
			st, err := c.Status(ctx)
			if err == nil && (st.State != StateIdle || st.Account != "a@example.test" || !st.LoggedIn) {
				return fmt.Errorf("status = %+v", st)
			}
			return err
		}, ""},
		{"sync wait", func() error {
			sum, err := c.Sync(ctx, SyncRequest{Wait: true, Resync: true})
			if err == nil && (sum.Uploaded != 3 || !sum.Resync || sum.Trigger != "manual") {
				return fmt.Errorf("summary = %+v", sum)
			}
			return err
		}, "sync"},
		{"sync queued", func() error {
			sum, err := c.Sync(ctx, SyncRequest{DryRun: true})
			if err == nil && !reflect.DeepEqual(sum, PassSummary{}) {
				return fmt.Errorf("summary = %+v, want zero", sum)
			}
			return err
		}, "sync"},
		{"login", func() error {
			ls, err := c.Login(ctx)
			if err == nil && ls.URL != "https://example.test/device?code=ABCD" {
				return fmt.Errorf("login = %+v", ls)
			}
			return err
		}, "login"},
		{"logout", func() error { return c.Logout(ctx) }, "logout"},
		{"pause", func() error { return c.Pause(ctx) }, "pause"},
		{"resume", func() error { return c.Resume(ctx) }, "resume"},
		{"version", func() error {
			v, err := c.Version(ctx)
			if err == nil && (v.Version != "v1.2.3" || v.GoVersion == "" || v.OS == "") {
				return fmt.Errorf("version = %+v", v)
			}
			return err
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb.mu.Lock()
			fb.calls = nil
			fb.mu.Unlock()
			if err := tt.call(); err != nil {
				t.Fatal(err)
			}
			if got := fb.lastCall(); got != tt.wantCall {
				t.Errorf("backend call = %q, want %q", got, tt.wantCall)
			}
		})
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if want := (SyncRequest{DryRun: true}); fb.syncReq != want {
		t.Errorf("last sync request = %+v, want %+v", fb.syncReq, want)
	}
}

// rawClient returns an http.Client that dials the socket, for requests the
// typed client cannot make.
func rawClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return Dial(ctx, path) },
	}}
}

func TestHTTPStatusCodes(t *testing.T) {
	path := startServer(t, &fakeBackend{})
	hc := rawClient(path)
	tests := []struct {
		name, method, path string
		header             map[string]string
		body               string
		want               int
	}{
		{"origin refused", "GET", PathStatus, map[string]string{"Origin": "https://evil.example"}, "", http.StatusForbidden},
		{"referer refused", "POST", PathPause, map[string]string{"Referer": "https://evil.example/page"}, "", http.StatusForbidden},
		{"unknown route", "GET", "/v0/nope", nil, "", http.StatusNotFound},
		{"wrong method", "GET", PathSync, nil, "", http.StatusMethodNotAllowed},
		{"bad body", "POST", PathSync, nil, "{not json", http.StatusBadRequest},
		{"empty sync body queues", "POST", PathSync, nil, "", http.StatusAccepted},
		{"sync wait", "POST", PathSync, nil, `{"wait":true}`, http.StatusOK},
		{"status", "GET", PathStatus, nil, "", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://local-bm-agent"+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tt.want, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if resp.StatusCode >= 400 && !strings.Contains(string(b), `"error":`) {
				t.Errorf("error body %s has no error field", b)
			}
		})
	}
}

func TestBackendErrors(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantIs     error
	}{
		{"login required", fmt.Errorf("sync: %w", ErrLoginRequired), http.StatusConflict, ErrLoginRequired},
		{"paused", ErrPaused, http.StatusConflict, ErrPaused},
		{"busy", ErrBusy, http.StatusConflict, ErrBusy},
		{"other", errors.New("sync: disk on fire"), http.StatusInternalServerError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(startServer(t, &fakeBackend{err: tt.err}))
			_, err := c.Sync(context.Background(), SyncRequest{Wait: true})
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if apiErr.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", apiErr.StatusCode, tt.wantStatus)
			}
			if apiErr.Message != tt.err.Error() {
				t.Errorf("message = %q, want %q", apiErr.Message, tt.err.Error())
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if tt.wantIs == nil && errors.Unwrap(err) != nil {
				t.Errorf("unexpected unwrap %v", errors.Unwrap(err))
			}
		})
	}
}

func TestWatch(t *testing.T) {
	ch := make(chan Event, 2)
	ch <- Event{Kind: EventSnapshot, Status: &Status{State: StateIdle}}
	ch <- Event{Kind: EventState, Status: &Status{State: StateSyncing}}
	c := NewClient(startServer(t, watchingBackend{&fakeBackend{watch: ch}}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []string
	err := c.Watch(ctx, func(ev Event) error {
		got = append(got, ev.Kind+":"+string(ev.Status.State))
		if len(got) == 2 {
			close(ch) // the backend ends the stream
		}
		return nil
	})
	if err == nil || ctx.Err() != nil {
		t.Errorf("Watch = %v, want a stream-closed error", err)
	}
	if strings.Join(got, ",") != "snapshot:idle,state:syncing" {
		t.Errorf("states = %v", got)
	}

	// A backend without WatchStatus answers 501.
	c = NewClient(startServer(t, &fakeBackend{}))
	err = c.Watch(ctx, func(Event) error { return nil })
	if !errors.Is(err, ErrNotImplemented) {
		t.Errorf("Watch without EventWatcher = %v, want ErrNotImplemented", err)
	}
}

func TestListenSocketMode(t *testing.T) {
	dir := filepath.Join(shortDir(t), "new")
	path := filepath.Join(dir, SocketName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("socket mode = %o, want 600", m)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := di.Mode().Perm(); m != 0o700 {
		t.Errorf("dir mode = %o, want 700", m)
	}
}

// staleSocket leaves a socket file at path that nothing listens on.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), SocketName)
	staleSocket(t, path)
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over stale socket: %v", err)
	}
	defer ln.Close()
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatalf("Dial new socket: %v", err)
	}
	c.Close()
}

func TestListenRefusesLiveSocket(t *testing.T) {
	path := startServer(t, &fakeBackend{})
	ln, err := Listen(path)
	if err == nil {
		ln.Close()
		t.Fatal("second Listen succeeded")
	}
	if !errors.Is(err, ErrDaemonRunning) {
		t.Errorf("err = %v, want ErrDaemonRunning", err)
	}
	// The first server still answers.
	if _, err := NewClient(path).Status(context.Background()); err != nil {
		t.Errorf("first server broken: %v", err)
	}
}

func TestListenRefuses(t *testing.T) {
	dir := shortDir(t)
	notSock := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(notSock, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"not a socket", notSock, "not a socket"},
		{"too long", filepath.Join(dir, strings.Repeat("d", 120), SocketName), "BM_AGENT_HOME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := Listen(tt.path)
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if b, err := os.ReadFile(notSock); err != nil || string(b) != "x" {
		t.Errorf("regular file was touched: %q, %v", b, err)
	}
}

func TestNoDaemon(t *testing.T) {
	dir := shortDir(t)
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	tests := []struct{ name, path string }{
		{"no socket file", filepath.Join(dir, "missing.sock")},
		{"stale socket", stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(tt.path)
			c.StartupWait = 150 * time.Millisecond
			start := time.Now()
			_, err := c.Status(context.Background())
			if !errors.Is(err, ErrNoDaemon) {
				t.Fatalf("err = %v, want ErrNoDaemon", err)
			}
			if d := time.Since(start); d < 100*time.Millisecond {
				t.Errorf("gave up after %v, want a retry window", d)
			}
			if !strings.Contains(err.Error(), "bm-agent run") {
				t.Errorf("error %q does not say how to start the daemon", err)
			}
		})
	}
}

func TestClientWaitsForStartingDaemon(t *testing.T) {
	path := filepath.Join(shortDir(t), SocketName)
	fb := &fakeBackend{status: Status{State: StateStarting}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		ln, err := Listen(path)
		if err != nil {
			done <- err
			return
		}
		done <- NewServer(fb, nil).Serve(ctx, ln)
	}()
	c := NewClient(path)
	c.StartupWait = DefaultStartupWait
	st, err := c.Status(context.Background())
	if err != nil || st.State != StateStarting {
		t.Errorf("Status = %+v, %v", st, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServeShutdown(t *testing.T) {
	path := filepath.Join(shortDir(t), SocketName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{block: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(fb, nil).Serve(ctx, ln) }()

	c := NewClient(path)
	syncErr := make(chan error, 1)
	go func() {
		_, err := c.Sync(context.Background(), SyncRequest{Wait: true})
		syncErr <- err
	}()
	// Wait until the pass is in flight, then shut down.
	for fb.lastCall() != "sync" {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil on cancel", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if err := <-syncErr; err == nil {
		t.Error("waiting Sync succeeded across a shutdown")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after shutdown: %v", err)
	}
}

func TestDefaultSocketPath(t *testing.T) {
	cfg, err := os.UserConfigDir()
	if err != nil {
		cfg = os.TempDir()
	}
	tests := []struct {
		name, home, runtime, want string
	}{
		{"home wins", "/h/bm", "/run/user/1", "/h/bm/bm-agent.sock"},
		{"xdg runtime", "", "/run/user/1", "/run/user/1/bm-agent/bm-agent.sock"},
		{"config dir", "", "", filepath.Join(cfg, "bm-agent", "bm-agent.sock")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BM_AGENT_HOME", tt.home)
			t.Setenv("XDG_RUNTIME_DIR", tt.runtime)
			if got := DefaultSocketPath(); got != tt.want {
				t.Errorf("DefaultSocketPath() = %q, want %q", got, tt.want)
			}
		})
	}
}

// A socket dir others may write to is refused, with advice that works
// when followed; one with the sticky bit (as /tmp) is not.
func TestListenRefusesWritableDir(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o700, true},
		{0o755, true},
		{0o777, false},
		{0o770, false},
		{0o777 | os.ModeSticky, true},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			dir := shortDir(t)
			if err := os.Chmod(dir, tt.mode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, SocketName)
			ln, err := Listen(path)
			if tt.ok {
				if err != nil {
					t.Fatalf("Listen in a %v dir: %v", tt.mode, err)
				}
				ln.Close()
				return
			}
			if err == nil {
				ln.Close()
				t.Fatalf("Listen in a %v dir succeeded", tt.mode)
			}
			if !strings.Contains(err.Error(), "chmod go-w "+dir) {
				t.Errorf("err = %v, want the chmod advice", err)
			}
			// The advice, followed, works.
			if out, err := exec.Command("chmod", "go-w", dir).CombinedOutput(); err != nil {
				t.Fatalf("chmod: %v %s", err, out)
			}
			ln, err = Listen(path)
			if err != nil {
				t.Fatalf("Listen after the advice: %v", err)
			}
			ln.Close()
		})
	}
}
