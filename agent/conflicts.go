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

// originNamer is what an engine that knows who wrote each conflict file
// offers (the real engine; test fakes may not).
type originNamer interface {
	ConflictOrigins(ctx context.Context, cs []syncer.Conflict, sizes []int64) map[string]string
}

// nameWriters sets From on each conflict: the device that wrote the
// version, as the bucket records it, or this device for its own (its
// label is this device's name's); with no session, only the latter.
func (d *Daemon) nameWriters(ctx context.Context, cs []ipc.Conflict) {
	own := syncer.DeviceLabel(d.cfg.Device)
	var origins map[string]string
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s != nil {
		if n, ok := s.folderPair().engineNow().(originNamer); ok && len(cs) > 0 {
			sc := make([]syncer.Conflict, len(cs))
			sizes := make([]int64, len(cs))
			for i, c := range cs {
				sc[i] = syncer.Conflict{Path: c.Path, Original: c.Original, Device: c.Device, Time: c.Time}
				sizes[i] = c.Size
			}
			origins = n.ConflictOrigins(ctx, sc, sizes)
		}
	}
	for i := range cs {
		switch from, ok := origins[cs[i].Path]; {
		case ok:
			cs[i].From = from
		case cs[i].Device == own && d.cfg.Device != "":
			cs[i].From = d.cfg.Device
		}
	}
}
