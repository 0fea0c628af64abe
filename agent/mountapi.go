package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/mount"
	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// mountManager is the part of *mount.Manager the daemon uses (a fake in
// tests).
type mountManager interface {
	Mount(ctx context.Context, cfg mount.Config) error
	Unmount(ctx context.Context) error
	Status() mount.MountStatus
	Close() error
	CleanupOrphans(ctx context.Context) error
}

func newMountManager(home string, logger *slog.Logger) mountManager {
	return mount.NewManager(home, logger)
}

// Mount implements ipc.Mounter: the tenant's bucket, with the session's
// key, at req.MountPoint (default ~/basic-memory-{tenant_id}).
func (d *Daemon) Mount(ctx context.Context, req ipc.MountRequest) (ipc.MountStatus, error) {
	d.mu.Lock()
	var key *cloudapi.S3Key
	if s := d.session; s != nil {
		key = s.key // replaceKey swaps it under d.mu
	}
	d.mu.Unlock()
	tenant := d.store.Get().TenantID
	if key == nil {
		return ipc.MountStatus{}, d.refusal("mount")
	}
	var prof mount.Profile
	if req.Profile != "" {
		p, err := mount.ParseProfile(req.Profile)
		if err != nil {
			return ipc.MountStatus{}, fmt.Errorf("mount: %w: %v", ipc.ErrInvalid, err)
		}
		prof = p
	}
	mp := req.MountPoint
	if mp == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ipc.MountStatus{}, fmt.Errorf("mount: default mount point: %w", err)
		}
		mp = filepath.Join(home, "basic-memory-"+tenant)
	}
	if strings.HasPrefix(mp, "~"+string(filepath.Separator)) {
		if home, err := os.UserHomeDir(); err == nil {
			mp = filepath.Join(home, mp[2:])
		}
	}
	err := d.mounts.Mount(ctx, mount.Config{
		MountPoint: mp,
		Remote: syncer.Remote{
			Endpoint:  key.Endpoint,
			Region:    key.Region,
			AccessKey: key.AccessKey,
			SecretKey: key.SecretKey,
			Bucket:    key.Bucket,
		},
		CacheDir:   filepath.Join(d.cfg.Home, "mount-cache"),
		Profile:    prof,
		SyncFolder: d.cfg.Folder,
		Logger:     d.log,
	})
	if err != nil {
		return ipc.MountStatus{}, mountError(err)
	}
	d.log.Info("mounted", "mount_point", mp, "profile", string(prof))
	return d.MountStatus(ctx), nil
}

// remount moves a running mount onto the session's current key (after the
// old one was rejected and replaced): same mount point, same profile.
func (d *Daemon) remount(ctx context.Context) {
	st := d.mounts.Status()
	if !st.Mounted {
		return
	}
	uctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := d.mounts.Unmount(uctx); err != nil {
		d.log.Warn("remount on the new key: unmount", "err", err)
		return
	}
	if _, err := d.Mount(ctx, ipc.MountRequest{Profile: st.Profile, MountPoint: st.MountPoint}); err != nil {
		d.log.Warn("remount on the new key", "err", err)
	}
}

// Unmount implements ipc.Mounter.
func (d *Daemon) Unmount(ctx context.Context) (ipc.MountStatus, error) {
	if err := d.mounts.Unmount(ctx); err != nil {
		return ipc.MountStatus{}, mountError(err)
	}
	d.log.Info("unmounted")
	return d.MountStatus(ctx), nil
}

// MountStatus implements ipc.Mounter.
func (d *Daemon) MountStatus(context.Context) ipc.MountStatus {
	st := d.mounts.Status()
	return ipc.MountStatus{
		Mounted: st.Mounted, MountPoint: st.MountPoint, Profile: st.Profile, Bucket: st.Bucket,
		Since: st.Since, Pending: st.Pending, Error: st.Error,
	}
}

// mountError maps the mount package's errors to ipc's sentinels. Those
// errors already name their operation ("unmount: not mounted"), so the
// answer keeps their text as it is, and only adds the sentinel for
// errors.Is: nothing is said twice.
func mountError(err error) error {
	for _, m := range []struct{ from, to error }{
		{mount.ErrOverlap, ipc.ErrMountOverlap},
		{mount.ErrAlreadyMounted, ipc.ErrAlreadyMounted},
		{mount.ErrNotMounted, ipc.ErrNotMounted},
		{mount.ErrNotSupported, ipc.ErrMountUnsupported},
	} {
		if errors.Is(err, m.from) {
			return &mappedError{sentinel: m.to, err: err}
		}
	}
	return err
}

// mappedError is err, which is also sentinel for errors.Is.
type mappedError struct{ sentinel, err error }

func (e *mappedError) Error() string   { return e.err.Error() }
func (e *mappedError) Unwrap() []error { return []error{e.sentinel, e.err} }
