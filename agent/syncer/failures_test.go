package syncer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

func failedPaths(fs []Failure) map[string]Failure {
	out := map[string]Failure{}
	for _, f := range fs {
		out[f.Path] = f
	}
	return out
}

// A folder replaced by a file of the same name on one side, and a file by
// a folder on the other: the pass syncs everything else and lists the two
// with what to do; the next tries resolve them once the sides agree (every
// pass failed on them, --resync too).
func TestFileFolderSwapSyncsTheRest(t *testing.T) {
	for name, start := range clouds() {
		t.Run(name, func(t *testing.T) {
			c := start(t)
			p := newGuardPair(t, c, "laptop", nil)
			seed(t, p, 12)
			p.write(t, "x/a.md", "a")
			p.write(t, "y", "a file")
			p.pass(t, PassOptions{})

			if err := os.RemoveAll(filepath.Join(p.local, "x")); err != nil {
				t.Fatal(err)
			}
			p.write(t, "x", "now a file")
			c.del(t, "y")
			c.put(t, "y/b.md", "now a folder")
			p.write(t, "other.md", "an unrelated note")
			c.put(t, "theirs.md", "an unrelated note of theirs")

			res := p.pass(t, PassOptions{})
			got := failedPaths(res.Failures)
			t.Logf("failures: %+v", res.Failures)
			if len(got) == 0 {
				t.Fatal("no failures reported")
			}
			for _, f := range res.Failures {
				if f.Reason != FailKindClash || !strings.Contains(f.Advice, "rename") {
					t.Errorf("failure %+v: want a file/folder clash with advice", f)
				}
			}
			if c.files(t)["other.md"] != "an unrelated note" || readLocal(t, p, "theirs.md") != "an unrelated note of theirs" {
				t.Errorf("the rest did not sync: bucket %v", keys(c.files(t)))
			}
			// later tries (here at once, as `sync` asks): the two resolve
			for i := 0; i < 3 && len(res.Failures) > 0; i++ {
				res = p.pass(t, PassOptions{RetryFailed: true})
			}
			if len(res.Failures) != 0 {
				t.Fatalf("still failing: %+v", res.Failures)
			}
			want := map[string]string{"x": "now a file", "y/b.md": "now a folder"}
			files, local := c.files(t), p.files(t)
			for k, v := range want {
				if files[k] != v || local[k] != v {
					t.Errorf("%s: bucket %q, local %q, want %q", k, files[k], local[k], v)
				}
			}
		})
	}
}

// An object whose name this file system cannot hold (a segment over 255
// bytes), from an S3 that allows it: everything else syncs, the name is
// listed with the advice, and nothing is deleted from the bucket for it.
func TestUnholdableObjectNameSyncsTheRest(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 12)
	p.pass(t, PassOptions{})
	long := "dir/" + strings.Repeat("n", 300) + ".md"
	s3.put(long, "a note with a long name")
	s3.put("fine.md", "fine")
	p.write(t, "mine.md", "mine")
	res := p.pass(t, PassOptions{})
	got := failedPaths(res.Failures)
	if f, ok := got[long]; !ok || f.Reason != FailNameTooLong || f.Side != SideLocal {
		t.Fatalf("failures = %+v, want the long name (too long, local side)", res.Failures)
	}
	if readLocal(t, p, "fine.md") != "fine" || s3.objects()["mine.md"] != "mine" {
		t.Errorf("the rest did not sync")
	}
	for i := 0; i < 2; i++ {
		res = p.pass(t, PassOptions{RetryFailed: true})
	}
	if _, ok := failedPaths(res.Failures)[long]; !ok {
		t.Errorf("the long name left the list though it still cannot sync")
	}
	if s3.objects()[long] != "a note with a long name" {
		t.Errorf("the object was deleted from the bucket")
	}
	// renamed where it was made: it syncs, and leaves the list
	s3.del(long)
	s3.put("dir/short.md", "a note with a long name")
	res = p.pass(t, PassOptions{RetryFailed: true})
	if len(res.Failures) != 0 || readLocal(t, p, "dir/short.md") != "a note with a long name" {
		t.Errorf("after the rename: failures %+v", res.Failures)
	}
}

// A full disk is not a path's failure: the pass fails with ErrDiskFull,
// and no path is set aside for it.
func TestClassifyFailure(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
		global bool
	}{
		{&os.PathError{Op: "open", Path: "/n/a", Err: syscall.EACCES}, FailPermission, false},
		{&os.PathError{Op: "mkdir", Path: "/n/y", Err: syscall.ENOTDIR}, FailKindClash, false},
		{&os.PathError{Op: "open", Path: "/n/x", Err: syscall.EISDIR}, FailKindClash, false},
		{&os.PathError{Op: "open", Path: "/n/l", Err: syscall.ENAMETOOLONG}, FailNameTooLong, false},
		{&os.PathError{Op: "write", Path: "/n/b", Err: syscall.ENOSPC}, "", true},
		{fmt.Errorf("copy: %w", &os.PathError{Op: "write", Path: "/n/b", Err: syscall.EDQUOT}), "", true},
		{fmt.Errorf("put: %w", &smithy.GenericAPIError{Code: "XMinioInvalidObjectName"}), FailBadName, false},
		{fmt.Errorf("put: %w", &smithy.GenericAPIError{Code: "KeyTooLongError"}), FailNameTooLong, false},
		{fmt.Errorf("put: %w", &smithy.GenericAPIError{Code: "QuotaExceeded"}), FailBucketFull, false},
		{fmt.Errorf("put: %w", &smithy.GenericAPIError{Code: "XMinioAdminBucketQuotaExceeded"}), FailBucketFull, false},
		{errors.New("something else"), FailOther, false},
	} {
		f, global := classifyFailure(SideLocal, "p", tc.err)
		if (global != nil) != tc.global || (!tc.global && f.Reason != tc.reason) {
			t.Errorf("%v: %+v, global %v", tc.err, f, global)
		}
		if global != nil && !errors.Is(global, ErrDiskFull) {
			t.Errorf("%v: global %v, want ErrDiskFull", tc.err, global)
		}
		if !tc.global && f.Advice == "" {
			t.Errorf("%v: no advice", tc.err)
		}
	}
	if globEscape(`a*b?[c]{d}\e`) != `a\*b\?\[c\]\{d\}\\e` {
		t.Errorf("globEscape = %s", globEscape(`a*b?[c]{d}\e`))
	}
	if d := failureRetry(1); d != time.Minute {
		t.Errorf("first retry after %v", d)
	}
}

// A file and a folder this user may not read: the pass syncs the rest and
// lists them with the fix (the pass used to abort with "bisync aborted:
// <nil>"); once readable again they sync and leave the list. The bucket's
// copies are never deleted for them meanwhile.
func TestUnreadableEntriesSyncTheRest(t *testing.T) {
	if asUser(t) {
		return
	}
	c := clouds()["embedded"](t)
	p := newGuardPair(t, c, "laptop", nil)
	seed(t, p, 12)
	p.write(t, "private/kept.md", "in the bucket before it was locked")
	p.write(t, "gone.md", "synced, then locked, then deleted")
	p.pass(t, PassOptions{})
	// edited, and unreadable: set aside; then deleted while set aside
	p.write(t, "gone.md", "an edit nobody can read")
	if err := os.Chmod(filepath.Join(p.local, "gone.md"), 0); err != nil {
		t.Fatal(err)
	}

	p.write(t, "locked.md", "cannot be read")
	p.write(t, "private/new.md", "cannot be listed")
	p.write(t, "open.md", "fine")
	lockedPath, privateDir := filepath.Join(p.local, "locked.md"), filepath.Join(p.local, "private")
	if err := os.Chmod(lockedPath, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(privateDir, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(privateDir, 0o755); os.Chmod(lockedPath, 0o644) })
	c.put(t, "theirs.md", "from the other device")

	res := p.pass(t, PassOptions{})
	got := failedPaths(res.Failures)
	t.Logf("failures: %+v", res.Failures)
	if f := got["locked.md"]; f.Reason != FailPermission || f.Side != SideLocal || !strings.Contains(f.Advice, "permission") {
		t.Errorf("locked.md: %+v", f)
	}
	if f := got["private"]; f.Reason != FailPermission || !f.Dir {
		t.Errorf("private: %+v", f)
	}
	files := c.files(t)
	if files["open.md"] != "fine" || readLocal(t, p, "theirs.md") != "from the other device" {
		t.Errorf("the rest did not sync: bucket %v", keys(files))
	}
	if files["private/kept.md"] != "in the bucket before it was locked" {
		t.Errorf("the bucket's copy of a note in the unreadable folder went: %v", keys(files))
	}

	if _, ok := got["gone.md"]; !ok {
		t.Errorf("gone.md was not set aside: %+v", res.Failures)
	}
	if err := os.Remove(filepath.Join(p.local, "gone.md")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(privateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(lockedPath, 0o644); err != nil {
		t.Fatal(err)
	}
	res = p.pass(t, PassOptions{RetryFailed: true})
	// deleted while it was set aside: a delete, not a note to download
	if _, err := os.Stat(filepath.Join(p.local, "gone.md")); err == nil {
		t.Errorf("gone.md came back after it was deleted")
	}
	if _, ok := c.files(t)["gone.md"]; ok {
		t.Errorf("gone.md is still in the bucket after it was deleted")
	}
	if len(res.Failures) != 0 {
		t.Errorf("still failing once readable: %+v", res.Failures)
	}
	files = c.files(t)
	for k, v := range map[string]string{"locked.md": "cannot be read", "private/new.md": "cannot be listed", "private/kept.md": "in the bucket before it was locked"} {
		if files[k] != v {
			t.Errorf("bucket %s = %q, want %q", k, files[k], v)
		}
	}
}

// An object whose name is not UTF-8 (S3 allows it; rclone cannot read it
// back under the name it lists): everything else syncs, and the object is
// listed with what to do (every pass failed on it).
func TestNonUTF8ObjectNameSyncsTheRest(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 12)
	p.pass(t, PassOptions{})
	s3.put("bad\xffname.md", "a name that is not text")
	s3.put("fine.md", "fine")
	res := p.pass(t, PassOptions{})
	if len(res.Failures) != 1 || res.Failures[0].Reason != FailBadName || res.Failures[0].Side != SideCloud {
		t.Fatalf("failures = %+v, want the object with the bad name", res.Failures)
	}
	if readLocal(t, p, "fine.md") != "fine" {
		t.Errorf("the rest did not sync")
	}
	if res := p.pass(t, PassOptions{RetryFailed: true}); len(res.Failures) != 1 {
		t.Errorf("second pass: failures %+v", res.Failures)
	}
	if _, ok := s3.objects()["bad\xffname.md"]; !ok {
		t.Error("the object was deleted from the bucket")
	}
}

func TestIsNetworkFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		extra []string
		want  bool
	}{
		{"chain kept", fmt.Errorf("put: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), nil, true},
		{"chain lost, message kept", errors.New(`RequestError: send request failed caused by: Get "http://127.0.0.1:1/b": dial tcp 127.0.0.1:1: connect: connection refused`), nil, true},
		{"in bisync's critical line", errors.New("bisync aborted"), []string{"Bisync critical error: dial tcp 127.0.0.1:9000: i/o timeout"}, true},
		{"an answer that said no", errors.New("AccessDenied: Access Denied status code: 403"), nil, false},
		{"a local error", errors.New("open /notes/a.md: permission denied"), nil, false},
	} {
		if got := isNetworkFailure(tc.err, tc.extra...); got != tc.want {
			t.Errorf("%s: isNetworkFailure = %v, want %v", tc.name, got, tc.want)
		}
	}
}
