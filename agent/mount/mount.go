// Package mount serves the tenant's bucket as a local file system: rclone's
// mount (FUSE through bazil.org/fuse on Linux, an NFS loopback mount on
// macOS) running inside the daemon, so the mount outlives the CLI command
// that asked for it and is unmounted cleanly when the daemon stops.
//
// A Manager holds at most one mount. It records the mount in a state file
// so that a mount left behind by a crashed daemon (still listed by the
// kernel, but with nothing serving it: "transport endpoint is not
// connected") is detached at the next start by CleanupOrphans.
//
// The S3 remote is built in code from the bucket-scoped key; nothing is
// written to an rclone.conf and the secret is never logged.
package mount

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "github.com/rclone/rclone/backend/local" // the VFS write cache lives on the local backend
	_ "github.com/rclone/rclone/backend/s3"    // the s3 backend
	"github.com/rclone/rclone/cmd/mountlib"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config"
	"github.com/rclone/rclone/fs/config/configstruct"
	"github.com/rclone/rclone/fs/rc"
	"github.com/rclone/rclone/vfs/vfscommon"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// Errors callers can test with errors.Is.
var (
	ErrNotSupported   = errors.New("mount is not supported on this platform yet")
	ErrNotMounted     = errors.New("not mounted")
	ErrAlreadyMounted = errors.New("already mounted")
	ErrOverlap        = errors.New("mount point overlaps the sync folder")
)

// remoteName is the rclone name of the mount's S3 file system; the write
// cache lives under <CacheDir>/vfs/<remoteName>/<bucket>.
const remoteName = "bmmount"

// stateFile is the name of the mount record in the state directory.
const stateFile = "mount.json"

// Config describes one mount.
type Config struct {
	// MountPoint is the directory the bucket appears at. It is created if
	// missing and must be empty.
	MountPoint string
	// Remote is the bucket and its bucket-scoped key.
	Remote syncer.Remote
	// CacheDir holds rclone's write cache (files written through the
	// mount wait there until uploaded). Default: the user cache dir.
	CacheDir string
	// Profile picks the cache timings; "" is DefaultProfile.
	Profile Profile
	// Settings, if set, replace the profile's values (tests, advanced use).
	Settings *Settings
	// SyncFolder is the local folder bisync keeps in step with the same
	// bucket; a mount point equal to it, inside it or containing it is
	// refused. SyncFolders adds more when the daemon has several pairs.
	SyncFolder  string
	SyncFolders []string
	// Logger receives the manager's events; nil is slog.Default().
	Logger *slog.Logger
}

// MountStatus is what mount-status shows.
type MountStatus struct {
	Mounted    bool      `json:"mounted"`
	MountPoint string    `json:"mount_point,omitempty"`
	Profile    string    `json:"profile,omitempty"`
	Bucket     string    `json:"bucket,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	// Pending counts files written through the mount and not yet
	// uploaded (or still open for writing).
	Pending int `json:"pending,omitempty"`
	// Error is why the last mount ended or failed, if it did.
	Error string `json:"error,omitempty"`
}

// record is the state file: the mount this process holds.
type record struct {
	MountPoint string    `json:"mount_point"`
	PID        int       `json:"pid"`
	Profile    string    `json:"profile"`
	Bucket     string    `json:"bucket"`
	Since      time.Time `json:"since"`
}

// active is a running mount.
type active struct {
	mnt      *mountlib.MountPoint
	cfg      Config
	since    time.Time
	served   chan struct{} // closed when the file system server has stopped
	serveErr error         // valid after served is closed
	stopping bool          // Unmount has started (guarded by Manager.mu)
}

// Manager runs at most one mount at a time. Its methods are safe for
// concurrent use.
type Manager struct {
	stateDir string
	log      *slog.Logger

	mu      sync.Mutex
	cur     *active
	lastErr string
	last    MountStatus // the previous mount, for Status after it ended
}

// NewManager returns a Manager that keeps its record in stateDir (the
// daemon's state directory). logger may be nil.
func NewManager(stateDir string, logger *slog.Logger) *Manager {
	if logger == nil {
		logger = slog.Default()
	}
	return &Manager{stateDir: stateDir, log: logger.With(slog.String("component", "mount"))}
}

// Status reports the current mount, or the last error.
func (m *Manager) Status() MountStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		st := m.last
		st.Mounted = false
		st.Pending = 0
		st.Error = m.lastErr
		return st
	}
	st := MountStatus{
		Mounted:    true,
		MountPoint: m.cur.mnt.MountPoint,
		Profile:    string(m.cur.cfg.Profile),
		Bucket:     m.cur.cfg.Remote.Bucket,
		Since:      m.cur.since,
	}
	if v := m.cur.mnt.VFS; v != nil {
		st.Pending = pending(v.Stats())
	}
	return st
}

// pending reads the upload queue out of the VFS statistics.
func pending(stats rc.Params) int {
	dc, ok := stats["diskCache"].(rc.Params)
	if !ok {
		return 0
	}
	n := 0
	for _, k := range []string{"uploadsInProgress", "uploadsQueued"} {
		if v, ok := dc[k].(int); ok {
			n += v
		}
	}
	return n
}

// Mount mounts cfg.Remote at cfg.MountPoint and returns once the file
// system is ready. The mount keeps running after ctx ends, until Unmount
// or Close; ctx only bounds the setup.
func (m *Manager) Mount(ctx context.Context, cfg Config) (err error) {
	defer func() {
		if err != nil {
			m.mu.Lock()
			m.lastErr = err.Error()
			m.mu.Unlock()
		}
	}()
	if err := cfg.normalize(); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	if err := checkPlatform(); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	settings, err := cfg.settings()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil {
		return fmt.Errorf("mount: %w at %s", ErrAlreadyMounted, m.cur.mnt.MountPoint)
	}
	// A record left by a crash at this very mount point would make the
	// mount fail as "already mounted": detach it first.
	if err := m.cleanupOrphansLocked(ctx); err != nil {
		m.log.Warn("orphaned mount not cleaned up", slog.String("error", err.Error()))
	}
	if err := os.MkdirAll(cfg.MountPoint, 0o700); err != nil {
		return fmt.Errorf("mount: create mount point: %w", err)
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return fmt.Errorf("mount: create cache dir: %w", err)
	}

	syncer.SetupRclone()
	// rclone keeps its cache directory in a process-wide variable; the
	// daemon runs one mount, so that is the mount's.
	if err := config.SetCacheDir(cfg.CacheDir); err != nil {
		return fmt.Errorf("mount: cache dir: %w", err)
	}
	mctx := context.WithoutCancel(ctx)
	f, err := syncer.NewRemoteFs(mctx, cfg.Remote, remoteName)
	if err != nil {
		return fmt.Errorf("mount: s3 remote: %w", err)
	}
	vfsOpt, err := vfsOptions(settings)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	mountOpt, err := mountOptions(settings, cfg.Remote.Bucket)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	fn, err := mountFn()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}

	mnt := mountlib.NewMountPoint(fn, cfg.MountPoint, f, mountOpt, vfsOpt)
	mnt.Ctx = mctx
	if _, err := mnt.Mount(); err != nil {
		return fmt.Errorf("mount: %s: %w", cfg.MountPoint, err)
	}
	a := &active{mnt: mnt, cfg: cfg, since: time.Now(), served: make(chan struct{})}
	go m.watch(a)
	if err := waitReady(ctx, mnt.MountPoint, a.served); err != nil {
		a.stopping = true
		_ = mnt.UnmountFn()
		<-a.served
		mnt.VFS.Shutdown()
		return fmt.Errorf("mount: %s: %w", cfg.MountPoint, err)
	}
	m.cur = a
	m.lastErr = ""
	m.last = MountStatus{MountPoint: mnt.MountPoint, Profile: string(cfg.Profile), Bucket: cfg.Remote.Bucket, Since: a.since}
	if err := m.writeRecord(record{
		MountPoint: mnt.MountPoint, PID: os.Getpid(), Profile: string(cfg.Profile),
		Bucket: cfg.Remote.Bucket, Since: a.since,
	}); err != nil {
		m.log.Warn("mount record not written; a crash would leave the mount behind", slog.String("error", err.Error()))
	}
	m.log.Info("mounted", slog.String("mount_point", mnt.MountPoint), slog.String("profile", string(cfg.Profile)),
		slog.Any("remote", cfg.Remote))
	return nil
}

// waitReady waits until the kernel lists the mount, where that can be
// checked.
func waitReady(ctx context.Context, mountPoint string, served <-chan struct{}) error {
	if !mountlib.CanCheckMountReady {
		return nil
	}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		if err := mountlib.CheckMountReady(mountPoint); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-served:
			return errors.New("file system server stopped while mounting")
		case <-deadline.C:
			return errors.New("mount did not become ready within 10s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// watch waits for the file system server to stop. If nobody asked for it
// (the mount point was unmounted from outside, or the kernel dropped it),
// it finishes the mount: uploads what is pending and releases the VFS.
func (m *Manager) watch(a *active) {
	a.serveErr = <-a.mnt.ErrChan
	close(a.served)
	m.mu.Lock()
	if a.stopping || m.cur != a {
		m.mu.Unlock()
		return
	}
	m.cur = nil
	msg := "unmounted outside bm-agent"
	if a.serveErr != nil {
		msg = "mount ended: " + a.serveErr.Error()
	}
	m.lastErr = msg
	m.removeRecord()
	m.mu.Unlock()
	m.log.Warn("mount ended unexpectedly", slog.String("mount_point", a.mnt.MountPoint), slog.String("error", msg))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m.drain(ctx, a)
}

// drain waits until every file written through the mount is uploaded (or
// ctx ends), then releases the VFS. Files not uploaded by then stay in the
// write cache and are uploaded by the next mount of the same bucket.
func (m *Manager) drain(ctx context.Context, a *active) {
	v := a.mnt.VFS
	defer v.Shutdown()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for v.Busy() {
		select {
		case <-ctx.Done():
			m.log.Warn("unmounted with uploads pending; they stay in the write cache until the next mount",
				slog.Int("pending", pending(v.Stats())), slog.String("cache_dir", a.cfg.CacheDir))
			return
		case <-tick.C:
		}
	}
}

// Unmount unmounts the file system and waits until the files written
// through it are uploaded (bounded by ctx). It fails, leaving the mount in
// place, if files on it are open.
func (m *Manager) Unmount(ctx context.Context) error {
	m.mu.Lock()
	a := m.cur
	if a == nil {
		m.mu.Unlock()
		return fmt.Errorf("unmount: %w", ErrNotMounted)
	}
	if a.stopping {
		m.mu.Unlock()
		return fmt.Errorf("unmount: already in progress")
	}
	a.stopping = true
	m.mu.Unlock()

	if err := a.mnt.UnmountFn(); err != nil {
		m.mu.Lock()
		a.stopping = false
		m.mu.Unlock()
		return fmt.Errorf("unmount %s (close the files open on it and retry): %w", a.mnt.MountPoint, err)
	}
	return m.finish(ctx, a, false)
}

// finish waits for the server to stop, drains the uploads and forgets the
// mount. After a lazy unmount the server keeps answering for the files
// still open, so it is waited for only briefly.
func (m *Manager) finish(ctx context.Context, a *active, lazy bool) error {
	var err error
	wait := ctx
	if lazy {
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	select {
	case <-a.served:
	case <-wait.Done():
		if lazy {
			m.log.Warn("mount detached while files are open on it; the kernel drops it once they are closed",
				slog.String("mount_point", a.mnt.MountPoint))
		} else {
			err = fmt.Errorf("unmount %s: waiting for the file system server: %w", a.mnt.MountPoint, ctx.Err())
		}
	}
	m.drain(ctx, a)
	m.mu.Lock()
	if m.cur == a {
		m.cur = nil
	}
	m.removeRecord()
	if err == nil {
		m.lastErr = ""
	}
	m.mu.Unlock()
	m.log.Info("unmounted", slog.String("mount_point", a.mnt.MountPoint))
	return err
}

// Close unmounts when the daemon stops. If files are still open on the
// mount it is detached lazily (the kernel drops it once they are closed),
// so the daemon can always exit. Uploads get up to 30 seconds.
func (m *Manager) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := m.Unmount(ctx)
	if err == nil || errors.Is(err, ErrNotMounted) {
		return nil
	}
	m.mu.Lock()
	a := m.cur
	if a == nil || a.stopping {
		m.mu.Unlock()
		return err
	}
	a.stopping = true
	m.mu.Unlock()
	m.log.Warn("clean unmount failed, detaching lazily", slog.String("error", err.Error()))
	if lerr := lazyUnmount(ctx, a.mnt.MountPoint); lerr != nil {
		return errors.Join(err, fmt.Errorf("close: lazy unmount: %w", lerr))
	}
	return m.finish(ctx, a, true)
}

// CleanupOrphans detaches the mount recorded in the state directory if no
// live process serves it any more (the daemon crashed or was killed), and
// removes the record. Call it at daemon start. Mounts bm-agent did not
// record are never touched.
func (m *Manager) CleanupOrphans(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cleanupOrphansLocked(ctx)
}

func (m *Manager) cleanupOrphansLocked(ctx context.Context) error {
	rec, err := m.readRecord()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		m.log.Warn("unreadable mount record removed", slog.String("error", err.Error()))
		m.removeRecord()
		return nil
	}
	if m.cur != nil && m.cur.mnt.MountPoint == rec.MountPoint {
		return nil // ours and alive
	}
	mounted, err := isMounted(rec.MountPoint)
	if err != nil {
		return fmt.Errorf("cleanup orphans: %w", err)
	}
	if mounted {
		if rec.PID != os.Getpid() && processAlive(rec.PID) && responsive(rec.MountPoint) {
			// Another live process still serves it (a second daemon?):
			// not an orphan. Leave it and its record alone.
			return fmt.Errorf("cleanup orphans: %s is still served by process %d", rec.MountPoint, rec.PID)
		}
		m.log.Info("detaching orphaned mount", slog.String("mount_point", rec.MountPoint), slog.Int("pid", rec.PID))
		if err := lazyUnmount(ctx, rec.MountPoint); err != nil {
			return fmt.Errorf("cleanup orphans: %s: %w", rec.MountPoint, err)
		}
	}
	m.removeRecord()
	return nil
}

// responsive reports whether stat on path answers within two seconds. A
// mount whose server is gone answers ENOTCONN; one whose server hangs
// does not answer.
func responsive(path string) bool {
	done := make(chan error, 1)
	go func() {
		_, err := os.Stat(path)
		done <- err
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(2 * time.Second):
		return false
	}
}

func (m *Manager) recordPath() string { return filepath.Join(m.stateDir, stateFile) }

func (m *Manager) readRecord() (record, error) {
	var rec record
	b, err := os.ReadFile(m.recordPath())
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("mount record: %w", err)
	}
	if rec.MountPoint == "" {
		return rec, errors.New("mount record: no mount point")
	}
	return rec, nil
}

func (m *Manager) writeRecord(rec record) error {
	if m.stateDir == "" {
		return errors.New("no state dir")
	}
	if err := os.MkdirAll(m.stateDir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(m.recordPath(), append(b, '\n'), 0o600)
}

func (m *Manager) removeRecord() {
	if m.stateDir == "" {
		return
	}
	if err := os.Remove(m.recordPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("mount record not removed", slog.String("error", err.Error()))
	}
}

// normalize checks cfg and fills in defaults.
func (c *Config) normalize() error {
	if c.MountPoint == "" {
		return errors.New("mount point is required")
	}
	r := c.Remote
	switch {
	case r.Endpoint == "":
		return errors.New("remote endpoint is required")
	case r.Bucket == "":
		return errors.New("remote bucket is required")
	case r.AccessKey == "" || r.SecretKey == "":
		return errors.New("remote key pair is required")
	}
	p, err := ParseProfile(string(c.Profile))
	if err != nil {
		return err
	}
	c.Profile = p
	if c.MountPoint, err = resolve(c.MountPoint); err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if c.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("cache dir: %w", err)
		}
		c.CacheDir = filepath.Join(base, "bm-agent", "mount")
	}
	if c.CacheDir, err = resolve(c.CacheDir); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	for _, s := range append([]string{c.SyncFolder}, c.SyncFolders...) {
		if s == "" {
			continue
		}
		sf, err := resolve(s)
		if err != nil {
			return fmt.Errorf("sync folder: %w", err)
		}
		if overlaps(c.MountPoint, sf) {
			return fmt.Errorf("%w: %s and %s (mount elsewhere, or stop syncing that folder)", ErrOverlap, c.MountPoint, sf)
		}
	}
	if overlaps(c.MountPoint, c.CacheDir) {
		return fmt.Errorf("mount point %s and cache dir %s overlap", c.MountPoint, c.CacheDir)
	}
	return nil
}

func (c *Config) settings() (Settings, error) {
	if c.Settings != nil {
		s := *c.Settings
		if s.DirCacheTime <= 0 || s.CachePollInterval <= 0 || s.AttrTimeout < 0 || s.WriteBack < 0 {
			return Settings{}, errors.New("settings: durations must be positive")
		}
		return s, nil
	}
	return c.Profile.Settings()
}

// resolve makes p absolute and resolves the symlinks of its longest
// existing prefix, so that two spellings of one folder compare equal.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	cur := abs
	for {
		if real, err := filepath.EvalSymlinks(cur); err == nil {
			parts := append([]string{real}, rest...)
			return filepath.Join(parts...), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// overlaps reports whether a and b are the same folder or one contains the
// other. Both must be resolved.
func overlaps(a, b string) bool {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		a, b = strings.ToLower(a), strings.ToLower(b)
	}
	return within(a, b) || within(b, a)
}

// within reports whether p is base or below it.
func within(p, base string) bool {
	rel, err := filepath.Rel(base, p)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)))
}

// vfsOptions are rclone's VFS defaults (never its environment variables
// or flags) with the profile applied.
func vfsOptions(s Settings) (*vfscommon.Options, error) {
	var opt vfscommon.Options
	if err := configstruct.Set(syncer.OptionDefaults(vfscommon.OptionsInfo), &opt); err != nil {
		return nil, fmt.Errorf("vfs options: %w", err)
	}
	opt.CacheMode = vfscommon.CacheModeWrites
	opt.DirCacheTime = fs.Duration(s.DirCacheTime)
	opt.CachePollInterval = fs.Duration(s.CachePollInterval)
	opt.WriteBack = fs.Duration(s.WriteBack)
	return &opt, nil
}

// mountOptions are rclone's mount defaults with the profile applied.
func mountOptions(s Settings, bucket string) (*mountlib.Options, error) {
	var opt mountlib.Options
	if err := configstruct.Set(syncer.OptionDefaults(mountlib.OptionsInfo), &opt); err != nil {
		return nil, fmt.Errorf("mount options: %w", err)
	}
	opt.AttrTimeout = fs.Duration(s.AttrTimeout)
	opt.DeviceName = remoteName + ":" + bucket
	opt.VolumeName = "Basic Memory"
	return &opt, nil
}
