package syncer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/rclone/rclone/fs/filter"
)

// TestPassAfterResyncSeesNoChange: a normal pass right after any safe
// resync (a first upload, a download, identical sides, a forced resync)
// finds nothing changed, and bisync's "all files changed" safety abort
// never fires: the resync's listings must describe both sides the way the
// next pass's listings will.
func TestPassAfterResyncSeesNoChange(t *testing.T) {
	const n = 20
	tests := []struct {
		name  string
		setup func(t *testing.T, s3 *embedS3, p *pair)
	}{
		{"upload", func(t *testing.T, _ *embedS3, p *pair) {
			seed(t, p, n)
			ageLocal(t, p.local, time.Hour)
		}},
		{"download", func(t *testing.T, s3 *embedS3, _ *pair) {
			for i := range n {
				s3.put(t, fmt.Sprintf("seed/n%02d.md", i), fmt.Appendf(nil, "cloud note %d", i))
			}
		}},
		{"identical sides", func(t *testing.T, s3 *embedS3, p *pair) {
			seed(t, p, n)
			ageLocal(t, p.local, time.Hour)
			for i := range n {
				s3.put(t, fmt.Sprintf("seed/n%02d.md", i), fmt.Appendf(nil, "seed note %d", i))
			}
		}},
		{"forced resync", func(t *testing.T, _ *embedS3, p *pair) {
			seed(t, p, n)
			ageLocal(t, p.local, time.Hour)
			p.pass(t, PassOptions{})
			p.pass(t, PassOptions{})
			p.write(t, "seed/n00.md", "edited before the resync")
			// the resync below is the forced one
			p.pass(t, PassOptions{Resync: true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s3 := newEmbedS3(t)
			p := newEmbedPair(t, s3, "laptop", ProfileBalanced)
			tt.setup(t, s3, p)
			if res := p.pass(t, PassOptions{Trigger: "baseline"}); !res.Resync && tt.name != "forced resync" {
				t.Fatalf("baseline pass was no resync: %+v", res)
			}
			for i := range 3 {
				res, err := p.engine.Pass(context.Background(), PassOptions{Trigger: "interval"})
				if err != nil {
					t.Logf("log:\n%s", p.logs.String())
					t.Fatalf("pass %d after the resync: %v", i+1, err)
				}
				if res.Resync || res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote+res.Conflicts != 0 {
					t.Fatalf("pass %d after the resync did something: %+v", i+1, res)
				}
			}
			// edits on one side after the resync travel, and only they do
			p.write(t, "seed/n01.md", "local edit after the resync")
			s3.put(t, "seed/n02.md", []byte("cloud edit after the resync"))
			res, err := p.engine.Pass(context.Background(), PassOptions{Trigger: "edits"})
			if err != nil {
				t.Logf("log:\n%s", p.logs.String())
				t.Fatalf("pass with edits: %v", err)
			}
			if res.Uploaded != 1 || res.Downloaded != 1 || res.Conflicts != 0 {
				t.Errorf("pass with one edit on each side = %+v", res)
			}
			assertContents(t, "bucket", s3.files(t), treeFiles(t, p.local))
		})
	}
}

// TestRecoverAfterKillSeesNoChange: a pass killed in the middle leaves
// its lock; the next pass falls back (--recover) to the listings of the
// run before the last one, here the baseline resync's. They must describe
// the bucket as its listing shows it, or every file looks changed.
func TestRecoverAfterKillSeesNoChange(t *testing.T) {
	s3 := newEmbedS3(t)
	p := newEmbedPair(t, s3, "laptop", ProfileBalanced)
	seed(t, p, 20)
	ageLocal(t, p.local, time.Hour)
	p.pass(t, PassOptions{Trigger: "baseline"})
	p.write(t, "second.md", "a second generation of listings")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(p.local, "second.md"), old, old); err != nil {
		t.Fatal(err)
	}
	if res := p.pass(t, PassOptions{}); res.Uploaded != 1 {
		t.Fatalf("second pass = %+v", res)
	}
	// a pass dies in the middle: its lock stays behind
	if err := os.WriteFile(p.engine.basePath+".lck", []byte("999999999"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.write(t, "after.md", "written during the crash")
	res, err := p.engine.Pass(context.Background(), PassOptions{Trigger: "restart"})
	if err != nil {
		t.Logf("log:\n%s", p.logs.String())
		t.Fatalf("recovery pass: %v", err)
	}
	if res.Uploaded != 1 || res.Downloaded != 0 || res.Conflicts != 0 {
		t.Errorf("recovery pass = %+v", res)
	}
	assertContents(t, "bucket", s3.files(t), treeFiles(t, p.local))
	if res := p.pass(t, PassOptions{}); res.Resync || res.Uploaded+res.Downloaded != 0 {
		t.Errorf("pass after the recovery = %+v", res)
	}
}

// TestUploadIsNotDownloadedBack: a file uploaded by a normal pass is not
// seen as changed in the bucket by the next pass (which would download it
// back, rewriting the local file and starting another pass).
func TestUploadIsNotDownloadedBack(t *testing.T) {
	s3 := newEmbedS3(t)
	p := newEmbedPair(t, s3, "laptop", ProfileBalanced)
	seed(t, p, 12)
	p.pass(t, PassOptions{Trigger: "baseline"})
	old := time.Now().Add(-10 * time.Minute)
	for name, body := range map[string]string{"new.md": "new note", "seed/n03.md": "an edit of an old note"} {
		p.write(t, name, body)
		if err := os.Chtimes(filepath.Join(p.local, name), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if res := p.pass(t, PassOptions{}); res.Uploaded != 2 {
		t.Fatalf("upload pass = %+v", res)
	}
	before := snapshot(t, p.local)
	res := p.pass(t, PassOptions{})
	if res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote+res.Conflicts != 0 {
		t.Errorf("pass after the upload did something: %+v", res)
	}
	assertSame(t, "local folder", snapshot(t, p.local), before)
}

// TestQuickSameSizeEditIsSynced: a note edited again less than a second
// after the pass that uploaded it, keeping its size, is still a change.
func TestQuickSameSizeEditIsSynced(t *testing.T) {
	s3 := newEmbedS3(t)
	p := newEmbedPair(t, s3, "laptop", ProfileBalanced)
	seed(t, p, 12)
	path := filepath.Join(p.local, "quick.md")
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	writeAt := func(body string, at time.Time) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	writeAt("cat", t0)
	p.pass(t, PassOptions{Trigger: "baseline"})
	writeAt("bat", t0.Add(300*time.Millisecond))
	if res := p.pass(t, PassOptions{}); res.Uploaded != 1 {
		t.Errorf("pass after a same-size edit 300 ms later = %+v", res)
	}
	assertContents(t, "bucket", s3.files(t), treeFiles(t, p.local))
}

// ageLocal sets every local file's mtime back by d: notes written long
// before the pass that uploads them, the normal case.
func ageLocal(t *testing.T, root string, d time.Duration) {
	t.Helper()
	old := time.Now().Add(-d)
	err := filepath.WalkDir(root, func(path string, de os.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestParseMaxDelete(t *testing.T) {
	tests := []struct {
		line string
		want *MaxDeleteError
	}{
		{`too many deletes (>25%, 40 of 160) on Path2 "bmcloud:b/". Run with --force if desired.`,
			&MaxDeleteError{Deletes: 40, Total: 160, Side: SideCloud, Percent: 25}},
		{`too many deletes (>10%, 3 of 12 after excluding 2 tracked renames) on Path1 "/n/". Run with --force if desired.`,
			&MaxDeleteError{Deletes: 3, Total: 12, Side: SideLocal, Percent: 10}},
		{"Bisync critical error: too many deletes", nil},
		{"Copied (new)", nil},
	}
	for _, tt := range tests {
		got := parseMaxDelete(tt.line)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("parseMaxDelete(%q) = %+v, want %+v", tt.line, got, tt.want)
		}
		if got == nil {
			continue
		}
		// the message keeps what the daemon parses from it
		if re := regexp.MustCompile(`(\d+) of (\d+)\)? on (Path1|Path2)`); !re.MatchString(got.Error()) {
			t.Errorf("%q does not match the daemon's pattern", got.Error())
		}
		if !errors.Is(got, ErrMaxDeleteExceeded) {
			t.Errorf("%v is not ErrMaxDeleteExceeded", got)
		}
	}
}

func TestMergeExcludes(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"one run", []string{"- a", "- a/**", "- *.db"}, []string{"- {a,a/**,*.db}"}},
		{"anchoring splits runs", []string{"- a", "- /b", "- /b/**", "- c"}, []string{"- a", "- /{b,b/**}", "- c"}},
		{"includes keep their place", []string{"- a", "+ keep.md", "- b", "- c"}, []string{"- a", "+ keep.md", "- {b,c}"}},
		{"brace characters stay alone", []string{"- a", "- x,y", "- \\{z\\}", "- b"}, []string{"- a", "- x,y", "- \\{z\\}", "- b"}},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeExcludes(tt.in); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("mergeExcludes(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	// Basic Memory's defaults become a handful of rules.
	if n := len(ignoreToFilterRules(DefaultIgnore)); n > 3 {
		t.Errorf("the default ignore rules make %d filter rules, want at most 3", n)
	}
}

// BenchmarkDefaultFilter: what rclone's filter with the default ignore
// rules costs per path (every listed path of every pass goes through it).
func BenchmarkDefaultFilter(b *testing.B) {
	f, err := filter.NewFilter(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range filterRules(DefaultIgnore) {
		if err := f.AddRule(r); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		f.Include(fmt.Sprintf("d%03d/note-%05d.md", i%100, i%10000), 10, now, nil)
	}
}

// BenchmarkIgnoreMatcher: the same rules and paths through the engine's
// own matcher (what each listing of a pass costs now); compare its ns/op
// with BenchmarkDefaultFilter's in the same run.
func BenchmarkIgnoreMatcher(b *testing.B) {
	m, err := newIgnoreMatcher(filterRules(DefaultIgnore))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		m.ignored(ctx, fmt.Sprintf("d%03d/note-%05d.md", i%100, i%10000), false)
	}
}
