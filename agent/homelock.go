package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gofrs/flock"
)

// ErrHomeLocked: another bm-agent daemon runs with this state dir. Two
// daemons on one state dir would run passes over the same listings and
// version store at once.
var ErrHomeLocked = errors.New("another bm-agent daemon is running with this state dir")

// lockHome takes the state dir's lock for as long as the daemon runs, and
// writes the daemon's PID next to it (for the message a second daemon
// gets). The OS drops the lock when the process dies, however it dies.
func lockHome(home string) (unlock func(), err error) {
	l := flock.New(filepath.Join(home, "bm-agent.lock"))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock the state dir %s: %w", home, err)
	}
	pidFile := filepath.Join(home, "bm-agent.pid")
	if !ok {
		who := ""
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				who = fmt.Sprintf(", process %d", pid)
			}
		}
		return nil, fmt.Errorf("%w (%s%s): stop it first (bm-agent status tells where it listens), or give this one its own state dir with BM_AGENT_HOME", ErrHomeLocked, home, who)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		_ = l.Unlock()
		return nil, fmt.Errorf("lock the state dir %s: %w", home, err)
	}
	return func() {
		_ = os.Remove(pidFile)
		_ = l.Unlock()
	}, nil
}
