//go:build !windows

package ipc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fullBackend adds history, conflicts and timed pauses to fakeBackend.
type fullBackend struct {
	*fakeBackend
	limit    int
	pauseFor time.Duration
}

func (f *fullBackend) History(ctx context.Context, limit int) (History, error) {
	f.mu.Lock()
	f.limit = limit
	f.mu.Unlock()
	if err := f.record("history"); err != nil {
		return History{}, err
	}
	return History{Passes: []PassSummary{{Trigger: "watch", Uploaded: 1}, {Trigger: "startup", Resync: true}}}, nil
}

func (f *fullBackend) Conflicts(ctx context.Context) (Conflicts, error) {
	if err := f.record("conflicts"); err != nil {
		return Conflicts{}, err
	}
	return Conflicts{Folder: "/n", Conflicts: []Conflict{{Path: "a.conflict-20260101-000000-cloud.md", Original: "a.md", Device: "cloud"}}}, nil
}

func (f *fullBackend) PauseFor(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.pauseFor = d
	f.mu.Unlock()
	return f.record("pause-for")
}

func TestHistoryConflictsAndPauseForRoutes(t *testing.T) {
	fb := &fullBackend{fakeBackend: &fakeBackend{status: Status{State: StatePaused, Paused: true}}}
	path := startServer(t, fb)
	c := NewClient(path)
	ctx := context.Background()

	tests := []struct {
		name      string
		call      func() error
		wantCall  string
		wantLimit int
		wantPause time.Duration
	}{
		{"history default limit", func() error {
			h, err := c.History(ctx, 0)
			if err == nil && (len(h.Passes) != 2 || h.Passes[0].Trigger != "watch") {
				t.Errorf("history = %+v", h)
			}
			return err
		}, "history", DefaultHistoryLimit, 0},
		{"history limit", func() error { _, err := c.History(ctx, 7); return err }, "history", 7, 0},
		{"history huge limit is bounded", func() error { _, err := c.History(ctx, 1<<30); return err }, "history", maxHistoryLimit, 0},
		{"conflicts", func() error {
			cs, err := c.Conflicts(ctx)
			if err == nil && (cs.Folder != "/n" || len(cs.Conflicts) != 1 || cs.Conflicts[0].Original != "a.md") {
				t.Errorf("conflicts = %+v", cs)
			}
			return err
		}, "conflicts", 0, 0},
		{"pause for", func() error { return c.PauseFor(ctx, 90*time.Minute) }, "pause-for", 0, 90 * time.Minute},
		{"pause without duration", func() error { return c.PauseFor(ctx, 0) }, "pause", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb.mu.Lock()
			fb.calls, fb.limit, fb.pauseFor = nil, 0, 0
			fb.mu.Unlock()
			if err := tt.call(); err != nil {
				t.Fatal(err)
			}
			fb.mu.Lock()
			defer fb.mu.Unlock()
			if got := fb.calls; len(got) != 1 || got[0] != tt.wantCall {
				t.Errorf("backend calls = %v, want [%s]", got, tt.wantCall)
			}
			if fb.limit != tt.wantLimit || fb.pauseFor != tt.wantPause {
				t.Errorf("limit %d pause %s, want %d %s", fb.limit, fb.pauseFor, tt.wantLimit, tt.wantPause)
			}
		})
	}

	hc := rawClient(path)
	for _, tt := range []struct {
		method, url, body string
		want              int
	}{
		{http.MethodGet, "/v0/history?limit=abc", "", http.StatusBadRequest},
		{http.MethodGet, "/v0/history?limit=0", "", http.StatusBadRequest},
		{http.MethodPost, "/v0/history", "", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v0/pause", `{"for_ms":-5}`, http.StatusBadRequest},
		{http.MethodPost, "/v0/pause", `{"for_ms":`, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(tt.method, "http://local"+tt.url, strings.NewReader(tt.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s %s: %d, want %d", tt.method, tt.url, tt.body, resp.StatusCode, tt.want)
		}
	}
}

func TestNewRoutesNeedTheirInterfaces(t *testing.T) {
	c := NewClient(startServer(t, &fakeBackend{}))
	ctx := context.Background()
	if _, err := c.History(ctx, 5); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("history: %v, want ErrNotImplemented", err)
	}
	if _, err := c.Conflicts(ctx); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("conflicts: %v, want ErrNotImplemented", err)
	}
	if err := c.PauseFor(ctx, time.Hour); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("pause for: %v, want ErrNotImplemented", err)
	}
}
