package syncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rclone/rclone/cmd/bisync/bilib"

	"github.com/basicmachines-co/bm-agent/agent/versions"
	"github.com/basicmachines-co/bm-agent/server/s3embed/s3test"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
)

var (
	minioOnce sync.Once
	minioSrv  *miniotest.Server
	minioErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if minioSrv != nil {
		minioSrv.Stop()
	}
	os.Exit(code)
}

// sharedMinIO is one MinIO for the package's tests (started on first use).
func sharedMinIO(t *testing.T) *miniotest.Server {
	t.Helper()
	minioOnce.Do(func() { minioSrv, minioErr = miniotest.StartServer() })
	miniotest.Need(t, minioErr)
	return minioSrv
}

// cloud is a bucket with a bucket-scoped key, on a server users have, and
// an S3 client to play "another device" with.
type cloud struct {
	remote Remote
	c      *s3.Client
}

// clouds are the S3 servers the engine's guarantees are tested on.
func clouds() map[string]func(t *testing.T) cloud {
	return map[string]func(t *testing.T) cloud{
		"embedded": func(t *testing.T) cloud {
			ep := s3test.Start(t, "", s3test.Key{AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket})
			return cloud{remote: Remote{Endpoint: ep.URL, Region: s3test.Region, AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}, c: ep.Client()}
		},
		"minio": func(t *testing.T) cloud {
			srv := sharedMinIO(t)
			bucket, key := srv.Bucket(t, "guard")
			return cloud{remote: Remote{Endpoint: srv.URL, Region: miniotest.Region, AccessKey: key.AccessKey, SecretKey: key.SecretKey, Bucket: bucket}, c: srv.Client(key)}
		},
	}
}

func (c cloud) put(t *testing.T, key, body string) {
	t.Helper()
	if _, err := c.c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(c.remote.Bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
		t.Fatalf("cloud put %s: %v", key, err)
	}
}

func (c cloud) del(t *testing.T, key string) {
	t.Helper()
	if _, err := c.c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(c.remote.Bucket), Key: aws.String(key)}); err != nil {
		t.Fatalf("cloud delete %s: %v", key, err)
	}
}

// files is the bucket's notes (the version store left out).
func (c cloud) files(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	p := s3.NewListObjectsV2Paginator(c.c, &s3.ListObjectsV2Input{Bucket: aws.String(c.remote.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if versions.IsVersionKey(k) {
				continue
			}
			g, err := c.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.remote.Bucket), Key: aws.String(k)})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(g.Body)
			g.Body.Close()
			out[k] = string(b)
		}
	}
	return out
}

func newGuardPair(t *testing.T, c cloud, device string, cfg func(*Config)) *pair {
	t.Helper()
	dir := t.TempDir()
	local := filepath.Join(dir, "notes")
	if err := os.Mkdir(local, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := Config{LocalDir: local, Remote: c.remote, WorkDir: filepath.Join(dir, "state"), Device: device}
	if cfg != nil {
		cfg(&conf)
	}
	return newTestPair(t, conf)
}

// versionContents reads every kept version of path on both sides.
func versionContents(t *testing.T, p *pair, path string) (local, cloudSide map[string]string) {
	t.Helper()
	ctx := context.Background()
	lv, cv := p.engine.Versions()
	local, cloudSide = map[string]string{}, map[string]string{}
	vs, err := lv.List(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		r, _, err := lv.Open(v.ID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		local[string(b)] = v.Reason
	}
	vs, err = cv.List(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		r, _, err := cv.Open(ctx, path, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		cloudSide[string(b)] = v.Reason
	}
	return local, cloudSide
}

// somewhere reports where body is: at path, in a conflict file of path,
// or in a version store, on either side ("" if nowhere: lost).
func somewhere(t *testing.T, p *pair, c cloud, path, body string) string {
	t.Helper()
	for side, files := range map[string]map[string]string{"local": p.files(t), "cloud": c.files(t)} {
		for name, b := range files {
			if b != body {
				continue
			}
			if name == path {
				return side + " " + path
			}
			if strings.HasPrefix(name, strings.TrimSuffix(path, ".md")+".conflict-") {
				return side + " conflict file " + name
			}
		}
	}
	lv, cv := versionContents(t, p, path)
	if r, ok := lv[body]; ok {
		return "local versions (" + r + ")"
	}
	if r, ok := cv[body]; ok {
		return "cloud versions (" + r + ")"
	}
	return ""
}

func conflictFiles(m map[string]string, path string) map[string]string {
	out := map[string]string{}
	base := strings.TrimSuffix(path, ".md")
	for k, v := range m {
		if strings.HasPrefix(k, base+".conflict-") {
			out[k] = v
		}
	}
	return out
}

// once returns a hook that runs f the first time side and path come up.
func once(side, path string, f func()) func(string, string) {
	var o sync.Once
	return func(s, p string) {
		if s == side && p == path {
			o.Do(f)
		}
	}
}

// The window between bisync's listing and its copy, on each side, with
// the other device (or the person) writing in it: the version written in
// the window is never lost, and lands as a conflict file next to the note.
func TestWriteDuringThePassIsNeverLost(t *testing.T) {
	for name, start := range clouds() {
		t.Run(name, func(t *testing.T) {
			t.Run("local edit while the pass downloads over it", func(t *testing.T) {
				c := start(t)
				p := newGuardPair(t, c, "laptop", nil)
				seed(t, p, 12)
				p.write(t, "note.md", "v1")
				p.pass(t, PassOptions{})
				c.put(t, "note.md", "v2 from the other device")
				p.engine.beforeReplace = once(SideLocal, "note.md", func() { p.write(t, "note.md", "v3 typed during the pass") })
				res := p.pass(t, PassOptions{})
				p.engine.beforeReplace = nil
				if res.Conflicts != 1 || !res.Again {
					t.Errorf("pass = conflicts %d again %v, want 1 conflict and another pass", res.Conflicts, res.Again)
				}
				p.pass(t, PassOptions{})
				for _, body := range []string{"v2 from the other device", "v3 typed during the pass"} {
					if where := somewhere(t, p, c, "note.md", body); where == "" {
						t.Errorf("%q is lost", body)
					} else {
						t.Logf("%q: %s", body, where)
					}
				}
				lf := conflictFiles(p.files(t), "note.md")
				cf := conflictFiles(c.files(t), "note.md")
				if len(lf) != 1 || len(cf) != 1 {
					t.Fatalf("conflict files: local %v, cloud %v; want the local edit on both sides", lf, cf)
				}
				for _, b := range lf {
					if b != "v3 typed during the pass" {
						t.Errorf("conflict file holds %q", b)
					}
				}
				if lv, _ := versionContents(t, p, "note.md"); lv["v3 typed during the pass"] != versions.ReasonConflict {
					t.Errorf("local versions %v, want the edit kept as a conflict loser", lv)
				}
			})
			t.Run("bucket edit while the pass uploads over it", func(t *testing.T) {
				c := start(t)
				p := newGuardPair(t, c, "laptop", nil)
				seed(t, p, 12)
				p.write(t, "note.md", "v1")
				p.pass(t, PassOptions{})
				p.write(t, "note.md", "v2 typed here")
				p.engine.beforeReplace = once(SideCloud, "note.md", func() { c.put(t, "note.md", "v3 from the other device, during the pass") })
				res := p.pass(t, PassOptions{})
				p.engine.beforeReplace = nil
				if res.Conflicts != 1 || !res.Again {
					t.Errorf("pass = conflicts %d again %v", res.Conflicts, res.Again)
				}
				p.pass(t, PassOptions{})
				for _, body := range []string{"v2 typed here", "v3 from the other device, during the pass"} {
					if where := somewhere(t, p, c, "note.md", body); where == "" {
						t.Errorf("%q is lost", body)
					} else {
						t.Logf("%q: %s", body, where)
					}
				}
				if got := c.files(t)["note.md"]; got != "v2 typed here" {
					t.Errorf("bucket note.md = %q", got)
				}
				lf := conflictFiles(p.files(t), "note.md")
				if len(lf) != 1 {
					t.Fatalf("local conflict files %v, want the other device's version", lf)
				}
				if _, cv := versionContents(t, p, "note.md"); cv["v3 from the other device, during the pass"] != versions.ReasonConflict {
					t.Errorf("cloud versions %v", cv)
				}
			})
			t.Run("bucket object created while the pass uploads a new note", func(t *testing.T) {
				c := start(t)
				p := newGuardPair(t, c, "laptop", nil)
				seed(t, p, 12)
				p.pass(t, PassOptions{})
				p.write(t, "new.md", "mine")
				p.engine.beforeReplace = once(SideCloud, "new.md", func() { c.put(t, "new.md", "theirs, made during the pass") })
				p.pass(t, PassOptions{})
				p.engine.beforeReplace = nil
				p.pass(t, PassOptions{})
				for _, body := range []string{"mine", "theirs, made during the pass"} {
					if where := somewhere(t, p, c, "new.md", body); where == "" {
						t.Errorf("%q is lost", body)
					} else {
						t.Logf("%q: %s", body, where)
					}
				}
			})
			t.Run("local edit while the pass deletes the note", func(t *testing.T) {
				c := start(t)
				p := newGuardPair(t, c, "laptop", nil)
				seed(t, p, 12)
				p.write(t, "note.md", "v1")
				p.pass(t, PassOptions{})
				c.del(t, "note.md")
				p.engine.beforeReplace = once(SideLocal, "note.md", func() { p.write(t, "note.md", "v2 typed during the pass") })
				res := p.pass(t, PassOptions{})
				p.engine.beforeReplace = nil
				if res.EditsKept != 1 || !res.Again {
					t.Errorf("pass = edits kept %d again %v, want 1 and another pass", res.EditsKept, res.Again)
				}
				p.pass(t, PassOptions{})
				if got := p.files(t)["note.md"]; got != "v2 typed during the pass" {
					t.Errorf("local note.md = %q, want the edit", got)
				}
				if got := c.files(t)["note.md"]; got != "v2 typed during the pass" {
					t.Errorf("bucket note.md = %q, want the edit back", got)
				}
			})
			t.Run("bucket edit while the pass deletes the note", func(t *testing.T) {
				c := start(t)
				p := newGuardPair(t, c, "laptop", nil)
				seed(t, p, 12)
				p.write(t, "note.md", "v1")
				p.pass(t, PassOptions{})
				if err := os.Remove(filepath.Join(p.local, "note.md")); err != nil {
					t.Fatal(err)
				}
				p.engine.beforeReplace = once(SideCloud, "note.md", func() { c.put(t, "note.md", "v2 from the other device, during the pass") })
				res := p.pass(t, PassOptions{})
				p.engine.beforeReplace = nil
				if res.EditsKept != 1 {
					t.Errorf("pass = edits kept %d, want 1", res.EditsKept)
				}
				p.pass(t, PassOptions{})
				if got := p.files(t)["note.md"]; got != "v2 from the other device, during the pass" {
					t.Errorf("local note.md = %q, want the other device's edit", got)
				}
			})
		})
	}
}

// Every version a pass replaces or deletes, on either side, is kept and
// can be read back.
func TestEveryReplacedVersionIsKept(t *testing.T) {
	for name, start := range clouds() {
		t.Run(name, func(t *testing.T) {
			c := start(t)
			p := newGuardPair(t, c, "laptop", nil)
			seed(t, p, 12)
			for _, n := range []string{"down.md", "up.md", "gone-here.md", "gone-there.md"} {
				p.write(t, n, n+" v1")
			}
			p.pass(t, PassOptions{})
			c.put(t, "down.md", "down.md v2")
			p.write(t, "up.md", "up.md v2")
			c.del(t, "gone-here.md")
			if err := os.Remove(filepath.Join(p.local, "gone-there.md")); err != nil {
				t.Fatal(err)
			}
			res := p.pass(t, PassOptions{})
			if res.VersionsKept != 4 {
				t.Errorf("pass kept %d versions, want 4: %+v", res.VersionsKept, res)
			}
			for _, tc := range []struct {
				path, side, reason string
			}{
				{"down.md", "local", versions.ReasonOverwritten},
				{"up.md", "cloud", versions.ReasonOverwritten},
				{"gone-here.md", "local", versions.ReasonDeleted},
				{"gone-there.md", "cloud", versions.ReasonDeleted},
			} {
				lv, cv := versionContents(t, p, tc.path)
				got := lv
				if tc.side == "cloud" {
					got = cv
				}
				if got[tc.path+" v1"] != tc.reason {
					t.Errorf("%s: %s versions %v, want %q kept as %s", tc.path, tc.side, got, tc.path+" v1", tc.reason)
				}
			}
			if _, err := os.Stat(filepath.Join(p.local, "gone-here.md")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("gone-here.md still here: %v", err)
			}
		})
	}
}

func TestVersionsOffStillKeepsWindowConflicts(t *testing.T) {
	c := clouds()["embedded"](t)
	p := newGuardPair(t, c, "laptop", func(c *Config) { c.NoVersions = true })
	seed(t, p, 12)
	p.write(t, "note.md", "v1")
	p.pass(t, PassOptions{})
	c.put(t, "note.md", "v2")
	p.engine.beforeReplace = once(SideLocal, "note.md", func() { p.write(t, "note.md", "v3 during the pass") })
	res := p.pass(t, PassOptions{})
	if res.VersionsKept != 0 || res.Conflicts != 1 {
		t.Errorf("versions off: kept %d conflicts %d, want 0 and 1", res.VersionsKept, res.Conflicts)
	}
	if lf := conflictFiles(p.files(t), "note.md"); len(lf) != 1 {
		t.Errorf("conflict files %v", lf)
	}
	lv, cv := versionContents(t, p, "note.md")
	if len(lv)+len(cv) != 0 {
		t.Errorf("versions kept with versions off: %v %v", lv, cv)
	}
}

// Two conflicts on one note within a second keep both conflict files.
func TestTwoConflictsInOneSecondKeepBoth(t *testing.T) {
	c := clouds()["embedded"](t)
	p := newGuardPair(t, c, "laptop", nil)
	seed(t, p, 12)
	p.write(t, "note.md", "v1")
	p.pass(t, PassOptions{})
	start := time.Now()
	owed := []string{}
	for i, pair := range [][2]string{{"here 1", "there 1"}, {"here 2, longer", "there 2, longer"}} {
		p.write(t, "note.md", pair[0])
		c.put(t, "note.md", pair[1])
		if res := p.pass(t, PassOptions{}); res.Conflicts != 1 {
			t.Fatalf("conflict %d: pass = %+v", i+1, res)
		}
		owed = append(owed, pair[0], pair[1])
		if i == 0 {
			// the first conflict's winner (the newer of the two) is the
			// note on both sides, then both sides replace it themselves:
			// not the pass's to keep
			winner := p.files(t)["note.md"]
			owed = slices.DeleteFunc(owed, func(b string) bool { return b == winner })
		}
	}
	t.Logf("two conflicts in %v", time.Since(start))
	p.pass(t, PassOptions{})
	files := p.files(t)
	// Every version a pass replaced is somewhere.
	if len(owed) != 3 {
		t.Fatalf("versions owed %v: the first conflict's winner is neither version", owed)
	}
	for _, body := range owed {
		if somewhere(t, p, c, "note.md", body) == "" {
			t.Errorf("%q is lost (here: %v, there: %v)\nlog:\n%s", body, files, c.files(t), p.logs.String())
		}
	}
	names := make([]string, 0)
	for k := range conflictFiles(files, "note.md") {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) != 2 {
		t.Errorf("conflict files %v, want two with unique names", names)
	}
}

// bisync names its listing files after both sides; with the full paths
// (a long folder path and a tenant's 49-character bucket name) the names
// passed 255 bytes and every pass failed. Any folder path must work, and
// an older agent's long-named listings are picked up, not thrown away.
func TestLongFolderPathSyncs(t *testing.T) {
	bucket := "basic-memory-0f6f1a8e-3b3c-4c4e-9d7e-2a1b3c4d5e6f" // 49 characters, as bm-server names them
	ep := s3test.Start(t, "", s3test.Key{AccessKey: testKey, SecretKey: testSecret, Bucket: bucket})
	c := cloud{remote: Remote{Endpoint: ep.URL, Region: s3test.Region, AccessKey: testKey, SecretKey: testSecret, Bucket: bucket}, c: ep.Client()}
	local := t.TempDir()
	for i := 0; i < 6; i++ {
		local = filepath.Join(local, strings.Repeat(string(rune('a'+i)), 40)+" notes")
	}
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(local) < 255 {
		t.Fatalf("folder path only %d bytes", len(local))
	}
	work := filepath.Join(t.TempDir(), "state")
	e, err := New(context.Background(), Config{LocalDir: local, Remote: c.remote, WorkDir: work, Device: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{engine: e, local: local, logs: &logBuf{}}
	seed(t, p, 12)
	p.pass(t, PassOptions{})
	p.write(t, "later.md", "a second pass")
	if res := p.pass(t, PassOptions{}); res.Resync || res.Uploaded != 1 {
		t.Errorf("second pass = %+v", res)
	}
	for _, f := range []string{e.listing1, e.listing2} {
		if n := len(filepath.Base(f)) + len("-dry-new"); n > 255 {
			t.Errorf("listing name %d bytes: %s", n, filepath.Base(f))
		}
	}
	if got := c.files(t)["later.md"]; got != "a second pass" {
		t.Errorf("bucket later.md = %q", got)
	}
}

func TestOldListingNamesAreMigrated(t *testing.T) {
	c := clouds()["embedded"](t)
	p := newGuardPair(t, c, "laptop", nil)
	seed(t, p, 12)
	p.pass(t, PassOptions{})
	// as an older bm-agent named them: after both full paths
	old := filepath.Join(p.engine.cfg.WorkDir, bilib.SessionName(p.engine.local, p.engine.remote))
	for _, l := range []string{p.engine.listing1, p.engine.listing2} {
		suffix := strings.TrimPrefix(l, p.engine.basePath)
		if err := os.Rename(l, old+suffix); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(context.Background(), p.engine.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e.NeedsResync() {
		t.Fatal("the old listings were not picked up")
	}
	p.engine = e
	p.write(t, "new.md", "x")
	if res := p.pass(t, PassOptions{}); res.Resync || res.Uploaded != 1 {
		t.Errorf("pass after the migration = %+v, want a normal pass", res)
	}
}

// "Every file changed" (a clock jump, a tool that touched every file) with
// a few real changes among them: the times are recorded, the real changes
// sync, and the notes deleted meanwhile stay deleted (the automatic safe
// resync this used to run brought them back).
func TestAllFilesChangedKeepsDeletes(t *testing.T) {
	c := clouds()["embedded"](t)
	p := newGuardPair(t, c, "laptop", nil)
	seed(t, p, 20)
	p.pass(t, PassOptions{})
	later := time.Now().Add(3 * time.Hour)
	err := filepath.WalkDir(p.local, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			err = os.Chtimes(path, later, later)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"seed/n03.md", "seed/n07.md"} {
		if err := os.Remove(filepath.Join(p.local, n)); err != nil {
			t.Fatal(err)
		}
	}
	p.write(t, "seed/n11.md", "edited for real")
	res := p.pass(t, PassOptions{})
	if res.Resync || res.DeletedRemote != 2 || res.Uploaded != 1 || res.Downloaded != 0 {
		t.Errorf("pass = %+v, want the 2 deletes and the 1 edit, no resync", res)
	}
	if !strings.Contains(p.logs.String(), "every file looked changed") {
		t.Errorf("the pass never met bisync's all-files-changed stop; the test tests nothing")
	}
	files := c.files(t)
	for _, n := range []string{"seed/n03.md", "seed/n07.md"} {
		if _, ok := files[n]; ok {
			t.Errorf("%s is back in the bucket", n)
		}
		if _, err := os.Stat(filepath.Join(p.local, n)); err == nil {
			t.Errorf("%s is back in the folder", n)
		}
	}
	if files["seed/n11.md"] != "edited for real" {
		t.Errorf("the real edit did not sync: %q", files["seed/n11.md"])
	}
	if res := p.pass(t, PassOptions{}); res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote != 0 {
		t.Errorf("a pass after = %+v, want nothing to do", res)
	}
}

// Every note changed for real between two passes: with versions kept the
// pass syncs them all (stopping would leave the person stuck, and every
// replaced version is kept); with versions off it stops for the person.
func TestEveryNoteChangedForReal(t *testing.T) {
	for _, versionsOn := range []bool{true, false} {
		t.Run(fmt.Sprintf("versions %v", versionsOn), func(t *testing.T) {
			c := clouds()["embedded"](t)
			p := newGuardPair(t, c, "laptop", func(cfg *Config) { cfg.NoVersions = !versionsOn })
			seed(t, p, 20)
			p.pass(t, PassOptions{})
			for i := range 20 {
				p.write(t, fmt.Sprintf("seed/n%02d.md", i), fmt.Sprintf("rewritten %d, and longer", i))
			}
			res, err := p.engine.Pass(context.Background(), PassOptions{})
			if !versionsOn {
				if !errors.Is(err, ErrAllFilesChanged) {
					t.Fatalf("versions off: %v, want ErrAllFilesChanged", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !res.AllChanged || res.Uploaded != 20 || res.VersionsKept != 20 {
				t.Errorf("pass = %+v, want all 20 uploaded, their old versions kept", res)
			}
		})
	}
}

// A pass killed after it downloaded a note, and the other side deleting
// that note (it had seen the downloaded version) before the next pass:
// the next pass deletes it here too. Without the journal the first pass's
// own download looked like an edit made here, and the edit won: the note
// came back.
func TestKilledDownloadIsNotResurrected(t *testing.T) {
	s3 := newEmbedS3(t)
	base := t.TempDir()
	local, work := filepath.Join(base, "notes"), filepath.Join(base, "state")
	for i := range 12 {
		writeLocal(t, local, fmt.Sprintf("seed/n%02d.md", i), []byte(fmt.Sprintf("seed %d", i)))
	}
	writeLocal(t, local, "a-note.md", []byte("v1"))
	p := newEmbedPairAt(t, s3, local, work, "laptop", ProfileBalanced)
	p.pass(t, PassOptions{})
	p.pass(t, PassOptions{})
	s3.put(t, "a-note.md", []byte("v2, from the other device"))
	for i := range 300 {
		s3.put(t, fmt.Sprintf("zz/%03d.md", i), bytes.Repeat([]byte(fmt.Sprintf("note %d ", i)), 4000))
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "BM_SYNCER_HELPER=1", "BM_SYNCER_ENDPOINT="+s3.url,
		"BM_SYNCER_LOCAL="+local, "BM_SYNCER_WORK="+work, "BM_SYNCER_HELPER_SLOW=zz/")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	defer func() { t.Logf("helper:\n%s", out.String()) }()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(local, "a-note.md"))
		if string(b) == "v2, from the other device" {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the helper never downloaded the note")
		}
		time.Sleep(2 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if entries, _ := os.ReadDir(filepath.Join(local, "zz")); len(entries) >= 300 {
		t.Fatal("the helper finished before it was killed")
	}
	if j, err := os.ReadFile(p.engine.journalPath()); err != nil || !strings.Contains(string(j), "a-note.md") {
		t.Logf("journal after the kill: %q, %v", j, err)
	}
	// the other device saw v2, and deletes it
	s3.del(t, "a-note.md")
	p.pass(t, PassOptions{Trigger: "restart"})
	if _, err := os.Stat(filepath.Join(local, "a-note.md")); err == nil {
		t.Errorf("the deleted note is back in the folder")
	}
	if _, ok := s3.files(t)["a-note.md"]; ok {
		t.Errorf("the deleted note is back in the bucket")
	}
}

// A pass killed while it downloads leaves the download's partial file in
// the folder. It never syncs (no other device gets a half note) and the
// next pass removes it.
func TestKilledDownloadLeavesNoPartial(t *testing.T) {
	s3 := newEmbedS3(t)
	base := t.TempDir()
	local, work := filepath.Join(base, "notes"), filepath.Join(base, "state")
	writeLocal(t, local, "seed.md", []byte("seed"))
	p := newEmbedPairAt(t, s3, local, work, "laptop", ProfileBalanced)
	p.pass(t, PassOptions{})
	for i := range 40 {
		s3.put(t, fmt.Sprintf("big/%02d.md", i), bytes.Repeat([]byte(fmt.Sprintf("line %d\n", i)), 400_000))
	}

	partials := func() []string {
		var out []string
		_ = filepath.WalkDir(local, func(path string, d os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, PartialSuffix) {
				out = append(out, path)
			}
			return nil
		})
		return out
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "BM_SYNCER_HELPER=1", "BM_SYNCER_ENDPOINT="+s3.url,
		"BM_SYNCER_LOCAL="+local, "BM_SYNCER_WORK="+work)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(partials()) == 0 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("the helper never wrote a partial download:\n%s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	left := partials()
	if len(left) == 0 {
		t.Skip("the kill came after every download was in place")
	}
	t.Logf("left by the kill: %v", left)
	// the other device deletes those notes: no download will reuse the
	// partial names
	gone := map[string]bool{}
	for _, l := range left {
		rel, _ := filepath.Rel(local, l)
		name := finalName(filepath.ToSlash(rel))
		gone[name] = true
		s3.del(t, name)
	}

	p.pass(t, PassOptions{Trigger: "restart"})
	if rest := partials(); len(rest) > 0 {
		t.Errorf("partial downloads still in the folder after the next pass: %v", rest)
	}
	for k := range s3.files(t) {
		if strings.HasSuffix(k, PartialSuffix) {
			t.Errorf("a partial download reached the bucket: %s", k)
		}
	}
	for i := range 40 {
		name := fmt.Sprintf("big/%02d.md", i)
		if gone[name] {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(local, filepath.FromSlash(name))); err != nil || len(b) != len(fmt.Sprintf("line %d\n", i))*400_000 {
			t.Errorf("%s not downloaded whole: %d bytes, %v", name, len(b), err)
		}
	}
}

// A file in the folder whose name looks like an old download's partial
// (rclone's default ".partial" suffix) is a note like any other: it
// uploads under its own name, and no conflict file is made for the note
// its name starts with.
func TestPartialLookingNameUploads(t *testing.T) {
	for name, mk := range clouds() {
		t.Run(name, func(t *testing.T) {
			c := mk(t)
			p := newGuardPair(t, c, "laptop", nil)
			writeLocal(t, p.local, "j05.md", []byte("the note"))
			p.pass(t, PassOptions{})
			writeLocal(t, p.local, "j05.md.40953bd6.partial", []byte("left by an older agent"))
			p.pass(t, PassOptions{})
			files := c.files(t)
			if files["j05.md.40953bd6.partial"] != "left by an older agent" || files["j05.md"] != "the note" {
				t.Errorf("bucket after the pass: %v", files)
			}
			if cf := conflictFiles(files, "j05.md"); len(cf) > 0 {
				t.Errorf("conflict files made for an unchanged note: %v", cf)
			}
		})
	}
}

// A note the other device deletes after the pass listed it and before the
// pass reads it is not "a name the bucket cannot serve": it is gone, the
// next pass sees it so, and nothing is set aside.
func TestDeletedWhileReadIsNotSetAside(t *testing.T) {
	for name, start := range clouds() {
		t.Run(name, func(t *testing.T) {
			c := start(t)
			p := newGuardPair(t, c, "laptop", nil)
			seed(t, p, 12)
			p.pass(t, PassOptions{})
			c.put(t, "new.md", "from the other device")
			p.engine.beforeRead = once(SideCloud, "new.md", func() { c.del(t, "new.md") })
			res, _ := p.engine.Pass(context.Background(), PassOptions{})
			p.engine.beforeRead = nil
			for _, f := range res.Failures {
				if f.Path == "new.md" && !f.Transient {
					t.Errorf("set aside: %+v", f)
				}
			}
			res = p.pass(t, PassOptions{})
			if len(res.Failures) > 0 {
				t.Errorf("failures after the next pass: %+v", res.Failures)
			}
			if _, ok := p.files(t)["new.md"]; ok {
				t.Errorf("the deleted note is in the folder")
			}
		})
	}
}

// A real pass says which files it changed (the daemon's history and the
// tray's Recent changes show them), not only how many.
func TestRealPassListsItsChanges(t *testing.T) {
	s3 := newEmbedS3(t)
	base := t.TempDir()
	local, work := filepath.Join(base, "notes"), filepath.Join(base, "state")
	writeLocal(t, local, "seed.md", []byte("seed"))
	p := newEmbedPairAt(t, s3, local, work, "laptop", ProfileBalanced)
	p.pass(t, PassOptions{})
	writeLocal(t, local, "up.md", []byte("written here"))
	s3.put(t, "down.md", []byte("written there"))
	res := p.pass(t, PassOptions{})
	got := map[string]string{}
	for _, c := range res.Plan {
		got[c.Path] = c.Action + " " + c.Side
	}
	if got["up.md"] != ActionCopy+" "+SideCloud || got["down.md"] != ActionCopy+" "+SideLocal {
		t.Errorf("the pass's changes: %v (plan %+v)", got, res.Plan)
	}
}

// The first pass (a resync) lists each file it copied once.
func TestResyncListsEachChangeOnce(t *testing.T) {
	s3 := newEmbedS3(t)
	base := t.TempDir()
	local, work := filepath.Join(base, "notes"), filepath.Join(base, "state")
	writeLocal(t, local, "up.md", []byte("written here"))
	s3.put(t, "down.md", []byte("written there"))
	p := newEmbedPairAt(t, s3, local, work, "laptop", ProfileBalanced)
	res := p.pass(t, PassOptions{})
	if !res.Resync {
		t.Fatalf("first pass = %+v, want a resync", res)
	}
	seen := map[string]int{}
	for _, c := range res.Plan {
		seen[c.String()]++
	}
	for _, want := range []string{"cloud copy up.md", "local copy down.md"} {
		if seen[want] != 1 {
			t.Errorf("%q listed %d times: %v", want, seen[want], res.Plan)
		}
	}
}
