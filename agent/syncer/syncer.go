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
// size and modtime (S3 server modtime, so no per-object HEAD), and the
// conflict handling, max-delete and access check of the pair's Profile:
// a conflict's losing version (or, in the safe profile, both versions) is
// kept under a name.conflict-<date>-<time>-<device>.ext name. After a run
// that wrote to the bucket the engine records the new objects' own server
// modtimes in bisync's path2 listing (bisync records the local file's
// time, which an S3 object never shows), so the next pass does not see
// its own uploads as changes (see settle.go).
//
// Nothing a person wrote is lost. bisync runs on guarded file systems
// (guard.go): before a file is replaced or deleted, on either side, its
// version is kept (agent/versions), and a file that changed after the pass
// listed it is kept as a conflict file, or not deleted at all; the bucket
// side uses conditional writes, the local side takes the old version out
// of its place before the new one goes in. Every completed operation is
// journaled (journal.go), so a pass killed in the middle does not take its
// own copies for edits the next time.
//
// A pass never stops on one file (failures.go): a path a side cannot take
// (unreadable, a file/folder clash, a name that does not fit) is set aside
// with why and what to do, everything else syncs, and it is tried again
// later. A bucket that stops answering is found by a probe within seconds
// (check.go), and the pass ends as ErrOffline rather than after rclone's
// minutes of retries.
//
// The notes folder's .bmignore (gitignore syntax, Basic Memory's defaults
// written when absent, never synced itself) becomes an rclone filters file
// in the work dir. bisync demands a resync when filters change; the
// engine does that resync itself, safely, and says so in the Result.
//
// A full pass that finds both sides exactly as bisync's saved listings
// say (listed as bisync lists them, compared line for line with what
// bisync would write) does not run bisync, which would do nothing; any
// doubt about the listings runs it (unchanged.go).
//
// A pass killed in the middle (SIGKILL, power loss) leaves bisync's lock
// behind; the next pass removes a lock whose process is gone and goes on
// from the listings it left.
//
// Passes of all engines in the process are serialized by a package mutex:
// rclone bisync keeps some process-wide state (its log colouring, time
// zone, the atexit registry), and the machine is small anyway.
package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rclone/rclone/cmd/bisync"
	"github.com/rclone/rclone/cmd/bisync/bilib"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/rc"

	"github.com/basicmachines-co/bm-agent/agent/versions"
)

// Typed errors a pass can return. Callers test them with errors.Is.
var (
	// ErrLocalRootMissing: the notes folder does not exist (or is not a
	// directory). Nothing was touched on either side.
	ErrLocalRootMissing = errors.New("local folder is missing")
	// ErrLocalRootEmpty: the notes folder has no files although the last
	// sync saw some (an unmounted drive, a wiped folder). The pass refuses
	// to run rather than propagate the emptiness as remote deletes; a
	// resync (PassOptions.Resync) fills the folder from the bucket.
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
	// ErrAccessCheckFailed: the profile checks access files and the
	// AccessCheckFile is missing on one side (or the counts differ).
	// Nothing was changed and the listings are kept; restore the file, or
	// run a resync (PassOptions.Resync), which recreates it.
	ErrAccessCheckFailed = errors.New("access check file " + AccessCheckFile + " missing on one side")
	// ErrLocked: another live process is syncing this pair.
	ErrLocked = errors.New("another process is syncing this folder")
)

// Defaults.
const (
	// DefaultMaxDelete is the max-delete percentage of the balanced profile.
	DefaultMaxDelete = 25
	// DefaultProfile is the profile of a Config without one.
	DefaultProfile = ProfileBalanced
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
	MaxDelete int          // percent of files one pass may delete on a side; 0 means the profile's
	Logger    *slog.Logger // nil means slog.Default()
	Profile   Profile      // "" means DefaultProfile
	// VersionsDir holds the notes folder's version store ("" means a
	// "versions" dir in WorkDir); the bucket's versions live in the
	// bucket (see agent/versions).
	VersionsDir string
	// NoVersions turns versions off: passes still never replace a file
	// that changed after they listed it, but keep no versions.
	NoVersions bool
}

// PassOptions tunes one pass.
type PassOptions struct {
	Resync  bool    // force a safe resync (copies both ways, deletes nothing)
	DryRun  bool    // report only, change nothing; Result.Plan says what would happen
	Trigger string  // why the pass runs (for the result and the log)
	Profile Profile // this pass only: overrides Config.Profile ("" keeps it)
	Force   bool    // let this pass exceed max-delete (the user said so)
	// RetryFailed tries the paths that failed before again now, not at
	// their time (a sync the person asked for).
	RetryFailed bool
	// Progress, if set, is called about every 500 ms while the pass
	// transfers files, with figures from the pass's own stats group, and
	// once more when the pass ends. It must not block.
	Progress func(Progress)
	// Paths, when set, are the local paths (slash-separated, relative to
	// the folder) that changed since the last pass, and the caller knows
	// nothing else changed on either side (the watcher saw every local
	// change and the tenant's change events are live). The pass then
	// syncs just those when they are edits made here (see quick.go), and
	// runs in full otherwise.
	Paths []string
	// RemotePaths, when set, are the bucket's keys that another device
	// or client changed since the last pass (the tenant's change events
	// named them), and the caller knows nothing else changed on either
	// side. The pass then syncs just those when they are objects written
	// in the bucket over files unchanged here (see quick.go), and runs in
	// full otherwise.
	RemotePaths []string
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
	// ConflictsArrived counts the conflict files another device's pass
	// made that this pass downloaded.
	ConflictsArrived int
	// Quick: the pass synced the changed paths alone (PassOptions.Paths
	// and RemotePaths), listing neither side.
	Quick bool
	// CloudWrites are the keys a quick pass wrote in the bucket (nil
	// after a full pass, which may have written any).
	CloudWrites   []string
	RemoteChanged bool // anything was written to or deleted from the bucket
	LocalChanged  bool // anything was written to or deleted from the local folder
	Skipped       string
	ResyncReason  string   // why the pass was a resync ("" if it was not)
	Profile       Profile  // the profile the pass ran with
	Plan          []Change // what the pass decided (in a dry run: what it would do)
	// EditsKept counts files the pass did not delete because they changed
	// after it listed them (the edit wins over the delete).
	EditsKept int
	// VersionsKept counts the versions the pass kept in the version
	// stores before replacing or deleting them.
	VersionsKept int
	// Again: the pass left news for the other side (a conflict file it
	// made, a note it did not delete), which the next pass takes; run it
	// soon.
	Again bool
	// Failures are the paths that do not sync for now, with why and what
	// to do; everything else synced.
	Failures []Failure
	// AllChanged: every file had changed since the last pass, for real;
	// the pass synced them all (with every replaced version kept).
	AllChanged bool
	// Unchanged: both sides were exactly as the last pass left them (as
	// bisync's listings say), so bisync did not run: a pass that found no
	// change, recorded like one of bisync's (see unchanged.go).
	Unchanged bool
	// LocalWrites are the paths in the notes folder the pass itself wrote,
	// renamed or deleted (sorted): a watcher's events for any other path
	// during the pass were someone else's.
	LocalWrites []string
}

// Engine syncs one local folder with one bucket.
type Engine struct {
	id       uint64
	cfg      Config
	log      *slog.Logger
	device   string
	local    fs.Fs
	remote   fs.Fs
	basePath string // bisync's work-dir prefix for this pair (listings, lock)
	listing1 string // bisync's listing files for this pair
	listing2 string

	localVersions *versions.Local // the notes folder's version store
	cloudVersions *versions.Cloud // the bucket's
	keepVersions  atomic.Bool
	s3            *s3.Client // the bucket, for the guards' conditional requests
	probeS3       *s3.Client // the bucket, for the reachability probe (one attempt)

	failures *failureSet // the paths that do not sync for now
	origins  originCache // the writers of conflict files (ConflictOrigins)

	stampMu   sync.Mutex
	lastStamp string // the last pass's conflict stamp

	madeMu sync.Mutex
	made   map[string]bool // conflict files this engine's passes made (othersConflict)
	madeQ  []string        // the same, oldest first

	// bisyncRuns counts the bisync runs of the engine's passes.
	bisyncRuns atomic.Int64
	// prelisted is the bucket listing the pass's no-change check made,
	// for its first bisync run (passMu guards it).
	prelisted *bucketListing
	// noUnchangedCheck, set by a test, makes every full pass run bisync.
	noUnchangedCheck bool

	// beforeReplace, if set by a test, is called right before a pass
	// replaces or deletes path on side (SideLocal, SideCloud): a write
	// there lands in the window between the listing and the copy.
	beforeReplace func(side, path string)
	// beforeRead, if set by a test, is called right before a pass opens
	// a file on side (SideLocal, SideCloud) to copy it to the other.
	beforeRead func(side, path string)
}

var engineSeq atomic.Uint64

// New checks cfg and builds the local and S3 file systems. It does not
// touch either side.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	SetupRclone()
	if cfg.LocalDir == "" || cfg.WorkDir == "" {
		return nil, errors.New("syncer: new: LocalDir and WorkDir are required")
	}
	if err := cfg.Remote.validate(); err != nil {
		return nil, fmt.Errorf("syncer: new: %w", err)
	}
	if cfg.Profile == "" {
		cfg.Profile = DefaultProfile
	}
	if _, err := ParseProfile(string(cfg.Profile)); err != nil {
		return nil, fmt.Errorf("syncer: new: %w", err)
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
	if cfg.VersionsDir == "" {
		e.cfg.VersionsDir = filepath.Join(cfg.WorkDir, "versions")
	}
	if e.localVersions, err = versions.OpenLocal(e.cfg.VersionsDir, e.device, logger.With("component", "versions")); err != nil {
		return nil, fmt.Errorf("syncer: new: %w", err)
	}
	e.s3 = newS3Client(cfg.Remote, time.Minute, 3)
	e.probeS3 = newS3Client(cfg.Remote, 0, 1)
	e.cloudVersions = versions.NewCloud(e.s3, cfg.Remote.Bucket, e.device)
	e.keepVersions.Store(!cfg.NoVersions)
	gl, gc := newGuardPass(e, logger, "").wrap(ctx)
	e.basePath = filepath.Join(cfg.WorkDir, bilib.SessionName(gl, gc))
	e.listing1 = e.basePath + ".path1.lst"
	e.listing2 = e.basePath + ".path2.lst"
	if err := e.migrateListings(filepath.Join(cfg.WorkDir, bilib.SessionName(e.local, e.remote))); err != nil {
		return nil, fmt.Errorf("syncer: new: %w", err)
	}
	e.failures = loadFailures(filepath.Join(cfg.WorkDir, "failures.json"))
	return e, nil
}

// localSessionRoot is the local side's root as bisync's listing names see
// it: a hash of the folder's path, so that any folder path gives short
// names, and another folder gets listings of its own.
func (e *Engine) localSessionRoot() string {
	sum := sha256.Sum256([]byte(e.cfg.LocalDir))
	return hex.EncodeToString(sum[:8])
}

// migrateListings renames the listings an older bm-agent kept under the
// long names bisync makes from both full paths (oldBase) to the engine's
// short ones, so an upgrade needs no resync.
func (e *Engine) migrateListings(oldBase string) error {
	if oldBase == e.basePath || e.baseline(e.listing1) != "" || e.baseline(e.listing2) != "" {
		return nil
	}
	entries, err := os.ReadDir(e.cfg.WorkDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("migrate listings: %w", err)
	}
	prefix := filepath.Base(oldBase) + "."
	for _, ent := range entries {
		suffix, ok := strings.CutPrefix(ent.Name(), prefix)
		if !ok || strings.HasSuffix(suffix, "lck") {
			continue
		}
		if err := os.Rename(filepath.Join(e.cfg.WorkDir, ent.Name()), e.basePath+"."+suffix); err != nil {
			return fmt.Errorf("migrate listings: %w", err)
		}
		e.log.Info("moved a bisync listing to its short name", "file", ent.Name())
	}
	return nil
}

// passStamp returns the conflict stamp of a new pass: the time to the
// second, or the first second after it that no conflict file in the
// listings (and no earlier pass of this process) has, so two conflicts on
// one note in one second get two names (rclone deletes a file in the way
// of the rename that names a conflict's loser).
func (e *Engine) passStamp() string {
	e.stampMu.Lock()
	defer e.stampMu.Unlock()
	taken := map[string]bool{}
	conflictLine := func(line []byte) bool { return bytes.Contains(line, []byte(".conflict-")) }
	for _, l := range []string{e.listing1, e.listing2} {
		entries, _ := readListingWhere(l, conflictLine)
		for name := range entries {
			if c, ok := parseConflictName(name); ok {
				taken[c.Time.Format(conflictTimeFormat)] = true
			}
		}
	}
	t := time.Now()
	if last, err := time.ParseInLocation(conflictTimeFormat, e.lastStamp, time.Local); err == nil && !t.After(last) {
		t = last.Add(time.Second)
	}
	stamp := t.Format(conflictTimeFormat)
	for i := 0; taken[stamp] && i < 60; i++ {
		t = t.Add(time.Second)
		stamp = t.Format(conflictTimeFormat)
	}
	e.lastStamp = stamp
	return stamp
}

// maxMade is how many of the conflict files its passes made an engine
// remembers: one it made in the bucket comes down a pass or two later.
const maxMade = 4096

// madeConflict records that a pass of this engine made the conflict file
// path (on either side).
func (e *Engine) madeConflict(path string) {
	e.madeMu.Lock()
	defer e.madeMu.Unlock()
	if e.made == nil {
		e.made = map[string]bool{}
	}
	if e.made[path] {
		return
	}
	e.made[path] = true
	e.madeQ = append(e.madeQ, path)
	if len(e.madeQ) > maxMade {
		delete(e.made, e.madeQ[0])
		e.madeQ = e.madeQ[1:]
	}
}

// othersConflict reports whether path is a conflict file that no recent
// pass of this engine made: another device's, news to the person here.
func (e *Engine) othersConflict(path string) bool {
	if _, ok := parseConflictName(path); !ok {
		return false
	}
	e.madeMu.Lock()
	defer e.madeMu.Unlock()
	return !e.made[path]
}

// SetKeepVersions turns keeping versions on or off for the next passes.
func (e *Engine) SetKeepVersions(on bool) { e.keepVersions.Store(on) }

// Versions returns the notes folder's and the bucket's version stores.
func (e *Engine) Versions() (*versions.Local, *versions.Cloud) {
	return e.localVersions, e.cloudVersions
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

// passSettings is what one pass runs with.
type passSettings struct {
	profile   Profile
	set       profileSetting
	maxDelete int
	filters   string         // bisync's filters file
	ignore    *ignoreMatcher // every filter rule, which the pass's file systems apply
	dryRun    bool
	force     bool
}

// Pass runs one sync pass. Cancelling ctx stops it; the next pass recovers.
func (e *Engine) Pass(ctx context.Context, opt PassOptions) (res Result, err error) {
	passMu.Lock()
	defer passMu.Unlock()

	profile := e.cfg.Profile
	if opt.Profile != "" {
		if profile, err = ParseProfile(string(opt.Profile)); err != nil {
			return Result{Start: time.Now(), Trigger: opt.Trigger}, fmt.Errorf("syncer: pass: %w", err)
		}
	}
	ps := passSettings{profile: profile, set: profile.settings(), dryRun: opt.DryRun}
	ps.maxDelete = ps.set.maxDelete
	if e.cfg.MaxDelete > 0 {
		ps.maxDelete = e.cfg.MaxDelete
	}

	res = Result{Start: time.Now(), Trigger: opt.Trigger, Profile: profile}
	log := e.log.With("trigger", opt.Trigger)
	var pc *passCounter
	defer func() {
		res.Duration = time.Since(res.Start)
		critical := ""
		if pc != nil {
			critical = pc.criticalError()
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, ErrKeyRejected) && isKeyRejected(err, critical) {
			err = fmt.Errorf("%w: %w", ErrKeyRejected, err)
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, ErrOffline) && isNetworkFailure(err, critical) {
			err = fmt.Errorf("%w: %w", ErrOffline, err)
		}
		if err != nil {
			log.Warn("sync pass failed", "err", err, "duration", res.Duration)
			return
		}
		log.Info("sync pass done", "resync", res.Resync, "resync_reason", res.ResyncReason,
			"uploaded", res.Uploaded, "downloaded", res.Downloaded, "deleted_local", res.DeletedLocal,
			"deleted_remote", res.DeletedRemote, "conflicts", res.Conflicts,
			"skipped", res.Skipped, "dry_run", opt.DryRun, "quick", res.Quick, "unchanged", res.Unchanged, "duration", res.Duration)
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
	prior1 := listingFiles(e.baseline(e.listing1))
	prior2 := listingFiles(e.baseline(e.listing2))
	if !localHas && prior1 > 0 && !opt.Resync {
		// An unmounted drive or a wiped folder: refuse, rather than pass the
		// emptiness on as deletes. A resync the person asks for copies the
		// bucket's notes into it (and deletes nothing), which is the way to
		// fill the folder again on purpose.
		return res, fmt.Errorf("syncer: pass: %w (%d files last time): %s", ErrLocalRootEmpty, prior1, e.cfg.LocalDir)
	}
	filters, ignore, filtersChanged, err := e.prepareFilters(opt.DryRun)
	if err != nil {
		return res, fmt.Errorf("syncer: pass: %w", err)
	}
	ps.filters, ps.ignore = filters, ignore
	// The first request of the pass tells within probeTimeout whether the
	// bucket answers at all (rclone's own retries would take minutes).
	remoteHas, err := e.probe(ctx)
	if err != nil {
		return res, fmt.Errorf("syncer: pass: %w", err)
	}
	outer := ctx
	ctx, cancelPass := context.WithCancelCause(outer)
	defer cancelPass(nil)
	defer e.watchReachable(ctx, cancelPass)()
	if !localHas && !remoteHas {
		res.Skipped = "both sides empty"
		return res, nil
	}
	if !opt.DryRun {
		if err := e.clearStaleLock(); err != nil {
			return res, fmt.Errorf("syncer: pass: %w", err)
		}
	}

	reason := ""
	switch {
	case opt.Resync:
		reason = "resync requested"
	case e.NeedsResync():
		reason = "no baseline listings (first sync, or lost)"
	case filtersChanged:
		reason = "ignore rules changed (" + IgnoreFile + ")"
	case !localHas || !remoteHas || prior1 == 0 || prior2 == 0:
		// bisync refuses to run with an empty side or an empty baseline;
		// a resync copies without deleting, which is what these cases need
		// (a new device, a first note, a bucket that lost its objects).
		reason = "one side or its baseline is empty"
	}

	pc = e.newPassCounter(log)
	defer pc.close()
	defer func() { e.prelisted = nil }()
	if opt.Progress != nil {
		stop := pc.reportProgress(ctx, opt.Progress)
		defer stop() // before pc.close frees the stats group
	}
	// A run that fails on some paths is run again without them (see
	// failures.go), a few times at most: the rest syncs.
	skip, retry := e.failures.split(time.Now(), opt.RetryFailed)
	if !opt.DryRun && reason == "" {
		if err := e.remember(retry); err != nil {
			return res, fmt.Errorf("syncer: pass: %w", err)
		}
	}
	if reason == "" && len(opt.Paths)+len(opt.RemotePaths) > 0 && len(skip) == 0 && len(retry) == 0 && !opt.Force && !opt.RetryFailed && !e.journalPending() {
		handled, qerr := e.quickPass(ctx, pc, ps, opt.Paths, opt.RemotePaths, &res, log)
		if !handled {
			res.CloudWrites = nil
		}
		if handled {
			res.Quick = true
			res.Failures = e.failures.list()
			pc.fill(&res)
			if qerr != nil {
				return res, fmt.Errorf("syncer: pass: %w", qerr)
			}
			return res, nil
		}
	}
	for round := 0; ; round++ {
		rctx, ferr := withExclusions(ctx, skip)
		if ferr != nil {
			err = ferr
			break
		}
		if round == 0 && reason == "" && len(retry) == 0 && !e.noUnchangedCheck {
			// both sides as the last pass left them: bisync would do
			// nothing (see unchanged.go)
			checkStart := time.Now()
			unchanged, why := e.unchangedSides(rctx, pc, ps)
			if unchanged {
				log.Debug("no-change check: both sides as the listings say, bisync not run", "took", time.Since(checkStart))
				res.Unchanged = true
				err = nil
				break
			}
			log.Debug("no-change check: running bisync", "why", why, "took", time.Since(checkStart))
		}
		err = e.runPass(rctx, pc, ps, opt, reason, &res, log, localHas, remoteHas, max(prior1, prior2) < smallSet)
		fails, global := pc.takeFailures()
		if err != nil && global != nil {
			err = fmt.Errorf("%w (%v)", global, err)
			break
		}
		if err == nil || ctx.Err() != nil || opt.DryRun || len(fails) == 0 || round >= maxFailureRounds {
			break
		}
		if ferr := e.forget(fails); ferr != nil {
			err = fmt.Errorf("%w (and setting the failed files aside failed: %v)", err, ferr)
			break
		}
		if aerr := e.failures.add(fails, time.Now()); aerr != nil {
			log.Warn("could not record the files that failed", "err", aerr)
		}
		skip = append(skip, fails...)
		retry = slices.DeleteFunc(retry, func(r Failure) bool {
			return slices.ContainsFunc(fails, func(f Failure) bool { return f.Path == r.Path })
		})
		log.Warn("some files could not sync: syncing the rest without them",
			"files", len(fails), "first", fails[0].Path, "why", fails[0].Error, "advice", fails[0].Advice)
		pc.resetPlan()
	}
	// Stopped because the bucket stopped answering: offline, not
	// cancelled (the next pass recovers what this one left). bisync can
	// end a pass whose listing the cancel cut short without an error
	// ("nothing to transfer"): it is still such a pass, and nothing in it
	// synced again (e2e TestServerOutage under load said idle for 30 s
	// with the server down).
	if cause := context.Cause(ctx); outer.Err() == nil && errors.Is(cause, ErrOffline) {
		if err == nil {
			err = cause
		} else {
			err = fmt.Errorf("%w (the pass stopped there: %v)", cause, err)
		}
	}
	if err == nil && len(retry) > 0 {
		// tried again, and went through
		done := make([]string, len(retry))
		for i, f := range retry {
			done[i] = f.Path
		}
		if cerr := e.failures.clear(done); cerr != nil {
			log.Warn("could not record the files that synced again", "err", cerr)
		}
		log.Info("files that had failed synced", "files", len(done))
	}
	res.Failures = e.failures.list()
	pc.fill(&res)
	if err != nil {
		if ctxErr := outer.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
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
	case strings.Contains(msg, "check file check failed"):
		return fmt.Errorf("bisync: %w: %w", ErrAccessCheckFailed, err)
	case strings.Contains(msg, "--resync"):
		return fmt.Errorf("bisync: %w: %w", ErrResyncRequired, err)
	}
	return fmt.Errorf("bisync: %w", err)
}

// safeResync establishes a baseline without losing anything: files that
// exist on both sides with different content get the bucket's version
// downloaded next to the local one as a conflict copy, then a path1-wins
// resync copies everything missing in both directions. Files equal on
// both sides (same MD5) are not copied again.
func (e *Engine) safeResync(ctx context.Context, pc *passCounter, ps passSettings, res *Result) error {
	res.Resync = true
	pc.setResyncing(true)
	defer pc.setResyncing(false)
	fctx, err := withFilters(ctx, ps.ignore)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	if ps.set.checkAccess && !ps.dryRun {
		if err := e.ensureAccessCheckFile(); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	}
	n, err := e.keepRemoteVersions(fctx, pc, ps.dryRun)
	res.Conflicts += n
	if err != nil {
		return fmt.Errorf("resync: keep bucket versions: %w", err)
	}
	if err := e.runBisync(ctx, pc, true, ps); err != nil {
		return fmt.Errorf("resync: %w", classify(err))
	}
	if err := e.settle(ctx, pc, ps, true); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	return nil
}

// settle runs settleRemoteTimes after a successful bisync run that wrote
// to the bucket (or established a baseline), so the next pass compares
// the bucket against the times the bucket really shows. The run itself
// succeeded, so only a cancelled pass fails here: any other error is
// logged and costs the next pass some needless downloads at worst (or,
// after a resync, one more safe resync).
func (e *Engine) settle(ctx context.Context, pc *passCounter, ps passSettings, resync bool) error {
	if ps.dryRun || (!resync && !pc.wroteRemote() && !pc.wasReplayed()) {
		return nil
	}
	// A few writes: ask the bucket about those; many, a resync or a
	// journal's times (written without the bucket's answer): list it all.
	var only []string
	if !resync && !pc.wasReplayed() {
		if w := pc.cloudWritten(); len(w) <= maxTargetedSettle {
			only = w
		}
	}
	_, err := e.settleRemoteTimes(ctx, pc, ps.ignore, only)
	if err != nil && ctx.Err() == nil {
		pc.logger().Warn("could not record the bucket's modtimes in the listing", "err", err)
		return nil
	}
	return err
}

// ensureAccessCheckFile writes the access check file into the notes
// folder when it is missing there.
func (e *Engine) ensureAccessCheckFile() error {
	path := filepath.Join(e.cfg.LocalDir, AccessCheckFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.WriteFile(path, []byte(accessCheckBody), 0o644); err != nil {
		return fmt.Errorf("create access check file: %w", err)
	}
	return nil
}

// testUploadCutoff, when set by a test, lowers the s3 backend's multipart
// threshold so a multipart upload needs only a few MiB.
var testUploadCutoff string

// engineConfig returns ctx with the rclone settings every listing and
// copy of the engine's passes runs with (bisync's, a quick pass's, the
// settling and the resync's own), and them to add a pass's own to.
func engineConfig(ctx context.Context) (context.Context, *fs.ConfigInfo) {
	ctx, ci := fs.AddConfig(ctx)
	ci.UseServerModTime = true
	ci.UseListR = true
	// No modify window beyond the backends' precision: the path2 listing
	// holds the times the bucket's listing shows (settleRemoteTimes), and
	// a window would hide a same-size edit made within it.
	// Server modtimes cannot be set; don't rewrite identical objects (a
	// CopyObject each) just to try.
	ci.NoUpdateModTime = true
	ci.SuffixKeepExtension = true
	ci.PartialSuffix = PartialSuffix
	ci.LogLevel = fs.LogLevelInfo // per-file lines, routed to slog and counted
	ci.Progress = false
	ci.TerminalColorMode = fs.TerminalColorModeNever
	return ctx, ci
}

// runBisync runs one bisync.Bisync with the engine's settings.
func (e *Engine) runBisync(ctx context.Context, pc *passCounter, resync bool, ps passSettings) error {
	ctx = accounting.WithStatsGroup(ctx, pc.group)
	// bisync refuses to go on after errors counted by an earlier run of
	// the pass (one that failed on paths now set aside).
	accounting.Stats(ctx).ResetErrors()
	ctx, ci := engineConfig(ctx)
	ci.DryRun = ps.dryRun
	ci.MaxDelete = int64(ps.maxDelete)

	if !ps.dryRun {
		// what an unfinished run did goes into the listings first
		if n, err := e.playJournal(); err != nil {
			return err
		} else if n > 0 {
			pc.setReplayed()
			pc.logger().Info("played an unfinished pass's journal into the listings", "operations", n)
		}
	}
	stamp := e.passStamp()
	g := newGuardPass(e, pc.logger(), stamp)
	g.ignore = ps.ignore
	// the bucket as the pass's no-change check listed it a moment ago
	// (a change since is found by the next pass, as one after bisync's
	// own listing would be)
	g.prelisted, e.prelisted = e.prelisted, nil
	defer pc.addGuard(g)
	path1, path2 := g.wrap(ctx)
	opt := bisync.Options{
		Resync:                resync,
		Workdir:               e.cfg.WorkDir,
		Resilient:             true,
		Recover:               true,
		MaxLock:               fs.Duration(maxLock),
		Force:                 ps.force,
		CompareFlag:           "size,modtime",
		IgnoreListingChecksum: true,
		FiltersFile:           ps.filters,
		// A resync enforces the check too, before copying; but a resync is
		// what establishes the check files (the engine writes the local
		// one and the resync copies it), so only normal runs check.
		CheckAccess:   ps.set.checkAccess && !resync,
		CheckFilename: AccessCheckFile,
		// The final check compares path1's listing with path2's, size and
		// modtime; with server modtime on S3 the two sides' times never
		// agree (edit time here, upload time there), so it would abort
		// every pass that uploads. Each side is still compared with its own
		// prior listing, which is what finds changes.
		CheckSync:       bisync.CheckSyncFalse,
		ConflictResolve: ps.set.resolve,
		ConflictLoser:   bisync.ConflictLoserPathname,
		// path1's loser is this device's version, path2's the bucket's.
		ConflictSuffixFlag: "conflict-" + stamp + "-" + e.device + ",conflict-" + stamp + "-" + remoteDeviceLabel,
	}
	if resync {
		opt.ResyncMode = bisync.PreferPath1
	}
	e.bisyncRuns.Add(1)
	err := bisync.Bisync(ctx, path1, path2, &opt)
	if err == nil && !ps.dryRun {
		e.clearJournal() // the listings say it all now
	}
	if errors.Is(err, bisync.ErrBisyncAborted) {
		if why := pc.criticalError(); why != "" {
			err = fmt.Errorf("%w: %s", err, why)
		}
	}
	return err
}

// deleteStatsGroup frees rclone's accounting for a finished pass.
func deleteStatsGroup(ctx context.Context, group string) {
	if call := rc.Calls.Get("core/stats-delete"); call != nil {
		_, _ = call.Fn(ctx, rc.Params{"group": group})
	}
}

// DeviceLabel is how a device named name is labelled in conflict file
// names (the label [Conflict.Device] holds).
func DeviceLabel(name string) string { return sanitizeDevice(name) }

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
// regular file other than the ignore file (which the engine creates).
func dirHasFiles(root string) (bool, error) {
	found := false
	ignoreFile := filepath.Join(root, IgnoreFile)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && path != ignoreFile {
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
	n := bytes.Count(data, []byte("\n- "))
	if bytes.HasPrefix(data, []byte("- ")) {
		n++
	}
	return n
}

// maxFailureRounds bounds the runs of a pass that set failed paths aside.
const maxFailureRounds = 3

// runPass is one run of a pass: a safe resync (reason says why), or a
// bisync run with the recoveries that apply (times that changed alone, a
// baseline bisync lost).
func (e *Engine) runPass(ctx context.Context, pc *passCounter, ps passSettings, opt PassOptions, reason string, res *Result, log *slog.Logger, localHas, remoteHas, small bool) error {
	if reason != "" {
		log.Info("running a safe resync", "reason", reason,
			"local_has_files", localHas, "remote_has_files", remoteHas)
		res.ResyncReason = reason
		return e.safeResync(ctx, pc, ps, res)
	}
	ps.force = opt.Force || small
	err := e.runBisync(ctx, pc, false, ps)
	cerr := classify(err)
	if md := pc.maxDeleteAbort(); md != nil && errors.Is(cerr, ErrMaxDeleteExceeded) {
		cerr = fmt.Errorf("bisync: %w", md)
	}
	if errors.Is(cerr, ErrAllFilesChanged) && !opt.DryRun && !ps.force {
		// Every file looks changed. Where only the times changed (the
		// content is the bucket's), record the new times and run again:
		// the real changes, deletes included, then sync as usual, and
		// nothing deleted comes back.
		n1, err1 := e.settleLocalTimes(ctx, pc, ps.ignore)
		n2, err2 := e.settleRemoteTimes(ctx, pc, ps.ignore, nil)
		if err := errors.Join(err1, err2); err != nil {
			log.Warn("could not check whether only the files' times changed", "err", err)
		}
		if n1+n2 > 0 {
			log.Warn("every file looked changed, but only the times of these had: recorded them, syncing the rest",
				"local_files", n1, "bucket_files", n2)
			pc.resetPlan()
			err = e.runBisync(ctx, pc, false, ps)
			cerr = classify(err)
			if md := pc.maxDeleteAbort(); md != nil && errors.Is(cerr, ErrMaxDeleteExceeded) {
				cerr = fmt.Errorf("bisync: %w", md)
			}
		}
		if errors.Is(cerr, ErrAllFilesChanged) && e.keepVersions.Load() {
			// Every file changed for real (a busy afternoon on a few notes,
			// or a tool that rewrote them all). bisync's stop is a
			// precaution against copying everything by mistake; with every
			// replaced version kept on both sides, nothing can be lost by
			// going on, and stopping would leave the person stuck. The run
			// that stopped had passed the max-delete check already.
			log.Warn("every file changed since the last pass: syncing them all (each replaced version is kept; bm-agent restore --at brings them back)")
			res.AllChanged = true
			pc.resetPlan()
			forced := ps
			forced.force = true
			err = e.runBisync(ctx, pc, false, forced)
			cerr = classify(err)
		}
	}
	switch {
	case err == nil:
		return e.settle(ctx, pc, ps, false)
	case ctx.Err() != nil:
		return cerr
	case pc.hasFailures():
		// Some paths failed: the caller sets them aside and runs again
		// (a safe resync here would bring back what was deleted).
		return cerr
	case errors.Is(err, bisync.ErrBisyncAborted) && !errors.Is(cerr, ErrResyncRequired) && e.restoreErrListings():
		// Aborted by a passing trouble (a file that changed while it was
		// read, say). bisync set its listings aside as if they were
		// broken; they are not (the run did not get to update them), so
		// they are the next pass's baseline again, rather than a resync
		// that would bring back what was deleted.
		log.Warn("the pass stopped on an error; the next one goes on from the same baseline", "err", err)
		return cerr
	case errors.Is(err, bisync.ErrBisyncAborted) && e.NeedsResync(),
		errors.Is(cerr, ErrResyncRequired):
		if opt.DryRun {
			if !errors.Is(cerr, ErrResyncRequired) {
				return fmt.Errorf("%w: %w", ErrResyncRequired, cerr)
			}
			return cerr
		}
		log.Warn("bisync demands a resync: running a safe resync", "err", err)
		res.ResyncReason = "bisync demanded a resync"
		pc.resetPlan()
		return e.safeResync(ctx, pc, ps, res)
	}
	return cerr
}

// restoreErrListings brings back the listings bisync renamed to -err on
// an abort (both, or none); it reports whether it did.
func (e *Engine) restoreErrListings() bool {
	for _, l := range []string{e.listing1, e.listing2} {
		if _, err := os.Stat(l + "-err"); err != nil {
			return false
		}
		if _, err := os.Stat(l); err == nil {
			return false
		}
	}
	for _, l := range []string{e.listing1, e.listing2} {
		if err := os.Rename(l+"-err", l); err != nil {
			e.log.Warn("could not restore a listing set aside by an abort", "err", err)
			return false
		}
	}
	return true
}

// forget sets failed paths aside: the listings of an aborted run come
// back, and the failed paths leave them (their lines are kept in the
// failures, for remember), so bisync sees no change for them while they
// are skipped.
func (e *Engine) forget(fails []Failure) error {
	e.restoreErrListings()
	covered := func(name string) bool {
		return slices.ContainsFunc(fails, func(fl Failure) bool { return fl.covers(name) })
	}
	for side, l := range []string{e.listing1, e.listing2} {
		removed, err := dropFromListing(l, covered)
		if err != nil {
			return fmt.Errorf("drop failed files from the listing: %w", err)
		}
		for name, lines := range removed {
			for i := range fails {
				if fails[i].covers(name) {
					fails[i].Lines[side] = append(fails[i].Lines[side], lines...)
				}
			}
		}
		if _, err := dropFromListing(l+"-old", covered); err != nil {
			return fmt.Errorf("drop failed files from the listing: %w", err)
		}
	}
	return nil
}

// remember puts the listing lines of failed paths back before a pass
// tries them again (see Failure.Lines).
func (e *Engine) remember(fails []Failure) error {
	for side, l := range []string{e.listing1, e.listing2} {
		var lines []string
		for _, f := range fails {
			lines = append(lines, f.Lines[side]...)
		}
		if err := addToListing(l, lines); err != nil {
			return fmt.Errorf("put failed files back in the listing: %w", err)
		}
	}
	return nil
}
