package tray

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/tray/icons"
)

var (
	now   = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ada   = ipc.Status{State: ipc.StateIdle, LoggedIn: true, Account: "ada@example.com", Folder: "/home/ada/notes"}
	last  = &ipc.PassSummary{Start: now.Add(-90 * time.Second), Uploaded: 2}
	until = now.Add(90 * time.Minute)
)

// with returns ada's status changed by fn.
func with(fn func(*ipc.Status)) ipc.Status {
	st := ada
	fn(&st)
	return st
}

// idleTail is the end of a logged-in menu with nothing in its lists.
var idleTail = []string{
	"--",
	"Open notes folder",
	"Recent changes — none yet [off]",
	"Conflicts — none [off]",
	"Recently deleted — versions are off [off]",
	"--",
	"Log out",
	"Open logs",
	"Quit",
}

// head builds the menu's top for a status line, sync line and the rest.
func head(status, lastSync, account string, rest ...string) []string {
	return append([]string{status + " [off]", lastSync + " [off]", account + " [off]", "--"}, rest...)
}

var pauseItems = []string{"Pause syncing", "  Pause for 30 minutes", "  Pause for 1 hour", "  Pause until tomorrow"}

func TestBuildModel(t *testing.T) {
	tests := []struct {
		name string
		v    View
		icon icons.State
		want []string // the menu's lines; nil: not checked
		// has are lines the menu must have (when want is nil)
		has []string
	}{
		{name: "not running", v: View{Err: fmt.Errorf("dial: %w", ipc.ErrNoDaemon)}, icon: icons.NotRunning,
			want: []string{"Agent not running [off]", "--", "Start bm-agent", "Sync now — agent not running [off]",
				"Pause syncing — agent not running [off]", "--", "Open notes folder — agent not running [off]", "--",
				"Open logs — agent not running [off]", "Quit"}},
		{name: "starting it", v: View{Err: ipc.ErrNoDaemon, Starting: true, Status: ada}, icon: icons.NotRunning,
			has: []string{"Agent not running [off]", "Starting bm-agent… [off]", "Open notes folder"}},
		{name: "start failed", v: View{Err: ipc.ErrNoDaemon, StartErr: "bm-agent not found"}, icon: icons.NotRunning,
			has: []string{"Agent not running: bm-agent not found [off]", "Start bm-agent"}},
		{name: "not answering", v: View{Err: errors.New("stream closed")}, icon: icons.NotRunning,
			has: []string{"Agent not answering [off]"}},
		{name: "daemon without a watch stream", v: View{Err: fmt.Errorf("watch: %w", ipc.ErrNotImplemented)}, icon: icons.NotRunning,
			has: []string{"Agent too old for this tray: update bm-agent [off]"}},
		{name: "idle", v: View{Status: with(func(s *ipc.Status) { s.LastSync = last })}, icon: icons.UpToDate,
			want: append(head("Up to date", "Last sync at 11:58", "Account: ada@example.com",
				append([]string{"Sync now"}, pauseItems...)...), idleTail...)},
		{name: "syncing with progress", v: View{Status: with(func(s *ipc.Status) { s.State = ipc.StateSyncing }),
			Progress: &ipc.Progress{FilesDone: 12, FilesTotal: 40}}, icon: icons.Syncing,
			has: []string{"Syncing 12 of 40 files [off]", "Sync now — syncing [off]"}},
		{name: "daemon starting, login not known yet", v: View{Status: ipc.Status{State: ipc.StateStarting}}, icon: icons.Syncing,
			has: []string{"Starting… [off]", "Sync now — starting [off]"}},
		{name: "syncing, no count yet", v: View{Status: with(func(s *ipc.Status) { s.State = ipc.StateSyncing })}, icon: icons.Syncing,
			has: []string{"Syncing… [off]"}},
		{name: "paused until", v: View{Status: with(func(s *ipc.Status) { s.State, s.Paused, s.PausedUntil = ipc.StatePaused, true, &until })},
			icon: icons.Paused,
			want: append(head("Paused until 13:30", "Never synced", "Account: ada@example.com", "Sync now — paused [off]", "Resume syncing"), idleTail...)},
		{name: "paused", v: View{Status: with(func(s *ipc.Status) { s.State, s.Paused = ipc.StatePaused, true })}, icon: icons.Paused,
			has: []string{"Paused [off]", "Resume syncing"}},
		{name: "max-delete hold", v: View{Status: with(func(s *ipc.Status) {
			s.State, s.Paused = ipc.StatePaused, true
			s.Hold = &ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many deletes", NeedsForce: true, Deletes: 60, Files: 100, Side: ipc.SideLocal}
		})}, icon: icons.Attention,
			has: []string{"Paused: too many deletes — run bm-agent sync --force [off]", "Sync now — held: see Sync anyway [off]",
				"Sync anyway: delete 60 files in the cloud too"}},
		{name: "max-delete hold in the bucket", v: View{Status: with(func(s *ipc.Status) {
			s.State, s.Paused = ipc.StatePaused, true
			s.Hold = &ipc.Hold{Reason: ipc.HoldMaxDelete, Message: "too many deletes", NeedsForce: true, Deletes: 1, Files: 2, Side: ipc.SideCloud}
		})}, icon: icons.Attention,
			has: []string{"Sync anyway: delete 1 file on this computer too"}},
		{name: "all files changed hold", v: View{Status: with(func(s *ipc.Status) {
			s.State, s.Hold = ipc.StateError, &ipc.Hold{Reason: ipc.HoldAllFilesChanged, Message: "every file changed", NeedsForce: true}
		})}, icon: icons.Attention,
			has: []string{"Sync anyway"}},
		{name: "resync hold", v: View{Status: with(func(s *ipc.Status) {
			s.State, s.Hold = ipc.StateError, &ipc.Hold{Reason: ipc.HoldResyncRequired, Message: "listings lost"}
		})}, icon: icons.Attention,
			has: []string{"Paused: listings lost — run bm-agent sync --resync [off]", "Sync now"}},
		{name: "folder missing hold", v: View{Status: with(func(s *ipc.Status) {
			s.State, s.Hold = ipc.StateError, &ipc.Hold{Reason: ipc.HoldLocalMissing, Message: "the notes folder is gone"}
		})}, icon: icons.Attention, has: []string{"Waiting: the notes folder is gone [off]"}},
		{name: "files that cannot sync", v: View{Status: with(func(s *ipc.Status) {
			s.NotSyncing = []ipc.FailedItem{{Path: "a.md"}, {Path: "b.md"}}
		})}, icon: icons.Attention, has: []string{"Up to date — 2 files cannot sync [off]"}},
		{name: "offline", v: View{Status: with(func(s *ipc.Status) {
			s.State = ipc.StateOffline
			t := now.Add(-time.Hour)
			s.OfflineSince = &t
		})}, icon: icons.Offline, has: []string{"Offline since 11:00 [off]", "Sync now"}},
		{name: "server unreachable", v: View{Status: with(func(s *ipc.Status) { s.State = ipc.StateServerUnreachable })}, icon: icons.Offline,
			has: []string{"Server unreachable [off]"}},
		{name: "error", v: View{Status: with(func(s *ipc.Status) { s.State, s.Error = ipc.StateError, "disk full" })}, icon: icons.Attention,
			has: []string{"Error: disk full [off]", "Sync now"}},
		{name: "logged out, login pending", v: View{Status: ipc.Status{State: ipc.StateLoggedOut, LoginURL: "http://x"}}, icon: icons.LoggedOut,
			want: append(head("Logged out", "Never synced", "Not logged in", "Sync now — not logged in [off]", "Pause syncing — not logged in [off]"),
				"--", "Open notes folder — no folder set [off]", "Recent changes — none yet [off]", "Conflicts — none [off]",
				"Recently deleted — versions are off [off]", "--", "Log in…", "Open logs", "Quit")},
		{name: "login required, no browser", v: View{Status: ipc.Status{State: ipc.StateLoginRequired, Account: "ada@example.com", LoggedIn: true}, NoBrowser: true},
			icon: icons.LoggedOut, has: []string{"Login required [off]", "Log in…", "Log in (device code)", "Sync now — not logged in [off]"}},
		{name: "device login in progress", v: View{Status: ipc.Status{State: ipc.StateLoggedOut, LoginURL: "https://x/device", LoginUserCode: "ABCD-EFGH"}, NoBrowser: true},
			icon: icons.LoggedOut, has: []string{"Log in: enter ABCD-EFGH at https://x/device [off]"}},
		{name: "subscription required", v: View{Status: with(func(s *ipc.Status) {
			s.State, s.SubscribeURL = ipc.StateSubscriptionRequired, "https://x/subscribe"
		})}, icon: icons.Attention, has: []string{"Subscription required [off]", "Sync now — subscription required [off]", "Subscribe…", "Log out"}},
		{name: "conflicts", v: View{Status: with(func(s *ipc.Status) { s.LastSync = &ipc.PassSummary{Start: now.Add(-time.Minute), Conflicts: 1} }),
			Conflicts: []ipc.Conflict{{Path: "a.conflict-laptop.md", Original: "a.md", Device: "laptop", Time: now.Add(-time.Minute)}}},
			icon: icons.Attention, has: []string{"Up to date — 1 conflict [off]", "Conflicts (1)", "  a.md (from laptop, 11:59): [off]",
				"  Keep mine", "  Keep theirs", "  Keep both", "  Show both"}},
		{name: "a pass found conflicts, list not fetched", v: View{Status: with(func(s *ipc.Status) { s.LastSync = &ipc.PassSummary{Start: now, Conflicts: 2} })},
			icon: icons.Attention},
		{name: "many conflicts", v: View{Status: ada, Conflicts: manyConflicts(12)}, icon: icons.Attention,
			has: []string{"Conflicts (12)", "  n4.md: [off]", "  … and 7 more (bm-agent conflicts) [off]"}},
		{name: "recent changes", v: View{Status: ada, History: []ipc.PassSummary{
			{Start: now.Add(-time.Minute), Uploaded: 3, DeletedLocal: 1},
			{Start: now.Add(-2 * time.Minute)}, // nothing changed: not listed
			{Start: now.Add(-25 * time.Hour), Downloaded: 1, DeletedRemote: 2},
		}}, icon: icons.UpToDate, has: []string{"Recent changes", "  11:59: 3 uploaded, 1 deleted", "  Sun 11:00: 1 downloaded, 2 deleted"}},
		{name: "recently deleted", v: View{Status: ada, DaysKept: 30, Deleted: []ipc.Version{
			{ID: "v2", Path: "b.md", Kept: now.Add(-time.Minute)}, {ID: "v1", Path: "a.md", Kept: now.Add(-2 * time.Minute)},
		}}, icon: icons.UpToDate, has: []string{"Recently deleted", "  Restore b.md (deleted 11:59)", "  Restore a.md (deleted 11:58)", "  Restore all 2"}},
		{name: "nothing deleted", v: View{Status: ada, DaysKept: 30}, icon: icons.UpToDate, has: []string{"Recently deleted — none [off]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := BuildModel(tt.v, now)
			got := m.Lines()
			if m.Icon != tt.icon {
				t.Errorf("icon %s, want %s", m.Icon, tt.icon)
			}
			if tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("menu:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, l := range tt.has {
				if !slices.Contains(got, l) {
					t.Errorf("menu has no line %q:\n%s", l, strings.Join(got, "\n"))
				}
			}
			if want := "Basic Memory: " + m.Status.Label; m.Tooltip != want {
				t.Errorf("tooltip %q, want %q", m.Tooltip, want)
			}
		})
	}
}

func manyConflicts(n int) []ipc.Conflict {
	var cs []ipc.Conflict
	for i := range n {
		cs = append(cs, ipc.Conflict{Path: fmt.Sprintf("n%d.conflict.md", i), Original: fmt.Sprintf("n%d.md", i)})
	}
	return cs
}

func TestApply(t *testing.T) {
	syncing := with(func(s *ipc.Status) { s.State = ipc.StateSyncing })
	prog := &ipc.Progress{FilesDone: 1, FilesTotal: 4}
	tests := []struct {
		name         string
		v            View
		ev           ipc.Event
		wantState    ipc.State
		wantProgress *ipc.Progress
		wantErr      bool
	}{
		{"snapshot brings the daemon back", View{Err: ipc.ErrNoDaemon, Starting: true}, ipc.Event{Kind: ipc.EventSnapshot, Status: &ada}, ipc.StateIdle, nil, false},
		{"progress during a pass", View{Status: syncing}, ipc.Event{Kind: ipc.EventProgress, Progress: prog}, ipc.StateSyncing, prog, false},
		{"state keeps progress while syncing", View{Status: syncing, Progress: prog}, ipc.Event{Kind: ipc.EventState, Status: &syncing}, ipc.StateSyncing, prog, false},
		{"pass over ends progress", View{Status: syncing, Progress: prog}, ipc.Event{Kind: ipc.EventState, Status: &ada}, ipc.StateIdle, nil, false},
		{"notification changes nothing", View{Status: ada}, ipc.Event{Kind: ipc.EventNotification, Notification: &ipc.Notification{Title: "x"}}, ipc.StateIdle, nil, false},
		{"state without status is ignored", View{Status: ada}, ipc.Event{Kind: ipc.EventState}, ipc.StateIdle, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.v.Apply(tt.ev)
			if got.Status.State != tt.wantState {
				t.Errorf("state %s, want %s", got.Status.State, tt.wantState)
			}
			if (got.Progress == nil) != (tt.wantProgress == nil) || (got.Progress != nil && *got.Progress != *tt.wantProgress) {
				t.Errorf("progress %+v, want %+v", got.Progress, tt.wantProgress)
			}
			if (got.Err != nil) != tt.wantErr || got.Starting {
				t.Errorf("err %v starting %v", got.Err, got.Starting)
			}
		})
	}
}

func TestNeedsLists(t *testing.T) {
	later := with(func(s *ipc.Status) { s.LastSync = &ipc.PassSummary{Start: now} })
	evenLater := with(func(s *ipc.Status) { s.LastSync = &ipc.PassSummary{Start: now.Add(time.Minute)} })
	tests := []struct {
		name   string
		old, v View
		want   bool
	}{
		{"daemon came back", View{Err: ipc.ErrNoDaemon}, View{Status: ada}, true},
		{"daemon still gone", View{Err: ipc.ErrNoDaemon}, View{Err: ipc.ErrNoDaemon}, false},
		{"same status", View{Status: later}, View{Status: later}, false},
		{"a pass ended", View{Status: later}, View{Status: evenLater}, true},
		{"first pass", View{Status: ada}, View{Status: later}, true},
		{"state changed", View{Status: ada}, View{Status: with(func(s *ipc.Status) { s.State = ipc.StateSyncing })}, true},
		{"logged out", View{Status: ada}, View{Status: with(func(s *ipc.Status) { s.LoggedIn = false })}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsLists(tt.old, tt.v); got != tt.want {
				t.Errorf("NeedsLists = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUntilTomorrow(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone data")
	}
	tests := []struct {
		now  time.Time
		want time.Duration
	}{
		{time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), 20 * time.Hour},
		{time.Date(2026, 11, 23, 0, 30, 0, 0, time.UTC), 31*time.Hour + 30*time.Minute},
		{time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC), 9 * time.Hour}, // month end
		{time.Date(2026, 3, 28, 22, 0, 0, 0, paris), 9 * time.Hour},     // the clocks go forward that night
		{time.Date(2026, 10, 24, 22, 0, 0, 0, paris), 11 * time.Hour},   // and back
	}
	for _, tt := range tests {
		if got := UntilTomorrow(tt.now); got != tt.want {
			t.Errorf("UntilTomorrow(%v) = %v, want %v", tt.now, got, tt.want)
		}
	}
}

func TestNotificationAction(t *testing.T) {
	tests := []struct {
		kind string
		want action
	}{
		{ipc.NotifyLoginRequired, actLogin},
		{ipc.NotifySubscriptionRequired, actSubscribe},
		{ipc.NotifyHold, actOpenLogs},
		{ipc.NotifyOffline, actOpenLogs},
		{ipc.NotifyConflicts, actOpenFolder},
		{ipc.NotifyNotSyncing, actOpenFolder},
		{"", actOpenFolder},
	}
	for _, tt := range tests {
		if got := notificationAction(tt.kind); got != tt.want {
			t.Errorf("notificationAction(%q) = %v, want %v", tt.kind, got, tt.want)
		}
	}
}

func TestRecentEntriesListFiles(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 45, 0, 0, time.UTC)
	at := now.Add(-5 * time.Minute)
	passes := []ipc.PassSummary{
		{Start: at, Uploaded: 1, Downloaded: 1, DeletedLocal: 1, Changes: []ipc.PlanItem{
			{Action: ipc.ActionCopy, Side: ipc.SideCloud, Path: "mine.md"},
			{Action: ipc.ActionCopy, Side: ipc.SideLocal, Path: "theirs.md"},
			{Action: ipc.ActionDelete, Side: ipc.SideLocal, Path: "gone.md"},
			{Action: ipc.ActionKeep, Side: ipc.SideCloud, Path: "kept.md"},
		}},
		{Start: at.Add(-time.Hour), DryRun: true, Changes: []ipc.PlanItem{{Action: ipc.ActionCopy, Side: ipc.SideCloud, Path: "planned.md"}}},
		{Start: at.Add(-2 * time.Hour), Changes: []ipc.PlanItem{{Action: ipc.ActionCopy, Side: ipc.SideLocal, Path: "mine.md"}}},
		{Start: at.Add(-3 * time.Hour), Uploaded: 3}, // an older daemon's: counts only
	}
	got := recentEntries(passes, now)
	want := []struct{ label, path string }{
		{"mine.md — uploaded", "mine.md"},
		{"theirs.md — downloaded", "theirs.md"},
		{"gone.md — deleted", ""},
		{"3 uploaded", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("entries = %+v", got)
	}
	for i, w := range want {
		if !strings.Contains(got[i].Label, w.label) || got[i].Path != w.path || !got[i].Enabled {
			t.Errorf("entry %d = %+v, want %q opening %q", i, got[i], w.label, w.path)
		}
	}
}
