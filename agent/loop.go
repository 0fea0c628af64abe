package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/watch"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// runSession runs a logged-in session until ctx ends or it is logged out:
// its sync pair, and what follows the cloud for it (change events,
// version pruning).
func (d *Daemon) runSession(ctx context.Context, s *session) {
	sctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	d.mu.Lock()
	d.session = s
	d.mu.Unlock()
	defer func() {
		cancel()
		d.mu.Lock()
		d.session = nil
		d.mu.Unlock()
		close(s.done)
	}()

	if s.client != nil {
		go d.followRemote(sctx, s)
	}
	go d.pruneVersions(sctx, s)
	var wg sync.WaitGroup
	for _, p := range s.pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Serve(sctx); err != nil && sctx.Err() == nil {
				d.log.Error("sync pair stopped", "folder", p.folder, "err", err)
			}
		}()
	}
	wg.Wait()
}

// othersChanges reports whether a batch the watcher dropped during a pass
// holds a change the pass did not make itself.
func othersChanges(b watch.Batch, res syncer.Result) bool {
	if b.Empty() {
		return false
	}
	if b.Overflow || b.Truncated || (res.LocalChanged && res.LocalWrites == nil) {
		return true // cannot tell: look again
	}
	for _, p := range b.Paths {
		if _, ours := slices.BinarySearch(res.LocalWrites, p); !ours && !isParentOf(p, res.LocalWrites) {
			return true
		}
	}
	return false
}

// isParentOf reports whether dir is a folder above one of paths (the
// watcher reports the folders a pass's writes create).
func isParentOf(dir string, paths []string) bool {
	i, _ := slices.BinarySearch(paths, dir+"/")
	return i < len(paths) && strings.HasPrefix(paths[i], dir+"/")
}

// drainCalls appends every sync request already queued on ch.
func drainCalls(ch chan syncCall, calls []syncCall) []syncCall {
	for {
		select {
		case c := <-ch:
			calls = append(calls, c)
		default:
			return calls
		}
	}
}

// splitDryRuns keeps dry runs out of a pass that real requests make real:
// with both among calls, the real ones go now and the dry ones wait for a
// pass of their own (whose caller gets a plan, and nothing changes for
// it).
func splitDryRuns(calls []syncCall) (now, later []syncCall) {
	for _, c := range calls {
		if c.req.DryRun {
			later = append(later, c)
		} else {
			now = append(now, c)
		}
	}
	if len(now) == 0 {
		return later, nil
	}
	return now, later
}

// mergeRequests folds coalesced requests into one pass: any of them asking
// for a resync, a forced run or a profile gets it. A dry run is merged only
// with dry runs (splitDryRuns keeps them apart); a wake-up among them makes
// the pass real.
func mergeRequests(calls []syncCall) (req ipc.SyncRequest, waiting bool) {
	dry := len(calls) > 0
	for _, c := range calls {
		if c.reply != nil {
			waiting = true
		}
		if c.req == (ipc.SyncRequest{}) {
			dry = false // a wake-up or plain request
			continue
		}
		req.Resync = req.Resync || c.req.Resync
		req.Force = req.Force || c.req.Force
		if c.req.Profile != "" {
			req.Profile = c.req.Profile
		}
		dry = dry && c.req.DryRun
	}
	req.DryRun = dry
	return req, waiting
}

// answer replies to every waiting caller.
func answer(calls []syncCall, sum ipc.PassSummary, err error) {
	for _, c := range calls {
		if c.reply != nil {
			c.reply <- syncReply{summary: sum, err: err}
		}
	}
}

// Sync implements ipc.Backend: a pass now, coalesced with one already queued.
func (d *Daemon) Sync(ctx context.Context, req ipc.SyncRequest) (ipc.PassSummary, error) {
	if req.Profile != "" && !validProfile(req.Profile) {
		return ipc.PassSummary{}, fmt.Errorf("sync: profile %q: want safe, balanced or fast", req.Profile)
	}
	p := d.pair()
	if p == nil {
		return ipc.PassSummary{}, d.refusal("sync")
	}
	if h := d.blockingHold(); h != nil && !(req.Force || req.Resync || req.DryRun) {
		return ipc.PassSummary{}, fmt.Errorf("%w: %s", ipc.ErrHeld, h.Message)
	}
	if d.isPaused() && !req.DryRun {
		return ipc.PassSummary{}, ipc.ErrPaused
	}
	return p.request(ctx, req)
}

// History implements ipc.HistoryReader.
func (d *Daemon) History(_ context.Context, limit int) (ipc.History, error) {
	passes, err := d.history.Last(limit)
	if err != nil {
		return ipc.History{}, err
	}
	return ipc.History{Passes: passes}, nil
}

// Conflicts implements ipc.ConflictLister.
func (d *Daemon) Conflicts(ctx context.Context) (ipc.Conflicts, error) {
	cs, err := d.findConflicts(ctx)
	if err != nil {
		return ipc.Conflicts{}, err
	}
	return ipc.Conflicts{Folder: d.cfg.Folder, Conflicts: cs}, nil
}

// setWatcherError records why file changes are not watched (nil: they
// are), with the fix, in the status and as a notification; passes then
// run on the interval only.
func (d *Daemon) setWatcherError(err error) {
	msg := ""
	switch {
	case err == nil:
	case errors.Is(err, watch.ErrRootGone), errors.Is(err, os.ErrNotExist):
		msg = "the notes folder " + d.cfg.Folder + " is gone, so nothing is synced or deleted; bm-agent watches it again as soon as it is back"
	default:
		msg = "file changes are not watched, syncing every " + d.liveSettings().interval.String() + " instead: " + err.Error()
		if !errors.Is(err, watch.ErrWatchLimit) {
			msg += " (bm-agent doctor checks the watch limits)"
		}
	}
	changed := false
	d.store.Update(func(st *ipc.Status) {
		changed = st.Watcher != msg
		st.Watcher = msg
	})
	if !changed || err == nil {
		return
	}
	d.log.Warn("file watcher unavailable", "err", err)
	d.store.Notify(ipc.Notification{Level: ipc.LevelWarning, Title: "Not watching the notes folder", Message: msg})
}
