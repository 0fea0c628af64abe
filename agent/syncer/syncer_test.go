package syncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/versions"
	"github.com/basicmachines-co/bm-agent/internal/syncbuf"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"
)

const (
	testBucket = "tenant-bucket"
	testKey    = "AKTESTKEY"
	testSecret = "s3cr3t-do-not-log-0123456789"
)

// fakeS3 is an in-process S3 endpoint on 127.0.0.1 that counts requests.
type fakeS3 struct {
	t       *testing.T
	backend *s3mem.Backend
	url     string

	mu    sync.Mutex
	count map[string]int // by method
	onPut func()         // called before each PUT is served
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	f := &fakeS3{t: t, backend: s3mem.New(), count: map[string]int{}}
	faker := gofakes3.New(f.backend, gofakes3.WithV4Auth(map[string]string{testKey: testSecret}))
	h := faker.Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.count[r.Method]++
		if q := r.URL.Query(); r.Method == http.MethodGet && q.Has("list-type") && !q.Has("delimiter") && q.Get("prefix") == "" {
			f.count[listAll]++ // a listing of the whole bucket
		}
		hook := f.onPut
		f.mu.Unlock()
		if hook != nil && r.Method == http.MethodPut {
			hook()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	if err := f.backend.CreateBucket(context.Background(), testBucket); err != nil {
		t.Fatal(err)
	}
	return f
}

// delta runs fn and returns the requests it made, by kind (only the
// kinds it made).
func (f *fakeS3) delta(fn func()) map[string]int {
	before := f.requests()
	fn()
	out := map[string]int{}
	for m, n := range f.requests() {
		if n != before[m] {
			out[m] = n - before[m]
		}
	}
	return out
}

func (f *fakeS3) requests() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.count {
		out[k] = v
	}
	return out
}

func (f *fakeS3) put(name, body string) {
	f.t.Helper()
	_, err := f.backend.PutObject(context.Background(), testBucket, name, map[string]string{}, strings.NewReader(body), int64(len(body)))
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeS3) del(name string) {
	f.t.Helper()
	if _, err := f.backend.DeleteObject(context.Background(), testBucket, name); err != nil {
		f.t.Fatal(err)
	}
}

// objects returns the bucket's contents by key.
func (f *fakeS3) objects() map[string]string {
	f.t.Helper()
	ctx := context.Background()
	list, err := f.backend.ListBucket(ctx, testBucket, &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range list.Contents {
		if versions.IsVersionKey(c.Key) {
			continue // the bucket's version store
		}
		obj, err := f.backend.GetObject(ctx, testBucket, c.Key, nil)
		if err != nil {
			f.t.Fatal(err)
		}
		b, _ := io.ReadAll(obj.Contents)
		_ = obj.Contents.Close()
		out[c.Key] = string(b)
	}
	return out
}

// logBuf collects log output so tests can check no secret leaks.
type logBuf = syncbuf.Buffer

type pair struct {
	engine *Engine
	local  string
	logs   *logBuf
}

func newPair(t *testing.T, s3 *fakeS3, device string) *pair {
	t.Helper()
	dir := t.TempDir()
	local := filepath.Join(dir, "notes")
	if err := os.Mkdir(local, 0o755); err != nil {
		t.Fatal(err)
	}
	return newTestPair(t, Config{
		LocalDir: local,
		Remote:   Remote{Endpoint: s3.url, Region: "us-east-1", AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket},
		WorkDir:  filepath.Join(dir, "state", "bisync"),
		Device:   device,
	})
}

// newTestPair builds an engine for conf, logging at debug level into the
// pair's buffer, and fails the test if the secret key ever reaches it.
func newTestPair(t testing.TB, conf Config) *pair {
	t.Helper()
	logs := &logBuf{}
	conf.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := New(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), conf.Remote.SecretKey) {
			t.Errorf("the secret key appeared in the log")
		}
	})
	return &pair{engine: e, local: conf.LocalDir, logs: logs}
}

func (p *pair) pass(t *testing.T, opt PassOptions) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.engine.Pass(ctx, opt)
	if err != nil {
		t.Logf("log:\n%s", p.logs.String())
		t.Fatalf("pass: %v", err)
	}
	return res
}

func (p *pair) write(t *testing.T, name, body string) {
	t.Helper()
	path := filepath.Join(p.local, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// make every local edit clearly newer than anything before it
	future := time.Now().Add(time.Duration(len(body)) * time.Millisecond)
	_ = os.Chtimes(path, future, future)
}

func (p *pair) files(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(p.local, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(p.local, path)
		if rel == IgnoreFile {
			return nil // stays local, never synced
		}
		b, err := os.ReadFile(path)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func conflictCopies(m map[string]string, base string) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, base+".conflict-") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func seed(t *testing.T, p *pair, n int) {
	t.Helper()
	for i := range n {
		p.write(t, fmt.Sprintf("seed/n%02d.md", i), fmt.Sprintf("seed note %d", i))
	}
}

func TestFirstPassCopiesBothWaysAndSecondPassIsQuiet(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	p.write(t, "local.md", "from the laptop")
	p.write(t, "sub/deep.md", "deep")
	s3.put("remote.md", "from the cloud")

	if !p.engine.NeedsResync() {
		t.Fatal("NeedsResync before the first pass = false")
	}
	res := p.pass(t, PassOptions{Trigger: "test"})
	if !res.Resync || res.Uploaded != 2 || res.Downloaded != 1 || !res.RemoteChanged || !res.LocalChanged || res.Trigger != "test" {
		t.Fatalf("first pass result = %+v", res)
	}
	if p.engine.NeedsResync() {
		t.Fatal("NeedsResync after the first pass = true")
	}
	want := map[string]string{"local.md": "from the laptop", "sub/deep.md": "deep", "remote.md": "from the cloud"}
	assertContents(t, "local", p.files(t), want)
	assertContents(t, "bucket", s3.objects(), want)

	before := s3.requests()
	res = p.pass(t, PassOptions{Trigger: "again"})
	after := s3.requests()
	if res.Resync || res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote != 0 || res.RemoteChanged || res.LocalChanged {
		t.Fatalf("second pass result = %+v, want a quiet pass", res)
	}
	if n := after["HEAD"] - before["HEAD"]; n != 0 {
		t.Errorf("quiet pass made %d HEAD requests, want 0", n)
	}
	if n := after["PUT"] - before["PUT"]; n != 0 {
		t.Errorf("quiet pass made %d PUT requests, want 0", n)
	}
}

func TestQuietPassMakesNoPerObjectRequests(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 60)
	p.pass(t, PassOptions{})
	before := s3.requests()
	p.pass(t, PassOptions{})
	after := s3.requests()
	total := 0
	for m, n := range after {
		total += n - before[m]
	}
	// one listing for the empty check, one for bisync, no HEAD per object
	t.Logf("quiet pass over 60 files: %d requests (before %v, after %v)", total, before, after)
	if total > 4 {
		t.Errorf("quiet pass over 60 files made %d requests (%v -> %v), want a handful", total, before, after)
	}
}

// listAll counts, in fakeS3's counts, the listings of the whole bucket.
const listAll = "LIST-ALL"

// TestOneEditCostsItsOwnRequests: a pass that uploads one edited note
// lists the whole bucket no more than a quiet pass does (the listing's
// times are settled with a listing of that one key, not of the bucket),
// and the upload is not followed by a HEAD of its own (no_head: the PUT's
// answer says what the pass needs).
func TestOneEditCostsItsOwnRequests(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 60)
	p.pass(t, PassOptions{})
	quiet := s3.delta(func() { p.pass(t, PassOptions{}) })
	p.write(t, "seed/n07.md", "an edit")
	var res Result
	edit := s3.delta(func() { res = p.pass(t, PassOptions{}) })
	t.Logf("quiet pass %v, one-edit pass %v", quiet, edit)
	if res.Uploaded != 1 {
		t.Fatalf("edit pass = %+v, want one upload", res)
	}
	if edit[listAll] != quiet[listAll] {
		t.Errorf("the one-edit pass listed the whole bucket %d times, a quiet pass %d: the settle listed it again", edit[listAll], quiet[listAll])
	}
	// one PUT keeps the version it replaces (a CopyObject), one uploads;
	// no HEAD of the upload (the versions store's HEAD of its copy is
	// the one)
	if edit["PUT"] != 2 || edit["HEAD"] > 1 {
		t.Errorf("one-edit pass made %d PUTs and %d HEADs, want 2 and at most 1", edit["PUT"], edit["HEAD"])
	}
	if n := quiet[listAll]; n != 1 {
		t.Errorf("a quiet pass listed the whole bucket %d times, want 1", n)
	}
	// and the listing holds the time the bucket lists (a HEAD's has whole
	// seconds only): the next pass is quiet, with no copy that finds
	// nothing to do (and lists the note's folders to find it out)
	after := s3.delta(func() { res = p.pass(t, PassOptions{}) })
	if res.Uploaded+res.Downloaded != 0 || after["GET"] != quiet["GET"] {
		t.Errorf("the pass after the edit = %+v with requests %v, want a quiet one (%v)", res, after, quiet)
	}
}

func assertContents(t *testing.T, side string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s has %v, want %v", side, keys(got), keys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s %q = %q, want %q", side, k, got[k], v)
		}
	}
}

func TestFirstPassKeepsBothVersions(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	p.write(t, "note.md", "local version")
	p.write(t, "same.md", "identical")
	s3.put("note.md", "bucket version!")
	s3.put("same.md", "identical")

	res := p.pass(t, PassOptions{})
	if res.Conflicts != 1 {
		t.Errorf("Conflicts = %d, want 1", res.Conflicts)
	}
	local := p.files(t)
	copies := conflictCopies(local, "note")
	if len(copies) != 1 || !strings.HasSuffix(copies[0], "-cloud.md") {
		t.Fatalf("conflict copies = %v in %v", copies, keys(local))
	}
	if local["note.md"] != "local version" || local[copies[0]] != "bucket version!" {
		t.Errorf("local note.md=%q copy=%q", local["note.md"], local[copies[0]])
	}
	if got := conflictCopies(local, "same"); len(got) != 0 {
		t.Errorf("identical file got conflict copies %v", got)
	}
	assertContents(t, "bucket", s3.objects(), local)
}

func TestLaterPassesPropagateChanges(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 12)
	p.write(t, "keep-local.md", "v1")
	p.write(t, "del-local.md", "x")
	p.write(t, "keep-remote.md", "v1")
	p.write(t, "del-remote.md", "x")
	p.pass(t, PassOptions{})

	// local side
	p.write(t, "new-local.md", "new here")
	p.write(t, "keep-local.md", "v2 edited locally")
	if err := os.Remove(filepath.Join(p.local, "del-local.md")); err != nil {
		t.Fatal(err)
	}
	// remote side (another device)
	time.Sleep(10 * time.Millisecond)
	s3.put("new-remote.md", "new there")
	s3.put("keep-remote.md", "v2 edited remotely")
	s3.del("del-remote.md")

	res := p.pass(t, PassOptions{Trigger: "interval"})
	if res.Resync || res.Uploaded != 2 || res.Downloaded != 2 || res.DeletedLocal != 1 || res.DeletedRemote != 1 || res.Conflicts != 0 {
		t.Fatalf("result = %+v", res)
	}
	local := p.files(t)
	assertContents(t, "bucket", s3.objects(), local)
	for name, want := range map[string]string{
		"new-local.md": "new here", "keep-local.md": "v2 edited locally",
		"new-remote.md": "new there", "keep-remote.md": "v2 edited remotely",
	} {
		if local[name] != want {
			t.Errorf("%s = %q, want %q", name, local[name], want)
		}
	}
	for _, gone := range []string{"del-local.md", "del-remote.md"} {
		if _, ok := local[gone]; ok {
			t.Errorf("%s still exists", gone)
		}
	}
}

func TestBothSidesChangedKeepsTheLoser(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 12)
	p.write(t, "note.md", "original")
	p.pass(t, PassOptions{})

	s3.put("note.md", "remote edit")
	time.Sleep(20 * time.Millisecond)
	p.write(t, "note.md", "local edit, newer and longer")

	res := p.pass(t, PassOptions{})
	if res.Conflicts != 1 {
		t.Errorf("Conflicts = %d, want 1 (%+v)", res.Conflicts, res)
	}
	local := p.files(t)
	assertContents(t, "bucket", s3.objects(), local)
	copies := conflictCopies(local, "note")
	if len(copies) != 1 {
		t.Fatalf("conflict copies = %v in %v", copies, keys(local))
	}
	contents := []string{local["note.md"], local[copies[0]]}
	sort.Strings(contents)
	if contents[0] != "local edit, newer and longer" || contents[1] != "remote edit" {
		t.Errorf("kept %q, want both edits", contents)
	}
	if local["note.md"] != "local edit, newer and longer" {
		t.Errorf("winner note.md = %q, want the newer local edit", local["note.md"])
	}
	if !strings.HasSuffix(copies[0], "-cloud.md") {
		t.Errorf("the bucket's losing version is named %q, want a -cloud.md suffix", copies[0])
	}

	// now the bucket's edit is the newer one: the local loser keeps the device name
	p.write(t, "note.md", "local edit two")
	time.Sleep(1100 * time.Millisecond)
	s3.put("note.md", "remote edit two, newer")
	res = p.pass(t, PassOptions{})
	local = p.files(t)
	assertContents(t, "bucket", s3.objects(), local)
	if res.Conflicts != 1 || local["note.md"] != "remote edit two, newer" {
		t.Fatalf("result %+v, note.md = %q", res, local["note.md"])
	}
	var mine []string
	for _, c := range conflictCopies(local, "note") {
		if strings.HasSuffix(c, "-laptop.md") {
			mine = append(mine, c)
		}
	}
	if len(mine) != 1 || local[mine[0]] != "local edit two" {
		t.Errorf("local loser copies = %v", mine)
	}
}

func TestEmptyAndMissingFolders(t *testing.T) {
	t.Run("both empty is a no-op", func(t *testing.T) {
		s3 := newFakeS3(t)
		p := newPair(t, s3, "laptop")
		for range 2 {
			res := p.pass(t, PassOptions{})
			if res.Skipped != "both sides empty" {
				t.Fatalf("result = %+v", res)
			}
		}
	})
	t.Run("missing local folder touches nothing", func(t *testing.T) {
		s3 := newFakeS3(t)
		p := newPair(t, s3, "laptop")
		s3.put("a.md", "a")
		if err := os.Remove(p.local); err != nil {
			t.Fatal(err)
		}
		_, err := p.engine.Pass(context.Background(), PassOptions{})
		if !errors.Is(err, ErrLocalRootMissing) {
			t.Fatalf("err = %v, want ErrLocalRootMissing", err)
		}
		assertContents(t, "bucket", s3.objects(), map[string]string{"a.md": "a"})
		if _, err := os.Stat(p.local); !os.IsNotExist(err) {
			t.Errorf("local folder was created: %v", err)
		}
	})
	t.Run("emptied local folder is refused", func(t *testing.T) {
		s3 := newFakeS3(t)
		p := newPair(t, s3, "laptop")
		seed(t, p, 3)
		p.pass(t, PassOptions{})
		want := s3.objects()
		if err := os.RemoveAll(filepath.Join(p.local, "seed")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, err := p.engine.Pass(context.Background(), PassOptions{})
			if !errors.Is(err, ErrLocalRootEmpty) {
				t.Fatalf("err = %v, want ErrLocalRootEmpty", err)
			}
		}
		assertContents(t, "bucket", s3.objects(), want)
		// The hold's advice: a resync fills the folder from the bucket and
		// deletes nothing.
		res := p.pass(t, PassOptions{Resync: true})
		if !res.Resync || res.Downloaded != len(want) || res.DeletedRemote != 0 {
			t.Fatalf("resync of the emptied folder = %+v", res)
		}
		assertContents(t, "local", p.files(t), want)
		assertContents(t, "bucket", s3.objects(), want)
	})
	t.Run("new device with an empty folder downloads", func(t *testing.T) {
		s3 := newFakeS3(t)
		s3.put("a.md", "a")
		s3.put("dir/b.md", "b")
		p := newPair(t, s3, "laptop")
		res := p.pass(t, PassOptions{})
		if !res.Resync || res.Downloaded != 2 || res.RemoteChanged {
			t.Fatalf("result = %+v", res)
		}
		assertContents(t, "local", p.files(t), map[string]string{"a.md": "a", "dir/b.md": "b"})
	})
}

func TestTooManyDeletesIsRefused(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 20)
	p.pass(t, PassOptions{})
	want := s3.objects()
	for i := range 10 {
		if err := os.Remove(filepath.Join(p.local, fmt.Sprintf("seed/n%02d.md", i))); err != nil {
			t.Fatal(err)
		}
	}
	_, err := p.engine.Pass(context.Background(), PassOptions{})
	if !errors.Is(err, ErrMaxDeleteExceeded) {
		t.Fatalf("err = %v, want ErrMaxDeleteExceeded", err)
	}
	var md *MaxDeleteError
	if !errors.As(err, &md) {
		t.Fatalf("err = %v, not a *MaxDeleteError", err)
	}
	if md.Deletes != 10 || md.Total != 20 || md.Side != SideLocal || md.Percent != DefaultMaxDelete {
		t.Errorf("MaxDeleteError = %+v, want 10 of 20 local at %d%%", md, DefaultMaxDelete)
	}
	if !strings.Contains(err.Error(), "10 of 20) on Path1") {
		t.Errorf("message %q lacks the counts the daemon parses", err)
	}
	assertContents(t, "bucket", s3.objects(), want)
}

func TestLostListingsRecoverWithSafeResync(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 12)
	p.pass(t, PassOptions{})
	if err := os.RemoveAll(p.engine.cfg.WorkDir); err != nil {
		t.Fatal(err)
	}
	p.write(t, "after.md", "written while listings were gone")
	res := p.pass(t, PassOptions{})
	if !res.Resync || res.Uploaded != 1 {
		t.Fatalf("result = %+v", res)
	}
	assertContents(t, "bucket", s3.objects(), p.files(t))
	// and the pair is back to normal passes
	if res := p.pass(t, PassOptions{}); res.Resync {
		t.Fatalf("pass after recovery = %+v", res)
	}
}

func TestUnicodeAndSpaces(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	names := []string{"my notes/Über café.md", "日本語 ノート.md", "a b/c  d.md"}
	for _, n := range names {
		p.write(t, n, "body of "+n)
	}
	s3.put("from cloud/naïve résumé.md", "remote unicode")
	p.pass(t, PassOptions{})
	p.write(t, names[0], "edited body of the first note")
	res := p.pass(t, PassOptions{})
	if res.Uploaded != 1 {
		t.Errorf("edit pass result = %+v", res)
	}
	local := p.files(t)
	assertContents(t, "bucket", s3.objects(), local)
	if local["from cloud/naïve résumé.md"] != "remote unicode" {
		t.Errorf("local files = %v", keys(local))
	}
}

func TestTwoDevicesConverge(t *testing.T) {
	s3 := newFakeS3(t)
	a := newPair(t, s3, "laptop")
	b := newPair(t, s3, "desktop")
	seed(t, a, 12)
	a.write(t, "from-a.md", "a")
	a.pass(t, PassOptions{})
	b.write(t, "from-b.md", "b")
	b.pass(t, PassOptions{})
	a.pass(t, PassOptions{})

	want := a.files(t)
	if len(want) != 14 {
		t.Fatalf("device a has %v", keys(want))
	}
	assertContents(t, "device b", b.files(t), want)
	assertContents(t, "bucket", s3.objects(), want)

	// a deletion on b reaches a
	if err := os.Remove(filepath.Join(b.local, "from-a.md")); err != nil {
		t.Fatal(err)
	}
	b.pass(t, PassOptions{})
	res := a.pass(t, PassOptions{})
	if res.DeletedLocal != 1 {
		t.Errorf("device a result = %+v", res)
	}
	assertContents(t, "device a", a.files(t), b.files(t))
}

func TestDryRunChangesNothing(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	p.write(t, "a.md", "a")
	s3.put("b.md", "b")
	p.pass(t, PassOptions{DryRun: true})
	assertContents(t, "local", p.files(t), map[string]string{"a.md": "a"})
	assertContents(t, "bucket", s3.objects(), map[string]string{"b.md": "b"})
	if !p.engine.NeedsResync() {
		t.Error("a dry run established a baseline")
	}
}

func TestCancelledPassRecovers(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 12)
	p.pass(t, PassOptions{})
	for i := range 5 {
		p.write(t, fmt.Sprintf("new/%d.md", i), "new")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.engine.Pass(ctx, PassOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("pass with a cancelled context: err = %v", err)
	}

	// cancel in the middle of the uploads
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	s3.mu.Lock()
	s3.onPut = func() {
		once.Do(cancel)
		time.Sleep(20 * time.Millisecond)
	}
	s3.mu.Unlock()
	if _, err := p.engine.Pass(ctx, PassOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("pass cancelled mid-way: err = %v", err)
	}
	s3.mu.Lock()
	s3.onPut = nil
	s3.mu.Unlock()

	p.pass(t, PassOptions{})
	p.pass(t, PassOptions{})
	assertContents(t, "bucket", s3.objects(), p.files(t))
}

func TestRemoteNeverPrintsSecret(t *testing.T) {
	r := Remote{Endpoint: "http://127.0.0.1:9000", AccessKey: "AK", SecretKey: testSecret, Bucket: "b"}
	cfg := Config{Remote: r}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "remote", r)
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%v", &cfg), buf.String()} {
		if strings.Contains(s, testSecret) {
			t.Errorf("secret printed: %s", s)
		}
	}
}

func TestNewValidates(t *testing.T) {
	ok := Config{LocalDir: "/tmp/x", WorkDir: "/tmp/w", Remote: Remote{Endpoint: "http://127.0.0.1:1", AccessKey: "a", SecretKey: "s", Bucket: "b"}}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"no local dir", func(c *Config) { c.LocalDir = "" }},
		{"no work dir", func(c *Config) { c.WorkDir = "" }},
		{"no bucket", func(c *Config) { c.Remote.Bucket = "" }},
		{"no secret", func(c *Config) { c.Remote.SecretKey = "" }},
		{"bad max delete", func(c *Config) { c.MaxDelete = 101 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			if _, err := New(context.Background(), c); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
	if _, err := New(context.Background(), ok); err != nil {
		t.Fatalf("New(valid) = %v", err)
	}
}

func TestConflictNameAndDevice(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"note.md", "note.conflict-20261123-143000-laptop.md"},
		{"dir/sub/note.md", "dir/sub/note.conflict-20261123-143000-laptop.md"},
		{"README", "README.conflict-20261123-143000-laptop"},
		{".hidden", ".hidden.conflict-20261123-143000-laptop"},
		{"a.b/c.tar.gz", "a.b/c.tar.conflict-20261123-143000-laptop.gz"},
	}
	for _, tt := range tests {
		if got := conflictName(tt.remote, "20261123-143000", "laptop"); got != tt.want {
			t.Errorf("conflictName(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
	for in, want := range map[string]string{"Paul's MacBook Pro": "Paul-s-MacBook-Pro", "": "device", "a,b{c}.d": "a-b-c-d"} {
		if got := sanitizeDevice(in); got != want {
			t.Errorf("sanitizeDevice(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestQuickPass: with the changed paths known (PassOptions.Paths), a pass
// syncs edits made here alone: it lists neither side, keeps the replaced
// version, and leaves listings the next full pass finds in step. A delete,
// an object that changed in the bucket too, or an unknown path get the
// full pass, with its checks.
func TestQuickPass(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 60)
	p.pass(t, PassOptions{})
	quiet := s3.delta(func() { p.pass(t, PassOptions{}) })

	// an edit and a new note: quick, no listing of either side
	p.write(t, "seed/n07.md", "an edit")
	p.write(t, "new/idea.md", "a new note")
	var res Result
	req := s3.delta(func() { res = p.pass(t, PassOptions{Paths: []string{"new/idea.md", "seed/n07.md"}}) })
	t.Logf("quick pass %+v, requests %v", res, req)
	if !res.Quick || res.Uploaded != 2 || res.VersionsKept != 1 || !res.RemoteChanged {
		t.Fatalf("quick pass = %+v, want a quick one uploading 2 and keeping the replaced version", res)
	}
	if req[listAll] != 0 {
		t.Errorf("the quick pass listed the whole bucket %d times", req[listAll])
	}
	if got := s3.objects(); got["seed/n07.md"] != "an edit" || got["new/idea.md"] != "a new note" {
		t.Errorf("bucket after the quick pass: n07 %q, idea %q", got["seed/n07.md"], got["new/idea.md"])
	}
	// the listings are as a full pass would leave them: the next one is quiet
	after := s3.delta(func() { res = p.pass(t, PassOptions{}) })
	if res.Quick || res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote != 0 || after["GET"] != quiet["GET"] {
		t.Errorf("the full pass after the quick one = %+v, requests %v; want a quiet one (%v)", res, after, quiet)
	}

	// nothing changed at those paths (an editor's temp file come and gone,
	// an ignored file): quick, and nothing to do
	p.write(t, ".obsidian/workspace.json", "{}")
	if res := p.pass(t, PassOptions{Paths: []string{".obsidian/workspace.json", "gone.tmp~", "seed/n01.md"}}); !res.Quick || res.Uploaded != 0 {
		t.Errorf("pass over unchanged paths = %+v, want quick with nothing to do", res)
	}

	// the bucket changed too: the full pass, which keeps both versions
	p.write(t, "seed/n08.md", "edited here")
	s3.put("seed/n08.md", "edited on another device, later")
	if res := p.pass(t, PassOptions{Paths: []string{"seed/n08.md"}}); res.Quick || res.Conflicts != 1 {
		t.Errorf("pass over a note changed on both sides = %+v, want the full pass with 1 conflict", res)
	}

	// a delete: the full pass
	if err := os.Remove(filepath.Join(p.local, "seed", "n09.md")); err != nil {
		t.Fatal(err)
	}
	if res := p.pass(t, PassOptions{Paths: []string{"seed/n09.md"}}); res.Quick || res.DeletedRemote != 1 {
		t.Errorf("pass over a delete = %+v, want the full pass deleting it in the bucket", res)
	}
	if _, ok := s3.objects()["seed/n09.md"]; ok {
		t.Error("seed/n09.md still in the bucket")
	}
}

// TestQuickRemotePass: the bucket's changes another device announced,
// by key, are downloaded alone when the files here are as the last pass
// left them; anything else is the full pass's.
func TestQuickRemotePass(t *testing.T) {
	s3 := newFakeS3(t)
	p := newPair(t, s3, "laptop")
	seed(t, p, 60)
	p.pass(t, PassOptions{})
	quiet := s3.delta(func() { p.pass(t, PassOptions{}) })

	// an edit and a new note in the bucket: quick, no listing of either
	// side, the replaced local version kept
	s3.put("seed/n07.md", "edited on the desk")
	s3.put("new/from desk.md", "a new note")
	var res Result
	req := s3.delta(func() {
		res = p.pass(t, PassOptions{RemotePaths: []string{"new/from desk.md", "seed/n07.md", ".bm-versions/seed/n07.md/~v/x"}})
	})
	t.Logf("quick pass %+v, requests %v", res, req)
	if !res.Quick || res.Downloaded != 2 || res.VersionsKept != 1 || res.RemoteChanged || !res.LocalChanged {
		t.Fatalf("quick pass = %+v, want a quick one downloading 2 and keeping the replaced version", res)
	}
	if req[listAll] != 0 {
		t.Errorf("the quick pass listed the whole bucket %d times", req[listAll])
	}
	if got := p.files(t); got["seed/n07.md"] != "edited on the desk" || got["new/from desk.md"] != "a new note" {
		t.Errorf("folder after the quick pass: n07 %q, new %q", got["seed/n07.md"], got["new/from desk.md"])
	}
	if !slices.Contains(res.LocalWrites, "seed/n07.md") || !slices.Contains(res.LocalWrites, "new/from desk.md") {
		t.Errorf("LocalWrites = %q, want the two downloads (the watcher takes them as the pass's own)", res.LocalWrites)
	}
	kept, err := p.engine.VersionsOf(t.Context(), "seed/n07.md")
	if err != nil || len(kept) == 0 {
		t.Errorf("versions of seed/n07.md = %v, %v; want the replaced one kept", kept, err)
	}
	// the listings are as a full pass would leave them: the next one is quiet
	after := s3.delta(func() { res = p.pass(t, PassOptions{}) })
	if res.Quick || res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote != 0 || after["GET"] != quiet["GET"] {
		t.Errorf("the full pass after the quick one = %+v, requests %v; want a quiet one (%v)", res, after, quiet)
	}

	// keys as the last pass left them (our own write come back): quick,
	// nothing to do
	if res := p.pass(t, PassOptions{RemotePaths: []string{"seed/n01.md", "gone.md"}}); !res.Quick || res.Downloaded != 0 {
		t.Errorf("pass over unchanged keys = %+v, want quick with nothing to do", res)
	}

	tests := []struct {
		name   string
		change func()
		opt    PassOptions
		check  func(Result) bool
		want   string
	}{
		{"changed here too", func() {
			p.write(t, "seed/n08.md", "edited here")
			s3.put("seed/n08.md", "edited on the desk, later")
		}, PassOptions{RemotePaths: []string{"seed/n08.md"}}, func(r Result) bool { return r.Conflicts == 1 }, "the full pass with 1 conflict"},
		{"deleted in the bucket", func() { s3.del("seed/n09.md") },
			PassOptions{RemotePaths: []string{"seed/n09.md"}}, func(r Result) bool { return r.DeletedLocal == 1 }, "the full pass deleting it here"},
		{"changed on both sides, as the watcher and the events say", func() {
			p.write(t, "seed/n10.md", "edited here")
			s3.put("seed/n10.md", "edited on the desk, later")
		}, PassOptions{Paths: []string{"seed/n10.md"}, RemotePaths: []string{"seed/n10.md"}}, func(r Result) bool { return r.Conflicts == 1 }, "the full pass with 1 conflict"},
		{"deleted here", func() {
			if err := os.Remove(filepath.Join(p.local, "seed", "n11.md")); err != nil {
				t.Fatal(err)
			}
			s3.put("seed/n11.md", "edited on the desk")
		}, PassOptions{RemotePaths: []string{"seed/n11.md"}}, func(r Result) bool { return r.Downloaded == 1 }, "the full pass bringing the edit back"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.change()
			if res := p.pass(t, tc.opt); res.Quick || !tc.check(res) {
				t.Errorf("pass = %+v, want %s", res, tc.want)
			}
		})
	}

	// a note typed here while the quick pass downloads over it: kept as a
	// conflict file, the bucket's version in place
	s3.put("seed/n12.md", "edited on the desk")
	p.engine.beforeReplace = once(SideLocal, "seed/n12.md", func() { p.write(t, "seed/n12.md", "typed during the pass") })
	res = p.pass(t, PassOptions{RemotePaths: []string{"seed/n12.md"}})
	p.engine.beforeReplace = nil
	got := p.files(t)
	if !res.Quick || got["seed/n12.md"] != "edited on the desk" {
		t.Errorf("quick pass over a note typed meanwhile = %+v, note %q", res, got["seed/n12.md"])
	}
	if c := conflictCopies(got, "seed/n12"); len(c) != 1 || got[c[0]] != "typed during the pass" {
		t.Errorf("conflict files of seed/n12 = %q, want one holding what was typed", c)
	}
	// and the next full pass takes the conflict file to the bucket
	p.pass(t, PassOptions{})
	assertContents(t, "bucket", s3.objects(), p.files(t))
}
