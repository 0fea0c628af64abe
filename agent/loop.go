package agent

import (
	"context"
	"errors"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/watch"
	"github.com/basicmachines-co/bm-agent/cloudapi/tenantapi"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// runSession runs the sync loop until ctx ends or the session is logged out.
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

	var batches <-chan watch.Batch
	w, err := watch.New(d.cfg.Folder, watch.Options{
		Delay:   time.Duration(d.cfg.Debounce),
		MaxWait: time.Duration(d.cfg.MaxWait),
	}, d.log.With("component", "watch"))
	if err != nil {
		d.log.Warn("file watcher unavailable; syncing on the interval only", "err", err)
	} else {
		go func() {
			if err := w.Run(sctx); err != nil && sctx.Err() == nil {
				d.log.Warn("file watcher stopped; syncing on the interval only", "err", err)
			}
		}()
		batches = w.Batches()
	}

	interval := time.Duration(d.cfg.Interval)
	timer := time.NewTimer(0) // first pass at once
	defer timer.Stop()
	for {
		var call *syncCall
		trigger := ""
		select {
		case <-sctx.Done():
			return
		case b := <-batches:
			trigger = "watch"
			d.log.Debug("local changes", "count", b.Count)
		case <-timer.C:
			trigger = "interval"
		case c := <-s.syncReq:
			call, trigger = &c, "manual"
		}
		if d.isPaused() && (call == nil || call.reply == nil) {
			timer.Reset(interval)
			continue
		}
		opt := syncer.PassOptions{Trigger: trigger}
		if call != nil {
			opt.Resync, opt.DryRun = call.req.Resync, call.req.DryRun
		}
		if w != nil {
			w.Suppress()
		}
		sum, res, err := d.pass(sctx, s, opt)
		followUp := false
		if w != nil {
			// Changes seen during a pass that wrote nothing locally were the
			// user's, not ours: they get a pass of their own at once.
			if dropped := w.Resume(); !dropped.Empty() && !res.LocalChanged {
				followUp = true
			}
		}
		if call != nil && call.reply != nil {
			call.reply <- syncReply{summary: sum, err: err}
		}
		// Coalesce: sync requests that queued during the pass are answered
		// by the next pass, which starts at once.
		if len(s.syncReq) > 0 || followUp {
			timer.Reset(0)
		} else {
			timer.Reset(interval)
		}
		d.mu.Lock()
		next := time.Now().Add(interval)
		d.status.NextSync = &next
		d.mu.Unlock()
	}
}

func (d *Daemon) pass(ctx context.Context, s *session, opt syncer.PassOptions) (ipc.PassSummary, syncer.Result, error) {
	d.setState(StateSyncing, "")
	res, err := s.engine.Pass(ctx, opt)
	sum := ipc.PassSummary{
		Start:         res.Start,
		DurationMS:    res.Duration.Milliseconds(),
		Trigger:       opt.Trigger,
		Uploaded:      res.Uploaded,
		Downloaded:    res.Downloaded,
		DeletedLocal:  res.DeletedLocal,
		DeletedRemote: res.DeletedRemote,
		Conflicts:     res.Conflicts,
		Resync:        res.Resync,
		Skipped:       res.Skipped,
	}
	if err != nil {
		sum.Error = err.Error()
		if ctx.Err() == nil {
			d.log.Error("sync pass failed", "trigger", opt.Trigger, "err", err)
			d.setState(StateError, err.Error())
		}
	} else {
		d.log.Info("sync pass", "trigger", opt.Trigger, "up", res.Uploaded, "down", res.Downloaded,
			"deleted_local", res.DeletedLocal, "deleted_remote", res.DeletedRemote, "conflicts", res.Conflicts,
			"resync", res.Resync, "took", res.Duration.Round(time.Millisecond))
		if d.isPaused() {
			d.setState(StatePaused, "")
		} else {
			d.setState(StateIdle, "")
		}
		if res.RemoteChanged && !opt.DryRun {
			go d.notifyChanged(ctx, s)
		}
	}
	if !opt.DryRun {
		d.mu.Lock()
		d.status.LastSync = &sum
		d.mu.Unlock()
	}
	return sum, res, err
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
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s == nil {
		return ipc.PassSummary{}, errors.New("not logged in: run `bm-agent login`")
	}
	call := syncCall{req: req}
	if req.Wait {
		call.reply = make(chan syncReply, 1)
	}
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

// Pause implements ipc.Backend.
func (d *Daemon) Pause(context.Context) error {
	d.mu.Lock()
	d.status.Paused = true
	d.mu.Unlock()
	d.setState(StatePaused, "")
	return nil
}

// Resume implements ipc.Backend.
func (d *Daemon) Resume(context.Context) error {
	d.mu.Lock()
	d.status.Paused = false
	s := d.session
	d.mu.Unlock()
	d.setState(StateIdle, "")
	if s != nil {
		select {
		case s.syncReq <- syncCall{}:
		default:
		}
	}
	return nil
}
