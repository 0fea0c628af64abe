//go:build !windows

package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// moreBackend adds logs, config, mount and doctor to fakeBackend.
type moreBackend struct {
	*fakeBackend
	logs    []LogLine
	follow  chan LogLine // new records for a following reader
	gotLogs LogsRequest
	config  map[string]any
	mounted MountStatus
}

func (m *moreBackend) Logs(ctx context.Context, req LogsRequest, fn func(LogLine) error) error {
	m.mu.Lock()
	m.gotLogs = req
	m.mu.Unlock()
	lines := m.logs
	if req.Lines < len(lines) {
		lines = lines[len(lines)-req.Lines:]
	}
	for _, l := range lines {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !req.Follow {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-m.follow:
			if err := fn(l); err != nil {
				return err
			}
		}
	}
}

func (m *moreBackend) ConfigGet(context.Context) (map[string]any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.config, nil
}

func (m *moreBackend) ConfigSet(_ context.Context, key, value string) (map[string]any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch key {
	case "interval":
		if _, err := time.ParseDuration(value); err != nil {
			return nil, fmt.Errorf("config set interval: %w: %v", ErrInvalid, err)
		}
		m.config[key] = value
		return m.config, nil
	case "folder":
		out := map[string]any{key: value, ConfigRestartRequired: true}
		return out, nil
	}
	return nil, fmt.Errorf("config set %q: %w: unknown key", key, ErrInvalid)
}

func (m *moreBackend) Mount(_ context.Context, req MountRequest) (MountStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.mounted.Mounted:
		return MountStatus{}, fmt.Errorf("mount: %w", ErrAlreadyMounted)
	case req.MountPoint == "/notes":
		return MountStatus{}, fmt.Errorf("mount: %w", ErrMountOverlap)
	case req.MountPoint == "/unsupported":
		return MountStatus{}, fmt.Errorf("mount: %w", ErrMountUnsupported)
	}
	m.mounted = MountStatus{Mounted: true, MountPoint: req.MountPoint, Profile: req.Profile}
	return m.mounted, nil
}

func (m *moreBackend) Unmount(context.Context) (MountStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.mounted.Mounted {
		return MountStatus{}, fmt.Errorf("unmount: %w", ErrNotMounted)
	}
	m.mounted = MountStatus{}
	return m.mounted, nil
}

func (m *moreBackend) MountStatus(context.Context) MountStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mounted
}

func (m *moreBackend) Doctor(context.Context) DoctorReport {
	return DoctorReport{Checks: []DoctorCheck{
		{Name: "keychain", OK: true, Warn: true, Detail: "file", Fix: "install a keyring"},
		{Name: "clock", OK: false, Detail: "10m skew", Fix: "sync the clock"},
	}}
}

func newMoreBackend() *moreBackend {
	return &moreBackend{
		fakeBackend: &fakeBackend{},
		logs: []LogLine{
			{Msg: "one", Level: "INFO"}, {Msg: "two", Level: "WARN", Attrs: map[string]any{"n": 2.0}}, {Msg: "three", Level: "DEBUG"},
		},
		follow: make(chan LogLine),
		config: map[string]any{"interval": "5m0s"},
	}
}

func TestLogsRoute(t *testing.T) {
	mb := newMoreBackend()
	c := NewClient(startServer(t, mb))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	tests := []struct {
		name  string
		lines int
		want  string
	}{
		{"default", 0, "one,two,three"},
		{"last two", 2, "two,three"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := c.Logs(ctx, LogsRequest{Lines: tt.lines}, func(l LogLine) error {
				got = append(got, l.Msg)
				return nil
			})
			if err != nil {
				t.Fatalf("Logs: %v", err)
			}
			if strings.Join(got, ",") != tt.want {
				t.Errorf("lines = %v, want %s", got, tt.want)
			}
		})
	}
	mb.mu.Lock()
	if mb.gotLogs.Lines != 2 || mb.gotLogs.Follow {
		t.Errorf("backend got %+v", mb.gotLogs)
	}
	mb.mu.Unlock()

	// Following: the backlog, then new records as they come.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- c.Logs(fctx, LogsRequest{Lines: 1, Follow: true}, func(l LogLine) error {
			got = append(got, l.Msg)
			if len(got) == 3 {
				fcancel()
			}
			return nil
		})
	}()
	for _, m := range []string{"four", "five"} {
		select {
		case mb.follow <- LogLine{Msg: m}:
		case <-ctx.Done():
			t.Fatal("the follower never asked for new records")
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Logs follow = %v, want nil after cancel", err)
	}
	if strings.Join(got, ",") != "three,four,five" {
		t.Errorf("followed = %v", got)
	}

	// Bad query parameters are refused.
	resp := rawGet(t, c, PathLogs+"?lines=x")
	if resp != http.StatusBadRequest {
		t.Errorf("lines=x: HTTP %d", resp)
	}
}

// rawGet GETs path through c's transport and returns the status code.
func rawGet(t *testing.T, c *Client, path string) int {
	t.Helper()
	resp, err := c.hc.Get("http://local-bm-agent" + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestConfigRoutes(t *testing.T) {
	mb := newMoreBackend()
	c := NewClient(startServer(t, mb))
	ctx := context.Background()

	m, err := c.ConfigGet(ctx)
	if err != nil || m["interval"] != "5m0s" {
		t.Fatalf("ConfigGet = %v, %v", m, err)
	}
	tests := []struct {
		name, key, value string
		wantErr          error
		wantRestart      bool
	}{
		{"set interval", "interval", "1h", nil, false},
		{"bad value", "interval", "soon", ErrInvalid, false},
		{"unknown key", "colour", "blue", ErrInvalid, false},
		{"empty key", "", "x", ErrInvalid, false},
		{"restart required", "folder", "/x", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := c.ConfigSet(ctx, tt.key, tt.value)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ConfigSet = %v, want %v", err, tt.wantErr)
			}
			var ae *APIError
			if tt.wantErr != nil && (!errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest) {
				t.Errorf("error %v: want HTTP 400", err)
			}
			if err == nil && (m[ConfigRestartRequired] == true) != tt.wantRestart {
				t.Errorf("restart_required in %v, want %v", m, tt.wantRestart)
			}
		})
	}
	if m, _ := c.ConfigGet(ctx); m["interval"] != "1h" {
		t.Errorf("after set: %v", m)
	}
}

func TestMountRoutes(t *testing.T) {
	mb := newMoreBackend()
	c := NewClient(startServer(t, mb))
	ctx := context.Background()

	steps := []struct {
		name       string
		call       func() (MountStatus, error)
		wantErr    error
		wantStatus int
		wantMount  bool
	}{
		{"status unmounted", func() (MountStatus, error) { return c.MountStatus(ctx) }, nil, 0, false},
		{"unmount when not mounted", func() (MountStatus, error) { return c.Unmount(ctx) }, ErrNotMounted, 404, false},
		{"overlap", func() (MountStatus, error) { return c.Mount(ctx, MountRequest{MountPoint: "/notes"}) }, ErrMountOverlap, 409, false},
		{"unsupported", func() (MountStatus, error) { return c.Mount(ctx, MountRequest{MountPoint: "/unsupported"}) }, ErrMountUnsupported, 501, false},
		{"mount", func() (MountStatus, error) { return c.Mount(ctx, MountRequest{MountPoint: "/m", Profile: "fast"}) }, nil, 0, true},
		{"status mounted", func() (MountStatus, error) { return c.MountStatus(ctx) }, nil, 0, true},
		{"mount twice", func() (MountStatus, error) { return c.Mount(ctx, MountRequest{MountPoint: "/m"}) }, ErrAlreadyMounted, 409, false},
		{"unmount", func() (MountStatus, error) { return c.Unmount(ctx) }, nil, 0, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			ms, err := st.call()
			if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, st.wantErr)
			}
			var ae *APIError
			if st.wantErr != nil && (!errors.As(err, &ae) || ae.StatusCode != st.wantStatus) {
				t.Errorf("err %v: want HTTP %d", err, st.wantStatus)
			}
			if err == nil && ms.Mounted != st.wantMount {
				t.Errorf("mounted = %v, want %v", ms.Mounted, st.wantMount)
			}
			if st.name == "mount" && (ms.MountPoint != "/m" || ms.Profile != "fast") {
				t.Errorf("mount status = %+v", ms)
			}
		})
	}
}

func TestDoctorRoute(t *testing.T) {
	c := NewClient(startServer(t, newMoreBackend()))
	r, err := c.Doctor(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Checks) != 2 || !r.Checks[0].Warn || r.Checks[1].OK || r.Checks[1].Fix == "" {
		t.Errorf("doctor = %+v", r)
	}
	// Backends without the optional interfaces answer 501.
	c = NewClient(startServer(t, &fakeBackend{}))
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"doctor":  func() error { _, err := c.Doctor(ctx); return err },
		"config":  func() error { _, err := c.ConfigGet(ctx); return err },
		"mount":   func() error { _, err := c.MountStatus(ctx); return err },
		"unmount": func() error { _, err := c.Unmount(ctx); return err },
		"logs":    func() error { return c.Logs(ctx, LogsRequest{}, func(LogLine) error { return nil }) },
	} {
		if err := call(); !errors.Is(err, ErrNotImplemented) {
			t.Errorf("%s without backend support = %v, want ErrNotImplemented", name, err)
		}
	}
}

func TestProgressJSON(t *testing.T) {
	p := Progress{Pass: "manual", BytesDone: 5, BytesTotal: 10, FilesDone: 1, FilesTotal: 2, Rate: 2.5, ETA: 1500 * time.Millisecond}
	b, err := json.Marshal(Event{Kind: EventProgress, Progress: &p})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"eta_ms":1500`) {
		t.Errorf("json = %s, want eta_ms", b)
	}
	var ev Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if *ev.Progress != p {
		t.Errorf("round trip = %+v, want %+v", *ev.Progress, p)
	}
}

// hubBackend serves the watch stream from a real Hub.
type hubBackend struct {
	*fakeBackend
	hub *Hub
}

func (h hubBackend) WatchEvents(ctx context.Context) <-chan Event {
	st := h.Status(ctx)
	return h.hub.Subscribe(ctx, Event{Kind: EventSnapshot, Status: &st, Time: time.Now()})
}

// TestWatchDropsSlowReader: a watcher that never reads is dropped (its
// stream closed) while another keeps receiving every event.
func TestWatchDropsSlowReader(t *testing.T) {
	hub := NewHub(4)
	hb := hubBackend{&fakeBackend{status: Status{State: StateIdle}}, hub}
	path := startServer(t, hb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The slow reader: subscribed directly, never reads.
	slow := hub.Subscribe(ctx, Event{Kind: EventSnapshot})

	// The good reader, over the socket.
	c := NewClient(path)
	var mu sync.Mutex
	var kinds []string
	var last int64
	const n = 50
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, func(ev Event) error {
			mu.Lock()
			defer mu.Unlock()
			kinds = append(kinds, ev.Kind)
			if ev.Kind == EventSnapshot {
				close(first)
			}
			if ev.Progress != nil {
				last = ev.Progress.BytesDone
				if last == n {
					return errStop
				}
			}
			return nil
		})
	}()
	select {
	case <-first:
	case <-ctx.Done():
		t.Fatal("no snapshot")
	}
	for i := int64(1); i <= n; i++ {
		hub.Publish(Event{Kind: EventProgress, Progress: &Progress{BytesDone: i}})
		time.Sleep(time.Millisecond) // let the good reader keep up
	}
	if err := <-done; !errors.Is(err, errStop) {
		t.Fatalf("Watch = %v", err)
	}
	mu.Lock()
	if kinds[0] != EventSnapshot || last != n || len(kinds) != n+1 {
		t.Errorf("good reader got %d events (first %q, last %d), want snapshot + %d", len(kinds), kinds[0], last, n)
	}
	mu.Unlock()

	// The slow reader got its buffer's worth, then its channel closed.
	got := 0
	for range slow {
		got++
	}
	if got > 4+1 || hub.Dropped() < 1 {
		t.Errorf("slow reader got %d events before the drop (dropped %d)", got, hub.Dropped())
	}
}

var errStop = errors.New("stop")

func TestHubUnsubscribesOnCancel(t *testing.T) {
	hub := NewHub(0)
	ctx, cancel := context.WithCancel(context.Background())
	ch := hub.Subscribe(ctx, Event{Kind: EventSnapshot})
	if ev := <-ch; ev.Kind != EventSnapshot {
		t.Fatalf("first = %q", ev.Kind)
	}
	hub.Publish(Event{Kind: EventState})
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for hub.Watchers() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if hub.Watchers() != 0 {
		t.Fatal("watcher still subscribed after cancel")
	}
	hub.Publish(Event{Kind: EventState}) // must not panic on a closed channel
	n := 0
	for range ch {
		n++
	}
	if n != 1 || hub.Dropped() != 0 {
		t.Errorf("after cancel: %d buffered events, %d dropped", n, hub.Dropped())
	}
}
