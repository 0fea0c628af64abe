package agent

import (
	"context"
	"fmt"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// originNamer is what an engine that knows who wrote each conflict file
// offers (the real engine; test fakes may not).
type originNamer interface {
	ConflictOrigins(ctx context.Context, cs []syncer.Conflict) map[string]string
}

// findConflicts lists the conflict files under the notes folder (the
// engine's name.conflict-YYYYMMDD-HHMMSS-<device>.ext), oldest first, with
// their sizes and, in From, the device that wrote each version: as the
// bucket records it (with a session), or this device for its own (its
// label is this device's name's).
func (d *Daemon) findConflicts(ctx context.Context) ([]ipc.Conflict, error) {
	found, err := syncer.ListConflicts(d.cfg.Folder)
	if err != nil {
		return nil, fmt.Errorf("conflicts: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("conflicts: %w", err)
	}
	var origins map[string]string
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s != nil && len(found) > 0 {
		if n, ok := s.folderPair().engineNow().(originNamer); ok {
			origins = n.ConflictOrigins(ctx, found)
		}
	}
	own := syncer.DeviceLabel(d.cfg.Device)
	out := make([]ipc.Conflict, 0, len(found))
	for _, c := range found {
		ic := ipc.Conflict{Path: c.Path, Original: c.Original, Device: c.Device, Time: c.Time, Size: c.Size}
		switch from, ok := origins[c.Path]; {
		case ok:
			ic.From = from
		case c.Device == own && d.cfg.Device != "":
			ic.From = d.cfg.Device
		}
		out = append(out, ic)
	}
	return out, nil
}
