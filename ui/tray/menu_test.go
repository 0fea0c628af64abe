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
	until := now.Add(90 * time.Minute)
	tests := []struct {
		name      string
		st        ipc.Status
		err       error
		noBrowser bool
		want      Model
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
		{name: "paused until", st: ipc.Status{State: "paused", LoggedIn: true, Account: "a", Paused: true, PausedUntil: &until},
			want: Model{Tooltip: "Basic Memory: Paused until 13:30", StatusLine: "Paused until 13:30", AccountLine: "Account: a", LastSync: "Never synced", Paused: true, LoggedIn: true}},
		{name: "max-delete hold", st: ipc.Status{State: "paused", LoggedIn: true, Account: "a", Paused: true, LastSync: last,
			Hold: &ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many deletes", NeedsForce: true, Deletes: 60, Files: 100}},
			want: Model{Tooltip: "Basic Memory: Paused: too many deletes — run bm-agent sync --force", StatusLine: "Paused: too many deletes — run bm-agent sync --force",
				AccountLine: "Account: a", LastSync: "Last sync 1m30s ago", Paused: true, LoggedIn: true}},
		{name: "resync hold", st: ipc.Status{State: "error", LoggedIn: true, Account: "a", Hold: &ipc.Hold{Reason: ipc.HoldResyncRequired, Message: "listings lost"}},
			want: Model{Tooltip: "Basic Memory: Paused: listings lost — run bm-agent sync --resync", StatusLine: "Paused: listings lost — run bm-agent sync --resync",
				AccountLine: "Account: a", LastSync: "Never synced", CanSync: true, LoggedIn: true}},
		{name: "folder missing hold", st: ipc.Status{State: "error", LoggedIn: true, Account: "a", Hold: &ipc.Hold{Reason: ipc.HoldLocalMissing, Message: "the notes folder is gone"}},
			want: Model{Tooltip: "Basic Memory: Waiting: the notes folder is gone", StatusLine: "Waiting: the notes folder is gone",
				AccountLine: "Account: a", LastSync: "Never synced", CanSync: true, LoggedIn: true}},
		{name: "login required, no browser", st: ipc.Status{State: "login_required", Error: "refresh token: login required"}, noBrowser: true,
			want: Model{Tooltip: "Basic Memory: Login required", StatusLine: "Login required", AccountLine: "Not logged in", LastSync: "Never synced", LoginDevice: true}},
		{name: "login required, browser", st: ipc.Status{State: "login_required"},
			want: Model{Tooltip: "Basic Memory: Login required", StatusLine: "Login required", AccountLine: "Not logged in", LastSync: "Never synced"}},
		{name: "device login in progress", st: ipc.Status{State: "logged_out", LoginURL: "https://x/device", LoginUserCode: "ABCD-EFGH", LoginMethod: ipc.LoginDevice}, noBrowser: true,
			want: Model{Tooltip: "Basic Memory: Log in: enter ABCD-EFGH at https://x/device", StatusLine: "Log in: enter ABCD-EFGH at https://x/device",
				AccountLine: "Not logged in", LastSync: "Never synced", LoginURL: "https://x/device", LoginDevice: true}},
		{name: "subscription required", st: ipc.Status{State: "subscription_required", LoggedIn: true, Account: "a", SubscribeURL: "https://x/subscribe"},
			want: Model{Tooltip: "Basic Memory: Subscription required", StatusLine: "Subscription required", AccountLine: "Account: a", LastSync: "Never synced",
				LoggedIn: true, SubscribeURL: "https://x/subscribe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BuildModelNoBrowser(tt.st, tt.err, now, tt.noBrowser); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
