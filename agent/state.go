package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// persisted is the daemon state that survives a restart: a pause (with its
// end, for `pause --for`) and a hold that needs the user (too many
// deletes). It lives in Config.Home/state.json, written atomically.
type persisted struct {
	Paused      bool       `json:"paused,omitempty"`
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	Hold        *ipc.Hold  `json:"hold,omitempty"`
	// Account is who the stored login is for, from the server's last
	// answer: the status names it while the server cannot be reached.
	Account string `json:"account,omitempty"`
}

func statePath(home string) string { return filepath.Join(home, "state.json") }

// loadState reads the state file; a missing file is the zero state, and an
// unreadable one is reported and treated as the zero state by the caller.
func loadState(home string) (persisted, error) {
	var p persisted
	b, err := os.ReadFile(statePath(home))
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("load state: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return persisted{}, fmt.Errorf("load state %s: %w", statePath(home), err)
	}
	return p, nil
}

// saveState writes the state file atomically (0600).
func saveState(home string, p persisted) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := atomicfile.WriteFile(statePath(home), b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// pauseExpired reports whether a timed pause is over at now.
func (p persisted) pauseExpired(now time.Time) bool {
	return p.Paused && p.PausedUntil != nil && !now.Before(*p.PausedUntil)
}
