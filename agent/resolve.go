package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// conflictResolver is what an engine that settles conflicts offers (the
// real engine; test fakes may not).
type conflictResolver interface {
	ResolveConflict(ctx context.Context, path, conflict, keep string) (syncer.Resolution, error)
}

// Resolve implements ipc.Resolver: it settles a conflict in the notes
// folder (between passes; what it replaces or removes is kept in the local
// version store when versions are on), then asks for a pass so the result
// reaches the bucket, and the other devices on their next pass.
func (d *Daemon) Resolve(ctx context.Context, req ipc.ResolveRequest) (ipc.ResolveResult, error) {
	const op = "resolve"
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s == nil {
		return ipc.ResolveResult{}, d.refusal(op)
	}
	r, ok := s.folderPair().engineNow().(conflictResolver)
	if !ok {
		return ipc.ResolveResult{}, fmt.Errorf("%s: %w", op, ipc.ErrNotImplemented)
	}
	res, err := r.ResolveConflict(ctx, req.Path, req.Conflict, req.Keep)
	if err != nil {
		return ipc.ResolveResult{}, resolveError(op, err)
	}
	select { // a pass now; never wait for one
	case s.folderPair().syncReq <- syncCall{}:
	default:
	}
	d.log.Info("conflict settled", "file", res.Note, "conflict", res.Conflict, "keep", req.Keep, "kept_as", res.Kept)
	out := ipc.ResolveResult{Folder: d.cfg.Folder, Note: res.Note, Kept: res.Kept, Removed: res.Removed}
	if out.Removed == nil {
		out.Removed = []string{}
	}
	return out, nil
}

// resolveError gives the engine's typed errors their ipc codes.
func resolveError(op string, err error) error {
	switch {
	case errors.Is(err, syncer.ErrNoSuchConflict):
		return fmt.Errorf("%s: %w: %w", op, ipc.ErrNotFound, err)
	case errors.Is(err, syncer.ErrBadPath), errors.Is(err, syncer.ErrWhichConflict), errors.Is(err, syncer.ErrBadKeep):
		return fmt.Errorf("%s: %w: %w", op, ipc.ErrInvalid, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
