package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rclone/rclone/cmd/bisync/bilib"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/lib/atexit"
)

var rcloneOnce sync.Once

// ansi matches terminal colour codes, which bisync adds to some lines.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// SetupRclone adapts rclone's process-wide state to a daemon, once per
// process, for every part of it that runs rclone (the sync engine here,
// the mount in package mount): rclone must not install a signal handler
// that calls os.Exit (the daemon owns shutdown), and its logs go to slog
// through bridge (the logger of the pass that caused a record, else
// slog.Default). Call it before the first rclone call; a second call does
// nothing.
func SetupRclone() {
	rcloneOnce.Do(func() {
		atexit.IgnoreSignals()
		fs.SetLogger(bridge)
	})
}

// bridge is the slog.Handler rclone logs into. It forwards each record to
// the logger of the pass that caused it (found by the record's accounting
// stats group, else the pass running now), scrubs known secrets, and counts
// the per-file actions of that pass.
var bridge = &logBridge{passes: map[string]*passCounter{}}

type logBridge struct {
	mu      sync.Mutex
	passes  map[string]*passCounter // by stats group
	current *passCounter
	secrets []string
}

func (b *logBridge) addSecret(s string) {
	if len(s) < 4 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.secrets = append(b.secrets, s)
}

func (b *logBridge) Enabled(context.Context, slog.Level) bool { return true }

func (b *logBridge) WithAttrs([]slog.Attr) slog.Handler { return b }

func (b *logBridge) WithGroup(string) slog.Handler { return b }

func (b *logBridge) Handle(ctx context.Context, r slog.Record) error {
	var object, objectType string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "object":
			object = a.Value.String()
		case "objectType":
			objectType = a.Value.String()
		}
		return true
	})

	b.mu.Lock()
	pc := b.current
	if group, ok := accounting.StatsGroupFromContext(ctx); ok {
		if p, ok := b.passes[group]; ok {
			pc = p
		}
	}
	secrets := b.secrets
	b.mu.Unlock()

	msg := ansi.ReplaceAllString(r.Message, "")
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "***")
		object = strings.ReplaceAll(object, s, "***")
	}
	if pc != nil {
		pc.count(msg, object, objectType)
	}

	logger := slog.Default()
	if pc != nil {
		logger = pc.log
	}
	level := r.Level
	switch {
	case level == fs.SlogLevelNotice:
		level = slog.LevelInfo
	case level > slog.LevelError:
		level = slog.LevelError
	}
	if !logger.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, msg, r.PC)
	out.AddAttrs(slog.String("component", "rclone"))
	if object != "" {
		out.AddAttrs(slog.String("object", object))
	}
	return logger.Handler().Handle(ctx, out)
}

// passCounter follows one pass: bisync's decisions and errors from its
// log lines, and what the pass's guards did (guard.go), which is what the
// Result counts.
type passCounter struct {
	group string
	log   *slog.Logger

	prefix1, prefix2 string // the two roots as bisync prints them

	mu        sync.Mutex
	resyncing bool            // copies are the plan (a resync logs no decisions)
	plan      []Change        // see Result.Plan
	critical  string          // bisync's last critical error
	maxDelete *MaxDeleteError // bisync's max-delete abort, with its counts
	guards    guardStats      // what the pass's guards did
	guardPlan []Change        // the guards' own entries (conflict files, deletes not made)
	touched   map[string]bool // local paths the pass wrote, moved or deleted
	fails     []Failure       // paths the last run could not sync (takeFailures)
	global    error           // a failure of a whole side in the last run
	replayed  bool            // an unfinished pass's journal went into the listings
}

var passSeq atomic.Uint64

func (e *Engine) newPassCounter(log *slog.Logger) *passCounter {
	pc := &passCounter{
		group:   fmt.Sprintf("bm-syncer-%d-%d", e.id, passSeq.Add(1)),
		log:     log,
		prefix1: guardLocalName + ":" + e.localSessionRoot() + "/",
		prefix2: bilib.FsPath(e.remote),
	}
	bridge.mu.Lock()
	bridge.passes[pc.group] = pc
	bridge.current = pc
	bridge.mu.Unlock()
	return pc
}

// addGuard adds what a finished bisync run's guards did.
func (pc *passCounter) addGuard(g *guardPass) {
	st, plan := g.stats()
	fails, global := g.failures()
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.guards.add(st)
	pc.guardPlan = append(pc.guardPlan, plan...)
	pc.fails = append(pc.fails, fails...)
	if global != nil {
		pc.global = global
	}
	if pc.touched == nil {
		pc.touched = map[string]bool{}
	}
	for _, p := range g.localTouched() {
		pc.touched[p] = true
	}
}

// failPath records a failure of path on side outside the guards, when it
// is the path's own (perPath); it reports whether it did.
func (pc *passCounter) failPath(side, path string, err error) bool {
	isPath, transient := pathTrouble(err)
	if !isPath {
		return false
	}
	f, global := classifyFailure(side, path, err)
	f.Transient = transient
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if global != nil {
		pc.global = global
		return false
	}
	pc.fails = append(pc.fails, f)
	return true
}

// hasFailures reports whether the runs recorded failed paths not taken yet.
func (pc *passCounter) hasFailures() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.fails) > 0
}

// takeFailures returns, and forgets, the failed paths the runs recorded
// (one each) and a failure of a whole side.
func (pc *passCounter) takeFailures() ([]Failure, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	seen := map[string]bool{}
	var out []Failure
	for _, f := range pc.fails {
		if !seen[f.Path] {
			seen[f.Path] = true
			out = append(out, f)
		}
	}
	global := pc.global
	pc.fails, pc.global = nil, nil
	return out, global
}

func (pc *passCounter) logger() *slog.Logger { return pc.log }

func (pc *passCounter) close() {
	bridge.mu.Lock()
	delete(bridge.passes, pc.group)
	if bridge.current == pc {
		bridge.current = nil
	}
	bridge.mu.Unlock()
	deleteStatsGroup(context.Background(), pc.group)
}

func (pc *passCounter) setResyncing(on bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.resyncing = on
}

func (pc *passCounter) addPlan(c Change) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.plan = append(pc.plan, c)
}

// resetPlan drops the decisions of a bisync run that was replaced by a
// resync.
func (pc *passCounter) resetPlan() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.plan = nil
}

// dropConflict removes the conflict entry of file (pc.mu held).
func (pc *passCounter) dropConflict(file string) {
	for i := len(pc.plan) - 1; i >= 0; i-- {
		if c := pc.plan[i]; c.Action == ActionConflict && c.Path == file {
			pc.plan = append(pc.plan[:i], pc.plan[i+1:]...)
			return
		}
	}
}

// maxDeleteAbort returns the counts of bisync's max-delete abort in this
// pass, nil if it logged none.
func (pc *passCounter) maxDeleteAbort() *MaxDeleteError {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.maxDelete
}

func (pc *passCounter) criticalError() string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.critical
}

const criticalPrefix = "Bisync critical error: "

func (pc *passCounter) count(msg, object, objectType string) {
	isLocal := strings.Contains(objectType, "guardLocalObject") || strings.Contains(objectType, "local.")
	isRemote := strings.Contains(objectType, "guardCloudObject") || strings.Contains(objectType, "s3.")
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !isLocal && !isRemote {
		if strings.HasPrefix(msg, criticalPrefix) {
			pc.critical = strings.TrimPrefix(msg, criticalPrefix)
		} else if md := parseMaxDelete(msg); md != nil {
			if pc.maxDelete == nil {
				pc.maxDelete = md
			}
		} else if strings.HasPrefix(msg, "Files are equal") {
			// a "changed on both sides" that turned out identical
			file := object
			if i := strings.LastIndex(msg, ": "); file == "" && i >= 0 {
				file = msg[i+2:]
			}
			pc.dropConflict(file)
		} else if c, ok := planFromLine(msg, pc.prefix1, pc.prefix2); ok {
			pc.plan = append(pc.plan, c)
		}
		return
	}
	// A dry-run resync's plan comes from these lines; a real pass's copies
	// are recorded by the guards as they land.
	if pc.resyncing && strings.HasPrefix(msg, "Skipped copy as --dry-run") {
		side := SideCloud // the object is the copy's source
		if isRemote {
			side = SideLocal
		}
		pc.plan = append(pc.plan, Change{Side: side, Action: ActionCopy, Path: object})
	}
}

// cloudWritten returns the bucket paths the pass wrote so far.
func (pc *passCounter) cloudWritten() []string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	out := make([]string, 0, len(pc.guards.cloudWritten))
	for p := range pc.guards.cloudWritten {
		out = append(out, p)
	}
	return out
}

// setReplayed records that the pass played a journal into the listings.
func (pc *passCounter) setReplayed() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.replayed = true
}

func (pc *passCounter) wasReplayed() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.replayed
}

// wroteRemote reports whether the pass wrote to the bucket so far.
func (pc *passCounter) wroteRemote() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.guards.uploaded+pc.guards.cloudRenamed+pc.guards.windowConflicts > 0
}

func (pc *passCounter) fill(res *Result) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	g := pc.guards
	res.Uploaded += g.uploaded
	res.Downloaded += g.downloaded
	res.DeletedLocal += g.deletedLocal
	res.DeletedRemote += g.deleteRemote
	res.Conflicts += len(g.renamedNotes) + g.windowConflicts
	res.ConflictsArrived += g.conflictsArrived
	res.EditsKept += g.editsKept
	res.VersionsKept += g.versionsKept
	res.Plan = append(res.Plan, pc.plan...)
	res.Plan = append(res.Plan, pc.guardPlan...)
	res.RemoteChanged = res.RemoteChanged || g.uploaded+g.deleteRemote+g.cloudRenamed+g.windowConflicts > 0
	res.LocalChanged = res.LocalChanged || g.downloaded+g.deletedLocal+g.renamed-g.cloudRenamed+g.windowConflicts > 0
	// Conflict files made during the pass, and notes not deleted because
	// they changed, are news for the other side: the next pass takes them.
	res.Again = res.Again || g.windowConflicts+g.editsKept > 0
	for p := range pc.touched {
		res.LocalWrites = append(res.LocalWrites, p)
	}
	slices.Sort(res.LocalWrites)
}
