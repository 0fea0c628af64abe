// Package syncer is the daemon's sync engine: it keeps one local notes
// folder and one S3 bucket in step by running rclone bisync in-process.
//
// An Engine owns one sync pair. Its S3 remote is built in code from a
// bucket-scoped key (never an rclone.conf), its bisync listings and lock
// live in a work dir of its own, and every pass is safe to repeat: the
// first pass (and any pass after bisync lost its listings) is a "safe
// resync" that copies in both directions, deletes nothing and keeps both
// versions of a file that differs on the two sides. Later passes are
// normal bisync runs with --resilient, --recover, --max-lock, compare on
// size and modtime (S3 server modtime, so no per-object HEAD), conflicts
// resolved to the newer file with the loser kept under a
// name.conflict-<date>-<time>-<device>.ext name, and max-delete protection.
//
// Passes of all engines in the process are serialized by a package mutex:
// rclone bisync keeps some process-wide state (its log colouring, time
// zone, the atexit registry), and the machine is small anyway.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rclone/rclone/cmd/bisync"
	"github.com/rclone/rclone/cmd/bisync/bilib"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/rc"
)

// Typed errors a pass can return. Callers test them with errors.Is.
var (
	// ErrLocalRootMissing: the notes folder does not exist (or is not a
	// directory). Nothing was touched on either side.
	ErrLocalRootMissing = errors.New("local folder is missing")
	// ErrLocalRootEmpty: the notes folder has no files although the last
	// sync saw some (an unmounted drive, a wiped folder). The pass refuses
	// to run rather than propagate the emptiness as remote deletes.
	ErrLocalRootEmpty = errors.New("local folder is empty but the last sync had files")
	// ErrResyncRequired: bisync demands a resync and the engine could not
	// do one safely by itself (for example in a dry run).
	ErrResyncRequired = errors.New("bisync requires a resync")
	// ErrMaxDeleteExceeded: more files were deleted on one side than the
	// max-delete percentage allows. Nothing was changed; the pass will keep
	// failing until the deletes are undone or a forced resync is chosen.
	ErrMaxDeleteExceeded = errors.New("too many deletes")
	// ErrAllFilesChanged: bisync saw every file change on one side (such as
	// a clock or time zone jump) and stopped as a precaution.
	ErrAllFilesChanged = errors.New("all files changed on one side")
)

// Defaults.
const (
	// DefaultMaxDelete is the max-delete percentage of the balanced profile.
	DefaultMaxDelete = 25
	// maxLock: a lock file older than this (a crashed daemon) is ignored.
	maxLock = 2 * time.Minute
	// smallSet: below this many files in the last listing, bisync's
	// percentage based safety checks (max-delete, "all files changed") make
	// no sense (deleting one of three notes is 33%) and are bypassed. The
	// engine's own empty-folder check still applies.
	smallSet = 10
	// remoteDeviceLabel names the bucket's version in conflict file names.
	remoteDeviceLabel  = "cloud"
	conflictTimeFormat = "20060102-150405"
)

// passMu serializes passes across all engines in the process.
var passMu sync.Mutex

// Config describes one sync pair.
type Config struct {
	LocalDir  string       // the notes folder (path1)
	Remote    Remote       // the bucket (path2)
	WorkDir   string       // bisync's listings and lock: one per pair, under the agent's state dir
	Device    string       // device name, used in conflict file names
	MaxDelete int          // percent of files one pass may delete on a side; 0 means DefaultMaxDelete
	Logger    *slog.Logger // nil means slog.Default()
}

// PassOptions tunes one pass.
type PassOptions struct {
	Resync  bool   // force a safe resync (copies both ways, deletes nothing)
	DryRun  bool   // report only, change nothing (counts stay zero)
	Trigger string // why the pass runs (for the result and the log)
}

// Result describes one pass.
type Result struct {
	Start         time.Time
	Duration      time.Duration
	Trigger       string
	Resync        bool // the pass was a (safe) resync
	Uploaded      int  // files copied to the bucket
	Downloaded    int  // files copied to the local folder
	DeletedLocal  int  // files deleted from the local folder
	DeletedRemote int  // files deleted from the bucket
	Conflicts     int  // files kept twice because both sides changed
	RemoteChanged bool // anything was written to or deleted from the bucket
	LocalChanged  bool // anything was written to or deleted from the local folder
	Skipped       string
}

// Engine syncs one local folder with one bucket.
type Engine struct {
	id       uint64
	cfg      Config
	log      *slog.Logger
	device   string
	local    fs.Fs
	remote   fs.Fs
	listing1 string // bisync's listing files for this pair
	listing2 string
}

var engineSeq atomic.Uint64

// New checks cfg and builds the local and S3 file systems. It does not
// touch either side.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	setupGlobals()
	if cfg.LocalDir == "" || cfg.WorkDir == "" {
		return nil, errors.New("syncer: new: LocalDir and WorkDir are required")
	}
	if err := cfg.Remote.validate(); err != nil {
		return nil, fmt.Errorf("syncer: new: %w", err)
	}
	if cfg.MaxDelete == 0 {
		cfg.MaxDelete = DefaultMaxDelete
	}
	if cfg.MaxDelete < 0 || cfg.MaxDelete > 100 {
		return nil, fmt.Errorf("syncer: new: MaxDelete %d is not a percentage", cfg.MaxDelete)
	}
	var err error
	if cfg.LocalDir, err = filepath.Abs(cfg.LocalDir); err != nil {
		return nil, fmt.Errorf("syncer: new: local dir: %w", err)
	}
	if cfg.WorkDir, err = filepath.Abs(cfg.WorkDir); err != nil {
		return nil, fmt.Errorf("syncer: new: work dir: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	e := &Engine{id: engineSeq.Add(1), cfg: cfg, log: logger, device: sanitizeDevice(cfg.Device)}
	if e.local, err = newLocalFs(ctx, cfg.LocalDir); err != nil {
		return nil, fmt.Errorf("syncer: new: local: %w", err)
	}
	if e.remote, err = newRemoteFs(ctx, cfg.Remote); err != nil {
		return nil, fmt.Errorf("syncer: new: remote: %w", err)
	}
	bridge.addSecret(cfg.Remote.SecretKey)
	base := filepath.Join(cfg.WorkDir, bilib.SessionName(e.local, e.remote))
	e.listing1 = base + ".path1.lst"
	e.listing2 = base + ".path2.lst"
	return e, nil
}

// NeedsResync reports whether the pair has no usable baseline listings yet,
// so the next pass will be a safe resync.
func (e *Engine) NeedsResync() bool {
	return e.baseline(e.listing1) == "" || e.baseline(e.listing2) == ""
}

// baseline returns the listing bisync will use for a side: the current one,
// or the previous one that --recover falls back to; "" if neither exists.
func (e *Engine) baseline(listing string) string {
	for _, p := range []string{listing, listing + "-old"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Pass runs one sync pass. Cancelling ctx stops it; the next pass recovers.
func (e *Engine) Pass(ctx context.Context, opt PassOptions) (res Result, err error) {
	passMu.Lock()
	defer passMu.Unlock()

	res = Result{Start: time.Now(), Trigger: opt.Trigger}
	log := e.log.With("trigger", opt.Trigger)
	defer func() {
		res.Duration = time.Since(res.Start)
		if err != nil {
			log.Warn("sync pass failed", "err", err, "duration", res.Duration)
			return
		}
		log.Info("sync pass done", "resync", res.Resync, "uploaded", res.Uploaded,
			"downloaded", res.Downloaded, "deleted_local", res.DeletedLocal,
			"deleted_remote", res.DeletedRemote, "conflicts", res.Conflicts,
			"skipped", res.Skipped, "duration", res.Duration)
	}()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("syncer: pass: %w", err)
	}

	st, statErr := os.Stat(e.cfg.LocalDir)
	if statErr != nil || !st.IsDir() {
		return res, fmt.Errorf("syncer: pass: %w: %s", ErrLocalRootMissing, e.cfg.LocalDir)
	}
	localHas, err := dirHasFiles(e.cfg.LocalDir)
	if err != nil {
		return res, fmt.Errorf("syncer: pass: scan local folder: %w", err)
	}
	remoteHas, err := e.remoteHasFiles(ctx)
	if err != nil {
		return res, fmt.Errorf("syncer: pass: list bucket: %w", err)
	}
	prior1 := listingFiles(e.baseline(e.listing1))
	prior2 := listingFiles(e.baseline(e.listing2))

	if !localHas && prior1 > 0 {
		return res, fmt.Errorf("syncer: pass: %w (%d files last time): %s", ErrLocalRootEmpty, prior1, e.cfg.LocalDir)
	}
	if !localHas && !remoteHas {
		res.Skipped = "both sides empty"
		return res, nil
	}

	resync := opt.Resync || e.NeedsResync()
	if !resync && (!localHas || !remoteHas || prior1 == 0 || prior2 == 0) {
		// bisync refuses to run with an empty side or an empty baseline;
		// a resync copies without deleting, which is what these cases need
		// (a new device, a first note, a bucket that lost its objects).
		log.Info("one side or its baseline is empty: running a safe resync",
			"local_has_files", localHas, "remote_has_files", remoteHas)
		resync = true
	}

	pc := e.newPassCounter(log)
	defer pc.close()
	if resync {
		err = e.safeResync(ctx, pc, opt.DryRun, &res)
	} else {
		force := max(prior1, prior2) < smallSet
		err = e.runBisync(ctx, pc, false, opt.DryRun, force)
		if errors.Is(err, bisync.ErrBisyncAborted) && ctx.Err() == nil && e.NeedsResync() {
			if opt.DryRun {
				err = fmt.Errorf("syncer: pass: %w: %w", ErrResyncRequired, err)
			} else {
				log.Warn("bisync lost its listings and demands a resync: running a safe resync")
				err = e.safeResync(ctx, pc, false, &res)
			}
		} else {
			err = classify(err)
		}
	}
	pc.fill(&res)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return res, fmt.Errorf("syncer: pass: %w", err)
	}
	return res, nil
}

// classify maps bisync's untyped errors onto the package's typed ones.
func classify(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "too many deletes"):
		return fmt.Errorf("bisync: %w: %w", ErrMaxDeleteExceeded, err)
	case strings.Contains(msg, "all files were changed"):
		return fmt.Errorf("bisync: %w: %w", ErrAllFilesChanged, err)
	case strings.Contains(msg, "--resync"):
		return fmt.Errorf("bisync: %w: %w", ErrResyncRequired, err)
	}
	return fmt.Errorf("bisync: %w", err)
}

// safeResync establishes a baseline without losing anything: files that
// exist on both sides with different content get the bucket's version
// downloaded next to the local one as a conflict copy, then a path1-wins
// resync copies everything missing in both directions.
func (e *Engine) safeResync(ctx context.Context, pc *passCounter, dryRun bool, res *Result) error {
	res.Resync = true
	n, err := e.keepRemoteVersions(ctx, pc, dryRun)
	res.Conflicts += n
	if err != nil {
		return fmt.Errorf("resync: keep bucket versions: %w", err)
	}
	if err := e.runBisync(ctx, pc, true, dryRun, false); err != nil {
		return fmt.Errorf("resync: %w", classify(err))
	}
	return nil
}

// runBisync runs one bisync.Bisync with the engine's settings.
func (e *Engine) runBisync(ctx context.Context, pc *passCounter, resync, dryRun, force bool) error {
	ctx = accounting.WithStatsGroup(ctx, pc.group)
	ctx, ci := fs.AddConfig(ctx)
	ci.DryRun = dryRun
	ci.MaxDelete = int64(e.cfg.MaxDelete)
	ci.UseServerModTime = true
	ci.UseListR = true
	// After an upload the object's time comes from a HEAD (Last-Modified,
	// whole seconds) while listings carry milliseconds: times within a
	// second of each other are the same time.
	ci.ModifyWindow = fs.Duration(time.Second)
	// Server modtimes cannot be set; don't rewrite identical objects (a
	// CopyObject each) just to try.
	ci.NoUpdateModTime = true
	ci.SuffixKeepExtension = true
	ci.LogLevel = fs.LogLevelInfo // per-file lines, routed to slog and counted
	ci.Progress = false
	ci.TerminalColorMode = fs.TerminalColorModeNever

	stamp := time.Now().Format(conflictTimeFormat)
	opt := bisync.Options{
		Resync:                resync,
		Workdir:               e.cfg.WorkDir,
		Resilient:             true,
		Recover:               true,
		MaxLock:               fs.Duration(maxLock),
		Force:                 force,
		CompareFlag:           "size,modtime",
		IgnoreListingChecksum: true,
		// The final check compares path1's listing with path2's, size and
		// modtime; with server modtime on S3 the two sides' times never
		// agree (edit time here, upload time there), so it would abort
		// every pass that uploads. Each side is still compared with its own
		// prior listing, which is what finds changes.
		CheckSync:       bisync.CheckSyncFalse,
		ConflictResolve: bisync.PreferNewer,
		ConflictLoser:   bisync.ConflictLoserPathname,
		// path1's loser is this device's version, path2's the bucket's.
		ConflictSuffixFlag: "conflict-" + stamp + "-" + e.device + ",conflict-" + stamp + "-" + remoteDeviceLabel,
	}
	if resync {
		opt.ResyncMode = bisync.PreferPath1
	}
	err := bisync.Bisync(ctx, e.local, e.remote, &opt)
	if err != nil {
		return err
	}
	return nil
}

// deleteStatsGroup frees rclone's accounting for a finished pass.
func deleteStatsGroup(ctx context.Context, group string) {
	if call := rc.Calls.Get("core/stats-delete"); call != nil {
		_, _ = call.Fn(ctx, rc.Params{"group": group})
	}
}

var deviceChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// sanitizeDevice makes a device name safe for file names and for bisync's
// conflict suffix syntax (no commas, braces or dots).
func sanitizeDevice(name string) string {
	name = strings.Trim(deviceChars.ReplaceAllString(name, "-"), "-")
	if name == "" {
		return "device"
	}
	if len(name) > 40 {
		name = name[:40]
	}
	return name
}

// conflictName turns "dir/note.md" into "dir/note.conflict-<stamp>-<who>.md".
func conflictName(remote, stamp, who string) string {
	dir, file := "", remote
	if i := strings.LastIndex(remote, "/"); i >= 0 {
		dir, file = remote[:i+1], remote[i+1:]
	}
	ext := ""
	if i := strings.LastIndex(file, "."); i > 0 {
		file, ext = file[:i], file[i:]
	}
	return dir + file + ".conflict-" + stamp + "-" + who + ext
}

// dirHasFiles reports whether the tree under root holds at least one
// regular file.
func dirHasFiles(root string) (bool, error) {
	found := false
	err := filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found, err
}

// listingFiles counts the file lines of a bisync listing (0 if absent).
func listingFiles(path string) int {
	if path == "" {
		return 0
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.HasPrefix(line, "- ") {
			n++
		}
	}
	return n
}
