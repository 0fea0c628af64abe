package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// findConflicts lists the conflict files under folder (the engine's
// name.conflict-YYYYMMDD-HHMMSS-<device>.ext), oldest first, with their
// sizes.
func findConflicts(ctx context.Context, folder string) ([]ipc.Conflict, error) {
	found, err := syncer.ListConflicts(folder)
	if err != nil {
		return nil, fmt.Errorf("conflicts: %w", err)
	}
	out := make([]ipc.Conflict, 0, len(found))
	for _, c := range found {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("conflicts: %w", err)
		}
		ic := ipc.Conflict{Path: c.Path, Original: c.Original, Device: c.Device, Time: c.Time}
		if st, err := os.Stat(filepath.Join(folder, filepath.FromSlash(c.Path))); err == nil {
			ic.Size = st.Size()
		}
		out = append(out, ic)
	}
	return out, nil
}
