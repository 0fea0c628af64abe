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
// this process (no pass of this process is running: passMu is held). Like
// bisync does with an expired lock, it marks the listings failed so
// --recover falls back to the previous ones (or the next pass resyncs
// safely). A lock held by another live process is ErrLocked.
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
	e.log.Warn("removing the lock of an interrupted sync pass", "pid", pid)
	for _, l := range []string{e.listing1, e.listing2} {
		if _, err := os.Stat(l); err == nil {
			_ = os.Remove(l + "-err")
			if err := os.Rename(l, l+"-err"); err != nil {
				return fmt.Errorf("mark listing failed: %w", err)
			}
		}
	}
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
