package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	rfs "github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/filter"
	rclonefile "github.com/rclone/rclone/lib/file"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// Why a pass syncs what it can and lists the rest.
//
// One path a side cannot take (a file that cannot be read, a folder on
// one side where the other has a file, a name too long for this file
// system) used to fail the whole pass, every pass, --resync too. Now a
// pass that fails on some paths records them as Failures, makes bisync
// forget them (they leave both listings, and a filter keeps them out of
// the next listings), and runs again at once: everything else syncs. A
// failed path is tried again later (after 1, 5, 15 minutes, then every
// hour; at once on a sync the person asks for), and leaves the list when
// a pass that tried it went through. Nothing is deleted on either side
// for a failed path: to bisync it is simply not there.

// Reasons of a [Failure].
const (
	FailPermission  = "permission"        // the side may not read or write it
	FailKindClash   = "file_folder_clash" // a folder on one side, a file on the other
	FailNameTooLong = "name_too_long"     // a name longer than this file system allows
	FailBadName     = "bad_name"          // a name this file system cannot hold
	FailBucketFull  = "bucket_full"       // the bucket's quota refused its upload
	FailOther       = "other"
)

// errListedNotReadable: a side listed a file that it then says is not
// there when it is read: an object whose name does not survive the trip
// (bytes that are not UTF-8), or one deleted in between (which the next
// try finds gone).
var errListedNotReadable = errors.New("listed, but not found when read")

// ErrDiskFull: the disk holding the notes folder (or the agent's state)
// is full. Nothing was lost; passes fail until there is room.
var ErrDiskFull = errors.New("the disk is full")

// quotaCodes are the S3 error codes of a write refused by the bucket's
// quota: bm-server's embedded endpoint (and Ceph's gateway) answer
// QuotaExceeded, MinIO XMinioAdminBucketQuotaExceeded.
var quotaCodes = []string{"QuotaExceeded", "XMinioAdminBucketQuotaExceeded"}

// Failure is a path a pass could not sync, and why.
type Failure struct {
	Path string `json:"path"`
	// Dir: the path is a folder, and everything under it is skipped.
	Dir bool `json:"dir,omitempty"`
	// Side is where it failed: SideLocal or SideCloud.
	Side   string `json:"side"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
	// Advice says what to do, in a person's words.
	Advice  string    `json:"advice"`
	Since   time.Time `json:"since"`
	Last    time.Time `json:"last"`
	Tries   int       `json:"tries"`
	RetryAt time.Time `json:"retry_at"`
	// Transient: a passing trouble (the file changed or went while the
	// pass read it); the next pass tries it again, and people need not
	// hear of it.
	Transient bool `json:"transient,omitempty"`
	// Lines are the path's lines in bisync's two listings when it was set
	// aside; they go back in when it is tried again, so bisync compares it
	// with what both sides had (a delete meanwhile is then a delete, not
	// a new file on the other side).
	Lines [2][]string `json:"lines,omitempty"`
}

// failureRetry is the wait before the nth try of a failed path.
func failureRetry(tries int) time.Duration {
	switch {
	case tries <= 1:
		return time.Minute
	case tries == 2:
		return 5 * time.Minute
	case tries == 3:
		return 15 * time.Minute
	}
	return time.Hour
}

// classifyFailure turns the error of an operation on path into a Failure
// (without its times), or reports global when the error is not the
// path's but the side's (a full disk).
func classifyFailure(side, path string, err error) (f Failure, global error) {
	f = Failure{Path: path, Side: side, Reason: FailOther, Error: err.Error()}
	where := "in the notes folder"
	if side == SideCloud {
		where = "in the bucket"
	}
	var apiErr smithy.APIError
	switch {
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, rclonefile.ErrDiskFull):
		return f, fmt.Errorf("%w: %w", ErrDiskFull, err)
	case errors.As(err, &apiErr) && slices.Contains(quotaCodes, apiErr.ErrorCode()):
		// the file's own upload: the rest of the pass (downloads, smaller
		// changes that fit) goes on
		f.Reason = FailBucketFull
		f.Advice = "the cloud storage is full (the bucket refused it past its quota): delete notes you no longer need, or move to a plan with more room; bm-agent uploads it again by itself"
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		f.Reason = FailPermission
		f.Advice = "bm-agent may not read or write it " + where + ": check its permissions (and its folder's)"
	case errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EEXIST) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode() == "XMinioParentIsObject" || apiErr.ErrorCode() == "XMinioObjectExistsAsDirectory" ||
			apiErr.ErrorCode() == "InvalidRequest" && strings.Contains(apiErr.ErrorMessage(), "prefix")):
		f.Reason = FailKindClash
		f.Advice = "a folder and a file have the same name, one on each side (or on the way to it): rename one of them"
	case errors.Is(err, syscall.ENAMETOOLONG) || errors.As(err, &apiErr) && apiErr.ErrorCode() == "KeyTooLongError":
		f.Reason = FailNameTooLong
		f.Advice = "its name is too long for " + where + ": rename it where it was made"
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "XMinioInvalidObjectName":
		// MinIO's answer (and bm-server's, for a part of the name over
		// 255 bytes) to a name it cannot keep
		f.Reason = FailBadName
		f.Advice = "the bucket cannot keep its name (a part of it over 255 bytes, say): rename it where it was made"
	case errors.Is(err, errListedNotReadable):
		f.Reason = FailBadName
		f.Advice = "it is listed " + where + " but cannot be read there (a name with bytes that are not text, say): rename it where it was made"
	case errors.Is(err, syscall.EILSEQ) || errors.Is(err, syscall.EINVAL):
		f.Reason = FailBadName
		f.Advice = "its name cannot be a file name " + where + ": rename it where it was made"
	default:
		f.Advice = "bm-agent tries it again by itself; if it keeps failing, `bm-agent logs` has the details"
	}
	return f, nil
}

// failureSet is the pair's failed paths, kept in the work dir.
type failureSet struct {
	path string
	mu   sync.Mutex
	m    map[string]*Failure
}

func loadFailures(path string) *failureSet {
	s := &failureSet{path: path, m: map[string]*Failure{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return s
	}
	var list []Failure
	if json.Unmarshal(b, &list) == nil {
		for i := range list {
			s.m[list[i].Path] = &list[i]
		}
	}
	return s
}

func (s *failureSet) saveLocked() error {
	list := s.listLocked()
	if len(list) == 0 {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, b, 0o600)
}

func (s *failureSet) listLocked() []Failure {
	out := make([]Failure, 0, len(s.m))
	for _, f := range s.m {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// list returns the failed paths, sorted.
func (s *failureSet) list() []Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked()
}

// split returns the failed paths a pass at now skips (not due for a try)
// and the ones it tries again (all of them with retryAll).
func (s *failureSet) split(now time.Time, retryAll bool) (skip, retry []Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.listLocked() {
		if retryAll || !now.Before(f.RetryAt) {
			retry = append(retry, f)
		} else {
			skip = append(skip, f)
		}
	}
	return skip, retry
}

// add records new failures at now (a path already failed counts a try).
func (s *failureSet) add(fails []Failure, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fails {
		if old, ok := s.m[f.Path]; ok {
			f.Since, f.Tries = old.Since, old.Tries
			for i := range f.Lines {
				if len(f.Lines[i]) == 0 {
					f.Lines[i] = old.Lines[i]
				}
			}
		} else {
			f.Since = now
		}
		f.Tries++
		f.Last = now
		f.RetryAt = now.Add(failureRetry(f.Tries))
		if f.Transient {
			f.RetryAt = now
		}
		c := f
		s.m[f.Path] = &c
	}
	return s.saveLocked()
}

// clear forgets the paths that went through.
func (s *failureSet) clear(paths []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.m)
	for _, p := range paths {
		delete(s.m, p)
	}
	if len(s.m) == n {
		return nil
	}
	return s.saveLocked()
}

// exclusionRules are rclone filter rules that keep failed paths out of a
// pass: "- /path" for a file, "- /dir/**" for a folder.
func exclusionRules(fails []Failure) []string {
	out := make([]string, 0, len(fails))
	for _, f := range fails {
		r := "/" + globEscape(f.Path)
		if f.Dir {
			r += "/**"
		}
		out = append(out, r)
	}
	return out
}

// globEscape escapes what rclone's glob syntax gives a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\*?[]{}`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// covers reports whether the failure f is for name (or a folder above it).
func (f Failure) covers(name string) bool {
	return name == f.Path || f.Dir && strings.HasPrefix(name, f.Path+"/")
}

// PartialSuffix ends the name rclone gives a download in progress
// (name.<8 hex>.bmpart). Files so named never sync, and ones a killed pass
// left are removed before the next (see the journal).
const PartialSuffix = ".bmpart"

// partialSuffix matches a download's partial name: its failure is the
// final name's.
var partialSuffix = regexp.MustCompile(`\.[0-9a-f]{8}` + regexp.QuoteMeta(PartialSuffix) + `$`)

// finalName is the note a (possibly partial) path is written for.
func finalName(path string) string { return partialSuffix.ReplaceAllString(path, "") }

// pathTrouble reports whether err is a path's own trouble (a file
// system's answer about it, or S3 refusing that key), not the side's as a
// whole (offline, a revoked key, a server error), which must not get the
// path set aside; and whether the trouble is passing (the file changed or
// went while it was read), so the next pass can try it again.
func pathTrouble(err error) (isPath, transient bool) {
	if errors.Is(err, rclonefile.ErrDiskFull) {
		return true, false // classifyFailure makes it the side's
	}
	if errors.Is(err, errListedNotReadable) {
		return true, false
	}
	if errors.Is(err, rfs.ErrorObjectNotFound) {
		return true, true // gone from the bucket while the pass read it
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if errno == syscall.ENOENT {
			return true, true // gone while the pass read it
		}
		return slices.Contains(pathErrnos, errno), false
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && slices.Contains(transientCodes, apiErr.ErrorCode()) {
		return true, true
	}
	if errors.As(err, &apiErr) && slices.Contains(quotaCodes, apiErr.ErrorCode()) {
		return true, false // this upload's: it waits, the rest syncs
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		st := re.Response.StatusCode
		return st >= 400 && st < 500 && st != 401 && st != 403 && st != 408 && st != 412 && st != 429, false
	}
	return false, false
}

// pathErrnos are the file system's answers that are about a path: it may
// not be read or written, a file or folder is in its way, its name does
// not fit; and a full disk, which classifyFailure makes the side's.
var pathErrnos = []syscall.Errno{
	syscall.EACCES, syscall.EPERM, syscall.ENOTDIR, syscall.EISDIR, syscall.EEXIST,
	syscall.ENAMETOOLONG, syscall.EILSEQ, syscall.EINVAL, syscall.ELOOP,
	syscall.ENOSPC, syscall.EDQUOT,
}

// transientCodes are S3 refusals of one upload that the next pass does not
// meet: the file changed while it was read (its checksum or size no
// longer matched), or the request took too long.
var transientCodes = []string{"BadDigest", "InvalidDigest", "IncompleteBody", "XAmzContentSHA256Mismatch", "RequestTimeout"}

// withExclusions returns ctx with filter rules keeping the failed paths
// out (bisync adds its filters file to the rules in ctx).
func withExclusions(ctx context.Context, fails []Failure) (context.Context, error) {
	if len(fails) == 0 {
		return ctx, nil
	}
	opt := filter.GetConfig(ctx).Opt
	opt.ExcludeRule = append(append([]string(nil), opt.ExcludeRule...), exclusionRules(fails)...)
	f, err := filter.NewFilter(&opt)
	if err != nil {
		return ctx, fmt.Errorf("skip failed paths: %w", err)
	}
	return filter.ReplaceConfig(ctx, f), nil
}
