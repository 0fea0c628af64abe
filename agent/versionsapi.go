package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/versions"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// versionKeeper is what an engine with version stores offers (the real
// engine; test fakes may not).
type versionKeeper interface {
	VersionsOf(ctx context.Context, path string) ([]versions.Version, error)
	DeletedSince(ctx context.Context, t time.Time) ([]versions.Version, error)
	Restore(ctx context.Context, path, id string, at time.Time) (versions.Version, error)
	RestoreDeleted(ctx context.Context, t time.Time) ([]versions.Version, error)
	PruneVersions(ctx context.Context, maxAge time.Duration, maxBytes int64) (local, cloud versions.PruneResult, err error)
	SetKeepVersions(on bool)
}

// versionSettings are the version stores' settings in effect.
type versionSettings struct {
	days     int
	maxBytes int64
}

func (d *Daemon) versionSettings() versionSettings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.versions
}

// keeper returns the running session's engine as a versionKeeper.
func (d *Daemon) keeper(op string) (versionKeeper, *session, error) {
	d.mu.Lock()
	s := d.session
	d.mu.Unlock()
	if s == nil {
		return nil, nil, d.refusal(op)
	}
	k, ok := s.folderPair().engineNow().(versionKeeper)
	if !ok {
		return nil, nil, fmt.Errorf("%s: %w", op, ipc.ErrNotImplemented)
	}
	return k, s, nil
}

// Versions implements ipc.Versioner.
func (d *Daemon) Versions(ctx context.Context, req ipc.VersionsRequest) (ipc.Versions, error) {
	k, _, err := d.keeper("versions")
	if err != nil {
		return ipc.Versions{}, err
	}
	out := ipc.Versions{Folder: d.cfg.Folder, DaysKept: d.versionSettings().days}
	var vs []versions.Version
	if req.Deleted {
		vs, err = k.DeletedSince(ctx, req.Since)
	} else {
		out.Path = req.Path
		vs, err = k.VersionsOf(ctx, req.Path)
	}
	if err != nil {
		return ipc.Versions{}, versionsError("versions", err)
	}
	out.Versions = wireVersions(vs)
	return out, nil
}

// Restore implements ipc.Versioner: it restores, then asks for a pass so
// the restored notes reach the bucket at once.
func (d *Daemon) Restore(ctx context.Context, req ipc.RestoreRequest) (ipc.RestoreResult, error) {
	k, s, err := d.keeper("restore")
	if err != nil {
		return ipc.RestoreResult{}, err
	}
	var done []versions.Version
	if req.Deleted {
		done, err = k.RestoreDeleted(ctx, req.Since)
	} else {
		var v versions.Version
		if v, err = k.Restore(ctx, req.Path, req.Version, req.At); err == nil {
			done = []versions.Version{v}
		}
	}
	if len(done) > 0 {
		select { // a pass now; never wait for one
		case s.folderPair().syncReq <- syncCall{}:
		default:
		}
	}
	if err != nil {
		return ipc.RestoreResult{Folder: d.cfg.Folder, Restored: wireVersions(done)}, versionsError("restore", err)
	}
	return ipc.RestoreResult{Folder: d.cfg.Folder, Restored: wireVersions(done)}, nil
}

// versionsError gives the engine's typed errors their ipc codes.
func versionsError(op string, err error) error {
	switch {
	case errors.Is(err, syncer.ErrNoSuchVersion):
		return fmt.Errorf("%s: %w: %w", op, ipc.ErrNotFound, err)
	case errors.Is(err, syncer.ErrBadPath):
		return fmt.Errorf("%s: %w: %w", op, ipc.ErrInvalid, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func wireVersions(vs []versions.Version) []ipc.Version {
	out := make([]ipc.Version, 0, len(vs))
	for _, v := range vs {
		out = append(out, ipc.Version{
			ID: v.ID, Path: v.Path, Side: v.Side, Size: v.Size, ModTime: v.ModTime,
			Kept: v.Kept, Reason: v.Reason, Device: v.Device,
		})
	}
	return out
}

// pruneEvery is how often a session prunes the version stores (and once
// at its start).
var pruneEvery = 24 * time.Hour

// pruneVersions prunes the version stores by age and size at the start of
// a session, every pruneEvery, and when the settings change.
func (d *Daemon) pruneVersions(ctx context.Context, s *session) {
	k, ok := s.folderPair().engineNow().(versionKeeper)
	if !ok {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.versionsChanged:
		}
		vs := d.versionSettings()
		k.SetKeepVersions(vs.days > 0)
		// Off keeps no new versions; the ones kept before age out as by
		// default, so turning versions off for a while loses nothing.
		days := vs.days
		if days == 0 {
			days = DefaultVersionsDays
		}
		maxAge := time.Duration(days) * 24 * time.Hour
		if _, _, err := k.PruneVersions(ctx, maxAge, vs.maxBytes); err != nil && ctx.Err() == nil {
			d.log.Warn("prune kept versions", "err", err)
		}
		t.Reset(pruneEvery)
	}
}
