// Package watch turns file system notifications under a folder into
// debounced batches of changed paths, the way syncthing's watchaggregator
// does: one batch after a quiet delay, or at the latest after a maximum
// wait from the batch's first event.
//
// fsnotify does not watch recursively, so the watcher adds one watch per
// directory, including directories created later (and walks those for files
// created before their watch was added). While the sync engine runs a pass
// it calls [Watcher.Suppress] and [Watcher.Resume] so its own writes do not
// trigger the next pass; what was dropped meanwhile is handed back by Resume
// for the caller to judge.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for [Options].
const (
	DefaultDelay    = time.Second
	DefaultMaxWait  = 10 * time.Second
	DefaultSettle   = 100 * time.Millisecond
	DefaultMaxPaths = 1000
)

// ErrWatchLimit means the OS refused another watch: on Linux the inotify
// watch limit, elsewhere the open files limit. The caller should fall back
// to interval passes.
var ErrWatchLimit = errors.New("file watch limit reached: on Linux raise it with `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in /etc/sysctl.d/); elsewhere raise the open files limit; until then changes are picked up by interval syncs only")

// ErrRootGone means the watched folder itself was removed, renamed or
// unmounted: no more changes can be seen under it. Watch it anew once it
// is back.
var ErrRootGone = errors.New("the watched folder is gone")

// Options tune a [Watcher]. Zero values take the defaults.
type Options struct {
	// Delay is the quiet time after the last event before a batch is
	// emitted (default 1 s).
	Delay time.Duration
	// MaxWait bounds how long a batch may be held back by a steady stream of
	// events, counted from its first event (default 10 s).
	MaxWait time.Duration
	// Ignore reports whether a path (relative to the root, slash separated)
	// should be ignored; an ignored directory is not watched at all. Nil
	// means [DefaultIgnore].
	Ignore func(rel string) bool
	// Settle is how long events are still treated as suppressed after the
	// last [Watcher.Resume]: notifications of the engine's own last writes
	// may arrive a little late (default 100 ms).
	Settle time.Duration
	// MaxPaths caps [Batch.Paths] (default 1000).
	MaxPaths int
}

// DefaultIgnore ignores paths with a component that starts with "." (.git,
// editor swap files, ...) and names ending in ".bmpart", ".partial" or
// ".tmp" (the engine has rclone write its downloads to *.bmpart, see
// syncer.PartialSuffix, before renaming them; rclone's default is
// .partial).
func DefaultIgnore(rel string) bool {
	if rel == "." || rel == "" {
		return false
	}
	for part := range strings.SplitSeq(rel, "/") {
		if strings.HasPrefix(part, ".") {
			return true
		}
	}
	base := path.Base(rel)
	return strings.HasSuffix(base, ".bmpart") || strings.HasSuffix(base, ".partial") || strings.HasSuffix(base, ".tmp")
}

// Batch is a set of changes under the root.
type Batch struct {
	// Paths are the changed paths, relative to the root, slash separated,
	// deduplicated, sorted, at most Options.MaxPaths of them.
	Paths []string
	// Count is the number of events in the batch (it may exceed len(Paths)).
	Count int
	// Truncated is set when more distinct paths changed than Paths holds.
	Truncated bool
	// Overflow is set when the OS dropped events: Paths is incomplete and
	// only a full pass can tell what changed.
	Overflow bool
	// First and Last are when the batch's first and last events arrived.
	First, Last time.Time
}

// Empty reports whether the batch holds no change at all.
func (b Batch) Empty() bool { return b.Count == 0 && !b.Overflow }

// Watcher watches a folder tree. Create it with [New], then call
// [Watcher.Run] once and read [Watcher.Batches].
type Watcher struct {
	root string
	opt  Options
	log  *slog.Logger
	fw   *fsnotify.Watcher
	out  chan Batch
	drop chan struct{} // Suppress asks Run to drop the pending batch

	running   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	mu          sync.Mutex
	holds       int       // Suppress calls not yet resumed
	settleUntil time.Time // events before this are still suppressed
	missed      acc       // what was dropped while suppressed
}

// New watches every directory under root (root included) that opt.Ignore
// does not exclude. Changes made after New returns are reported once
// [Watcher.Run] runs. If the OS runs out of watches the error wraps
// [ErrWatchLimit]. A nil logger discards logs.
func New(root string, opt Options, logger *slog.Logger) (*Watcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opt = withDefaults(opt)
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("watch new: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("watch new: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("watch new: %s is not a directory", abs)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		if isLimit(err) {
			return nil, fmt.Errorf("watch new: %w: %w", ErrWatchLimit, err)
		}
		return nil, fmt.Errorf("watch new: %w", err)
	}
	w := &Watcher{
		root: abs,
		opt:  opt,
		log:  logger,
		fw:   fw,
		out:  make(chan Batch),
		drop: make(chan struct{}, 1),
	}
	n := 0
	if err := w.addTree(abs, func(string) {}, &n); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch new: %w", err)
	}
	logger.Debug("watching", "root", abs, "dirs", n)
	return w, nil
}

func withDefaults(opt Options) Options {
	if opt.Delay <= 0 {
		opt.Delay = DefaultDelay
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = DefaultMaxWait
	}
	if opt.MaxWait < opt.Delay {
		opt.MaxWait = opt.Delay
	}
	if opt.Ignore == nil {
		opt.Ignore = DefaultIgnore
	}
	if opt.Settle <= 0 {
		opt.Settle = DefaultSettle
	}
	if opt.MaxPaths <= 0 {
		opt.MaxPaths = DefaultMaxPaths
	}
	return opt
}

// Batches returns the channel batches are sent on. It is closed when Run
// returns. Batches are held, and keep growing, until they are received: a
// slow reader gets bigger batches, never a stalled watcher.
func (w *Watcher) Batches() <-chan Batch { return w.out }

// Close releases the OS watches. Run closes them when it returns; call Close
// only if Run is never called.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() { w.closeErr = w.fw.Close() })
	return w.closeErr
}

// Suppress starts dropping events, typically while a sync pass writes to
// the folder. Calls nest: each needs its [Watcher.Resume]. Events already
// pending are dropped too, since the pass about to run lists the folder
// after they happened. New directories still get their watches.
func (w *Watcher) Suppress() { w.suppress(true) }

// SuppressKeepingPending is Suppress for a pass that does not list the
// folder (a quick pass over a few paths or keys): the changes already
// pending are kept, and their batch is delivered as it would have been
// (once due), so the pass cannot swallow them.
func (w *Watcher) SuppressKeepingPending() { w.suppress(false) }

func (w *Watcher) suppress(dropPending bool) {
	w.mu.Lock()
	w.holds++
	w.mu.Unlock()
	if !dropPending {
		return
	}
	select {
	case w.drop <- struct{}{}:
	default:
	}
}

// Resume ends a [Watcher.Suppress]. When it ends the last one it waits for
// Options.Settle (late notifications of the pass's own writes are still
// dropped meanwhile) and returns what was dropped since the first Suppress.
//
// The trade-off: a user's edit made while a pass runs is dropped along with
// the engine's own writes; the two cannot be told apart here. The returned
// batch lets the caller decide: e.g. if the pass wrote nothing locally, any
// dropped event was someone else's and deserves a follow-up pass; otherwise
// the next interval pass (or a post-pass check) catches it.
func (w *Watcher) Resume() Batch {
	w.mu.Lock()
	if w.holds == 0 {
		w.mu.Unlock()
		return Batch{}
	}
	w.holds--
	if w.holds > 0 {
		w.mu.Unlock()
		return Batch{}
	}
	w.settleUntil = time.Now().Add(w.opt.Settle)
	w.mu.Unlock()

	time.Sleep(w.opt.Settle)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holds > 0 {
		return Batch{}
	}
	b := w.missed.batch()
	w.missed = acc{}
	return b
}

// Hold runs fn with events suppressed and returns what was dropped, as
// [Watcher.Resume] does.
func (w *Watcher) Hold(fn func()) (missed Batch) {
	w.Suppress()
	defer func() { missed = w.Resume() }()
	fn()
	return missed
}

// suppressed reports whether an event arriving at now is to be dropped.
func (w *Watcher) suppressed(now time.Time) bool {
	return w.holds > 0 || now.Before(w.settleUntil)
}

// Run delivers batches until ctx ends (it then returns nil) or the watcher
// fails. It returns an error wrapping [ErrWatchLimit] if a new directory
// cannot be watched. It closes the watcher and the Batches channel when it
// returns, and may be called only once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("watch run: already running")
	}
	defer close(w.out)
	defer w.Close()

	var (
		pend  acc
		ready bool  // pend is due and waits for the reader
		dirty bool  // pend changed since readyBatch was built
		rb    Batch // pend as a Batch, while ready
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	// arm schedules the batch's emission after an accepted event.
	arm := func(now time.Time) {
		if ready {
			return
		}
		due := pend.last.Add(w.opt.Delay)
		if limit := pend.first.Add(w.opt.MaxWait); limit.Before(due) {
			due = limit
		}
		timer.Reset(max(due.Sub(now), 0))
	}
	for {
		var out chan Batch
		if ready {
			out = w.out
			if dirty {
				rb, dirty = pend.batch(), false
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.drop:
			if !pend.empty() {
				w.log.Debug("dropping pending changes: a pass is starting", "events", pend.count)
			}
			pend, ready = acc{}, false
			timer.Stop()
		case ev, ok := <-w.fw.Events:
			if !ok {
				return nil
			}
			now := time.Now()
			accepted, err := w.handle(ev, &pend, now)
			if err != nil {
				return fmt.Errorf("watch run: %w", err)
			}
			if accepted {
				dirty = true
				arm(now)
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return nil
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("watch error", "err", err)
				continue
			}
			now := time.Now()
			w.log.Warn("watch queue overflowed: some changes were not reported")
			w.mu.Lock()
			if w.suppressed(now) {
				w.missed.overflowAt(now)
				w.mu.Unlock()
				continue
			}
			w.mu.Unlock()
			pend.overflowAt(now)
			dirty = true
			arm(now)
		case <-timer.C:
			ready = true
		case out <- rb:
			w.log.Debug("batch", "events", rb.Count, "paths", len(rb.Paths), "overflow", rb.Overflow)
			pend, ready, rb = acc{}, false, Batch{}
		}
	}
}

// handle records one event, adding watches for a new directory. It reports
// whether anything was added to pend, and fails with ErrRootGone when the
// root itself went away.
func (w *Watcher) handle(ev fsnotify.Event, pend *acc, now time.Time) (bool, error) {
	if filepath.Clean(ev.Name) == w.root && (ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) {
		// Its watch is gone with it (or follows it elsewhere): a folder
		// made again in its place is not watched.
		return false, fmt.Errorf("%w: %s", ErrRootGone, w.root)
	}
	rel, ok := w.rel(ev.Name)
	if !ok || w.opt.Ignore(rel) {
		return false, nil
	}
	changed := []string{rel}
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			n := 0
			err := w.addTree(ev.Name, func(r string) { changed = append(changed, r) }, &n)
			if err != nil {
				return false, err
			}
			w.log.Debug("watching new directory", "dir", rel, "dirs", n)
		}
	}
	w.mu.Lock()
	if w.suppressed(now) {
		for _, r := range changed {
			w.missed.add(r, now, w.opt.MaxPaths)
		}
		w.mu.Unlock()
		return false, nil
	}
	w.mu.Unlock()
	for _, r := range changed {
		pend.add(r, now, w.opt.MaxPaths)
	}
	return true, nil
}

// rel returns name relative to the root, slash separated.
func (w *Watcher) rel(name string) (string, bool) {
	r, err := filepath.Rel(w.root, name)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	return filepath.ToSlash(r), true
}

// addTree watches dir and every directory below it that is not ignored,
// calling found with the relative path of every file and directory below
// dir (not dir itself). n counts the directories watched.
func (w *Watcher) addTree(dir string, found func(rel string), n *int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && !errors.Is(err, fs.ErrNotExist) {
				w.log.Warn("cannot read directory", "dir", p, "err", err)
			}
			return nil // vanished or unreadable: skip it
		}
		rel, ok := w.rel(p)
		if !ok {
			return nil
		}
		if p != dir {
			if w.opt.Ignore(rel) {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			found(rel)
		}
		if !d.IsDir() {
			return nil
		}
		if err := w.fw.Add(p); err != nil {
			switch {
			case isLimit(err):
				return fmt.Errorf("watch %s: %w: %w", rel, ErrWatchLimit, err)
			case errors.Is(err, fs.ErrNotExist):
				return fs.SkipDir
			default:
				w.log.Warn("cannot watch directory", "dir", rel, "err", err)
				return fs.SkipDir
			}
		}
		*n++
		return nil
	})
}

// isLimit reports whether err means the OS ran out of watches.
func isLimit(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EMFILE)
}

// acc accumulates the events of one batch.
type acc struct {
	paths       map[string]struct{}
	count       int
	truncated   bool
	overflow    bool
	first, last time.Time
}

func (a *acc) empty() bool { return a.count == 0 && !a.overflow }

func (a *acc) touch(now time.Time) {
	if a.first.IsZero() {
		a.first = now
	}
	a.last = now
}

func (a *acc) add(rel string, now time.Time, maxPaths int) {
	a.touch(now)
	a.count++
	if a.paths == nil {
		a.paths = make(map[string]struct{})
	}
	if _, ok := a.paths[rel]; ok {
		return
	}
	if len(a.paths) >= maxPaths {
		a.truncated = true
		return
	}
	a.paths[rel] = struct{}{}
}

func (a *acc) overflowAt(now time.Time) {
	a.touch(now)
	a.overflow = true
}

func (a *acc) batch() Batch {
	if a.empty() {
		return Batch{}
	}
	paths := make([]string, 0, len(a.paths))
	for p := range a.paths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return Batch{
		Paths:     paths,
		Count:     a.count,
		Truncated: a.truncated,
		Overflow:  a.overflow,
		First:     a.first,
		Last:      a.last,
	}
}
