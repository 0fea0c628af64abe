package syncer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// lockInfo is the part of bisync's lock file the engine reads.
type lockInfo struct {
	PID         string
	TimeExpires time.Time
}

// clearStaleLock removes the bisync lock of this pair when the process
// that took it is gone (a daemon killed in the middle of a pass) or is
// this process (no pass of this process is running: passMu is held), and
// keeps the listings as the baseline. A lock held by another live process
// is ErrLocked.
func (e *Engine) clearStaleLock() error {
	lock := e.basePath + ".lck"
	data, err := os.ReadFile(lock)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lock file: %w", err)
	}
	pid := lockPID(data)
	if pid > 0 && pid != os.Getpid() && processAlive(pid) {
		var info lockInfo
		if json.Unmarshal(data, &info) == nil && !info.TimeExpires.IsZero() && info.TimeExpires.Before(time.Now()) {
			return nil // expired: bisync's --max-lock handles it
		}
		return fmt.Errorf("%w (process %d)", ErrLocked, pid)
	}
	// The interrupted pass's listings are its baseline still: bisync
	// writes them whole at the end of a run, so they are the last run's
	// (which the next run compares with; what the interrupted pass copied
	// is then the same on both sides). Setting them aside would make the
	// next pass a safe resync, which brings back what was deleted.
	e.log.Warn("removing the lock of an interrupted sync pass", "pid", pid)
	e.restoreErrListings()
	if err := os.Remove(lock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale lock: %w", err)
	}
	return nil
}

// lockPID reads the PID from a bisync lock file: JSON once the lock is
// renewed, the bare number for a moment before that.
func lockPID(data []byte) int {
	var info lockInfo
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&info); err == nil && info.PID != "" {
		pid, _ := strconv.Atoi(info.PID)
		return pid
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}
