package tray

import (
	"errors"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

func TestBuildModel(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	last := &ipc.PassSummary{Start: now.Add(-90 * time.Second)}
	tests := []struct {
		name string
		st   ipc.Status
		err  error
		want Model
	}{
		{name: "no daemon", err: errors.New("dial"), want: Model{Tooltip: "Basic Memory: agent not running", StatusLine: "Agent not running"}},
		{name: "idle", st: ipc.Status{State: "idle", LoggedIn: true, Account: "a@example.com", LastSync: last},
			want: Model{Tooltip: "Basic Memory: Up to date", StatusLine: "Up to date", AccountLine: "Account: a@example.com", LastSync: "Last sync 1m30s ago", CanSync: true, LoggedIn: true}},
		{name: "paused", st: ipc.Status{State: "paused", LoggedIn: true, Account: "a", Paused: true},
			want: Model{Tooltip: "Basic Memory: Paused", StatusLine: "Paused", AccountLine: "Account: a", LastSync: "Never synced", Paused: true, LoggedIn: true}},
		{name: "logged out with login pending", st: ipc.Status{State: "logged_out", LoginURL: "http://x"},
			want: Model{Tooltip: "Basic Memory: Logged out", StatusLine: "Logged out", AccountLine: "Not logged in", LastSync: "Never synced", LoginURL: "http://x"}},
		{name: "error", st: ipc.Status{State: "error", Error: "disk full", LoggedIn: true, Account: "a"},
			want: Model{Tooltip: "Basic Memory: Error: disk full", StatusLine: "Error: disk full", AccountLine: "Account: a", LastSync: "Never synced", CanSync: true, LoggedIn: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BuildModel(tt.st, tt.err, now); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
