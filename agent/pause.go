package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// applySavedLocked copies the persisted pause and hold into the status (at
// start-up). d.mu is held or the daemon is not shared yet.
func (d *Daemon) applySavedLocked(now time.Time) {
	if d.saved.pauseExpired(now) {
		d.saved.Paused, d.saved.PausedUntil = false, nil
		if err := saveState(d.cfg.Home, d.saved); err != nil {
			d.log.Warn("save state", "err", err)
		}
	}
	d.status.Paused = d.saved.Paused
	d.status.PausedUntil = d.saved.PausedUntil
	d.status.Hold = d.saved.Hold
}

// expirePauseLocked ends a timed pause whose time is up. d.mu is held.
func (d *Daemon) expirePauseLocked(now time.Time) {
	if !d.saved.pauseExpired(now) {
		return
	}
	d.log.Info("pause is over: resuming sync")
	d.saved.Paused, d.saved.PausedUntil = false, nil
	d.status.Paused, d.status.PausedUntil = false, nil
	if err := saveState(d.cfg.Home, d.saved); err != nil {
		d.log.Warn("save state", "err", err)
	}
	if d.status.State == StatePaused && d.status.Hold == nil {
		d.setStateLocked(StateIdle, "")
	}
	d.wakeLocked()
}

// wakeLocked asks the session's loop for a pass without waiting. d.mu is
// held.
func (d *Daemon) wakeLocked() {
	if s := d.session; s != nil {
		select {
		case s.syncReq <- syncCall{}:
		default:
		}
	}
}

// pauseUntil pauses syncing, until resumed when until is nil.
func (d *Daemon) pauseUntil(until *time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := d.saved
	next.Paused, next.PausedUntil = true, until
	if err := saveState(d.cfg.Home, next); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	d.saved = next
	d.status.Paused, d.status.PausedUntil = true, until
	if d.status.State != StateSyncing {
		d.setStateLocked(StatePaused, "")
	}
	return nil
}

// Pause implements ipc.Backend: syncing stops until Resume, also across a
// restart. A pass in progress finishes.
func (d *Daemon) Pause(context.Context) error {
	return d.pauseUntil(nil)
}

// PauseFor implements ipc.TimedPauser: syncing stops for dur, then resumes
// by itself (also across a restart).
func (d *Daemon) PauseFor(_ context.Context, dur time.Duration) error {
	if dur <= 0 {
		return errors.New("pause: the duration must be positive")
	}
	until := time.Now().Add(dur).Round(time.Second)
	return d.pauseUntil(&until)
}

// Resume implements ipc.Backend: it ends a pause and starts a pass. It does
// not lift a hold that needs `bm-agent sync --force`.
func (d *Daemon) Resume(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := d.saved
	next.Paused, next.PausedUntil = false, nil
	if err := saveState(d.cfg.Home, next); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	d.saved = next
	d.status.Paused, d.status.PausedUntil = false, nil
	if h := d.status.Hold; h != nil && h.NeedsForce {
		d.setStateLocked(StatePaused, h.Message)
		return nil
	}
	if d.status.State == StatePaused {
		d.setStateLocked(StateIdle, "")
	}
	d.wakeLocked()
	return nil
}

// setHold records (h non-nil) or clears (nil) a hold, persisting it when it
// needs the user so that it survives a restart.
func (d *Daemon) setHold(h *ipc.Hold) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.status.Hold = h
	var persist *ipc.Hold
	if h != nil && h.NeedsForce {
		persist = h
	}
	if (persist == nil) != (d.saved.Hold == nil) || (persist != nil && *persist != *d.saved.Hold) {
		next := d.saved
		next.Hold = persist
		if err := saveState(d.cfg.Home, next); err != nil {
			d.log.Warn("save state", "err", err)
		}
		d.saved = next
	}
}

// blockingHold returns the hold that stops scheduled passes, if any.
func (d *Daemon) blockingHold() *ipc.Hold {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h := d.status.Hold; h != nil && h.NeedsForce {
		c := *h
		return &c
	}
	return nil
}

// pauseWait is how long a paused loop sleeps: the interval, or less when a
// timed pause ends sooner.
func (d *Daemon) pauseWait(interval time.Duration) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if u := d.saved.PausedUntil; d.saved.Paused && u != nil {
		if left := time.Until(*u); left < interval {
			return max(left, 0)
		}
	}
	return interval
}
