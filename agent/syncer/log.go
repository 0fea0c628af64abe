package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/lib/atexit"
)

var globalsOnce sync.Once

// ansi matches terminal colour codes, which bisync adds to some lines.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// setupGlobals adapts rclone's process-wide state to a daemon, once:
// rclone must not install a signal handler that calls os.Exit (the daemon
// owns shutdown), and its logs go to slog through bridge.
func setupGlobals() {
	globalsOnce.Do(func() {
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

// passCounter tallies what one pass did from rclone's per-file log lines,
// which name the object acted on and its type (local or s3).
type passCounter struct {
	group string
	log   *slog.Logger

	mu                                        sync.Mutex
	uploaded, downloaded, delLocal, delRemote int
	movedLocal, movedRemote                   int
	renamed, serverCopied                     map[string]bool
}

var passSeq atomic.Uint64

func (e *Engine) newPassCounter(log *slog.Logger) *passCounter {
	pc := &passCounter{
		group:   fmt.Sprintf("bm-syncer-%d-%d", e.id, passSeq.Add(1)),
		log:     log,
		renamed: map[string]bool{}, serverCopied: map[string]bool{},
	}
	bridge.mu.Lock()
	bridge.passes[pc.group] = pc
	bridge.current = pc
	bridge.mu.Unlock()
	return pc
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

func (pc *passCounter) count(msg, object, objectType string) {
	isLocal := strings.Contains(objectType, "local.")
	isRemote := strings.Contains(objectType, "s3.")
	if !isLocal && !isRemote {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch {
	case strings.HasPrefix(msg, "Copied (server-side copy)"):
		// an s3 rename is a server-side copy then a delete; bisync
		// renames only to keep a conflict's loser
		pc.movedRemote++
		pc.serverCopied[object] = true
		pc.renamed[object] = true
	case strings.HasPrefix(msg, "Copied (") || strings.HasPrefix(msg, "Multi-thread Copied ("):
		// the object is the source of the copy
		if isLocal {
			pc.uploaded++
		} else {
			pc.downloaded++
		}
	case msg == "Deleted":
		switch {
		case isLocal:
			pc.delLocal++
		case pc.serverCopied[object]:
			// second half of a rename
		default:
			pc.delRemote++
		}
	case strings.HasPrefix(msg, "Moved (server-side)"):
		if isLocal {
			pc.movedLocal++
		} else {
			pc.movedRemote++
		}
		pc.renamed[object] = true
	}
}

func (pc *passCounter) fill(res *Result) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	res.Uploaded += pc.uploaded
	res.Downloaded += pc.downloaded
	res.DeletedLocal += pc.delLocal
	res.DeletedRemote += pc.delRemote
	res.Conflicts += len(pc.renamed)
	res.RemoteChanged = pc.uploaded+pc.delRemote+pc.movedRemote > 0
	res.LocalChanged = pc.downloaded+pc.delLocal+pc.movedLocal > 0
}
