package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/fserrors"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/lib/encoder"

	"github.com/basicmachines-co/bm-agent/agent/versions"
)

// Why bisync runs on guarded file systems.
//
// bisync lists both sides, then copies and deletes. A file written on
// either side after the listing and before the copy or delete over it was
// lost: measured, 18 versions in 11,811 operations with both sides
// writing, 25 ms to 1.4 s after the listing. The guard is an rclone Fs
// wrapped around each side; every write and delete of a pass goes through
// it, and it remembers what the pass listed. Before a file is replaced or
// deleted it:
//
//   - checks the file is still what the pass listed: the very bytes about
//     to go (a hard link to them) against the listed size and modtime on
//     the local side; a conditional request on the bucket (copy the
//     version if its ETag is still the listed one, then write If-Match
//     that ETag, or If-None-Match: * where the pass saw no object), so
//     nothing another device wrote in between is replaced unseen;
//   - keeps the version that goes in the side's version store;
//   - keeps a version that changed in between as a conflict file next to
//     the note (it syncs on the next pass), or, where the pass meant to
//     delete it, does not delete it at all: the edit wins.
//
// The guards also give the two sides short, stable names, so bisync's
// listing file names stay short whatever the folder's path (they are made
// of both sides' names and roots, and a long path made them pass 255
// bytes).

// Names the guards give the two sides (bisync's listing names use them).
const (
	guardLocalName = "bmlocal"
	guardCloudName = remoteName
)

// guardPass is what a pass's two guards share: what the pass listed, what
// it did since, its version stores and its tallies.
type guardPass struct {
	e     *Engine
	log   *slog.Logger
	stamp string // the pass's conflict stamp
	// ignore drops the ignored entries from each listing (nil: none)
	ignore *ignoreMatcher

	keep          bool // keep versions (off: only the checks and conflict files)
	localVersions *versions.Local
	cloudVersions *versions.Cloud
	s3            *s3.Client
	localEnc      encoder.MultiEncoder
	cloudEnc      encoder.MultiEncoder

	mu     sync.Mutex
	listed [2]map[string]rfs.Object // per side: objects as the pass first listed them
	done   [2]map[string]pathState  // per side: what the pass made of a path since
	copied map[string]string        // cloud: path → ETag of the server-side copy a rename made of it
	st     guardStats
	plan   []Change
	fails  []Failure // paths this run could not sync
	global error     // a failure of a whole side (a full disk)

	// bucketPages, when set, keeps the raw pages of the pass's first
	// listing of the whole bucket (the no-change check's, unchanged.go);
	// prelisted, when set, answers the first such listing instead of the
	// bucket (that check's pages, given to the bisync run that follows).
	bucketPages *bucketListing
	prelisted   *bucketListing
}

// bucketListing is a whole listing of the bucket as its ListR gave it.
type bucketListing struct {
	mu       sync.Mutex
	pages    []rfs.DirEntries
	complete bool // the listing ended without an error
}

func (b *bucketListing) add(page rfs.DirEntries) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pages = append(b.pages, slices.Clone(page))
}

// takePrelisted returns the listing that answers the first listing of
// the whole bucket (nil: none, or already taken).
func (g *guardPass) takePrelisted() *bucketListing {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.prelisted
	g.prelisted = nil
	return b
}

// The two sides, as guard indexes.
const (
	sideL = 0
	sideC = 1
)

// pathState is what a pass made of a path: written (and how), or gone.
type pathState struct {
	gone    bool
	created bool // the pass created it (a partial upload, a new file)
	size    int64
	modTime time.Time
	etag    string // cloud: the ETag the pass's write has, or the one it must replace next
	// kept: the version now there is already kept (by a conflict copy),
	// so the retried write must not keep it again.
	kept bool
	// src is what a download being written came from (its partial's
	// state), for the journal.
	src *entry
}

// guardStats tallies what a pass did through its guards.
type guardStats struct {
	uploaded, downloaded       int
	deletedLocal, deleteRemote int
	renamed                    int             // conflict losers renamed by bisync (both sides)
	cloudRenamed               int             // of which in the bucket
	renamedNotes               map[string]bool // the notes whose losers were renamed
	windowConflicts            int             // versions changed during the pass, kept as conflict files
	conflictsArrived           int             // conflict files another device made, downloaded
	cloudWritten               map[string]bool // the bucket paths the pass wrote (settleRemoteTimes)
	editsKept                  int             // deletes not done: the file changed during the pass
	versionsKept               int
	versionErrors              int
}

// add adds o's tallies to s.
func (s *guardStats) add(o guardStats) {
	s.uploaded += o.uploaded
	s.downloaded += o.downloaded
	s.deletedLocal += o.deletedLocal
	s.deleteRemote += o.deleteRemote
	s.renamed += o.renamed
	s.cloudRenamed += o.cloudRenamed
	for n := range o.renamedNotes {
		if s.renamedNotes == nil {
			s.renamedNotes = map[string]bool{}
		}
		s.renamedNotes[n] = true
	}
	s.windowConflicts += o.windowConflicts
	s.conflictsArrived += o.conflictsArrived
	for p := range o.cloudWritten {
		s.wroteCloud(p)
	}
	s.editsKept += o.editsKept
	s.versionsKept += o.versionsKept
	s.versionErrors += o.versionErrors
}

func (s *guardStats) wroteCloud(path string) {
	if s.cloudWritten == nil {
		s.cloudWritten = map[string]bool{}
	}
	s.cloudWritten[path] = true
}

func (s *guardStats) renamedNote(path string) {
	if s.renamedNotes == nil {
		s.renamedNotes = map[string]bool{}
	}
	s.renamedNotes[path] = true
}

func newGuardPass(e *Engine, log *slog.Logger, stamp string) *guardPass {
	g := &guardPass{
		e: e, log: log, stamp: stamp,
		keep: e.keepVersions.Load(), localVersions: e.localVersions, cloudVersions: e.cloudVersions, s3: e.s3,
		localEnc: backendEncoding("local"), cloudEnc: backendEncoding("s3"),
		copied: map[string]string{},
	}
	for i := range g.listed {
		g.listed[i] = map[string]rfs.Object{}
		g.done[i] = map[string]pathState{}
	}
	return g
}

// backendEncoding is the default file name encoding of an rclone backend
// (the engine builds its file systems with the defaults).
func backendEncoding(name string) encoder.MultiEncoder {
	if ri, err := rfs.Find(name); err == nil {
		if opt := ri.Options.Get("encoding"); opt != nil {
			if enc, ok := opt.Default.(encoder.MultiEncoder); ok {
				return enc
			}
		}
	}
	return encoder.Standard
}

// wrap returns the guarded file systems of the pass.
func (g *guardPass) wrap(ctx context.Context) (local, cloud rfs.Fs) {
	return newGuardFs(ctx, g, sideL, g.e.local, guardLocalName, g.e.localSessionRoot()),
		newGuardFs(ctx, g, sideC, g.e.remote, guardCloudName, g.e.remote.Root())
}

// record notes an object as listed (the first listing of a pass counts:
// a later one, such as a resync's copy listing, must not hide a change
// made after the first).
func (g *guardPass) record(side int, o rfs.Object) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.listed[side][o.Remote()]; !ok {
		g.listed[side][o.Remote()] = o
	}
}

func (g *guardPass) state(side int, path string) (pathState, rfs.Object, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, done := g.done[side][path]
	return st, g.listed[side][path], done
}

func (g *guardPass) setState(side int, path string, st pathState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done[side][path] = st
}

// journalCopy records that path is now l here and r in the bucket.
func (g *guardPass) journalCopy(path string, l, r *entry) {
	if l != nil && r != nil {
		g.e.journal(journalOp{Op: "copy", Path: path, L: l, R: r})
	}
}

func entryOf(ctx context.Context, o rfs.ObjectInfo) *entry {
	if o == nil {
		return nil
	}
	return &entry{Size: o.Size(), Time: o.ModTime(ctx)}
}

// localTouched returns the local paths the pass wrote, moved or deleted.
func (g *guardPass) localTouched() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.done[sideL]))
	for p := range g.done[sideL] {
		out = append(out, p)
	}
	return out
}

func (g *guardPass) count(f func(*guardStats)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(&g.st)
}

func (g *guardPass) addPlan(c Change) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.plan = append(g.plan, c)
}

func (g *guardPass) stats() (guardStats, []Change) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var st guardStats
	st.add(g.st)
	return st, append([]Change(nil), g.plan...)
}

// fail records that an operation on path failed with err, when that is
// the path's own trouble (see perPath).
func (g *guardPass) fail(side int, path string, dir bool, err error) {
	if err == nil {
		return
	}
	isPath, transient := pathTrouble(err)
	if !isPath {
		return
	}
	name := SideLocal
	if side == sideC {
		name = SideCloud
	}
	f, global := classifyFailure(name, finalName(path), err)
	f.Dir, f.Transient = dir, transient
	g.mu.Lock()
	defer g.mu.Unlock()
	if global != nil {
		g.global = global
		return
	}
	g.fails = append(g.fails, f)
}

// failures returns what fail recorded.
func (g *guardPass) failures() ([]Failure, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Failure(nil), g.fails...), g.global
}

// hook calls the engine's test hook before a path is replaced or deleted.
func (g *guardPass) hook(side int, path string) {
	if h := g.e.beforeReplace; h != nil {
		name := SideLocal
		if side == sideC {
			name = SideCloud
		}
		h(name, path)
	}
}

// localPath is the OS path of a local remote name.
func (g *guardPass) localPath(path string) string {
	return filepath.Join(g.e.cfg.LocalDir, filepath.FromSlash(g.localEnc.FromStandardPath(path)))
}

// cloudKey is the object key of a cloud remote name.
func (g *guardPass) cloudKey(path string) string { return g.cloudEnc.FromStandardPath(path) }

// ---- local side ----

// localBefore is called right before the pass replaces (delete false) or
// deletes the local file path. It captures the version there now and
// tells whether it is not the one the pass listed (changed: written or
// created after the listing). A nil capture means there is nothing to
// keep (no file, or not a regular file).
func (g *guardPass) localBefore(path string, reason string) (c *versions.Capture, changed bool, err error) {
	g.hook(sideL, path)
	st, listed, done := g.state(sideL, path)
	osPath := g.localPath(path)
	info, err := os.Lstat(osPath)
	if notThere(err) || (err == nil && !info.Mode().IsRegular()) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("guard: stat %s: %w", path, err)
	}
	c, err = g.localVersions.Begin(osPath, path, reason)
	if notThere(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("guard: %w", err)
	}
	return c, g.localChanged(path, st, listed, done, c), nil
}

// localChanged reports whether the captured version c of path is not the
// one the pass expects there: what it wrote itself, else what it listed.
func (g *guardPass) localChanged(path string, st pathState, listed rfs.Object, done bool, c *versions.Capture) bool {
	switch {
	case done && st.created:
		return false // the pass's own file (a partial upload)
	case done && !st.gone:
		return c.Size != st.size || !c.ModTime.Equal(st.modTime)
	case !done && listed != nil:
		return c.Size != listed.Size() || !c.ModTime.Equal(listed.ModTime(context.Background()))
	}
	return true // there was none
}

// localPlace puts the pass's finished download partial at final, keeping
// the version it replaces. The version there is taken out of its place
// first (a rename into the version store), so it is exactly the one that
// goes; the download goes in with a hard link, which fails rather than
// replace a file someone made meanwhile (that one is taken too). So no
// write to final is lost, however close to the pass's it lands.
func (g *guardPass) localPlace(ctx context.Context, partial, final string) (rfs.Object, error) {
	g.hook(sideL, final)
	st, listed, done := g.state(sideL, final)
	partialOS, finalOS := g.localPath(partial), g.localPath(final)
	var taken []*versions.Capture
	putBack := func() {
		if len(taken) > 0 {
			if err := taken[0].Restore(finalOS); err == nil {
				taken = taken[1:]
			}
		}
		for _, c := range taken {
			g.localKeepConflict(ctx, final, c)
			g.localFinish(c, true)
		}
	}
	placed, journaled := false, false
	for attempt := 0; attempt < 5 && !placed; attempt++ {
		c, err := g.localVersions.Take(finalOS, final, versions.ReasonOverwritten)
		switch {
		case notThere(err):
		case err != nil:
			putBack()
			g.fail(sideL, final, false, err)
			return nil, fmt.Errorf("guard: %w", err)
		default:
			taken = append(taken, c)
		}
		if ps, _, ok := g.state(sideL, partial); ok && ps.src != nil && !journaled {
			if pst, err := os.Lstat(partialOS); err == nil {
				g.e.journal(journalOp{Op: "copy", Path: final, L: &entry{Size: pst.Size(), Time: pst.ModTime()}, R: ps.src, Check: "local"})
				journaled = true
			}
		}
		switch err := os.Link(partialOS, finalOS); {
		case err == nil:
			_ = os.Remove(partialOS)
			placed = true
		case errors.Is(err, fs.ErrExist):
			// someone made a new one meanwhile: take that too
		case notThere(err):
			putBack()
			g.fail(sideL, final, false, err)
			return nil, err
		default:
			// no hard links on this file system: a rename (over nothing:
			// what was there is taken)
			if err := os.Rename(partialOS, finalOS); err != nil {
				putBack()
				g.fail(sideL, final, false, err)
				return nil, err
			}
			placed = true
		}
	}
	if !placed {
		putBack()
		return nil, fmt.Errorf("guard: %s keeps changing while the sync writes it", final)
	}
	for i, c := range taken {
		changed := i > 0 || g.localChanged(final, st, listed, done, c)
		if changed {
			g.localKeepConflict(ctx, final, c)
		}
		g.localFinish(c, changed)
	}
	o, err := g.e.local.NewObject(ctx, final)
	if err != nil {
		return nil, err
	}
	g.setState(sideL, final, pathState{size: o.Size(), modTime: o.ModTime(ctx)})
	return o, nil
}

// localKeepConflict keeps a local version that changed during the pass as
// a conflict file next to the note, named for this device.
func (g *guardPass) localKeepConflict(ctx context.Context, path string, c *versions.Capture) {
	name := g.e.freeConflictName(ctx, path, g.stamp, g.e.device)
	if err := c.CopyTo(g.localPath(name)); err != nil {
		g.log.Error("could not keep a note that changed during the sync as a conflict file; it is in the version store",
			"file", path, "err", err)
		return
	}
	g.setState(sideL, name, pathState{created: true, size: c.Size, modTime: c.ModTime})
	g.e.madeConflict(name)
	g.count(func(s *guardStats) { s.windowConflicts++ })
	g.addPlan(Change{Side: SideLocal, Action: ActionConflict, Path: name})
	g.log.Warn("the note changed while the sync was replacing it: this device's version is kept as a conflict file",
		"file", path, "conflict_file", name)
}

// localFinish commits a capture after the replace or delete went through
// (or drops it when versions are off), as a conflict version if it had
// changed.
func (g *guardPass) localFinish(c *versions.Capture, changed bool) {
	if c == nil {
		return
	}
	if !g.keep {
		c.Abort()
		return
	}
	if changed {
		c.SetReason(versions.ReasonConflict)
	}
	if _, err := c.Commit(); err != nil {
		g.count(func(s *guardStats) { s.versionErrors++ })
		g.log.Error("could not record a kept version; it stays in the store's tmp dir and is recorded at the next start", "err", err)
		return
	}
	g.count(func(s *guardStats) { s.versionsKept++ })
}

// localReplace guards a write over the local file path: it keeps the
// version there, as a conflict file too if it changed during the pass,
// runs write, and commits the kept version once write succeeded.
func (g *guardPass) localReplace(ctx context.Context, path, note string, write func() (rfs.Object, error)) (rfs.Object, error) {
	c, changed, err := g.localBefore(path, versions.ReasonOverwritten)
	if err != nil {
		g.fail(sideL, note, false, err)
		return nil, err
	}
	if c != nil && changed {
		g.localKeepConflict(ctx, path, c)
	}
	o, err := write()
	if err != nil {
		if c != nil {
			c.Abort()
		}
		g.fail(sideL, note, false, err)
		return o, err
	}
	g.localFinish(c, changed)
	st := pathState{}
	if o != nil {
		st.size, st.modTime = o.Size(), o.ModTime(ctx)
	}
	g.setState(sideL, path, st)
	return o, nil
}

// localRemove guards the delete of the local file path: a file that
// changed during the pass is not deleted (the edit wins; the next pass
// uploads it), any other is kept as a version, then deleted.
func (g *guardPass) localRemove(ctx context.Context, path string, remove func() error) error {
	st, listed, done := g.state(sideL, path)
	if done && st.created {
		err := remove()
		if err == nil {
			g.setState(sideL, path, pathState{gone: true})
		}
		return err
	}
	g.hook(sideL, path)
	osPath := g.localPath(path)
	g.e.journal(journalOp{Op: "gone", Path: path, Check: "absent"})
	// Taken out of its place into the version store: the delete and the
	// keeping are one rename, so an edit cannot slip in between.
	c, err := g.localVersions.Take(osPath, path, versions.ReasonDeleted)
	if notThere(err) {
		return nil
	}
	if err != nil {
		g.fail(sideL, path, false, err)
		return fmt.Errorf("guard: %w", err)
	}
	if g.localChanged(path, st, listed, done, c) {
		// the edit wins: it goes back (or, if something new is there
		// already, next to it as a conflict file)
		if err := c.Restore(osPath); err != nil {
			g.localKeepConflict(ctx, path, c)
			g.localFinish(c, true)
		}
		g.count(func(s *guardStats) { s.editsKept++ })
		g.addPlan(Change{Side: SideLocal, Action: ActionKeep, Path: path})
		g.log.Warn("not deleting a note that changed after the sync listed it: the edit wins, and the next pass uploads it", "file", path)
		return nil
	}
	g.localFinish(c, false)
	g.setState(sideL, path, pathState{gone: true})
	g.count(func(s *guardStats) { s.deletedLocal++ })
	g.addPlan(Change{Side: SideLocal, Action: ActionDelete, Path: path})
	return nil
}

// ---- cloud side ----

// cloudExpected returns the ETag the object path should have for the
// pass to replace or delete it, and whether its version is kept already:
// what the pass wrote or settled, else what it listed. changed is true
// when the object is known not to be the one listed. ok is false when the
// pass saw no object there.
func (g *guardPass) cloudExpected(ctx context.Context, path string) (etag string, kept, changed, ok bool, err error) {
	st, listed, done := g.state(sideC, path)
	if done {
		if st.gone {
			return "", false, false, false, nil
		}
		return st.etag, st.kept, false, st.etag != "", nil
	}
	if listed == nil {
		return "", false, false, false, nil
	}
	if md5, err := listed.Hash(ctx, hash.MD5); err == nil && len(md5) == 32 {
		return md5, false, false, true, nil
	}
	// No MD5 from the listing (a multipart object): ask for the ETag now
	// and compare what the listing showed.
	head, err := g.head(ctx, path)
	if err != nil {
		if isNotFound(err) {
			return "", false, true, true, nil
		}
		return "", false, false, true, err
	}
	same := aws.ToInt64(head.ContentLength) == listed.Size() &&
		aws.ToTime(head.LastModified).Truncate(time.Second).Equal(listed.ModTime(ctx).Truncate(time.Second))
	return aws.ToString(head.ETag), false, !same, true, nil
}

func (g *guardPass) head(ctx context.Context, path string) (*s3.HeadObjectOutput, error) {
	return g.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(g.e.cfg.Remote.Bucket), Key: aws.String(g.cloudKey(path))})
}

// cloudKeep keeps the object path (at etag, "" for whatever is there) in
// the bucket's version store. With versions off it only checks the
// object is still at etag. It fails with versions.ErrChanged if it is
// not.
func (g *guardPass) cloudKeep(ctx context.Context, path, etag, reason string) error {
	if !g.keep {
		if etag == "" {
			return nil
		}
		head, err := g.head(ctx, path)
		if isNotFound(err) {
			return fmt.Errorf("guard: %s: %w", path, versions.ErrChanged)
		}
		if err != nil {
			return fmt.Errorf("guard: %s: %w", path, err)
		}
		if strings.Trim(aws.ToString(head.ETag), `"`) != strings.Trim(etag, `"`) {
			return fmt.Errorf("guard: %s: %w", path, versions.ErrChanged)
		}
		return nil
	}
	if _, err := g.cloudVersions.Keep(ctx, g.cloudKey(path), etag, reason); err != nil {
		if !errors.Is(err, versions.ErrChanged) {
			g.count(func(s *guardStats) { s.versionErrors++ })
		}
		return err
	}
	g.count(func(s *guardStats) { s.versionsKept++ })
	return nil
}

// cloudListed reports whether a fresh listing of the bucket still has
// the object path (an error counts as listed: nothing is known to have
// changed). A name rclone could only list with a stand-in for bytes that
// are not text (U+FFFD) is one the bucket lists but cannot serve.
func (g *guardPass) cloudListed(ctx context.Context, path string) bool {
	if strings.ContainsRune(path, utf8.RuneError) {
		return true
	}
	key := g.cloudKey(path)
	out, err := g.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: aws.String(g.e.cfg.Remote.Bucket), Prefix: aws.String(key), MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return true
	}
	return len(out.Contents) > 0 && aws.ToString(out.Contents[0].Key) == key
}

// cloudStill reports whether the object path is still as the pass
// expected: at etag if exists, else absent. An error counts as changed.
func (g *guardPass) cloudStill(ctx context.Context, path, etag string, exists bool) bool {
	head, err := g.head(ctx, path)
	if !exists {
		return isNotFound(err)
	}
	return err == nil && strings.Trim(aws.ToString(head.ETag), `"`) == strings.Trim(etag, `"`)
}

// cloudConflict keeps the version of path that is in the bucket now, which
// changed during the pass, as a version and as a conflict file named for
// the bucket, and returns its ETag ("" if the object is gone). Writes
// over path then replace exactly that version.
func (g *guardPass) cloudConflict(ctx context.Context, path string) (string, error) {
	for attempt := 0; attempt < 3; attempt++ {
		head, err := g.head(ctx, path)
		if isNotFound(err) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("guard: %s: %w", path, err)
		}
		etag := aws.ToString(head.ETag)
		if err := g.cloudKeep(ctx, path, etag, versions.ReasonConflict); errors.Is(err, versions.ErrChanged) {
			continue
		} else if err != nil {
			return "", err
		}
		name := g.e.freeConflictName(ctx, path, g.stamp, remoteDeviceLabel)
		_, err = g.s3.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket:            aws.String(g.e.cfg.Remote.Bucket),
			Key:               aws.String(g.cloudKey(name)),
			CopySource:        aws.String(versions.CopySource(g.e.cfg.Remote.Bucket, g.cloudKey(path))),
			CopySourceIfMatch: aws.String(etag),
		})
		if isPreconditionFailed(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("guard: keep %s as a conflict file: %w", path, err)
		}
		g.setState(sideC, name, pathState{created: true, etag: etag})
		g.e.madeConflict(name)
		g.count(func(s *guardStats) { s.windowConflicts++ })
		g.addPlan(Change{Side: SideCloud, Action: ActionConflict, Path: name})
		g.log.Warn("the note changed in the bucket while the sync was replacing it: the bucket's version is kept as a conflict file",
			"file", path, "conflict_file", name)
		return etag, nil
	}
	return "", fmt.Errorf("guard: %s keeps changing in the bucket: %w", path, versions.ErrChanged)
}

// cloudWrite guards a write of the object path: write is called with the
// condition the write must carry (If-Match the version the pass may
// replace, If-None-Match: * where it saw none). The version replaced is
// kept first; one that changed during the pass is also kept as a conflict
// file. A write refused by its condition (the object changed between the
// check and the write) is retried by rclone, which calls back here.
func (g *guardPass) cloudWrite(ctx context.Context, path string, src rfs.ObjectInfo, write func(opts ...rfs.OpenOption) (rfs.Object, error)) (rfs.Object, error) {
	g.hook(sideC, path)
	etag, kept, changed, exists, err := g.cloudExpected(ctx, path)
	if err != nil {
		return nil, err
	}
	if exists && !changed && !kept {
		switch err := g.cloudKeep(ctx, path, etag, versions.ReasonOverwritten); {
		case errors.Is(err, versions.ErrChanged):
			changed = true
		case err != nil:
			return nil, fmt.Errorf("guard: keep the version of %s before replacing it: %w", path, err)
		}
	}
	if changed {
		if etag, err = g.cloudConflict(ctx, path); err != nil {
			return nil, err
		}
		exists = etag != ""
	}
	cond := rfs.OpenOption(&rfs.HTTPOption{Key: "If-None-Match", Value: "*"})
	if exists {
		cond = &rfs.HTTPOption{Key: "If-Match", Value: quoteETag(etag)}
	}
	o, err := write(append(g.e.uploadOptions(path), cond)...)
	if isPreconditionFailed(err) || exists && isNotFound(err) {
		if g.cloudStill(ctx, path, etag, exists) {
			// refused, yet the object is the version the condition
			// named: nothing changed to keep, and a retry would be
			// refused the same way
			g.fail(sideC, path, false, err)
			return nil, fmt.Errorf("guard: %s: the bucket refused a write conditional on the version it has: %w", path, err)
		}
		// Changed between the check and the write (or created where the
		// pass saw nothing): keep what is there now, then let rclone retry.
		now, cerr := g.cloudConflict(ctx, path)
		if cerr != nil {
			return nil, cerr
		}
		g.setState(sideC, path, pathState{etag: now, kept: true, gone: now == ""})
		return nil, fserrors.RetryError(fmt.Errorf("guard: %s changed in the bucket during the sync; its version is kept: %w", path, err))
	}
	if err != nil {
		g.fail(sideC, path, false, err)
		return o, err
	}
	st := pathState{}
	if o != nil {
		if md5, err := o.Hash(ctx, hash.MD5); err == nil {
			st.etag = md5
		}
		st.size = o.Size()
	}
	g.setState(sideC, path, st)
	g.journalCopy(path, entryOf(ctx, src), entryOf(ctx, o))
	g.count(func(s *guardStats) { s.uploaded++; s.wroteCloud(path) })
	g.addPlan(Change{Side: SideCloud, Action: ActionCopy, Path: path})
	return o, nil
}

// downloadedFile counts a file the pass wrote into the folder from the
// bucket; a conflict file that no pass of this engine made is another
// device's conflict, news to the person here.
func (g *guardPass) downloadedFile(path string) {
	arrived := g.e.othersConflict(path)
	g.count(func(s *guardStats) {
		s.downloaded++
		if arrived {
			s.conflictsArrived++
		}
	})
	g.addPlan(Change{Side: SideLocal, Action: ActionCopy, Path: path})
}

// cloudRemove guards the delete of the object path: an object that
// changed during the pass is not deleted (the edit wins; the next pass
// downloads it), any other is kept as a version, then deleted, only if
// it is still that version.
func (g *guardPass) cloudRemove(ctx context.Context, path string) error {
	g.hook(sideC, path)
	st, _, done := g.state(sideC, path)
	g.mu.Lock()
	renamedAt, renamed := g.copied[path]
	g.mu.Unlock()
	etag := ""
	switch {
	case done && st.created:
		etag = st.etag
	case renamed:
		etag = renamedAt // the first half of a rename copied exactly this version
	default:
		var changed, exists bool
		var err error
		etag, _, changed, exists, err = g.cloudExpected(ctx, path)
		if err != nil {
			return err
		}
		if !exists {
			return nil
		}
		if !changed {
			switch err := g.cloudKeep(ctx, path, etag, versions.ReasonDeleted); {
			case errors.Is(err, versions.ErrChanged):
				changed = true
			case err != nil:
				return fmt.Errorf("guard: keep the version of %s before deleting it: %w", path, err)
			}
		}
		if changed {
			g.count(func(s *guardStats) { s.editsKept++ })
			g.addPlan(Change{Side: SideCloud, Action: ActionKeep, Path: path})
			g.log.Warn("not deleting a note that changed in the bucket after the sync listed it: the edit wins, and the next pass downloads it", "file", path)
			return nil
		}
	}
	in := &s3.DeleteObjectInput{Bucket: aws.String(g.e.cfg.Remote.Bucket), Key: aws.String(g.cloudKey(path))}
	if etag != "" {
		in.IfMatch = aws.String(quoteETag(etag))
	}
	_, err := g.s3.DeleteObject(ctx, in)
	switch {
	case isPreconditionFailed(err):
		g.count(func(s *guardStats) { s.editsKept++ })
		g.log.Warn("not deleting a note that changed in the bucket while the sync was deleting it: the edit wins", "file", path)
		return nil
	case err != nil && !isNotFound(err):
		g.fail(sideC, path, false, err)
		return fmt.Errorf("guard: delete %s: %w", path, err)
	}
	g.setState(sideC, path, pathState{gone: true})
	switch {
	case renamed:
		g.e.journal(journalOp{Op: "gone2", Path: path})
	case !(done && st.created):
		g.e.journal(journalOp{Op: "gone", Path: path})
		g.count(func(s *guardStats) { s.deleteRemote++ })
		g.addPlan(Change{Side: SideCloud, Action: ActionDelete, Path: path})
	}
	return nil
}

// notThere reports whether err means there is no file at a path: not
// found, a folder, or a file where a folder on the way should be.
func notThere(err error) bool {
	return errors.Is(err, rfs.ErrorObjectNotFound) || errors.Is(err, rfs.ErrorIsDir) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func quoteETag(etag string) string {
	if strings.HasPrefix(etag, `"`) {
		return etag
	}
	return `"` + etag + `"`
}

// isPreconditionFailed reports whether err is an S3 412 answer.
func isPreconditionFailed(err error) bool {
	if err == nil {
		return false
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "PreconditionFailed" {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusPreconditionFailed
}

// isNotFound reports whether err is an S3 "no such key" (404) answer.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "NoSuchKey" || apiErr.ErrorCode() == "NotFound") {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusNotFound
}

// asideName is a free conflict name for the conflict file at name, which
// a new conflict file of the same name is about to take.
func (g *guardPass) asideName(ctx context.Context, name string) string {
	c, ok := parseConflictName(name)
	if !ok {
		return g.e.freeConflictName(ctx, name, g.stamp, "aside")
	}
	return g.e.freeConflictName(ctx, c.Original, c.Time.Format(conflictTimeFormat), c.Device)
}

// localMoveAside renames a file in the way of a conflict rename to a free
// conflict name (nothing is replaced, so nothing needs keeping).
func (g *guardPass) localMoveAside(ctx context.Context, name string) error {
	if _, err := os.Lstat(g.localPath(name)); notThere(err) {
		return nil
	}
	to := g.asideName(ctx, name)
	if err := os.Rename(g.localPath(name), g.localPath(to)); err != nil {
		return fmt.Errorf("guard: move %s aside: %w", name, err)
	}
	g.setState(sideL, to, pathState{created: true})
	g.log.Info("a conflict file had the name a new one takes: moved it aside", "file", name, "to", to)
	return nil
}

// cloudMoveAside is localMoveAside in the bucket (a copy: the object at
// name is replaced next, and kept as a version then).
func (g *guardPass) cloudMoveAside(ctx context.Context, name string) error {
	head, err := g.head(ctx, name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("guard: %s: %w", name, err)
	}
	to := g.asideName(ctx, name)
	_, err = g.s3.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:            aws.String(g.e.cfg.Remote.Bucket),
		Key:               aws.String(g.cloudKey(to)),
		CopySource:        aws.String(versions.CopySource(g.e.cfg.Remote.Bucket, g.cloudKey(name))),
		CopySourceIfMatch: head.ETag,
	})
	if err != nil {
		return fmt.Errorf("guard: move %s aside: %w", name, err)
	}
	g.setState(sideC, to, pathState{created: true, etag: aws.ToString(head.ETag)})
	g.log.Info("a conflict file in the bucket had the name a new one takes: copied it aside", "file", name, "to", to)
	return nil
}

// ---- the rclone Fs ----

// guardFs is one side of a pass, as bisync sees it.
type guardFs struct {
	rfs.Fs
	g        *guardPass
	side     int
	name     string
	root     string
	features *rfs.Features
}

func newGuardFs(ctx context.Context, g *guardPass, side int, inner rfs.Fs, name, root string) *guardFs {
	f := &guardFs{Fs: inner, g: g, side: side, name: name, root: root}
	stub := &rfs.Features{
		CanHaveEmptyDirectories: true, IsLocal: true, ReadMimeType: true, WriteMimeType: true,
		ReadMetadata: true, WriteMetadata: true, UserMetadata: true,
		PartialUploads: true, ServerSideAcrossConfigs: false,
		CaseInsensitive: true, DuplicateFiles: true, ReadDirMetadata: true, WriteDirMetadata: true,
		WriteDirSetModTime: true, UserDirMetadata: true, DirModTimeUpdatesOnWrite: true,
		SlowModTime: true, SlowHash: true, BucketBased: true, BucketBasedRootOK: true, SetTier: true, GetTier: true,
	}
	f.features = stub.Fill(ctx, f).Mask(ctx, inner)
	return f
}

// Name is the side's short name (see the top of this file).
func (f *guardFs) Name() string { return f.name }

// Root is the side's short root.
func (f *guardFs) Root() string { return f.root }

// String describes the side.
func (f *guardFs) String() string { return f.name + ":" + f.root }

// Features are the wrapped side's, less what the guard does not pass on.
func (f *guardFs) Features() *rfs.Features { return f.features }

func (f *guardFs) wrap(o rfs.Object) rfs.Object {
	if f.side == sideL {
		return &guardLocalObject{guardObject{Object: o, f: f}}
	}
	return &guardCloudObject{guardObject{Object: o, f: f}}
}

func (f *guardFs) wrapEntries(ctx context.Context, entries rfs.DirEntries, record bool) rfs.DirEntries {
	entries = f.g.ignore.filterEntries(ctx, entries)
	for i, e := range entries {
		if o, ok := e.(rfs.Object); ok {
			if record {
				f.g.record(f.side, o)
			}
			entries[i] = f.wrap(o)
		}
	}
	return entries
}

// List lists dir, remembering the objects as listed.
func (f *guardFs) List(ctx context.Context, dir string) (rfs.DirEntries, error) {
	entries, err := f.Fs.List(ctx, dir)
	if err != nil {
		f.g.fail(f.side, dir, true, err)
		return nil, err
	}
	if len(entries) == 0 && f.side == sideL && dir != "" {
		// rclone lists a folder it may not open as empty (and fails the
		// sync later): find out which, so the rest can sync.
		if d, err := os.Open(f.g.localPath(dir)); err != nil {
			f.g.fail(sideL, dir, true, err)
		} else {
			d.Close()
		}
	}
	return f.wrapEntries(ctx, entries, true), nil
}

// ListR lists recursively, remembering the objects as listed.
func (f *guardFs) ListR(ctx context.Context, dir string, callback rfs.ListRCallback) error {
	do := f.Fs.Features().ListR
	if do == nil {
		return rfs.ErrorNotImplemented
	}
	if f.side == sideC && dir == "" {
		if pre := f.g.takePrelisted(); pre != nil {
			// the same pages, listed a moment ago: each is filtered and
			// recorded as if the bucket had just sent it
			for _, page := range pre.pages {
				if err := callback(f.wrapEntries(ctx, slices.Clone(page), true)); err != nil {
					return err
				}
			}
			return nil
		}
		if keep := f.g.bucketPages; keep != nil {
			err := do(ctx, dir, func(entries rfs.DirEntries) error {
				keep.add(entries)
				return callback(f.wrapEntries(ctx, entries, true))
			})
			keep.mu.Lock()
			keep.complete = err == nil
			keep.mu.Unlock()
			return err
		}
	}
	return do(ctx, dir, func(entries rfs.DirEntries) error { return callback(f.wrapEntries(ctx, entries, true)) })
}

// ListP lists dir page by page, remembering the objects as listed.
func (f *guardFs) ListP(ctx context.Context, dir string, callback rfs.ListRCallback) error {
	if do := f.Fs.Features().ListP; do != nil {
		return do(ctx, dir, func(entries rfs.DirEntries) error { return callback(f.wrapEntries(ctx, entries, true)) })
	}
	entries, err := f.List(ctx, dir)
	if err != nil {
		return err
	}
	return callback(entries)
}

// NewObject finds one object (not a listing: nothing is remembered).
func (f *guardFs) NewObject(ctx context.Context, remote string) (rfs.Object, error) {
	o, err := f.Fs.NewObject(ctx, remote)
	if err != nil {
		return nil, err
	}
	return f.wrap(o), nil
}

// Put writes a new object (on the local side, usually a partial upload
// that Move puts in place).
func (f *guardFs) Put(ctx context.Context, in io.Reader, src rfs.ObjectInfo, options ...rfs.OpenOption) (rfs.Object, error) {
	path := src.Remote()
	var o rfs.Object
	var err error
	if f.side == sideL {
		put := func() (rfs.Object, error) { return f.Fs.Put(ctx, in, src, options...) }
		if partialSuffix.MatchString(path) {
			// The pass's own file, not a note: one there already is what
			// an earlier try left (a full disk, a kill), and goes. A kill
			// may leave this one: the next pass removes it.
			f.g.removePartial(path)
			f.g.e.journal(journalOp{Op: "partial", Path: path})
			o, err = put()
			if err != nil {
				f.g.fail(sideL, noteName(src), false, err)
			}
		} else {
			o, err = f.g.localReplace(ctx, path, noteName(src), put)
		}
		if err == nil {
			st := pathState{created: true, size: o.Size(), modTime: o.ModTime(ctx), src: entryOf(ctx, src)}
			f.g.setState(sideL, path, st)
			if !strings.HasSuffix(path, rfs.GetConfig(ctx).PartialSuffix) {
				// written in place, not through a partial
				f.g.journalCopy(path, entryOf(ctx, o), entryOf(ctx, src))
				f.g.downloadedFile(path)
			}
		}
	} else {
		// rclone writes objects in place: the key is the note's
		o, err = f.g.cloudWrite(ctx, path, src, func(opts ...rfs.OpenOption) (rfs.Object, error) {
			return f.Fs.Put(ctx, in, src, append(options, opts...)...)
		})
	}
	if o == nil || err != nil {
		return o, err
	}
	return f.wrap(o), nil
}

// Move renames a local file (a partial upload into place, or bisync's
// rename of a conflict loser), keeping the version it replaces.
func (f *guardFs) Move(ctx context.Context, src rfs.Object, remote string) (rfs.Object, error) {
	do := f.Fs.Features().Move
	inner, ok := unwrapGuard(src, f)
	if do == nil || !ok {
		return nil, rfs.ErrorCantMove
	}
	srcState, _, srcDone := f.g.state(f.side, src.Remote())
	if srcDone && srcState.created {
		// a finished download into place
		o, err := f.g.localPlace(ctx, src.Remote(), remote)
		if err != nil {
			return nil, err
		}
		f.g.setState(f.side, src.Remote(), pathState{gone: true})
		f.g.downloadedFile(remote)
		return f.wrap(o), nil
	}
	// bisync renaming a conflict's loser: a conflict file of the same
	// name (another in the same second) moves aside first
	if err := f.g.localMoveAside(ctx, remote); err != nil {
		return nil, err
	}
	o, err := f.g.localReplace(ctx, remote, remote, func() (rfs.Object, error) { return do(ctx, inner, remote) })
	if err != nil {
		return nil, err
	}
	f.g.setState(f.side, src.Remote(), pathState{gone: true})
	f.g.e.journal(journalOp{Op: "gone1", Path: src.Remote(), Check: "absent"})
	f.g.e.madeConflict(remote)
	f.g.count(func(s *guardStats) { s.renamed++; s.renamedNote(src.Remote()) })
	return f.wrap(o), nil
}

// Copy copies an object inside the bucket: bisync's rename of a conflict
// loser (a copy to a fresh conflict name, then the delete of the
// original, which cloudRemove makes only if it is still what was copied).
func (f *guardFs) Copy(ctx context.Context, src rfs.Object, remote string) (rfs.Object, error) {
	do := f.Fs.Features().Copy
	inner, ok := unwrapGuard(src, f)
	if do == nil || !ok || f.side != sideC {
		return nil, rfs.ErrorCantCopy
	}
	f.g.hook(sideC, remote)
	if err := f.g.cloudMoveAside(ctx, remote); err != nil {
		return nil, err
	}
	o, err := do(ctx, inner, remote)
	if err != nil {
		return nil, err
	}
	md5, _ := o.Hash(ctx, hash.MD5)
	f.g.setState(sideC, remote, pathState{created: true, etag: md5, size: o.Size()})
	if md5 != "" {
		f.g.mu.Lock()
		f.g.copied[src.Remote()] = md5
		f.g.mu.Unlock()
	}
	f.g.e.madeConflict(remote)
	f.g.count(func(s *guardStats) { s.renamed++; s.cloudRenamed++; s.renamedNote(src.Remote()); s.wroteCloud(remote) })
	return f.wrap(o), nil
}

// noteName is the note a write of src is for: rclone writes downloads to
// a partial name first (shortened when long), and says the real one in
// the object it wraps.
func noteName(src rfs.ObjectInfo) string {
	if or, ok := src.(*rfs.OverrideRemote); ok {
		if o := or.UnWrap(); o != nil {
			return o.Remote()
		}
	}
	return finalName(src.Remote())
}

// unwrapGuard returns the object a guard object wraps, if it is one of f's.
func unwrapGuard(o rfs.Object, f *guardFs) (rfs.Object, bool) {
	switch x := o.(type) {
	case *guardLocalObject:
		return x.Object, x.f == f
	case *guardCloudObject:
		return x.Object, x.f == f
	}
	return nil, false
}

// guardObject is an object of a guarded side. The two sides have types of
// their own so that rclone's log lines (which name the object's type)
// still tell the sides apart.
type guardObject struct {
	rfs.Object
	f *guardFs
}

type (
	guardLocalObject struct{ guardObject }
	guardCloudObject struct{ guardObject }
)

// Fs is the guarded side.
func (o *guardObject) Fs() rfs.Info { return o.f }

// Update replaces the object's content, guarded.
func (o *guardObject) Update(ctx context.Context, in io.Reader, src rfs.ObjectInfo, options ...rfs.OpenOption) error {
	path := o.Remote()
	if o.f.side == sideL {
		_, err := o.f.g.localReplace(ctx, path, path, func() (rfs.Object, error) {
			return o.Object, o.Object.Update(ctx, in, src, options...)
		})
		if err == nil {
			o.f.g.journalCopy(path, entryOf(ctx, o.Object), entryOf(ctx, src))
			o.f.g.downloadedFile(path)
		}
		return err
	}
	_, err := o.f.g.cloudWrite(ctx, path, src, func(opts ...rfs.OpenOption) (rfs.Object, error) {
		return o.Object, o.Object.Update(ctx, in, src, append(options, opts...)...)
	})
	return err
}

// Open reads the object; a failure is recorded as the path's.
func (o *guardObject) Open(ctx context.Context, options ...rfs.OpenOption) (io.ReadCloser, error) {
	if h := o.f.g.e.beforeRead; h != nil {
		side := SideLocal
		if o.f.side == sideC {
			side = SideCloud
		}
		h(side, o.Remote())
	}
	r, err := o.Object.Open(ctx, options...)
	if err != nil {
		ferr := err
		// Listed, then not found: deleted since (the next pass sees it
		// gone), or a name the bucket lists but cannot serve (it stays).
		if errors.Is(err, rfs.ErrorObjectNotFound) && (o.f.side != sideC || o.f.g.cloudListed(ctx, o.Remote())) {
			ferr = fmt.Errorf("%w: %w", errListedNotReadable, err)
		}
		o.f.g.fail(o.f.side, o.Remote(), false, ferr)
	}
	return r, err
}

// Remove deletes the object, guarded.
func (o *guardObject) Remove(ctx context.Context) error {
	if o.f.side == sideL {
		return o.f.g.localRemove(ctx, o.Remote(), func() error { return o.Object.Remove(ctx) })
	}
	return o.f.g.cloudRemove(ctx, o.Remote())
}
