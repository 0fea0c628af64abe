package syncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rclone/rclone/cmd/bisync"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/fs/walk"
	"golang.org/x/sync/errgroup"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// Why listings need settling.
//
// When bisync copies a file it records, in the destination's listing, the
// size and modtime of the *source*: it assumes the destination takes the
// source's modtime. The engine lists the bucket with server modtimes (no
// HEAD per object), and an S3 object's server modtime is the time it was
// uploaded, never the local file's mtime. So after every upload the path2
// listing held a time the bucket would never show: the next pass saw each
// uploaded file as changed on path2 (and downloaded it back), and after a
// resync that uploaded a whole folder it saw every file changed and
// stopped with "all files were changed on Path2".
//
// settleRemoteTimes closes that gap after each run that wrote to the
// bucket: it lists the bucket once and, for every path2 entry whose time
// differs from the object's while the object holds exactly the local
// file's content (same size and MD5), records the object's own time.
// Objects whose content is not the local file's (another device wrote
// them meanwhile) are left alone, so the next pass still sees that change.

// listingLine matches a bisync listing line (bisync's own format):
// flags size hash id modtime "name".
var listingLine = regexp.MustCompile(`^(\S) +(-?\d+) (\S+) (\S+) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d{4}) (".+")$`)

// listingTimeFormat is bisync's listing time format.
const listingTimeFormat = "2006-01-02T15:04:05.000000000-0700"

// listingEntry is one file of a bisync listing.
type listingEntry struct {
	size int64
	time time.Time
}

// readListing parses a bisync listing into entries by name.
func readListing(path string) (map[string]listingEntry, error) {
	return readListingWhere(path, nil)
}

// readListingWhere parses the lines of a bisync listing that match keeps
// (all, when nil) into entries by name: parsing a line costs a regexp
// match, so a caller after a few names skips the rest unparsed.
func readListingWhere(path string, match func(line []byte) bool) (map[string]listingEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]listingEntry{}
	for line := range bytes.Lines(data) {
		line = bytes.TrimRight(line, "\r\n")
		if match != nil && !match(line) {
			continue
		}
		if name, ent, ok := parseListingLine(string(line)); ok {
			out[name] = ent
		}
	}
	return out, nil
}

func parseListingLine(line string) (string, listingEntry, bool) {
	m := listingLine.FindStringSubmatch(line)
	if m == nil || m[1] != "-" {
		return "", listingEntry{}, false
	}
	size, err1 := strconv.ParseInt(m[2], 10, 64)
	t, err2 := time.ParseInLocation(listingTimeFormat, m[5], bisync.TZ)
	name, err3 := strconv.Unquote(m[6])
	if err1 != nil || err2 != nil || err3 != nil {
		return "", listingEntry{}, false
	}
	return name, listingEntry{size: size, time: t}, true
}

// rewriteListingTimes replaces the modtime of the named files in a bisync
// listing, leaving every other byte as it was, and replaces the file
// atomically. It returns how many lines it changed.
func rewriteListingTimes(path string, times map[string]time.Time) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	lines := strings.SplitAfter(string(data), "\n")
	changed := 0
	for i, line := range lines {
		body := strings.TrimSuffix(line, "\n")
		name, _, ok := parseListingLine(body)
		if !ok {
			continue
		}
		t, ok := times[name]
		if !ok {
			continue
		}
		m := listingLine.FindStringSubmatchIndex(body)
		start, end := m[10], m[11] // the modtime group
		lines[i] = body[:start] + t.In(bisync.TZ).Format(listingTimeFormat) + body[end:] + line[len(body):]
		changed++
	}
	if changed == 0 {
		return 0, nil
	}
	if err := atomicfile.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		return 0, err
	}
	return changed, nil
}

// maxTargetedSettle is the most bucket writes settleRemoteTimes asks
// about one by one (a HEAD each) rather than listing the bucket.
const maxTargetedSettle = 64

// settleRemoteTimes records the bucket's own modtimes in the path2
// listing for the files whose object holds the local file's content (see
// the comment at the top of this file). With only nil it lists the whole
// bucket (a request per 1,000 objects); otherwise it asks about the
// paths in only (a HEAD each: what a pass that wrote a few notes
// costs). Either way it reads the local files whose recorded time was
// wrong; a pass that wrote nothing to the bucket does not call it.
func (e *Engine) settleRemoteTimes(ctx context.Context, pc *passCounter, filters *ignoreMatcher, only []string) (int, error) {
	n, err := e.settleTimes(ctx, pc, filters, e.listing2, only, func(_ func() fs.Object, ro objInfo, ent listingEntry) (time.Time, bool) {
		return ro.ModTime(ctx), ent.size == ro.Size()
	})
	if err != nil {
		return 0, fmt.Errorf("settle listing: %w", err)
	}
	if n > 0 {
		pc.logger().Debug("recorded the bucket's modtimes of written files in the listing", "files", n)
	}
	return n, nil
}

// settleLocalTimes is settleRemoteTimes for the notes folder's side: for
// every path1 entry whose file now has another modtime but the same size
// and exactly the bucket object's content (MD5), it records the file's
// new time. It answers "every file changed" (a clock or time zone jump,
// a tool that touched every file): the times changed, the notes did not,
// and the next run then sees the real changes only, deletes included.
func (e *Engine) settleLocalTimes(ctx context.Context, pc *passCounter, filters *ignoreMatcher) (int, error) {
	n, err := e.settleTimes(ctx, pc, filters, e.listing1, nil, func(local func() fs.Object, ro objInfo, ent listingEntry) (time.Time, bool) {
		lo := local()
		if lo == nil {
			return time.Time{}, false
		}
		return lo.ModTime(ctx), lo.Size() == ent.size && lo.Size() == ro.Size()
	})
	if err != nil {
		return 0, fmt.Errorf("settle local listing: %w", err)
	}
	return n, nil
}

// settleTimes lists the bucket once (or, with only, each object named
// there on its own) and, for every entry of listing whose time differs
// from the one now (now gives it, and whether the sizes allow a match;
// local looks up the local file, nil if none) while the local file and
// the object hold the same content, records the time now; it returns how
// many it recorded.
func (e *Engine) settleTimes(ctx context.Context, pc *passCounter, filters *ignoreMatcher, listing string, only []string, now func(local func() fs.Object, ro objInfo, ent listingEntry) (time.Time, bool)) (int, error) {
	entries, err := readListing(listing)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if len(entries) == 0 {
		return 0, nil
	}
	fctx, err := withFilters(ctx, filters)
	if err != nil {
		return 0, err
	}
	fctx, _ = engineConfig(accounting.WithStatsGroup(fctx, pc.group))
	fix := map[string]time.Time{}
	var fixMu sync.Mutex
	visitOne := func(ro objInfo) error {
		name := ro.Remote()
		ent, ok := entries[name]
		if !ok {
			return nil
		}
		local := func() fs.Object {
			lo, err := e.local.NewObject(fctx, name)
			if err != nil {
				return nil
			}
			return lo
		}
		mt, ok := now(local, ro, ent)
		if !ok || mt.Equal(ent.time) {
			return nil
		}
		same, err := e.localHasContent(fctx, name, ro)
		if err != nil {
			return err
		}
		if same {
			fixMu.Lock()
			fix[name] = mt
			fixMu.Unlock()
		}
		return nil
	}
	visit := func(objs fs.DirEntries) error {
		for _, entry := range objs {
			if ro, ok := entry.(fs.Object); ok {
				if err := visitOne(ro); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if only == nil {
		err = walk.ListR(fctx, e.remote, "", true, -1, walk.ListObjects, visit)
	} else {
		g, gctx := errgroup.WithContext(fctx)
		g.SetLimit(8)
		for _, name := range only {
			if _, listed := entries[name]; !listed {
				continue
			}
			g.Go(func() error {
				ro, err := e.listedObject(gctx, name)
				if err != nil || ro == nil {
					return err // nil: deleted since; the next pass sees it
				}
				return visitOne(ro)
			})
		}
		err = g.Wait()
	}
	if err != nil {
		return 0, fmt.Errorf("list bucket: %w", err)
	}
	n, err := rewriteListingTimes(listing, fix)
	if err != nil {
		return 0, fmt.Errorf("rewrite: %w", err)
	}
	return n, nil
}

// objInfo is what settling reads of a bucket object: an rclone object
// from a listing, or one listed on its own (listedObject).
type objInfo interface {
	Remote() string
	Size() int64
	ModTime(context.Context) time.Time
	Hash(context.Context, hash.Type) (string, error)
}

// listedObject lists the one object name (ListObjectsV2 with its key as
// the prefix), so its time is the one a bucket listing shows (a HEAD's
// Last-Modified has whole seconds only); nil if it is gone.
func (e *Engine) listedObject(ctx context.Context, name string) (objInfo, error) {
	key := backendEncoding("s3").FromStandardPath(name)
	out, err := e.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: aws.String(e.cfg.Remote.Bucket), Prefix: aws.String(key), MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", name, err)
	}
	if len(out.Contents) == 0 || aws.ToString(out.Contents[0].Key) != key {
		return nil, nil
	}
	c := out.Contents[0]
	return listedInfo{name: name, size: aws.ToInt64(c.Size), mod: aws.ToTime(c.LastModified),
		etag: strings.Trim(aws.ToString(c.ETag), `"`)}, nil
}

// listedInfo is an object as ListObjectsV2 showed it.
type listedInfo struct {
	name, etag string
	size       int64
	mod        time.Time
}

func (o listedInfo) Remote() string                    { return o.name }
func (o listedInfo) Size() int64                       { return o.size }
func (o listedInfo) ModTime(context.Context) time.Time { return o.mod }
func (o listedInfo) Hash(_ context.Context, t hash.Type) (string, error) {
	if t != hash.MD5 || len(o.etag) != 32 { // a multipart ETag is no MD5
		return "", nil
	}
	return strings.ToLower(o.etag), nil
}

// localHasContent reports whether the local file name holds exactly the
// object's content: same size and MD5. An object without an MD5 (none is
// known) never matches.
func (e *Engine) localHasContent(ctx context.Context, name string, ro objInfo) (bool, error) {
	lo, err := e.local.NewObject(ctx, name)
	if notThere(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat local %q: %w", name, err)
	}
	if lo.Size() != ro.Size() {
		return false, nil
	}
	rh, err := ro.Hash(ctx, hash.MD5)
	if err != nil || rh == "" {
		return false, nil //nolint:nilerr // no MD5: leave the entry alone
	}
	lh, err := lo.Hash(ctx, hash.MD5)
	if errors.Is(err, fs.ErrorObjectNotFound) || errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("hash local %q: %w", name, err)
	}
	return strings.EqualFold(lh, rh), nil
}

// dropFromListing removes from a bisync listing the files drop matches,
// leaving every other byte, atomically, and returns the lines it removed
// by name; a missing listing is fine.
func dropFromListing(path string, drop func(name string) bool) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.SplitAfter(string(data), "\n")
	out := lines[:0]
	removed := map[string][]string{}
	for _, line := range lines {
		if name, _, ok := parseListingLine(strings.TrimSuffix(line, "\n")); ok && drop(name) {
			removed[name] = append(removed[name], strings.TrimSuffix(line, "\n"))
			continue
		}
		out = append(out, line)
	}
	if len(removed) == 0 {
		return nil, nil
	}
	return removed, atomicfile.WriteFile(path, []byte(strings.Join(out, "")), 0o600)
}

// addToListing puts lines (of files the listing does not have) back into
// a bisync listing; bisync sorts it when it next writes it.
func addToListing(path string, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	entries, err := readListing(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no baseline: nothing to put them back into
	}
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	b := strings.Builder{}
	b.Write(data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		b.WriteByte('\n')
	}
	added := 0
	for _, l := range lines {
		name, _, ok := parseListingLine(l)
		if !ok {
			continue
		}
		if _, have := entries[name]; have {
			continue
		}
		b.WriteString(l + "\n")
		added++
	}
	if added == 0 {
		return nil
	}
	return atomicfile.WriteFile(path, []byte(b.String()), 0o600)
}

// setListingEntries sets the size and modtime of files in a bisync
// listing (adding the ones it lacks) and removes the files set to nil,
// atomically; a missing listing is left alone.
func setListingEntries(path string, set map[string]*listingEntry) error {
	if len(set) == 0 {
		return nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	named := listingNames(names)
	done := map[string]bool{}
	b := bytes.NewBuffer(make([]byte, 0, len(data)+128*len(set)))
	for line := range bytes.Lines(data) {
		body := bytes.TrimSuffix(line, []byte("\n"))
		if !named(body) {
			b.Write(line) // not one of set's: as it was, unparsed
			continue
		}
		name, _, ok := parseListingLine(string(body))
		if !ok {
			b.Write(line)
			continue
		}
		ent, found := set[name]
		switch {
		case !found:
			b.Write(line)
		case ent == nil:
			// removed
		default:
			b.WriteString(listingLineFor(name, *ent))
		}
		done[name] = true
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	for name, ent := range set {
		if ent != nil && !done[name] {
			b.WriteString(listingLineFor(name, *ent))
		}
	}
	return atomicfile.WriteFile(path, b.Bytes(), 0o600)
}

// listingNames returns a cheap test of whether a listing line is about
// one of names, for callers after a few names among many lines (parsing
// a line costs a regexp match). A line ends with its name, Go-quoted,
// after a space; inside the quotes a quote is escaped, so the last ` "`
// of a line starts its name.
func listingNames(names []string) func(line []byte) bool {
	quoted := make(map[string]bool, len(names))
	for _, n := range names {
		quoted[strconv.Quote(n)] = true
	}
	return func(line []byte) bool {
		i := bytes.LastIndex(line, []byte(` "`))
		return i >= 0 && quoted[string(line[i+1:])]
	}
}

// listingLineFor is a listing line in bisync's format (no hash, no ID).
func listingLineFor(name string, ent listingEntry) string {
	return fmt.Sprintf("- %8d - - %s %q\n", ent.size, ent.time.In(bisync.TZ).Format(listingTimeFormat), name)
}
