package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/watch"
)

// How a session keeps watching its notes folder: while it cannot (the
// folder is gone, say), it looks again every rearmEvery; after the OS
// refused more watches, every watchLimitRetry. Variables so tests can
// shorten them.
var (
	rearmEvery      = 2 * time.Second
	watchLimitRetry = 10 * time.Minute
)

// folderWatcher keeps a watch.Watcher on the notes folder for as long as a
// session runs. When the folder goes away (removed, moved, unmounted) the
// watch goes with it; the folderWatcher says so in the status and watches
// again once the folder is back, then asks for a pass (what changed
// meanwhile was not seen).
type folderWatcher struct {
	d       *Daemon
	start   func(root string, opt watch.Options, log *slog.Logger) (*watch.Watcher, error)
	opt     watch.Options
	batches chan watch.Batch

	mu sync.Mutex
	w  *watch.Watcher // nil while the folder is not watched
}

func newFolderWatcher(d *Daemon, start func(string, watch.Options, *slog.Logger) (*watch.Watcher, error), opt watch.Options) *folderWatcher {
	return &folderWatcher{d: d, start: start, opt: opt, batches: make(chan watch.Batch)}
}

// Batches are the folder's changes, across re-arms.
func (fw *folderWatcher) Batches() <-chan watch.Batch { return fw.batches }

// Suppress and Resume bracket a pass (see watch.Watcher).
func (fw *folderWatcher) Suppress() {
	if w := fw.current(); w != nil {
		w.Suppress()
	}
}

// SuppressKeepingPending brackets a quick pass (see watch.Watcher).
func (fw *folderWatcher) SuppressKeepingPending() {
	if w := fw.current(); w != nil {
		w.SuppressKeepingPending()
	}
}

// Resume returns what was dropped while suppressed.
func (fw *folderWatcher) Resume() watch.Batch {
	if w := fw.current(); w != nil {
		return w.Resume()
	}
	return watch.Batch{}
}

func (fw *folderWatcher) current() *watch.Watcher {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.w
}

func (fw *folderWatcher) set(w *watch.Watcher) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.w = w
}

// run watches until ctx ends.
func (fw *folderWatcher) run(ctx context.Context) {
	log := fw.d.log.With("component", "watch")
	unwatched := false
	for ctx.Err() == nil {
		w, err := fw.start(fw.d.cfg.Folder, fw.opt, log)
		if err != nil {
			fw.d.setWatcherError(err)
			unwatched = true
			wait := rearmEvery
			if errors.Is(err, watch.ErrWatchLimit) {
				wait = watchLimitRetry
			}
			if !sleepCtx(ctx, wait) {
				return
			}
			continue
		}
		fw.d.setWatcherError(nil)
		fw.set(w)
		runErr := make(chan error, 1)
		go func() { runErr <- w.Run(ctx) }()
		if unwatched {
			log.Info("watching the notes folder again", "folder", fw.d.cfg.Folder)
			// what changed while nothing watched: a full pass finds it
			fw.send(ctx, watch.Batch{Count: 1, Overflow: true, First: time.Now(), Last: time.Now()})
		}
		for b := range w.Batches() {
			fw.send(ctx, b)
		}
		err = <-runErr
		fw.set(nil)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the file watcher stopped")
		}
		fw.d.setWatcherError(err)
		unwatched = true
		if !sleepCtx(ctx, rearmEvery) {
			return
		}
	}
}

// send hands b to the session loop (it waits while a pass runs).
func (fw *folderWatcher) send(ctx context.Context, b watch.Batch) {
	select {
	case fw.batches <- b:
	case <-ctx.Done():
	}
}

// sleepCtx waits d, or less if ctx ends first (false then).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
