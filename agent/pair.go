package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/watch"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// pair is one sync pair: a notes folder and the bucket it syncs with. Its
// Serve loop owns the pair's engine, watcher, schedule (interval, retry
// backoff), holds and history, and publishes what it does through the
// daemon's status store. A session runs one pair today; the shape allows
// several (Basic Memory has several projects), each with its own loop.
type pair struct {
	d      *Daemon
	s      *session // the login it syncs under (client, key)
	folder string
	// engine runs the passes; a key replacement swaps it (under d.mu).
	engine  passer
	history *History
	hooks   pairHooks
	syncReq chan syncCall
	// remote receives "another device changed the bucket" wake-ups;
	// news holds what they said (tellRemote, takeRemote).
	remote chan struct{}
	news   remoteNews
	done   chan struct{} // closed when Serve returns
}

// passHint is what the loop knows changed since the last pass, and the
// whole of it, for a quick pass: PassOptions.Paths and RemotePaths.
type passHint struct {
	Local  []string // paths in the folder (the watcher's batch)
	Remote []string // keys in the bucket (the change events')
}

// remoteNews is what the wake-ups on a pair's remote channel announced
// since the loop last took them: the bucket keys that changed, or any
// change (all).
type remoteNews struct {
	mu   sync.Mutex
	all  bool
	keys map[string]bool
}

// tellRemote records a change of the bucket another device or client
// announced, by its keys (nil: any change), and wakes the loop
// (wake-ups coalesce, and so do their keys).
func (p *pair) tellRemote(keys []string) {
	n := &p.news
	n.mu.Lock()
	if keys == nil || n.all || len(n.keys)+len(keys) > syncer.MaxQuickPaths {
		n.all, n.keys = true, nil
	} else {
		if n.keys == nil {
			n.keys = map[string]bool{}
		}
		for _, k := range keys {
			n.keys[k] = true
		}
	}
	n.mu.Unlock()
	select {
	case p.remote <- struct{}{}:
	default: // a wake-up is queued already
	}
}

// takeRemote returns what was announced since the last call: the keys
// that changed, or all when any may have.
func (p *pair) takeRemote() (keys []string, all bool) {
	n := &p.news
	n.mu.Lock()
	defer n.mu.Unlock()
	keys, all = slices.Sorted(maps.Keys(n.keys)), n.all || len(n.keys) == 0
	n.all, n.keys = false, nil
	return keys, all
}

// pairHooks are what tests change in a pair: fields, not package
// globals, so tests can run in parallel.
type pairHooks struct {
	// newWatcher starts the folder's watcher (watch.New).
	newWatcher func(root string, opt watch.Options, log *slog.Logger) (*watch.Watcher, error)
	// retryInitial is the first wait after a failed pass.
	retryInitial time.Duration
	// passDelay is a wait at the start of every pass (in state syncing),
	// so end-to-end tests can stop the daemon in the middle of one.
	passDelay time.Duration
}

// testPassDelayEnv names a test-only environment variable: the pairs'
// passDelay. Never set it otherwise.
const testPassDelayEnv = "BM_AGENT_TEST_PASS_DELAY"

// defaultPairHooks are the hooks of a daemon's pairs outside tests.
func defaultPairHooks() pairHooks {
	h := pairHooks{newWatcher: watch.New, retryInitial: defaultRetryInitial}
	if d, err := time.ParseDuration(os.Getenv(testPassDelayEnv)); err == nil && d > 0 {
		h.passDelay = d
	}
	return h
}

// newPair makes the daemon's pair for session s, syncing with engine.
func (d *Daemon) newPair(s *session, engine passer) *pair {
	return &pair{
		d: d, s: s, folder: d.cfg.Folder, engine: engine, history: d.history, hooks: d.pairHooks,
		syncReq: make(chan syncCall, 8), remote: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

// engineNow returns the pair's engine (a key replacement may swap it).
func (p *pair) engineNow() passer {
	p.d.mu.Lock()
	defer p.d.mu.Unlock()
	return p.engine
}

// pair returns the running session's pair, nil when none runs.
func (d *Daemon) pair() *pair {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.session == nil {
		return nil
	}
	return d.session.folderPair()
}

// Serve runs the pair's loop until ctx ends (which is not an error).
//
// Passes start on debounced local changes, on the interval, on changes
// another device announced and on sync requests (which coalesce: every
// request that queued during a pass is answered by the one next pass).
// After a failure the next attempt waits an exponential backoff with
// jitter instead of the interval. While paused, or while a hold waits for
// `sync --force`, only explicit requests run.
func (p *pair) Serve(ctx context.Context) error {
	d, s, sctx := p.d, p.s, ctx
	defer close(p.done)
	live := d.liveSettings()
	d.setWatcherError(nil)
	w := newFolderWatcher(d, p.hooks.newWatcher, watch.Options{Delay: live.debounce, MaxWait: live.maxWait})
	go w.run(sctx)
	batches := w.Batches()

	interval := live.interval
	rt := newRetry(interval, p.hooks.retryInitial)
	var kr keyRotation
	timer := time.NewTimer(0) // first pass at once
	defer timer.Stop()
	trigger := "startup"
	var pending []syncCall // dry runs kept out of the last pass
	// the last good full pass: when it ended, and the notes folder it
	// saw; restable: the timer waits for the interval's pass (not a
	// retry, not a follow-up), which canRest may skip
	var lastFull time.Time
	var lastFolder os.FileInfo
	restable := false
	// quick: the watcher's paths, or the keys the change events named,
	// for a quick pass (see canQuick); what the last full pass knew: no
	// remote change announced since that was not synced by its keys
	// (remoteDirty false), under the change events' epoch fullEpoch
	var quick passHint
	remoteDirty, fullEpoch := true, int64(-1)
	// followOwed: a follow-up pass is due (see followUp below); a quick
	// pass that runs first, woken by a change event, leaves it due
	followOwed := false
	for {
		var calls []syncCall
		quick = passHint{}
		if len(pending) > 0 {
			calls, pending = pending, nil
			trigger = "manual"
		} else {
			select {
			case <-sctx.Done():
				return nil
			case b := <-batches:
				trigger = "watch"
				d.log.Debug("local changes", "count", b.Count)
				if p.canQuick(b, remoteDirty, fullEpoch, lastFull) {
					quick.Local = b.Paths
				}
			case <-timer.C:
				if trigger != "startup" {
					trigger = "interval"
					if rt.failures > 0 {
						trigger = "retry"
					} else if restable && p.canRest(lastFull, lastFolder) {
						timer.Reset(interval)
						at := lastFull.Add(pushLiveInterval)
						d.store.Update(func(st *ipc.Status) { st.NextSync = &at })
						continue
					}
				}
			case c := <-p.syncReq:
				calls, trigger = append(calls, c), "manual"
			case <-p.remote:
				trigger = "remote"
				keys, all := p.takeRemote()
				if !all && p.canQuickRemote(remoteDirty, fullEpoch, lastFull) {
					quick.Remote = keys
				} else {
					remoteDirty = true
				}
				d.log.Debug("remote change from another device", "keys", len(keys), "any", all)
			case <-d.cfgChanged:
				nl := d.liveSettings()
				if nl.interval != interval {
					interval = nl.interval
					rt = newRetry(interval, p.hooks.retryInitial)
					timer.Reset(interval)
					d.log.Info("interval changed", "interval", interval)
				}
				if nl.debounce != live.debounce || nl.maxWait != live.maxWait {
					d.log.Info("debounce changed: restarting the session's watcher", "debounce", nl.debounce, "max_wait", nl.maxWait)
					live = nl
					s.cancel() // the daemon starts a new session with a new watcher
				}
				continue
			}
		}
		// Coalesce: every request queued by now is answered by this pass.
		calls, pending = splitDryRuns(drainCalls(p.syncReq, calls))
		// a change (or the interval) that woke the loop is owed a real
		// pass even when the requests that came with it are dry runs
		owed := false
		if len(calls) > 0 {
			owed = trigger != "manual" && calls[0].req.DryRun
			trigger = "manual"
			quick = passHint{} // a sync someone asked for is a full one
		}
		req, waiting := mergeRequests(calls)

		if d.isPaused() && !waiting {
			d.setState(ipc.StatePaused, ipc.CodePausedByUser, "")
			answer(calls, ipc.PassSummary{Skipped: "paused"}, nil)
			timer.Reset(interval) // a timed pause's end wakes the loop itself (expirePause)
			continue
		}
		if h := d.blockingHold(); h != nil && !(req.Force || req.Resync || req.DryRun) {
			d.setState(ipc.StatePaused, h.Reason, h.Message)
			var err error
			if waiting {
				err = fmt.Errorf("%w: %s", ipc.ErrHeld, h.Message)
			}
			answer(calls, ipc.PassSummary{Skipped: "on hold: " + string(h.Reason)}, err)
			timer.Reset(interval)
			continue
		}
		if quick.Local != nil || quick.Remote != nil {
			// a quick pass lists neither side: changes pending now are
			// not in it, and must keep their batch
			w.SuppressKeepingPending()
		} else {
			w.Suppress()
		}
		epoch := p.pushEpoch()
		sum, res, err := p.pass(sctx, trigger, req, quick)
		if err != nil && sctx.Err() == nil && errors.Is(err, syncer.ErrKeyRejected) {
			// S3 refused the device's key (revoked at the server, say):
			// mint a new one and run the pass again, at most once per
			// failure burst (then with backoff).
			if p.recoverKey(sctx, &kr) {
				sum, res, err = p.pass(sctx, triggerKeyReplaced, req, passHint{})
			}
		}
		if err == nil {
			kr.reset()
		}
		// A pass that made news for the other side (a conflict file, a note
		// it did not delete) is followed by one that takes it there.
		followUp := err == nil && res.Again && !req.DryRun
		// The callers have their answer before the watcher's settle wait
		// (Resume): a change they make meanwhile is in what it returns.
		answer(calls, sum, nil)
		// Changes seen during a pass to paths it did not write itself were
		// someone else's: they get a pass of their own at once.
		if dropped := w.Resume(); othersChanges(dropped, res) {
			d.log.Debug("changes during the pass that were not its own: another pass", "paths", dropped.Paths, "count", dropped.Count)
			followUp = true
		}
		trigger = ""
		if sctx.Err() != nil {
			return nil
		}
		followOwed = followUp || (followOwed && res.Quick && err == nil)

		next := interval
		at := time.Now().Add(next)
		switch {
		case req.DryRun:
		case err != nil && sum.Cancelled:
		case err != nil:
			next = rt.failed()
			if h := d.blockingHold(); h != nil {
				next = interval // waits for the user, not for a retry
			}
			at = time.Now().Add(next)
		default:
			rt.succeeded()
			if !res.Quick {
				// a full pass: both sides as they are now
				lastFull, lastFolder = time.Now(), statFolder(p.folder)
				remoteDirty, fullEpoch = false, epoch
			}
			if p.canRest(lastFull, lastFolder) {
				at = lastFull.Add(pushLiveInterval)
			}
		}
		restable = next == interval
		if len(p.syncReq) > 0 || len(pending) > 0 || owed || followOwed {
			next, restable = 0, false
			at = time.Now()
		}
		timer.Reset(next)
		failures := rt.failures
		d.store.Update(func(st *ipc.Status) {
			st.NextSync, st.Failures, st.RetryAt = &at, failures, nil
			if failures > 0 {
				st.RetryAt = &at
			}
		})
	}
}

// pushLiveInterval is the longest the loop goes without a full pass
// while the tenant's change events flow and the folder is watched: both
// sides then say when they change, and the interval's full pass is the
// safety net. Each interval still checks, locally, that the folder is the
// one the last pass saw (not removed, not covered by a mount).
const pushLiveInterval = 15 * time.Minute

// canRest reports whether the interval's pass can wait, with the last
// good pass at since having seen the folder as folder: every change is
// announced (change events live, the folder watched), the last full pass
// is less than pushLiveInterval ago, and the folder is still the same
// directory (a mount over it or a new one in its place is not).
func (p *pair) canRest(since time.Time, folder os.FileInfo) bool {
	if folder == nil || time.Since(since) >= pushLiveInterval || !p.changesAnnounced() {
		return false
	}
	now := statFolder(p.folder)
	return now != nil && os.SameFile(folder, now)
}

// changesAnnounced reports whether both sides say when they change: the
// tenant's change events are live and the folder is watched.
func (p *pair) changesAnnounced() bool {
	if p.s == nil || !p.s.pushLive.Load() {
		return false
	}
	watched := false
	p.d.store.View(func(st *ipc.Status) { watched = st.Watcher == "" })
	return watched
}

// canQuick reports whether the watcher's batch b can be synced alone (a
// quick pass, PassOptions.Paths): every local change is in it (no
// overflow, not truncated, a few paths), the folder is watched, the
// change events are live and have been since the last full pass, which
// is less than pushLiveInterval ago, and no change was announced since.
// The engine then checks each path itself, and runs the full pass when
// one is not a plain edit made here.
func (p *pair) canQuick(b watch.Batch, remoteDirty bool, fullEpoch int64, lastFull time.Time) bool {
	if b.Overflow || b.Truncated || len(b.Paths) == 0 || len(b.Paths) > syncer.MaxQuickPaths {
		return false
	}
	return p.canQuickRemote(remoteDirty, fullEpoch, lastFull)
}

// canQuickRemote reports whether the keys a change event named can be
// synced alone (a quick pass, PassOptions.RemotePaths): the folder is
// watched, the change events are live and have been since the last
// full pass, which is less than pushLiveInterval ago, and no change was
// announced since that was not synced by its keys. The engine then
// checks each key itself, and runs the full pass when one is not a plain
// write in the bucket.
func (p *pair) canQuickRemote(remoteDirty bool, fullEpoch int64, lastFull time.Time) bool {
	if remoteDirty || lastFull.IsZero() || time.Since(lastFull) >= pushLiveInterval {
		return false
	}
	return p.changesAnnounced() && p.pushEpoch() == fullEpoch
}

// pushEpoch counts the times the session's change events came up (-1
// without a session): a change while they were down went unannounced.
func (p *pair) pushEpoch() int64 {
	if p.s == nil {
		return -1
	}
	return p.s.pushUp.Load()
}

// statFolder is the folder's own file info (nil if it cannot be read).
func statFolder(path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil || !fi.IsDir() {
		return nil
	}
	return fi
}

// pass runs one pass and records it: status, hold, history.
func (p *pair) pass(ctx context.Context, trigger string, req ipc.SyncRequest, quick passHint) (ipc.PassSummary, syncer.Result, error) {
	d := p.d
	if trigger == "" {
		trigger = "manual"
	}
	d.setState(ipc.StateSyncing, ipc.CodeNone, "")
	profile := req.Profile
	if profile == "" {
		profile = d.liveSettings().profile
	}
	if delay := p.hooks.passDelay; delay > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	opt := engineOptions(trigger, req, profile)
	opt.Paths, opt.RemotePaths = quick.Local, quick.Remote
	if d.hub != nil {
		opt.Progress = d.progressPublisher(trigger)
	}
	res, err := p.engineNow().Pass(ctx, opt)
	sum := ipc.PassSummary{
		Start:            res.Start,
		DurationMS:       res.Duration.Milliseconds(),
		Trigger:          trigger,
		Uploaded:         res.Uploaded,
		Downloaded:       res.Downloaded,
		DeletedLocal:     res.DeletedLocal,
		DeletedRemote:    res.DeletedRemote,
		Conflicts:        res.Conflicts,
		ConflictsArrived: res.ConflictsArrived,
		Quick:            res.Quick,
		EditsKept:        res.EditsKept,
		VersionsKept:     res.VersionsKept,
		Resync:           res.Resync,
		Skipped:          res.Skipped,
		Profile:          profile,
		DryRun:           req.DryRun,
		Forced:           req.Force,
		Plan:             planOf(res, req.DryRun),
		Changes:          changesOf(res, req.DryRun),
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
		p.failed(ctx, err, profile, req, &sum)
	default:
		d.log.Info("sync pass", "trigger", trigger, "profile", profile, "dry_run", req.DryRun,
			"up", res.Uploaded, "down", res.Downloaded, "deleted_local", res.DeletedLocal,
			"deleted_remote", res.DeletedRemote, "conflicts", res.Conflicts,
			"resync", res.Resync, "took", res.Duration.Round(time.Millisecond))
		if !req.DryRun {
			d.setHold(nil)
		}
		if d.isPaused() {
			d.setState(ipc.StatePaused, ipc.CodePausedByUser, "")
		} else {
			d.setState(ipc.StateIdle, ipc.CodeNone, "")
		}
		if res.RemoteChanged && !req.DryRun {
			go p.notifyChanged(ctx, res.CloudWrites)
		}
	}
	if err := p.history.Append(sum); err != nil {
		d.log.Warn("record the pass in the history", "err", err)
	}
	if !req.DryRun {
		last := sum
		d.store.Update(func(st *ipc.Status) {
			st.LastSync = &last
			if err == nil || res.Failures != nil {
				st.NotSyncing = failedItems(res.Failures)
			}
		})
	}
	return sum, res, err
}

// failed sets the state after a failed pass: offline, a hold that says what
// to do, or a plain error.
func (p *pair) failed(ctx context.Context, err error, profile string, req ipc.SyncRequest, sum *ipc.PassSummary) {
	d := p.d
	if errors.Is(err, syncer.ErrKeyRejected) {
		d.log.Warn("sync pass failed: S3 rejected the device's key", "trigger", sum.Trigger, "err", err)
		d.setState(ipc.StateError, ipc.CodeKeyRejected, err.Error())
		return
	}
	if errors.Is(err, syncer.ErrDiskFull) {
		d.log.Error("sync pass failed: the disk is full", "trigger", sum.Trigger, "err", err)
		d.setState(ipc.StateError, ipc.CodeDiskFull, "the disk is full: make room on it (the notes folder "+d.cfg.Folder+
			", or bm-agent's state in "+d.cfg.Home+"); nothing was lost, and bm-agent tries again by itself")
		return
	}
	if isOffline(err) {
		sum.Offline = true
		d.log.Warn("sync pass failed: offline", "trigger", sum.Trigger, "err", err)
		d.setUnreachable(d.bucketUnreachable(ctx, err))
		return
	}
	if h := holdFor(err, d.cfg.Folder, profile, time.Now()); h != nil {
		d.log.Warn("sync pass refused", "trigger", sum.Trigger, "reason", h.Reason, "err", err)
		if req.DryRun {
			d.setState(ipc.StateError, h.Reason, h.Message)
			return
		}
		d.setHold(h)
		if h.NeedsForce {
			d.setState(ipc.StatePaused, h.Reason, h.Message)
		} else {
			d.setState(ipc.StateError, h.Reason, h.Message)
		}
		return
	}
	d.log.Error("sync pass failed", "trigger", sum.Trigger, "err", err)
	d.setState(ipc.StateError, ipc.CodeSyncFailed, err.Error())
}

// notifyChanged tells the server that this tenant's bucket changed, so its
// other devices learn about it at once: the keys the pass wrote when it
// knows them all (a quick pass), so they can sync just those.
func (p *pair) notifyChanged(ctx context.Context, keys []string) {
	d, s := p.d, p.s
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if len(keys) > syncer.MaxQuickPaths {
		keys = nil
	}
	if _, err := s.client.NotifySync(ctx, tenantapi.SyncRequest{Device: d.cfg.Device, Reason: "bisync", Paths: keys}); err != nil {
		d.log.Warn("notify server of bucket change", "err", err)
	}
}

// request queues a pass and, if req.Wait, waits for its summary.
func (p *pair) request(ctx context.Context, req ipc.SyncRequest) (ipc.PassSummary, error) {
	call := syncCall{req: req}
	if req.Wait {
		call.reply = make(chan syncReply, 1)
	}
	call.req.Wait = false // the loop keys on the reply channel
	select {
	case p.syncReq <- call:
	case <-ctx.Done():
		return ipc.PassSummary{}, ctx.Err()
	case <-p.done:
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
	case <-p.done:
		return ipc.PassSummary{}, errors.New("sync: logged out")
	}
}
