// Package tray is bm-tray: a menu model built from the daemon's watch
// stream (pure, table-tested), the icons that name each state, and the
// systray wiring that shows them. The tray is a pure client of the daemon:
// it never touches sync state itself.
package tray

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/tray/icons"
)

// View is what the tray knows: the daemon's last status and progress (from
// the watch stream), the lists it fetched when the status changed, and
// whether the daemon can be reached. [BuildModel] turns it into a menu.
type View struct {
	Status ipc.Status
	// Err is why the daemon cannot be reached (nil while the watch stream
	// is up); an error wrapping ipc.ErrNoDaemon means it is not running.
	Err error
	// Progress is the running pass's, from the last progress event.
	Progress *ipc.Progress
	// History is the last passes, newest first.
	History []ipc.PassSummary
	// Conflicts are the conflict files in the notes folder.
	Conflicts []ipc.Conflict
	// Deleted are the notes deleted and not back (nil: versions are off
	// or unknown); DaysKept is how long versions are kept (0: off).
	Deleted  []ipc.Version
	DaysKept int
	// Starting: the tray started the daemon and waits for it to answer;
	// StartErr is why starting it failed.
	Starting bool
	StartErr string
	// NoBrowser: no browser can be opened here (offer a device login).
	NoBrowser bool
}

// Apply returns the view after one event of the watch stream: a snapshot
// or state event replaces the status (and ends the progress of a pass that
// is over), a progress event replaces the progress. The stream being up
// means the daemon answers.
func (v View) Apply(ev ipc.Event) View {
	switch ev.Kind {
	case ipc.EventSnapshot, ipc.EventState, ipc.EventLogin:
		if ev.Status == nil {
			return v
		}
		v.Status = ev.Status.Clone()
		v.Err, v.Starting, v.StartErr = nil, false, ""
		if v.Status.State != ipc.StateSyncing {
			v.Progress = nil
		}
	case ipc.EventProgress:
		if ev.Progress != nil {
			p := *ev.Progress
			v.Progress = &p
		}
	}
	return v
}

// NeedsLists reports whether the lists (history, conflicts, deleted notes)
// must be fetched again after the view went from old to v: the daemon came
// back, a pass ended, the state or the login changed.
func NeedsLists(old, v View) bool {
	if v.Err != nil {
		return false
	}
	if old.Err != nil || old.Status.State != v.Status.State || old.Status.LoggedIn != v.Status.LoggedIn ||
		old.Status.Folder != v.Status.Folder {
		return true
	}
	a, b := old.Status.LastSync, v.Status.LastSync
	return (a == nil) != (b == nil) || (a != nil && !a.Start.Equal(b.Start))
}

// Item is one menu entry.
type Item struct {
	Label   string
	Enabled bool
	Visible bool
}

func shown(label string) Item         { return Item{Label: label, Enabled: true, Visible: true} }
func info(label string) Item          { return Item{Label: label, Visible: true} }
func disabled(label, why string) Item { return Item{Label: label + " — " + why, Visible: true} }
func hidden(label string) Item        { return Item{Label: label} }
func enabledIf(ok bool, label, why string) Item {
	if ok {
		return shown(label)
	}
	return disabled(label, why)
}

// Entry is one entry of a list submenu (Recent changes, Recently deleted).
type Entry struct {
	Label string
	// Path is the note (relative to the notes folder) it is about, if any.
	Path string
	// Version is the kept version to restore (Recently deleted).
	Version string
	Enabled bool
}

// Item is how the entry shows in its submenu.
func (e Entry) Item() Item { return Item{Label: e.Label, Enabled: e.Enabled, Visible: true} }

// ConflictEntry is one conflict of the Conflicts submenu; its submenu
// settles it ([ConflictActions]).
type ConflictEntry struct {
	Label string
	// Original is the note, Path the conflict file (both relative to the
	// notes folder).
	Original, Path string
}

// Title is the tray item's title (what a panel lists it as).
const Title = "Basic Memory"

// Labels of the menu's fixed items.
const (
	LoginLabel         = "Log in…"
	LoginDeviceLabel   = "Log in (device code)"
	LogoutLabel        = "Log out"
	SubscribeLabel     = "Subscribe…"
	StartLabel         = "Start bm-agent"
	StartingLabel      = "Starting bm-agent…"
	SyncNowLabel       = "Sync now"
	SyncAnywayLabel    = "Sync anyway"
	PauseLabel         = "Pause syncing"
	Pause30Label       = "Pause for 30 minutes"
	Pause1hLabel       = "Pause for 1 hour"
	PauseTomorrowLabel = "Pause until tomorrow"
	ResumeLabel        = "Resume syncing"
	OpenFolderLabel    = "Open notes folder"
	RecentLabel        = "Recent changes"
	ConflictsLabel     = "Conflicts"
	DeletedLabel       = "Recently deleted"
	RestoreAllLabel    = "Restore all"
	OpenLogsLabel      = "Open logs"
	QuitLabel          = "Quit"
)

// The actions of a conflict's submenu, in order.
const (
	KeepMineLabel   = "Keep mine"
	KeepTheirsLabel = "Keep theirs"
	KeepBothLabel   = "Keep both"
	ShowBothLabel   = "Show both"
)

// ConflictActions are a conflict's submenu labels and the Keep each sends
// ("" : Show both, which opens both files).
var ConflictActions = []struct{ Label, Keep string }{
	{KeepMineLabel, ipc.KeepMine},
	{KeepTheirsLabel, ipc.KeepTheirs},
	{KeepBothLabel, ipc.KeepBoth},
	{ShowBothLabel, ""},
}

// MaxEntries bounds each list submenu; the rest is one "… and N more" line.
const MaxEntries = 10

// MaxConflicts bounds the conflicts the Conflicts submenu settles: each
// is a line and its four actions, side by side in that submenu (a third
// menu level is drawn empty by some panels: xfce4-panel's
// libdbusmenu-gtk), so a long list would not fit a screen.
const MaxConflicts = 5

// Model is the menu for one [View]: every fixed item, the lists, and the
// icon. It is a pure function of the view and the time.
type Model struct {
	Icon    icons.State
	Tooltip string

	Status, LastSync, Account Item
	Start, SyncNow            Item
	// SyncAnyway lifts a hold that only a forced pass lifts (too many
	// deletes, every file changed), saying what it will do; hidden
	// otherwise.
	SyncAnyway Item
	// Pause is the submenu of Pause30, Pause1h and PauseTomorrow.
	Pause, Pause30, Pause1h, PauseTomorrow, Resume Item
	OpenFolder                                     Item
	Recent                                         Item
	RecentEntries                                  []Entry
	Conflicts                                      Item
	ConflictEntries                                []ConflictEntry
	// ConflictsMore is the "… and N more" line ("" : none).
	ConflictsMore string
	Deleted       Item
	// DeletedEntries ends with "Restore all" when there is more than one.
	DeletedEntries                        []Entry
	Login, LoginDevice, Subscribe, Logout Item
	OpenLogs, Quit                        Item

	// Folder is the notes folder; LoginURL and SubscribeURL the pages to
	// open.
	Folder, LoginURL, SubscribeURL string
}

// BuildModel turns the view into a menu at time now (whose location is the
// one times are shown in).
func BuildModel(v View, now time.Time) Model {
	st := v.Status
	m := Model{Quit: shown(QuitLabel), Folder: st.Folder}
	if v.Err != nil {
		return notRunning(m, v)
	}
	m.Icon = iconFor(v)
	m.Status = info(statusLine(v, now))
	m.Tooltip = "Basic Memory: " + m.Status.Label
	m.LastSync = info(lastSyncLine(st.LastSync, now))
	m.Start = hidden(StartLabel)
	m.LoginURL, m.SubscribeURL = st.LoginURL, st.SubscribeURL

	loggedIn := st.LoggedIn && st.State != ipc.StateLoginRequired && st.State != ipc.StateLoggedOut
	switch {
	case loggedIn:
		m.Account = info("Account: " + st.Account)
	case st.State == ipc.StateLoginRequired:
		m.Account = info("Login required")
	default:
		m.Account = info("Not logged in")
	}

	// Sync now, with the reason it cannot run.
	var why string
	switch {
	case st.State == ipc.StateStarting:
		why = "starting"
	case !loggedIn:
		why = "not logged in"
	case st.Hold != nil && st.Hold.NeedsForce:
		why = "held: see " + SyncAnywayLabel
	case st.Paused:
		why = "paused"
	case st.State == ipc.StateSubscriptionRequired:
		why = "subscription required"
	case st.State == ipc.StateSyncing:
		why = "syncing"
	}
	m.SyncNow = enabledIf(why == "", SyncNowLabel, why)
	if loggedIn && st.Hold != nil && st.Hold.NeedsForce {
		m.SyncAnyway = shown(syncAnywayLine(*st.Hold))
	}

	if st.Paused {
		m.Pause, m.Pause30, m.Pause1h, m.PauseTomorrow = hidden(PauseLabel), hidden(Pause30Label), hidden(Pause1hLabel), hidden(PauseTomorrowLabel)
		m.Resume = shown(ResumeLabel)
	} else {
		m.Pause = enabledIf(loggedIn, PauseLabel, "not logged in")
		m.Pause30, m.Pause1h, m.PauseTomorrow = shown(Pause30Label), shown(Pause1hLabel), shown(PauseTomorrowLabel)
		m.Resume = hidden(ResumeLabel)
	}

	m.OpenFolder = enabledIf(st.Folder != "", OpenFolderLabel, "no folder set")

	m.RecentEntries = recentEntries(v.History, now)
	m.Recent = enabledIf(len(m.RecentEntries) > 0, RecentLabel, "none yet")

	for i, c := range v.Conflicts {
		if i == MaxConflicts {
			m.ConflictsMore = fmt.Sprintf("… and %d more (bm-agent conflicts)", len(v.Conflicts)-MaxConflicts)
			break
		}
		m.ConflictEntries = append(m.ConflictEntries, ConflictEntry{
			Label: conflictLabel(c, now), Original: c.Original, Path: c.Path,
		})
	}
	if n := len(v.Conflicts); n > 0 {
		m.Conflicts = shown(fmt.Sprintf("%s (%d)", ConflictsLabel, n))
	} else {
		m.Conflicts = disabled(ConflictsLabel, "none")
	}

	switch {
	case v.DaysKept == 0:
		m.Deleted = disabled(DeletedLabel, "versions are off")
	case len(v.Deleted) == 0:
		m.Deleted = disabled(DeletedLabel, "none")
	default:
		m.Deleted = shown(DeletedLabel)
		for i, d := range v.Deleted {
			if i == MaxEntries {
				m.DeletedEntries = append(m.DeletedEntries, Entry{Label: fmt.Sprintf("… and %d more (bm-agent versions)", len(v.Deleted)-MaxEntries)})
				break
			}
			m.DeletedEntries = append(m.DeletedEntries, Entry{
				Label: "Restore " + d.Path + " (deleted " + clock(d.Kept, now) + ")", Path: d.Path, Version: d.ID, Enabled: true,
			})
		}
		if len(v.Deleted) > 1 {
			m.DeletedEntries = append(m.DeletedEntries, Entry{Label: fmt.Sprintf("%s %d", RestoreAllLabel, len(v.Deleted)), Enabled: true})
		}
	}

	m.Login, m.LoginDevice, m.Subscribe, m.Logout = hidden(LoginLabel), hidden(LoginDeviceLabel), hidden(SubscribeLabel), hidden(LogoutLabel)
	if loggedIn {
		m.Logout = shown(LogoutLabel)
	} else {
		m.Login = shown(LoginLabel)
		if v.NoBrowser {
			m.LoginDevice = shown(LoginDeviceLabel)
		}
	}
	if st.State == ipc.StateSubscriptionRequired && st.SubscribeURL != "" {
		m.Subscribe = shown(SubscribeLabel)
	}
	m.OpenLogs = shown(OpenLogsLabel)
	return m
}

// syncAnywayLine says what lifting hold h does: for a max-delete hold,
// the deletes it lets through and where (they stay in the version store).
func syncAnywayLine(h ipc.Hold) string {
	if h.Reason != ipc.HoldMaxDelete || h.Deletes <= 0 {
		return SyncAnywayLabel
	}
	files := "files"
	if h.Deletes == 1 {
		files = "file"
	}
	switch h.Side {
	case ipc.SideLocal: // deleted here: the pass deletes them in the bucket
		return fmt.Sprintf("%s: delete %d %s in the cloud too", SyncAnywayLabel, h.Deletes, files)
	case ipc.SideCloud:
		return fmt.Sprintf("%s: delete %d %s on this computer too", SyncAnywayLabel, h.Deletes, files)
	}
	return fmt.Sprintf("%s: let %d deletes through", SyncAnywayLabel, h.Deletes)
}

// notRunning is the menu while no daemon answers.
func notRunning(m Model, v View) Model {
	m.Icon = icons.NotRunning
	m.Status = info("Agent not running")
	if v.StartErr != "" {
		m.Status = info("Agent not running: " + v.StartErr)
	} else if errors.Is(v.Err, ipc.ErrNotImplemented) {
		m.Status = info("Agent too old for this tray: update bm-agent")
	} else if !errors.Is(v.Err, ipc.ErrNoDaemon) {
		m.Status = info("Agent not answering")
	}
	m.Tooltip = "Basic Memory: " + m.Status.Label
	m.LastSync, m.Account = hidden(""), hidden("")
	switch {
	case v.Starting:
		m.Start = info(StartingLabel)
	case errors.Is(v.Err, ipc.ErrNotImplemented): // it runs: starting another would fail
		m.Start = hidden(StartLabel)
	default:
		m.Start = shown(StartLabel)
	}
	const why = "agent not running"
	m.SyncNow = disabled(SyncNowLabel, why)
	m.Pause, m.Pause30, m.Pause1h, m.PauseTomorrow = disabled(PauseLabel, why), hidden(Pause30Label), hidden(Pause1hLabel), hidden(PauseTomorrowLabel)
	m.Resume = hidden(ResumeLabel)
	m.OpenFolder = enabledIf(m.Folder != "", OpenFolderLabel, why)
	m.Recent, m.Conflicts, m.Deleted = hidden(RecentLabel), hidden(ConflictsLabel), hidden(DeletedLabel)
	m.Login, m.LoginDevice, m.Subscribe, m.Logout = hidden(LoginLabel), hidden(LoginDeviceLabel), hidden(SubscribeLabel), hidden(LogoutLabel)
	m.OpenLogs = disabled(OpenLogsLabel, why)
	return m
}

// iconFor picks the icon: the most urgent thing a person should know.
func iconFor(v View) icons.State {
	st := v.Status
	switch {
	case st.State == ipc.StateStarting:
		// the login is not known yet: no logged-out flash at startup
		return icons.Syncing
	case st.State == ipc.StateLoggedOut || st.State == ipc.StateLoginRequired || !st.LoggedIn:
		return icons.LoggedOut
	case st.Hold != nil:
		return icons.Attention
	case st.State.Unreachable():
		return icons.Offline
	case st.State == ipc.StateError || st.State == ipc.StateSubscriptionRequired ||
		len(st.NotSyncing) > 0 || len(v.Conflicts) > 0 || (st.LastSync != nil && st.LastSync.Conflicts > 0 && v.Conflicts == nil):
		return icons.Attention
	case st.Paused || st.State == ipc.StatePaused:
		return icons.Paused
	case st.State == ipc.StateSyncing:
		return icons.Syncing
	default:
		return icons.UpToDate
	}
}

// statusLine is the menu's first line.
func statusLine(v View, now time.Time) string {
	st := v.Status
	switch {
	case st.Hold != nil && (st.Hold.NeedsForce || st.Hold.Reason == ipc.HoldMaxDelete):
		if st.Hold.Reason == ipc.HoldMaxDelete {
			return "Paused: too many deletes — run bm-agent sync --force"
		}
		return "Paused: " + st.Hold.Message + " — run bm-agent sync --force"
	case st.Hold != nil && st.Hold.Reason == ipc.HoldResyncRequired:
		return "Paused: " + st.Hold.Message + " — run bm-agent sync --resync"
	case st.Hold != nil:
		return "Waiting: " + st.Hold.Message
	case st.Paused && st.PausedUntil != nil:
		return "Paused until " + clock(*st.PausedUntil, now)
	case !st.LoggedIn && st.LoginUserCode != "":
		return "Log in: enter " + st.LoginUserCode + " at " + st.LoginURL
	case st.State == ipc.StateSyncing && v.Progress != nil && v.Progress.FilesTotal > 0:
		return fmt.Sprintf("Syncing %d of %d files", v.Progress.FilesDone, v.Progress.FilesTotal)
	}
	line := stateLine(st)
	if n := len(st.NotSyncing); n > 0 && (st.State == ipc.StateIdle || st.State == ipc.StateSyncing) {
		line += fmt.Sprintf(" — %d %s cannot sync", n, plural(n, "file", "files"))
	} else if n := len(v.Conflicts); n > 0 && st.State == ipc.StateIdle {
		line += fmt.Sprintf(" — %d %s", n, plural(n, "conflict", "conflicts"))
	}
	if st.State.Unreachable() && st.OfflineSince != nil {
		line += " since " + clock(*st.OfflineSince, now)
	}
	return line
}

// stateLine names a state for the menu.
func stateLine(st ipc.Status) string {
	switch st.State {
	case ipc.StateIdle:
		return "Up to date"
	case ipc.StateSyncing:
		return "Syncing…"
	case ipc.StatePaused:
		return "Paused"
	case ipc.StateOffline:
		return "Offline"
	case ipc.StateServerUnreachable:
		return "Server unreachable"
	case ipc.StateBucketUnreachable:
		return "Storage unreachable"
	case ipc.StateLoggedOut:
		return "Logged out"
	case ipc.StateLoginRequired:
		return "Login required"
	case ipc.StateSubscriptionRequired:
		return "Subscription required"
	case ipc.StateError:
		return "Error: " + st.Error
	default:
		return "Starting…"
	}
}

// lastSyncLine says when the last pass ran (a time, not "ago": the menu
// changes only when the daemon says something).
func lastSyncLine(ls *ipc.PassSummary, now time.Time) string {
	switch {
	case ls == nil:
		return "Never synced"
	case ls.Error != "":
		return "Last sync failed at " + clock(ls.Start, now)
	default:
		return "Last sync at " + clock(ls.Start, now)
	}
}

// recentEntries lists the last files the passes changed, newest first,
// each opening its file (a deleted one opens the notes folder). A pass the
// history has no file list for (an older daemon's) is one entry with its
// counts.
func recentEntries(passes []ipc.PassSummary, now time.Time) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, p := range passes {
		if p.DryRun {
			continue
		}
		if len(p.Changes) == 0 {
			if line := passCounts(p); line != "" && len(out) < MaxEntries {
				out = append(out, Entry{Label: clock(p.Start, now) + ": " + line, Enabled: true})
			}
			continue
		}
		for _, c := range p.Changes {
			if len(out) == MaxEntries {
				return out
			}
			if seen[c.Path] || c.Action == ipc.ActionKeep || c.Action == ipc.ActionRename {
				continue
			}
			seen[c.Path] = true
			e := Entry{Label: c.Path + " — " + changeWord(c) + ", " + clock(p.Start, now), Path: c.Path, Enabled: true}
			if c.Action == ipc.ActionDelete {
				e.Path = ""
			}
			out = append(out, e)
		}
	}
	return out
}

// changeWord says what a pass did to a file.
func changeWord(c ipc.PlanItem) string {
	switch {
	case c.Action == ipc.ActionDelete:
		return "deleted"
	case c.Action == ipc.ActionConflict:
		return "conflict"
	case c.Side == ipc.SideCloud:
		return "uploaded"
	default:
		return "downloaded"
	}
}

// passCounts sums up what a pass did ("" for nothing).
func passCounts(p ipc.PassSummary) string {
	var parts []string
	add := func(n int, one, many string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, plural(n, one, many)))
		}
	}
	add(p.Uploaded, "uploaded", "uploaded")
	add(p.Downloaded, "downloaded", "downloaded")
	add(p.DeletedLocal+p.DeletedRemote, "deleted", "deleted")
	add(p.Conflicts, "conflict", "conflicts")
	return strings.Join(parts, ", ")
}

func conflictLabel(c ipc.Conflict, now time.Time) string {
	label := c.Original
	if label == "" {
		label = c.Path
	}
	var from []string
	switch {
	case c.From != "":
		from = append(from, "from "+c.From)
	case c.Device != "":
		from = append(from, "from "+c.Device)
	}
	if !c.Time.IsZero() {
		from = append(from, clock(c.Time, now))
	}
	if len(from) > 0 {
		label += " (" + strings.Join(from, ", ") + ")"
	}
	return label + ":" // its actions follow it
}

// clock shows t as 15:04 if it is today, else "Mon 15:04" within a week,
// else "2 Jan 15:04", in now's location.
func clock(t, now time.Time) string {
	t = t.In(now.Location())
	y1, m1, d1 := t.Date()
	y2, m2, d2 := now.Date()
	switch {
	case y1 == y2 && m1 == m2 && d1 == d2:
		return t.Format("15:04")
	case now.Sub(t) < 6*24*time.Hour && now.Sub(t) > -6*24*time.Hour:
		return t.Format("Mon 15:04")
	default:
		return t.Format("2 Jan 15:04")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// UntilTomorrow is how long "Pause until tomorrow" pauses at now: until
// 08:00 of the next calendar day, in now's location.
func UntilTomorrow(now time.Time) time.Duration {
	y, m, d := now.Date()
	return time.Date(y, m, d+1, 8, 0, 0, 0, now.Location()).Sub(now)
}

// Lines is the menu as a person reads it, in the order the tray shows
// it: one line per visible item, "[off]" after a disabled one, submenu
// entries indented, "--" for a separator between groups.
func (m Model) Lines() []string {
	var out []string
	add := func(indent string, it Item) {
		if !it.Visible {
			return
		}
		l := indent + it.Label
		if !it.Enabled {
			l += " [off]"
		}
		out = append(out, l)
	}
	add("", m.Status)
	add("", m.LastSync)
	add("", m.Account)
	out = append(out, "--")
	add("", m.Start)
	add("", m.SyncNow)
	add("", m.SyncAnyway)
	add("", m.Pause)
	if m.Pause.Visible && m.Pause.Enabled {
		add("  ", m.Pause30)
		add("  ", m.Pause1h)
		add("  ", m.PauseTomorrow)
	}
	add("", m.Resume)
	out = append(out, "--")
	add("", m.OpenFolder)
	add("", m.Recent)
	for _, e := range m.RecentEntries {
		add("  ", e.Item())
	}
	add("", m.Conflicts)
	for _, c := range m.ConflictEntries {
		add("  ", info(c.Label))
		for _, a := range ConflictActions {
			add("  ", shown(a.Label))
		}
	}
	if m.ConflictsMore != "" {
		add("  ", info(m.ConflictsMore))
	}
	add("", m.Deleted)
	for _, e := range m.DeletedEntries {
		add("  ", e.Item())
	}
	out = append(out, "--")
	add("", m.Login)
	add("", m.LoginDevice)
	add("", m.Subscribe)
	add("", m.Logout)
	add("", m.OpenLogs)
	add("", m.Quit)
	return out
}
