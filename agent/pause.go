package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/basicmachines-co/bm-agent/ipc"
)

// applySaved copies the persisted pause and hold into the initial
// status (at start-up, before the store exists), ending a timed pause
// whose time is up.
func (d *Daemon) applySaved(st *ipc.Status, now time.Time) {
	if d.saved.pauseExpired(now) {
		d.saved.Paused, d.saved.PausedUntil = false, nil
		if err := saveState(d.cfg.Home, d.saved); err != nil {
			d.log.Warn("save state", "err", err)
		}
	}
	st.Paused = d.saved.Paused
	st.PausedUntil = d.saved.PausedUntil
	st.Hold = d.saved.Hold
}

// armPauseTimerLocked makes a timed pause end by itself at its time.
// d.mu is held.
func (d *Daemon) armPauseTimerLocked() {
	if d.pauseTimer != nil {
		d.pauseTimer.Stop()
		d.pauseTimer = nil
	}
	if u := d.saved.PausedUntil; d.saved.Paused && u != nil {
		d.pauseTimer = time.AfterFunc(max(time.Until(*u), 0), d.expirePause)
	}
}

// expirePause ends a timed pause whose time is up.
func (d *Daemon) expirePause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.saved.pauseExpired(time.Now()) {
		return
	}
	d.log.Info("pause is over: resuming sync")
	d.saved.Paused, d.saved.PausedUntil = false, nil
	if err := saveState(d.cfg.Home, d.saved); err != nil {
		d.log.Warn("save state", "err", err)
	}
	d.unpauseLocked()
}

// unpauseLocked clears the pause in the status and gets syncing going
// again. d.mu is held.
func (d *Daemon) unpauseLocked() {
	running := d.session != nil
	d.store.Update(func(st *ipc.Status) {
		st.Paused, st.PausedUntil = false, nil
		switch h := st.Hold; {
		case h != nil && h.NeedsForce:
			setStateOf(st, ipc.StatePaused, h.Reason, h.Message)
		case st.State == ipc.StatePaused && running:
			setStateOf(st, ipc.StateIdle, ipc.CodeNone, "")
		}
	})
	d.wakeLocked()
}

// wakeLocked asks the session's loop for a pass without waiting, or
// the daemon to try to start a session if none runs. d.mu is held.
func (d *Daemon) wakeLocked() {
	if s := d.session; s != nil {
		select {
		case s.folderPair().syncReq <- syncCall{}:
		default:
		}
		return
	}
	select {
	case d.loggedIn <- struct{}{}:
	default:
	}
}

// pausable reports whether a pause shows as the state: it does over the
// states of a running sync, not over logged out or a login to make.
func pausable(s ipc.State) bool {
	return s == ipc.StateIdle || s == ipc.StateStarting || s == ipc.StateError || s == ipc.StatePaused || s.Unreachable()
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
	d.armPauseTimerLocked()
	d.store.Update(func(st *ipc.Status) {
		st.Paused, st.PausedUntil = true, until
		if pausable(st.State) {
			setStateOf(st, ipc.StatePaused, ipc.CodePausedByUser, "")
		}
	})
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
	d.armPauseTimerLocked()
	d.unpauseLocked()
	return nil
}

// setHold records (h non-nil) or clears (nil) a hold, persisting it when it
// needs the user so that it survives a restart.
func (d *Daemon) setHold(h *ipc.Hold) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.store.Update(func(st *ipc.Status) { st.Hold = h })
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
	var hold *ipc.Hold
	d.store.View(func(st *ipc.Status) {
		if h := st.Hold; h != nil && h.NeedsForce {
			c := *h
			hold = &c
		}
	})
	return hold
}
