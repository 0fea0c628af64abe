package syncer

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rclone/rclone/cmd/bisync"
	"github.com/rclone/rclone/cmd/bisync/bilib"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/filter"
	"github.com/rclone/rclone/fs/march"
)

// A no-change pass: a full pass that finds both sides as the last one
// left them does not run bisync.
//
// A bisync run that finds no change lists both sides, compares each
// listing with the one it saved last time (findDeltas: a file is new,
// deleted, or changed in size or modtime), finds nothing, and saves the
// new listings, which hold exactly what the old ones held. Most of its
// time then goes to its own bookkeeping over every entry, not to the
// listing. unchangedSides lists both sides exactly as bisync does (the
// pass's guarded file systems, which drop what .bmignore ignores; the
// same rclone settings, so --fast-list and server modtimes on the
// bucket; bisync's filters file and the failed paths set aside; bisync's
// own march), writes each entry as the line bisync would write for it,
// and compares those lines with the saved listing's, byte for byte. Only
// when every line is the same on both sides, and nothing else could make
// bisync do anything, is the pass over: it is recorded as bisync's no-op
// pass would be, and the listings are left as they are (a change made
// after this listing is then still a change against them next time).
//
// The comparison is stricter than bisync's: bisync reads a listing
// leniently (it skips a line it cannot parse, keeps the later of two
// lines for one name, accepts times within the modify window) and would
// still run where this sees a difference, so any difference at all, and
// any doubt (a listing missing, unreadable or of another format version,
// a lock, a listing left by an unfinished or aborted run, a filters file
// that does not match its stored hash, an error while listing, a path a
// side cannot list, a journal to play in, failed paths due for another
// try, an access check that would fail), runs the real bisync pass.

// unchangedSides reports whether both sides are exactly what bisync's
// saved listings say, so that a bisync run would find no change and do
// nothing; why says what differed, or what made it doubt, when not. ctx
// is the ctx the pass's bisync run would get (the failed paths set aside
// in its filter).
func (e *Engine) unchangedSides(ctx context.Context, pc *passCounter, ps passSettings) (ok bool, why string) {
	if ps.dryRun {
		return false, "dry run"
	}
	if e.journalPending() {
		return false, "an unfinished pass's journal"
	}
	for _, l := range []string{e.listing1, e.listing2} {
		if st, err := os.Lstat(l); err != nil || !st.Mode().IsRegular() {
			return false, "no listing " + filepath.Base(l)
		}
		for _, left := range []string{l + "-new", l + "-err"} {
			if _, err := os.Lstat(left); !errors.Is(err, fs.ErrNotExist) {
				return false, "a listing an earlier run left: " + filepath.Base(left)
			}
		}
	}
	if _, err := os.Lstat(e.basePath + ".lck"); !errors.Is(err, fs.ErrNotExist) {
		return false, "a bisync lock"
	}
	if why := filtersMatchHash(ps.filters); why != "" {
		return false, why
	}

	// The settings bisync's run gets (runBisync, then Bisync itself).
	ctx = accounting.WithStatsGroup(ctx, pc.group)
	accounting.Stats(ctx).ResetErrors()
	ctx, ci := engineConfig(ctx)
	ci.DryRun = false
	ci.MaxDelete = -1 // bisync takes it for its own check, and hides it from rclone
	fctx := ctx
	var err error
	if !rulesLead(ps.filters, ps.ignore) {
		if fctx, err = withFiltersFile(ctx, ps.filters); err != nil {
			return false, err.Error()
		}
	}
	g := newGuardPass(e, pc.logger(), "")
	g.ignore = ps.ignore
	g.bucketPages = &bucketListing{}
	path1, path2 := g.wrap(ctx)
	if filepath.Join(e.cfg.WorkDir, bilib.SessionName(path1, path2)) != e.basePath {
		return false, "the listings' names changed"
	}
	now, err := listLikeBisync(fctx, path1, path2)
	if err != nil {
		return false, "listing: " + err.Error()
	}
	if accounting.Stats(fctx).Errored() {
		return false, "errors while listing"
	}
	if fails, global := g.failures(); len(fails) > 0 || global != nil {
		return false, "a path could not be listed"
	}
	if g.bucketPages.complete {
		// a good listing of the bucket: the bisync run that follows
		// takes it rather than listing the bucket again
		defer func() {
			if !ok {
				e.prelisted = g.bucketPages
			}
		}()
	}
	if now[0].dup || now[1].dup {
		return false, "a name listed twice"
	}
	if len(now[0].lines) == 0 || len(now[1].lines) == 0 {
		return false, "a side is empty" // bisync stops on an empty listing
	}
	if ps.set.checkAccess && !accessCheckPasses(now[0].names, now[1].names) {
		return false, "the access check would fail"
	}
	for side, l := range []string{e.listing1, e.listing2} {
		if why := now[side].differsFrom(l); why != "" {
			return false, filepath.Base(l) + ": " + why
		}
	}
	return true, ""
}

// filtersMatchHash checks what bisync checks of its filters file before
// it lists anything: the file's MD5 is the one stored next to it at the
// last resync ("" when it is).
func filtersMatchHash(filtersFile string) string {
	if filtersFile == "" {
		return "no filters file"
	}
	data, err := os.ReadFile(filtersFile)
	if err != nil {
		return "filters file unreadable"
	}
	want, err := os.ReadFile(filtersFile + ".md5")
	if err != nil {
		return "no filters hash"
	}
	sum := md5.Sum(data)
	if hex.EncodeToString(sum[:]) != string(want) {
		return "filters file changed"
	}
	return ""
}

// rulesLead reports whether the rules of the filters file are the first
// rules of the ignore matcher, in the same order (they are: the engine
// writes both from the same header, filters.go). A path the guarded file
// systems keep (none of the matcher's rules excludes it first) is then
// one that bisync's filter of the file keeps too, so listing without that
// filter, which costs a regexp match per rule on every path, lists the
// same entries: the first of the file's rules that matches a path decides
// it in both. (The failed paths' exclusions come before either, in ctx.)
func rulesLead(filtersFile string, ignore *ignoreMatcher) bool {
	if ignore == nil {
		return false
	}
	data, err := os.ReadFile(filtersFile)
	if err != nil {
		return false
	}
	i := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue // rclone skips these lines of a filter file
		}
		if i >= len(ignore.rules) || ignore.rules[i] != line {
			return false
		}
		i++
	}
	return true
}

// withFiltersFile returns ctx with filtersFile's rules first in its
// filter, as bisync's run applies its filters file.
func withFiltersFile(ctx context.Context, filtersFile string) (context.Context, error) {
	opt := filter.GetConfig(ctx).Opt
	opt.FilterFrom = append([]string{filtersFile}, opt.FilterFrom...)
	fi, err := filter.NewFilter(&opt)
	if err != nil {
		return ctx, fmt.Errorf("filters file: %w", err)
	}
	return filter.ReplaceConfig(ctx, fi), nil
}

// sideListing is one side's listing, as bisync's listing lines.
type sideListing struct {
	lines map[string]bool // each file's line, as bisync writes it (no newline)
	names []string
	dup   bool // a name came twice
	seen  map[string]bool
}

// listLikeBisync lists path1 and path2 the way bisync's run does (its
// march over both, with ctx's settings and filter), as the lines bisync
// would save for them: files only (bisync records folders only with
// --create-empty-src-dirs, which the engine does not set), with size and
// modtime, no hash (the engine compares size and modtime and ignores
// listing checksums) and no ID.
func listLikeBisync(ctx context.Context, path1, path2 rfs.Fs) ([2]*sideListing, error) {
	c := &bisyncLister{ctx: ctx}
	for i := range c.ls {
		c.ls[i] = &sideListing{lines: map[string]bool{}, seen: map[string]bool{}}
	}
	m := &march.March{
		Ctx:                    ctx,
		Fdst:                   path2,
		Fsrc:                   path1,
		Callback:               c,
		NoUnicodeNormalization: rfs.GetConfig(ctx).NoUnicodeNormalization,
	}
	err := m.Run(ctx)
	return c.ls, err
}

// bisyncLister is the march's callback: it records each side's objects
// as bisync's does (bisyncRun.ForObject).
type bisyncLister struct {
	ctx context.Context
	mu  sync.Mutex
	ls  [2]*sideListing
}

func (c *bisyncLister) add(e rfs.DirEntry, side int) (recurse bool) {
	switch o := e.(type) {
	case rfs.Directory:
		return true
	case rfs.Object:
		line := listingLine1(o.Remote(), o.Size(), o.ModTime(c.ctx))
		c.mu.Lock()
		defer c.mu.Unlock()
		ls := c.ls[side]
		if ls.seen[o.Remote()] {
			ls.dup = true
		}
		ls.seen[o.Remote()] = true
		ls.lines[line] = true
		ls.names = append(ls.names, o.Remote())
	}
	return false
}

// SrcOnly is an entry on path1 alone.
func (c *bisyncLister) SrcOnly(src rfs.DirEntry) bool { return c.add(src, sideL) }

// DstOnly is an entry on path2 alone.
func (c *bisyncLister) DstOnly(dst rfs.DirEntry) bool { return c.add(dst, sideC) }

// Match is an entry on both sides.
func (c *bisyncLister) Match(_ context.Context, dst, src rfs.DirEntry) bool {
	c.add(dst, sideC)
	return c.add(src, sideL)
}

// listingLine1 is the line bisync writes for a file (fileList.save's
// "%s %8d %s %s %s %q" with flags "-", no hash and no ID), without its
// newline, built without fmt (two of them per file, each pass).
func listingLine1(name string, size int64, modTime time.Time) string {
	b := make([]byte, 0, 64+len(name))
	b = append(b, "- "...)
	n := strconv.FormatInt(size, 10)
	for i := len(n); i < 8; i++ {
		b = append(b, ' ')
	}
	b = append(b, n...)
	b = append(b, " - - "...)
	b = modTime.In(bisync.TZ).AppendFormat(b, listingTimeFormat)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, name)
	return string(b)
}

// differsFrom compares the listing with the bisync listing file at
// path: the header of bisync's format version, then exactly one line per
// file, each one of ls's ("" when they are the same).
func (ls *sideListing) differsFrom(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unreadable"
	}
	header, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !strings.HasPrefix(string(header), bisync.ListingHeader+" ") {
		return "not a listing of this format version"
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		return "truncated"
	}
	matched := 0
	found := make(map[string]bool, len(ls.lines))
	for line := range bytes.Lines(body) {
		s := string(line[:len(line)-1])
		if !ls.lines[s] {
			return "changed (or not a line bisync wrote): " + s
		}
		if found[s] {
			return "a line twice: " + s
		}
		found[s] = true
		matched++
	}
	if matched != len(ls.lines) {
		return fmt.Sprintf("%d files listed now, %d last time", len(ls.lines), matched)
	}
	return ""
}

// accessCheckPasses is bisync's access check (--check-access) on the
// two listings: at least one check file, and the same ones on both sides.
func accessCheckPasses(names1, names2 []string) bool {
	checks := func(names []string) map[string]bool {
		out := map[string]bool{}
		for _, n := range names {
			if filepath.Base(n) == AccessCheckFile {
				out[n] = true
			}
		}
		return out
	}
	c1, c2 := checks(names1), checks(names2)
	if len(c1) == 0 || len(c1) != len(c2) {
		return false
	}
	for n := range c1 {
		if !c2[n] {
			return false
		}
	}
	return true
}
