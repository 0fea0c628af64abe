package tray

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"fyne.io/systray"

	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/ui/browser"
	"github.com/basicmachines-co/bm-agent/ui/tray/icons"
)

// Backoff bounds of the reconnection to the watch stream.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// startWait is how long the tray waits for a daemon it started to answer.
const startWait = 20 * time.Second

// callTimeout bounds one request to the daemon from a click.
const callTimeout = 15 * time.Second

// Option configures [Run].
type Option func(*options)

type options struct {
	notify func(ctx context.Context, onClick func(kind string)) error
	open   func(target string) error
	start  func(ctx context.Context, socket string) error
	events func(ipc.Event)
	ready  func()
	now    func() time.Time
}

// WithOpener replaces how the tray opens a URL, a file or a folder (the
// platform's opener by default).
func WithOpener(open func(target string) error) Option {
	return func(o *options) { o.open = open }
}

// WithStarter replaces how "Start bm-agent" starts the daemon (by default
// [StartDaemon]).
func WithStarter(start func(ctx context.Context, socket string) error) Option {
	return func(o *options) { o.start = start }
}

// WithEvents hands every event of the daemon's watch stream to fn, in the
// order they come, after the menu took it in; fn must not block (the
// desktop notifications hang here).
func WithEvents(fn func(ipc.Event)) Option {
	return func(o *options) { o.events = fn }
}

// WithNotifier runs run for as long as the tray runs: the desktop
// notifications (package ui/notify's Run). A notification the person
// clicks comes back through onClick with its kind (an ipc.Notify*
// constant) and does what the menu would: log in for an expired login,
// the subscription page, the notes folder for conflicts and files that
// cannot sync, the logs for a hold or an outage.
func WithNotifier(run func(ctx context.Context, onClick func(kind string)) error) Option {
	return func(o *options) { o.notify = run }
}

// WithClock replaces the tray's clock (time.Now): the menu shows times in
// its location, and "Pause until tomorrow" counts from it.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithReady calls fn once the tray's menu exists.
func WithReady(fn func()) Option {
	return func(o *options) { o.ready = fn }
}

// Run shows the tray until the user quits or ctx ends. The menu follows
// the daemon's watch stream (reconnecting with backoff when the daemon
// restarts) and sends the daemon commands. The tray can run once per
// process: fyne.io/systray's event loop does not restart.
func Run(ctx context.Context, c *ipc.Client, logger *slog.Logger, opts ...Option) {
	o := options{open: openTarget, start: StartDaemon, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &tray{c: c, log: logger, o: o, cancel: cancel}
	t.view = View{Err: fmt.Errorf("connecting: %w", ipc.ErrNoDaemon), NoBrowser: !browser.CanOpen()}
	if m := BuildModel(t.view, o.now()); primeItem(Title, m) {
		t.icon, t.tooltip = m.Icon, m.Tooltip
	}
	systray.Run(func() { t.onReady(ctx) }, cancel)
}

// click is one menu click: what and, for a list entry, which.
type click struct {
	what action
	slot int    // list entry
	sub  int    // a conflict's action
	kind string // a notification's kind
}

type action int

const (
	actStart action = iota
	actSyncNow
	actSyncAnyway
	actPause30
	actPause1h
	actPauseTomorrow
	actResume
	actOpenFolder
	actRecent
	actConflict
	actDeleted
	actLogin
	actLoginDevice
	actSubscribe
	actLogout
	actOpenLogs
	actQuit
	actNotification
)

// notificationAction is what clicking a notification of kind does.
func notificationAction(kind string) action {
	switch kind {
	case ipc.NotifyLoginRequired:
		return actLogin
	case ipc.NotifySubscriptionRequired:
		return actSubscribe
	case ipc.NotifyHold, ipc.NotifyOffline:
		return actOpenLogs
	default: // conflicts, files that cannot sync, anything else
		return actOpenFolder
	}
}

type conflictSlot struct {
	item    *systray.MenuItem
	actions [4]*systray.MenuItem
}

type tray struct {
	c      *ipc.Client
	log    *slog.Logger
	o      options
	cancel context.CancelFunc

	view View
	m    Model

	status, last, account                                                      *systray.MenuItem
	start, syncNow, syncAnyway, pause, pause30, pause1h, pauseTomorrow, resume *systray.MenuItem
	openFolder, recent, conflicts, conflictsMore, deleted                      *systray.MenuItem
	recentSlots                                                                [MaxEntries]*systray.MenuItem
	conflictSlots                                                              [MaxConflicts]conflictSlot
	deletedSlots                                                               [MaxEntries + 2]*systray.MenuItem
	login, loginDevice, subscribe, logout, openLogs, quit                      *systray.MenuItem

	shownItems map[*systray.MenuItem]Item
	icon       icons.State
	tooltip    string

	clicks chan click
	kick   chan struct{} // reconnect now (after starting the daemon)
}

func (t *tray) onReady(ctx context.Context) {
	systray.SetTitle(Title)
	t.shownItems = map[*systray.MenuItem]Item{}
	t.clicks = make(chan click, 32)
	t.kick = make(chan struct{}, 1)

	t.status = t.add(nil, "Starting…", click{what: -1})
	t.last = t.add(nil, "", click{what: -1})
	t.account = t.add(nil, "", click{what: -1})
	systray.AddSeparator()
	t.start = t.add(nil, StartLabel, click{what: actStart})
	t.syncNow = t.add(nil, SyncNowLabel, click{what: actSyncNow})
	t.syncAnyway = t.add(nil, SyncAnywayLabel, click{what: actSyncAnyway})
	t.pause = t.add(nil, PauseLabel, click{what: -1})
	t.pause30 = t.add(t.pause, Pause30Label, click{what: actPause30})
	t.pause1h = t.add(t.pause, Pause1hLabel, click{what: actPause1h})
	t.pauseTomorrow = t.add(t.pause, PauseTomorrowLabel, click{what: actPauseTomorrow})
	t.resume = t.add(nil, ResumeLabel, click{what: actResume})
	systray.AddSeparator()
	t.openFolder = t.add(nil, OpenFolderLabel, click{what: actOpenFolder})
	t.recent = t.add(nil, RecentLabel, click{what: -1})
	for i := range t.recentSlots {
		t.recentSlots[i] = t.add(t.recent, "", click{what: actRecent, slot: i})
	}
	t.conflicts = t.add(nil, ConflictsLabel, click{what: -1})
	for i := range t.conflictSlots {
		s := &t.conflictSlots[i]
		// the conflict's line, then its actions beside it: two menu
		// levels, which every panel draws
		s.item = t.add(t.conflicts, "", click{what: -1})
		for j, a := range ConflictActions {
			s.actions[j] = t.add(t.conflicts, a.Label, click{what: actConflict, slot: i, sub: j})
		}
	}
	t.conflictsMore = t.add(t.conflicts, "", click{what: -1})
	t.deleted = t.add(nil, DeletedLabel, click{what: -1})
	for i := range t.deletedSlots {
		t.deletedSlots[i] = t.add(t.deleted, "", click{what: actDeleted, slot: i})
	}
	systray.AddSeparator()
	t.login = t.add(nil, LoginLabel, click{what: actLogin})
	t.loginDevice = t.add(nil, LoginDeviceLabel, click{what: actLoginDevice})
	t.subscribe = t.add(nil, SubscribeLabel, click{what: actSubscribe})
	t.logout = t.add(nil, LogoutLabel, click{what: actLogout})
	t.openLogs = t.add(nil, OpenLogsLabel, click{what: actOpenLogs})
	t.quit = t.add(nil, QuitLabel, click{what: actQuit})

	go func() {
		<-ctx.Done()
		systray.Quit()
	}()
	t.render()
	if t.o.ready != nil {
		t.o.ready()
	}
	events := make(chan ipc.Event, 64)
	downs := make(chan error, 1)
	go t.watch(ctx, events, downs)
	go t.loop(ctx, events, downs)
	if t.o.notify != nil {
		go func() {
			err := t.o.notify(ctx, func(kind string) {
				select {
				case t.clicks <- click{what: actNotification, kind: kind}:
				default:
				}
			})
			if err != nil {
				t.log.Info("tray: no desktop notifications", "err", err)
			}
		}()
	}
}

// add creates a menu item (under parent, if any) whose clicks are queued
// as c; c.what < 0 makes an item nobody clicks (a line or a submenu).
// systray hands a click over without waiting and drops it when nobody is
// receiving at that moment, so each item gets a goroutine that always
// receives.
func (t *tray) add(parent *systray.MenuItem, label string, c click) *systray.MenuItem {
	var it *systray.MenuItem
	if parent == nil {
		it = systray.AddMenuItem(label, "")
	} else {
		it = parent.AddSubMenuItem(label, "")
	}
	if c.what < 0 {
		return it
	}
	go func() {
		for range it.ClickedCh {
			select {
			case t.clicks <- c:
			default: // 32 clicks queued: this one can go
			}
		}
	}()
	return it
}

// watch follows the daemon's watch stream, reconnecting with backoff, and
// hands events and disconnections to the loop.
func (t *tray) watch(ctx context.Context, events chan<- ipc.Event, downs chan<- error) {
	backoff := minBackoff
	for {
		got := false
		err := t.c.Watch(ctx, func(ev ipc.Event) error {
			got = true
			select {
			case events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("watch stream ended")
		}
		if got {
			backoff = minBackoff
		}
		select {
		case downs <- err:
		case <-ctx.Done():
			return
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-t.kick:
			backoff = minBackoff
		case <-timer.C:
		}
		timer.Stop()
		backoff = min(backoff*2, maxBackoff)
	}
}

// loop owns the view and the menu: it takes in events, disconnections and
// clicks, one at a time.
func (t *tray) loop(ctx context.Context, events <-chan ipc.Event, downs <-chan error) {
	var startTimer, reassert <-chan time.Time
	if itemReassert > 0 {
		reassert = time.After(itemReassert)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reassert:
			reassert = nil
			setIcon(t.icon)
			systray.SetTooltip(t.tooltip)
		case ev := <-events:
			old := t.view
			t.view = t.view.Apply(ev)
			if NeedsLists(old, t.view) {
				t.fetchLists(ctx)
			}
			t.render()
			if t.o.events != nil {
				t.o.events(ev)
			}
		case err := <-downs:
			if t.view.Err == nil {
				t.log.Info("daemon gone; reconnecting", "err", err)
			}
			t.view.Err, t.view.Progress = err, nil
			t.render()
		case <-startTimer:
			startTimer = nil
			if t.view.Starting {
				t.view.Starting = false
				t.view.StartErr = fmt.Sprintf("it did not answer within %s", startWait)
				t.render()
			}
		case c := <-t.clicks:
			if c.what == actStart {
				startTimer = time.After(startWait)
			}
			if done := t.handle(ctx, c); done {
				return
			}
		}
	}
}

// fetchLists refreshes the lists the menu shows from the daemon. A daemon
// that does not serve one gives an empty list.
func (t *tray) fetchLists(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if h, err := t.c.History(ctx, 2*MaxEntries); err == nil {
		t.view.History = h.Passes
	} else {
		t.view.History = nil
		t.logList("history", err)
	}
	if cs, err := t.c.Conflicts(ctx); err == nil {
		t.view.Conflicts = cs.Conflicts
	} else {
		t.view.Conflicts = nil
		t.logList("conflicts", err)
	}
	if vs, err := t.c.Versions(ctx, ipc.VersionsRequest{Deleted: true}); err == nil {
		sort.SliceStable(vs.Versions, func(i, j int) bool { return vs.Versions[i].Kept.After(vs.Versions[j].Kept) })
		t.view.Deleted, t.view.DaysKept = vs.Versions, vs.DaysKept
	} else {
		t.view.Deleted, t.view.DaysKept = nil, 0
		t.logList("deleted notes", err)
	}
}

func (t *tray) logList(what string, err error) {
	if errors.Is(err, ipc.ErrNotImplemented) || errors.Is(err, ipc.ErrLoginRequired) {
		return
	}
	t.log.Debug("tray: list "+what, "err", err)
}

// handle acts on a click; it reports whether the tray quits.
func (t *tray) handle(ctx context.Context, c click) (quit bool) {
	m := t.m
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var err error
	op := ""
	if c.what == actNotification {
		c.what = notificationAction(c.kind)
	}
	switch c.what {
	case actStart:
		op = "start bm-agent"
		t.view.Starting, t.view.StartErr = true, ""
		t.render()
		if err = t.o.start(cctx, t.c.SocketPath()); err != nil {
			t.view.Starting, t.view.StartErr = false, err.Error()
			t.render()
		}
		select {
		case t.kick <- struct{}{}:
		default:
		}
	case actSyncNow:
		op = "sync now"
		_, err = t.c.Sync(cctx, ipc.SyncRequest{})
	case actSyncAnyway:
		if !m.SyncAnyway.Enabled {
			return false
		}
		op = "sync anyway"
		_, err = t.c.Sync(cctx, ipc.SyncRequest{Force: true})
	case actPause30:
		op = "pause"
		err = t.c.PauseFor(cctx, 30*time.Minute)
	case actPause1h:
		op = "pause"
		err = t.c.PauseFor(cctx, time.Hour)
	case actPauseTomorrow:
		op = "pause"
		err = t.c.PauseFor(cctx, UntilTomorrow(t.o.now()))
	case actResume:
		op = "resume"
		err = t.c.Resume(cctx)
	case actOpenFolder:
		op = "open folder"
		err = t.o.open(m.Folder)
	case actRecent:
		op = "open"
		if c.slot < len(m.RecentEntries) {
			target := m.Folder
			if p := m.RecentEntries[c.slot].Path; p != "" {
				target = filepath.Join(m.Folder, filepath.FromSlash(p))
			}
			err = t.o.open(target)
		}
	case actConflict:
		if c.slot >= len(m.ConflictEntries) {
			return false
		}
		ce, a := m.ConflictEntries[c.slot], ConflictActions[c.sub]
		if a.Keep == "" {
			op = "show both"
			err = errors.Join(
				t.o.open(filepath.Join(m.Folder, filepath.FromSlash(ce.Original))),
				t.o.open(filepath.Join(m.Folder, filepath.FromSlash(ce.Path))))
			break
		}
		op = "resolve"
		_, err = t.c.Resolve(cctx, ipc.ResolveRequest{Path: ce.Original, Conflict: ce.Path, Keep: a.Keep})
		t.fetchLists(ctx)
		t.render()
	case actDeleted:
		if c.slot >= len(m.DeletedEntries) || !m.DeletedEntries[c.slot].Enabled {
			return false
		}
		op = "restore"
		e := m.DeletedEntries[c.slot]
		req := ipc.RestoreRequest{Path: e.Path, Version: e.Version}
		if e.Path == "" {
			req = ipc.RestoreRequest{Deleted: true}
		}
		_, err = t.c.Restore(cctx, req)
		t.fetchLists(ctx)
		t.render()
	case actLogin:
		op = "login"
		var ls ipc.LoginStart
		if ls, err = t.c.Login(cctx); err == nil {
			err = t.o.open(ls.URL)
		}
	case actLoginDevice:
		op = "device login"
		_, err = t.c.LoginWith(cctx, ipc.LoginOptions{Device: true})
	case actSubscribe:
		op = "subscribe"
		err = t.o.open(m.SubscribeURL)
	case actLogout:
		op = "logout"
		err = t.c.Logout(cctx)
	case actOpenLogs:
		op = "open logs"
		err = t.writeAndOpenLogs(cctx)
	case actQuit:
		t.cancel()
		return true
	}
	if err != nil {
		t.log.Warn("tray: "+op, "err", err)
	}
	return false
}

// writeAndOpenLogs writes the daemon's recent log records to a file in the user's
// cache folder and opens it.
func (t *tray) writeAndOpenLogs(ctx context.Context) error {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "bm-tray")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("open logs: %w", err)
	}
	var b strings.Builder
	err = t.c.Logs(ctx, ipc.LogsRequest{Lines: 1000}, func(l ipc.LogLine) error {
		fmt.Fprintf(&b, "%s %-5s %s", l.Time.Local().Format("2006-01-02 15:04:05.000"), l.Level, l.Msg)
		keys := make([]string, 0, len(l.Attrs))
		for k := range l.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%v", k, l.Attrs[k])
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		return fmt.Errorf("open logs: %w", err)
	}
	p := filepath.Join(dir, "bm-agent.log")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("open logs: %w", err)
	}
	return t.o.open(p)
}

// render shows the model of the current view.
func (t *tray) render() {
	m := BuildModel(t.view, t.o.now())
	t.m = m
	if m.Icon != t.icon {
		t.icon = m.Icon
		setIcon(m.Icon)
	}
	if m.Tooltip != t.tooltip {
		t.tooltip = m.Tooltip
		systray.SetTooltip(m.Tooltip)
	}
	t.set(t.status, m.Status)
	t.set(t.last, m.LastSync)
	t.set(t.account, m.Account)
	t.set(t.start, m.Start)
	t.set(t.syncNow, m.SyncNow)
	t.set(t.syncAnyway, m.SyncAnyway)
	t.set(t.pause, m.Pause)
	t.set(t.pause30, m.Pause30)
	t.set(t.pause1h, m.Pause1h)
	t.set(t.pauseTomorrow, m.PauseTomorrow)
	t.set(t.resume, m.Resume)
	t.set(t.openFolder, m.OpenFolder)
	t.set(t.recent, m.Recent)
	t.setEntries(t.recentSlots[:], m.RecentEntries)
	t.set(t.conflicts, m.Conflicts)
	for i, s := range t.conflictSlots {
		var e Item
		if i < len(m.ConflictEntries) {
			e = info(m.ConflictEntries[i].Label)
		}
		t.set(s.item, e)
		for j, a := range s.actions {
			t.set(a, Item{Label: ConflictActions[j].Label, Enabled: true, Visible: e.Visible})
		}
	}
	t.set(t.conflictsMore, Item{Label: m.ConflictsMore, Visible: m.ConflictsMore != ""})
	t.set(t.deleted, m.Deleted)
	t.setEntries(t.deletedSlots[:], m.DeletedEntries)
	t.set(t.login, m.Login)
	t.set(t.loginDevice, m.LoginDevice)
	t.set(t.subscribe, m.Subscribe)
	t.set(t.logout, m.Logout)
	t.set(t.openLogs, m.OpenLogs)
	t.set(t.quit, m.Quit)
}

// setEntries shows a list submenu's entries in its slots, hiding the
// slots left over.
func (t *tray) setEntries(slots []*systray.MenuItem, entries []Entry) {
	for i, it := range slots {
		var e Item
		if i < len(entries) {
			e = entries[i].Item()
		}
		t.set(it, e)
	}
}

// set shows it as want, touching only what changed (each change is a
// layout update the panel redraws).
func (t *tray) set(it *systray.MenuItem, want Item) {
	had, ok := t.shownItems[it]
	if ok && had == want {
		return
	}
	t.shownItems[it] = want
	if !ok || had.Label != want.Label {
		it.SetTitle(want.Label)
	}
	if !ok || had.Enabled != want.Enabled {
		if want.Enabled {
			it.Enable()
		} else {
			it.Disable()
		}
	}
	if !ok || had.Visible != want.Visible {
		if want.Visible {
			it.Show()
		} else {
			it.Hide()
		}
	}
}

// openTarget opens a URL, a file or a folder with the platform's opener.
func openTarget(target string) error {
	if target == "" {
		return errors.New("nothing to open")
	}
	cmd := browser.Command(target)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("open %s: %w", target, err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}
