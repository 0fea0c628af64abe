// Package notify raises desktop notifications from the daemon's watch
// stream: a new conflict, a held sync, files that cannot sync, a login or
// a subscription required, and being offline for more than ten minutes.
// The tray runs it (it lives in the person's desktop session, so it works
// when the daemon is a service with no session bus): [Run] follows the
// daemon's stream itself, so wiring it in is one call.
//
// Notifications of one kind that come within a short window (5 s) are
// coalesced into one ("30 sync conflicts"). The daemon's setting
// `bm-agent config set notifications off` turns them off; [Run] reads it
// through the local API right before each notification, so a change
// applies at once. Clicking a notification calls [Options.OnClick] with
// its kind.
//
// On Linux they go to org.freedesktop.Notifications over the session
// D-Bus (notify_linux.go). On macOS and Windows they are the platform's
// own, through github.com/gen2brain/beeep (notify_macwin.go): the
// notification center or osascript on macOS, a toast on Windows; there
// clicks are not reported, so [Options.OnClick] is never called. On other
// platforms [NewDesktopSender] fails with [ErrNotSupported] for now
// (notify_other.go).
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// ErrNotSupported: this platform has no notification sender yet.
var ErrNotSupported = errors.New("desktop notifications are not supported on this platform yet")

// Kinds of notifications (the ipc.Notify constants), and KindOther for
// anything else the daemon publishes (a key replaced, say).
const (
	KindConflicts            = ipc.NotifyConflicts
	KindHold                 = ipc.NotifyHold
	KindNotSyncing           = ipc.NotifyNotSyncing
	KindLoginRequired        = ipc.NotifyLoginRequired
	KindSubscriptionRequired = ipc.NotifySubscriptionRequired
	KindOffline              = ipc.NotifyOffline
	KindOther                = "other"
)

// Defaults of [Options].
const (
	DefaultWindow       = 5 * time.Second
	DefaultOfflineAfter = 10 * time.Minute
)

// Message is one desktop notification.
type Message struct {
	Kind  string
	Level string // ipc.LevelInfo, LevelWarning, LevelError
	Title string
	Body  string
}

// Sender shows notifications on the desktop.
type Sender interface {
	// Send shows m and returns its ID.
	Send(ctx context.Context, m Message) (uint32, error)
	// Clicked receives the ID of each notification the person clicks;
	// it is closed by Close.
	Clicked() <-chan uint32
	Close() error
}

// Options configure a [Notifier].
type Options struct {
	Logger *slog.Logger
	// OnClick is called with the kind of a notification the person
	// clicked (on the notifier's goroutine: it must not block for long).
	// The tray opens the matching menu action, or the notes folder.
	OnClick func(kind string)
	// Enabled is asked right before each notification (nil: always on).
	// Run sets it from the daemon's notifications setting.
	Enabled func(ctx context.Context) bool
	// Window is how long notifications of one kind are gathered into one
	// (default DefaultWindow).
	Window time.Duration
	// OfflineAfter is how long the daemon is offline before it is said
	// (default DefaultOfflineAfter).
	OfflineAfter time.Duration
	// Sender shows them (nil: the desktop's, see NewDesktopSender).
	Sender Sender
}

// Notifier turns the daemon's events into desktop notifications. Feed it
// with Handle and run Serve (or use Run, which does both).
type Notifier struct {
	o   Options
	log *slog.Logger
	in  chan ipc.Event
	now func() time.Time
}

// New returns a notifier that sends through opts.Sender, or the desktop's
// (an error wrapping ErrNotSupported where there is none, or the reason
// the desktop cannot be reached).
func New(opts Options) (*Notifier, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.OfflineAfter <= 0 {
		opts.OfflineAfter = DefaultOfflineAfter
	}
	if opts.Sender == nil {
		s, err := NewDesktopSender(opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("notify: %w", err)
		}
		opts.Sender = s
	}
	return &Notifier{o: opts, log: opts.Logger, in: make(chan ipc.Event, 256), now: time.Now}, nil
}

// Handle takes one event of the daemon's watch stream. It never blocks:
// an event that finds 256 queued is dropped (and logged).
func (n *Notifier) Handle(ev ipc.Event) {
	switch ev.Kind {
	case ipc.EventSnapshot, ipc.EventState, ipc.EventNotification:
	default:
		return // progress, login URLs: nothing to tell
	}
	select {
	case n.in <- ev:
	default:
		n.log.Warn("notifier behind: an event was dropped", "kind", ev.Kind)
	}
}

// batch gathers the notifications of one kind within the window.
type batch struct {
	kind, level, title, body string
	count                    int
	due                      time.Time
}

// state is what Serve keeps between events.
type state struct {
	prev          *ipc.Status
	batches       map[string]*batch // by kind (KindOther: by kind and title)
	order         []string
	offlineSince  time.Time // the outage being timed (zero: online)
	offlineSaid   time.Time // the outage already said
	clicks        map[uint32]string
	clickOrder    []uint32
	offlineTimer  *time.Timer
	flushTimer    *time.Timer
	flushTimerSet bool
}

// Serve sends notifications for the events handed in until ctx ends, then
// closes the sender. It returns nil when ctx ends.
func (n *Notifier) Serve(ctx context.Context) error {
	defer n.o.Sender.Close()
	st := &state{batches: map[string]*batch{}, clicks: map[uint32]string{},
		offlineTimer: stoppedTimer(), flushTimer: stoppedTimer()}
	clicked := n.o.Sender.Clicked()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-n.in:
			n.event(st, ev)
		case <-st.flushTimer.C:
			st.flushTimerSet = false
			n.flush(ctx, st)
		case <-st.offlineTimer.C:
			if !st.offlineSince.IsZero() && !st.offlineSince.Equal(st.offlineSaid) {
				st.offlineSaid = st.offlineSince
				n.add(st, Message{Kind: KindOffline, Level: ipc.LevelWarning}, 1)
			}
		case id, ok := <-clicked:
			if !ok {
				clicked = nil
				continue
			}
			if kind, known := st.clicks[id]; known && n.o.OnClick != nil {
				n.log.Info("notification clicked", "kind", kind)
				n.o.OnClick(kind)
			}
		}
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// event takes one event in.
func (n *Notifier) event(st *state, ev ipc.Event) {
	switch ev.Kind {
	case ipc.EventNotification:
		if ev.Notification == nil {
			return
		}
		switch ev.Notification.Kind {
		case KindConflicts, KindHold, KindNotSyncing, KindLoginRequired, KindSubscriptionRequired, KindOffline:
			return // the state event that carries it says it (derive)
		}
		m := Message{Kind: KindOther, Level: ev.Notification.Level, Title: ev.Notification.Title, Body: ev.Notification.Message}
		n.add(st, m, 1)
	case ipc.EventSnapshot, ipc.EventState:
		if ev.Status == nil {
			return
		}
		cur := *ev.Status
		if ev.Kind == ipc.EventState && st.prev != nil {
			for _, d := range derive(*st.prev, cur) {
				n.add(st, d.m, d.count)
			}
		}
		// A snapshot (the first message, and each reconnect) is the
		// baseline: what it shows was there before, and was said then.
		st.prev = &cur
		n.timeOffline(st, cur)
	}
}

type derived struct {
	m     Message
	count int
}

// derive returns what changed from prev to cur that a person should be
// told about.
func derive(prev, cur ipc.Status) []derived {
	var out []derived
	// the pass's own conflicts and those another device's passes made
	// that it brought here
	if ls := cur.LastSync; ls != nil && ls.Conflicts+ls.ConflictsArrived > 0 && (prev.LastSync == nil || !prev.LastSync.Start.Equal(ls.Start)) {
		out = append(out, derived{Message{Kind: KindConflicts, Level: ipc.LevelWarning}, ls.Conflicts + ls.ConflictsArrived})
	}
	if cur.Hold != nil && (prev.Hold == nil || prev.Hold.Reason != cur.Hold.Reason) {
		out = append(out, derived{Message{Kind: KindHold, Level: ipc.LevelError, Body: cur.Hold.Message}, 1})
	}
	if k := newFailed(prev.NotSyncing, cur.NotSyncing); k > 0 {
		out = append(out, derived{Message{Kind: KindNotSyncing, Level: ipc.LevelWarning}, k})
	}
	if cur.State == ipc.StateLoginRequired && prev.State != ipc.StateLoginRequired {
		out = append(out, derived{Message{Kind: KindLoginRequired, Level: ipc.LevelWarning}, 1})
	}
	if cur.State == ipc.StateSubscriptionRequired && prev.State != ipc.StateSubscriptionRequired {
		out = append(out, derived{Message{Kind: KindSubscriptionRequired, Level: ipc.LevelWarning}, 1})
	}
	return out
}

// newFailed counts the failed items of cur that prev did not have.
func newFailed(prev, cur []ipc.FailedItem) int {
	had := make(map[string]bool, len(prev))
	for _, p := range prev {
		had[p.Path] = true
	}
	k := 0
	for _, c := range cur {
		if !had[c.Path] {
			k++
		}
	}
	return k
}

// timeOffline arms the offline timer when an outage starts, and stops it
// when the daemon is back.
func (n *Notifier) timeOffline(st *state, cur ipc.Status) {
	if !cur.State.Unreachable() {
		st.offlineSince = time.Time{}
		st.offlineTimer.Stop()
		if _, ok := st.batches[KindOffline]; ok { // back before it was said
			delete(st.batches, KindOffline)
			st.order = slices.DeleteFunc(st.order, func(k string) bool { return k == KindOffline })
			n.armFlush(st)
		}
		return
	}
	since := cur.Since
	if cur.OfflineSince != nil {
		since = *cur.OfflineSince
	}
	if since.IsZero() {
		since = n.now()
	}
	if st.offlineSince.Equal(since) {
		return // timed already
	}
	st.offlineSince = since
	st.offlineTimer.Stop()
	st.offlineTimer.Reset(max(0, since.Add(n.o.OfflineAfter).Sub(n.now())))
}

// add gathers m (count times) into its kind's batch.
func (n *Notifier) add(st *state, m Message, count int) {
	key := m.Kind
	if m.Kind == KindOther {
		key += "\x00" + m.Title
	}
	b, ok := st.batches[key]
	if !ok {
		b = &batch{kind: m.Kind, title: m.Title, due: n.now().Add(n.o.Window)}
		st.batches[key] = b
		st.order = append(st.order, key)
	}
	b.count += count
	if m.Body != "" {
		b.body = m.Body
	}
	if b.level == "" || m.Level == ipc.LevelError {
		b.level = m.Level
	}
	if m.Kind == KindOffline {
		b.body = st.offlineSince.Local().Format("15:04")
	}
	n.armFlush(st)
}

// armFlush sets the flush timer to the earliest batch's due time.
func (n *Notifier) armFlush(st *state) {
	var first time.Time
	for _, b := range st.batches {
		if first.IsZero() || b.due.Before(first) {
			first = b.due
		}
	}
	if st.flushTimerSet {
		st.flushTimer.Stop()
	}
	if first.IsZero() {
		st.flushTimerSet = false
		return
	}
	st.flushTimer.Reset(max(0, first.Sub(n.now())))
	st.flushTimerSet = true
}

// flush sends the batches that are due.
func (n *Notifier) flush(ctx context.Context, st *state) {
	now := n.now()
	var keep []string
	var due []*batch
	for _, key := range st.order {
		b := st.batches[key]
		if b.due.After(now) {
			keep = append(keep, key)
			continue
		}
		delete(st.batches, key)
		due = append(due, b)
	}
	st.order = keep
	n.armFlush(st)
	if len(due) == 0 {
		return
	}
	if n.o.Enabled != nil && !n.o.Enabled(ctx) {
		n.log.Info("notifications are off: not shown", "count", len(due))
		return
	}
	for _, b := range due {
		m := b.message()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, err := n.o.Sender.Send(sctx, m)
		cancel()
		if err != nil {
			n.log.Warn("desktop notification not shown", "kind", m.Kind, "err", err)
			continue
		}
		n.log.Debug("desktop notification shown", "kind", m.Kind, "id", id, "count", b.count)
		st.clicks[id] = m.Kind
		st.clickOrder = append(st.clickOrder, id)
		if len(st.clickOrder) > 64 {
			delete(st.clicks, st.clickOrder[0])
			st.clickOrder = st.clickOrder[1:]
		}
	}
}

// message words a batch for a person.
func (b *batch) message() Message {
	m := Message{Kind: b.kind, Level: b.level}
	switch b.kind {
	case KindConflicts:
		if b.count == 1 {
			m.Title = "A sync conflict"
			m.Body = "A note changed on two devices; both versions are kept. Click to settle it."
		} else {
			m.Title = fmt.Sprintf("%d sync conflicts", b.count)
			m.Body = fmt.Sprintf("%d notes changed on two devices; both versions of each are kept. Click to settle them.", b.count)
		}
	case KindHold:
		m.Title = "Sync is on hold"
		m.Body = sentence(b.body)
	case KindNotSyncing:
		m.Title = "Files that cannot sync"
		if b.count == 1 {
			m.Body = "1 file does not sync for now; everything else does. Click to see why."
		} else {
			m.Body = fmt.Sprintf("%d files do not sync for now; everything else does. Click to see why.", b.count)
		}
	case KindLoginRequired:
		m.Title = "Log in to keep syncing"
		m.Body = "The bm-agent login expired, so nothing syncs. Click to log in."
	case KindSubscriptionRequired:
		m.Title = "Subscription required"
		m.Body = "Syncing stopped: the account has no active subscription."
	case KindOffline:
		m.Title = "Offline"
		m.Body = "bm-agent has not reached the server or the bucket since " + b.body +
			". It keeps trying; your changes sync when it is back."
	default:
		m.Title, m.Body = b.title, sentence(b.body)
		if b.count > 1 {
			m.Title = fmt.Sprintf("%s (%d)", b.title, b.count)
		}
	}
	return m
}

// sentence starts s with a capital letter and ends it with a period.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// Run raises desktop notifications for the daemon behind c until ctx
// ends: it follows the daemon's watch stream (reconnecting when the daemon
// restarts), reads the daemon's notifications setting before each
// notification (opts.Enabled, unless set), and calls opts.OnClick when
// one is clicked. It fails at once when the desktop cannot show
// notifications (ErrNotSupported, or no session bus); otherwise it
// returns nil when ctx ends.
func Run(ctx context.Context, c *ipc.Client, opts Options) error {
	if opts.Enabled == nil {
		opts.Enabled = SettingEnabled(c)
	}
	n, err := New(opts)
	if err != nil {
		return err
	}
	go n.follow(ctx, c)
	return n.Serve(ctx)
}

// follow hands the daemon's watch stream to Handle, reconnecting with a
// backoff (1 s doubling to 30 s).
func (n *Notifier) follow(ctx context.Context, c *ipc.Client) {
	backoff := time.Second
	for {
		got := false
		err := c.Watch(ctx, func(ev ipc.Event) error {
			got = true
			n.Handle(ev)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		if got {
			backoff = time.Second
		}
		n.log.Debug("watch stream ended; reconnecting", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// SettingKey is the daemon's setting that turns notifications off
// (`bm-agent config set notifications off`).
const SettingKey = "notifications"

// SettingEnabled reports, each time it is called, whether the daemon's
// notifications setting leaves them on: anything but "off" does, and so
// does a daemon that cannot be asked.
func SettingEnabled(c *ipc.Client) func(context.Context) bool {
	return func(ctx context.Context) bool {
		m, err := c.ConfigGet(ctx)
		if err != nil {
			return true
		}
		v, _ := m[SettingKey].(string)
		return !strings.EqualFold(v, "off")
	}
}
