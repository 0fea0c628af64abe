package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/watch"
	"github.com/basicmachines-co/bm-agent/cloudapi/tenantapi"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// testPassDelayEnv names a test-only environment variable: a duration the
// daemon waits at the start of every pass (in state "syncing"), so that
// end-to-end tests can stop it in the middle of one. Never set it otherwise.
const testPassDelayEnv = "BM_AGENT_TEST_PASS_DELAY"

// testPassDelay reads testPassDelayEnv; zero when unset or malformed.
func testPassDelay() time.Duration {
	d, err := time.ParseDuration(os.Getenv(testPassDelayEnv))
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// runSession runs the sync loop until ctx ends or the session is logged out.
//
// Passes start on debounced local changes, on the interval, and on sync
// requests (which coalesce: every request that queued during a pass is
// answered by the one next pass). After a failure the next attempt waits an
// exponential backoff with jitter instead of the interval. While paused,
// or while a hold waits for `sync --force`, only explicit requests run.
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

	live := d.liveSettings()
	d.setWatcherError(nil)
	w := newFolderWatcher(d, watch.Options{Delay: live.debounce, MaxWait: live.maxWait})
	go w.run(sctx)
	batches := w.Batches()

	if s.remote != nil && s.client != nil {
		go d.followRemote(sctx, s)
	}
	go d.pruneVersions(sctx, s)

	interval := live.interval
	rt := newRetry(interval)
	var kr keyRotation
	timer := time.NewTimer(0) // first pass at once
	defer timer.Stop()
	trigger := "startup"
	for {
		var calls []syncCall
		select {
		case <-sctx.Done():
			return
		case b := <-batches:
			trigger = "watch"
			d.log.Debug("local changes", "count", b.Count)
		case <-timer.C:
			if trigger != "startup" {
				trigger = "interval"
				if rt.failures > 0 {
					trigger = "retry"
				}
			}
		case c := <-s.syncReq:
			calls, trigger = append(calls, c), "manual"
		case <-s.remote:
			trigger = "remote"
			d.log.Debug("remote change from another device")
		case <-d.cfgChanged:
			nl := d.liveSettings()
			if nl.interval != interval {
				interval = nl.interval
				rt = newRetry(interval)
				timer.Reset(interval)
				d.log.Info("interval changed", "interval", interval)
			}
			if nl.debounce != live.debounce || nl.maxWait != live.maxWait {
				d.log.Info("debounce changed: restarting the session's watcher", "debounce", nl.debounce, "max_wait", nl.maxWait)
				live = nl
				s.cancel() // Serve starts a new session with a new watcher
			}
			continue
		}
		// Coalesce: every request queued by now is answered by this pass.
		calls = drainCalls(s.syncReq, calls)
		if len(calls) > 0 {
			trigger = "manual"
		}
		req, waiting := mergeRequests(calls)

		if d.isPaused() && !waiting {
			d.setState(StatePaused, "")
			answer(calls, ipc.PassSummary{Skipped: "paused"}, nil)
			timer.Reset(d.pauseWait(interval))
			continue
		}
		if h := d.blockingHold(); h != nil && !(req.Force || req.Resync || req.DryRun) {
			d.setState(StatePaused, h.Message)
			var err error
			if waiting {
				err = fmt.Errorf("%w: %s", ipc.ErrHeld, h.Message)
			}
			answer(calls, ipc.PassSummary{Skipped: "on hold: " + h.Reason}, err)
			timer.Reset(interval)
			continue
		}
		w.Suppress()
		sum, res, err := d.pass(sctx, s, trigger, req)
		if err != nil && sctx.Err() == nil && errors.Is(err, syncer.ErrKeyRejected) {
			// S3 refused the device's key (revoked at the server, say):
			// mint a new one and run the pass again, at most once per
			// failure burst (then with backoff).
			if d.recoverKey(sctx, s, &kr) {
				sum, res, err = d.pass(sctx, s, triggerKeyReplaced, req)
			}
		}
		if err == nil {
			kr.reset()
		}
		// A pass that made news for the other side (a conflict file, a note
		// it did not delete) is followed by one that takes it there.
		followUp := err == nil && res.Again && !req.DryRun
		// Changes seen during a pass to paths it did not write itself were
		// someone else's: they get a pass of their own at once.
		if dropped := w.Resume(); othersChanges(dropped, res) {
			followUp = true
		}
		answer(calls, sum, nil)
		trigger = ""
		if sctx.Err() != nil {
			return
		}

		next := interval
		switch {
		case req.DryRun:
		case err != nil && sum.Cancelled:
		case err != nil:
			next = rt.failed()
			if h := d.blockingHold(); h != nil {
				next = interval // waits for the user, not for a retry
			}
		default:
			rt.succeeded()
		}
		if len(s.syncReq) > 0 || followUp {
			next = 0
		}
		timer.Reset(next)
		d.mu.Lock()
		at := time.Now().Add(next)
		d.status.NextSync = &at
		d.status.Failures = rt.failures
		d.status.RetryAt = nil
		if rt.failures > 0 {
			d.status.RetryAt = &at
		}
		d.mu.Unlock()
	}
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

// mergeRequests folds coalesced requests into one pass: any of them asking
// for a resync, a forced run or a profile gets it. A dry run is merged only
// with dry runs: a real request turns the pass into a real one (the dry
// run's caller then sees what was done, not a plan).
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

// pass runs one pass and records it: status, hold, history.
func (d *Daemon) pass(ctx context.Context, s *session, trigger string, req ipc.SyncRequest) (ipc.PassSummary, syncer.Result, error) {
	if trigger == "" {
		trigger = "manual"
	}
	d.setState(StateSyncing, "")
	profile := req.Profile
	if profile == "" {
		profile = d.liveSettings().profile
	}
	if delay := testPassDelay(); delay > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	opt := engineOptions(trigger, req, profile)
	if d.hub != nil {
		opt.Progress = d.progressPublisher(trigger)
	}
	res, err := s.engine.Pass(ctx, opt)
	sum := ipc.PassSummary{
		Start:         res.Start,
		DurationMS:    res.Duration.Milliseconds(),
		Trigger:       trigger,
		Uploaded:      res.Uploaded,
		Downloaded:    res.Downloaded,
		DeletedLocal:  res.DeletedLocal,
		DeletedRemote: res.DeletedRemote,
		Conflicts:     res.Conflicts,
		EditsKept:     res.EditsKept,
		VersionsKept:  res.VersionsKept,
		Resync:        res.Resync,
		Skipped:       res.Skipped,
		Profile:       profile,
		DryRun:        req.DryRun,
		Forced:        req.Force,
		Plan:          planOf(res, req.DryRun),
	}
	if sum.Start.IsZero() {
		sum.Start = time.Now()
	}
	switch {
	case err != nil && ctx.Err() != nil:
		sum.Cancelled = true
		sum.Error = "cancelled: the daemon is stopping (the next pass recovers)"
		d.log.Info("sync pass cancelled", "trigger", trigger)
	case err != nil:
		sum.Error = err.Error()
		d.failed(err, profile, req, &sum)
	default:
		d.log.Info("sync pass", "trigger", trigger, "profile", profile, "dry_run", req.DryRun,
			"up", res.Uploaded, "down", res.Downloaded, "deleted_local", res.DeletedLocal,
			"deleted_remote", res.DeletedRemote, "conflicts", res.Conflicts,
			"resync", res.Resync, "took", res.Duration.Round(time.Millisecond))
		if !req.DryRun {
			d.setHold(nil)
		}
		if d.isPaused() {
			d.setState(StatePaused, "")
		} else {
			d.setState(StateIdle, "")
		}
		if res.RemoteChanged && !req.DryRun {
			go d.notifyChanged(ctx, s)
		}
	}
	if err := d.history.Append(sum); err != nil {
		d.log.Warn("record the pass in the history", "err", err)
	}
	if !req.DryRun {
		d.mu.Lock()
		d.status.LastSync = &sum
		if err == nil || res.Failures != nil {
			d.status.NotSyncing = failedItems(res.Failures)
		}
		d.mu.Unlock()
	}
	return sum, res, err
}

// failed sets the state after a failed pass: offline, a hold that says what
// to do, or a plain error.
func (d *Daemon) failed(err error, profile string, req ipc.SyncRequest, sum *ipc.PassSummary) {
	if errors.Is(err, syncer.ErrKeyRejected) {
		d.log.Warn("sync pass failed: S3 rejected the device's key", "trigger", sum.Trigger, "err", err)
		d.setState(StateError, err.Error())
		return
	}
	if errors.Is(err, syncer.ErrDiskFull) {
		d.log.Error("sync pass failed: the disk is full", "trigger", sum.Trigger, "err", err)
		d.setState(StateError, "the disk is full: make room on it (the notes folder "+d.cfg.Folder+
			", or bm-agent's state in "+d.cfg.Home+"); nothing was lost, and bm-agent tries again by itself")
		return
	}
	if isOffline(err) {
		sum.Offline = true
		d.log.Warn("sync pass failed: offline", "trigger", sum.Trigger, "err", err)
		d.setState(StateOffline, "cannot reach the bucket or the server: "+err.Error())
		return
	}
	if h := holdFor(err, d.cfg.Folder, profile, time.Now()); h != nil {
		d.log.Warn("sync pass refused", "trigger", sum.Trigger, "reason", h.Reason, "err", err)
		if req.DryRun {
			d.setState(StateError, h.Message)
			return
		}
		d.setHold(h)
		if h.NeedsForce {
			d.setState(StatePaused, h.Message)
		} else {
			d.setState(StateError, h.Message)
		}
		return
	}
	d.log.Error("sync pass failed", "trigger", sum.Trigger, "err", err)
	d.setState(StateError, err.Error())
}

// notifyChanged tells the server that this tenant's bucket changed, so its
// other devices learn about it at once.
func (d *Daemon) notifyChanged(ctx context.Context, s *session) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.client.NotifySync(ctx, tenantapi.SyncRequest{Device: d.cfg.Device, Reason: "bisync"}); err != nil {
		d.log.Warn("notify server of bucket change", "err", err)
	}
}

// Sync implements ipc.Backend: a pass now, coalesced with one already queued.
func (d *Daemon) Sync(ctx context.Context, req ipc.SyncRequest) (ipc.PassSummary, error) {
	if req.Profile != "" && !validProfile(req.Profile) {
		return ipc.PassSummary{}, fmt.Errorf("sync: profile %q: want safe, balanced or fast", req.Profile)
	}
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s == nil {
		return ipc.PassSummary{}, fmt.Errorf("sync: %w", ipc.ErrLoginRequired)
	}
	if h := d.blockingHold(); h != nil && !(req.Force || req.Resync || req.DryRun) {
		return ipc.PassSummary{}, fmt.Errorf("%w: %s", ipc.ErrHeld, h.Message)
	}
	call := syncCall{req: req}
	if req.Wait {
		call.reply = make(chan syncReply, 1)
	}
	call.req.Wait = false // the loop keys on the reply channel
	select {
	case s.syncReq <- call:
	case <-ctx.Done():
		return ipc.PassSummary{}, ctx.Err()
	case <-s.done:
		return ipc.PassSummary{}, errors.New("sync: logged out")
	}
	if call.reply == nil {
		return ipc.PassSummary{}, nil
	}
	select {
	case r := <-call.reply:
		return r.summary, r.err
	case <-ctx.Done():
		return ipc.PassSummary{}, ctx.Err()
	case <-s.done:
		return ipc.PassSummary{}, errors.New("sync: logged out")
	}
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
	cs, err := findConflicts(ctx, d.cfg.Folder)
	if err != nil {
		return ipc.Conflicts{}, err
	}
	return ipc.Conflicts{Folder: d.cfg.Folder, Conflicts: cs}, nil
}

// newWatcher is watch.New; tests replace it to stand in for a kernel that
// refuses more watches.
var newWatcher = watch.New

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
	d.mu.Lock()
	changed := d.status.Watcher != msg
	d.status.Watcher = msg
	d.mu.Unlock()
	if !changed {
		return
	}
	d.markDirty()
	if err == nil {
		return
	}
	d.log.Warn("file watcher unavailable", "err", err)
	if d.hub != nil {
		d.hub.Publish(ipc.Event{Kind: ipc.EventNotification, Time: time.Now(), Notification: &ipc.Notification{
			Level: ipc.LevelWarning, Title: "Not watching the notes folder", Message: msg,
		}})
	}
}
