package syncer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rclone/rclone/fs/filter"
)

// TestIgnoreToFilterRules checks the gitignore → rclone conversion by
// what rclone's own filter then includes.
func TestIgnoreToFilterRules(t *testing.T) {
	tests := []struct {
		name    string
		ignore  string
		include []string
		exclude []string
	}{
		{"name anywhere", "node_modules\n", []string{"notes/a.md", "node_modulesx/a"},
			[]string{"node_modules", "node_modules/a/b.js", "x/node_modules/y.js"}},
		{"glob anywhere", "*.tmp\n", []string{"a.md", "tmp/a.md"}, []string{"a.tmp", "d/e/b.tmp"}},
		{"dir only", "build/\n", []string{"build", "x/build"}, []string{"build/a", "x/build/a/b"}},
		{"leading slash anchors", "/todo.md\n", []string{"sub/todo.md"}, []string{"todo.md"}},
		{"middle slash anchors", "doc/frotz\n", []string{"a/doc/frotz"}, []string{"doc/frotz", "doc/frotz/x"}},
		{"double star prefix", "**/cache\n", []string{"cachex"}, []string{"cache", "a/b/cache", "a/cache/f"}},
		{"double star middle", "a/**/b.md\n", []string{"x/a/b.md", "a/b.mdx"}, []string{"a/b.md", "a/x/b.md", "a/x/y/b.md"}},
		{"double star suffix", "logs/**\n", []string{"x/logs/a"}, []string{"logs/a", "logs/a/b"}},
		{"negation wins when later", "*.md\n!keep.md\n", []string{"keep.md", "d/keep.md", "a.txt"}, []string{"a.md", "d/b.md"}},
		{"negation loses when earlier", "!keep.md\n*.md\n", []string{"a.txt"}, []string{"keep.md", "a.md"}},
		{"comments blanks and escapes", "# c\n\n\\#hash\n\\!bang\ntrailing   \n", []string{"c", "# c"}, []string{"#hash", "!bang", "trailing"}},
		{"braces are literal", "{a,b}.md\n", []string{"a.md", "b.md"}, []string{"{a,b}.md"}},
		{"character class", "file[0-9].md\n", []string{"filex.md"}, []string{"file1.md"}},
		{"defaults", DefaultIgnore,
			[]string{"notes/a.md", "RCLONE_TEST", "Projects/plan.md", "a.conflict-20260101-101010-cloud.md"},
			[]string{".bmignore", ".obsidian/workspace.json", "x/.git/config", "memory.db", "memory.db-wal",
				"a/node_modules/x.js", "note.md~", "Thumbs.db", "sub/.DS_Store", "config.json", "env/bin/python"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := filterRules(tt.ignore)
			f, err := filter.NewFilter(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				if err := f.AddRule(r); err != nil {
					t.Fatalf("rule %q: %v", r, err)
				}
			}
			// and the engine's own matcher, which the passes use, agrees
			m, err := newIgnoreMatcher(rules)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.include {
				if !f.Include(p, 1, time.Now(), nil) {
					t.Errorf("%q excluded, want included (rules %q)", p, rules)
				}
				if m.ignored(t.Context(), p, false) {
					t.Errorf("%q ignored by the matcher, want kept (rules %q)", p, rules)
				}
			}
			for _, p := range tt.exclude {
				if f.Include(p, 1, time.Now(), nil) {
					t.Errorf("%q included, want excluded (rules %q)", p, rules)
				}
				if !m.ignored(t.Context(), p, false) {
					t.Errorf("%q kept by the matcher, want ignored (rules %q)", p, rules)
				}
			}
		})
	}
}

func TestParseProfile(t *testing.T) {
	for in, want := range map[string]Profile{"": ProfileBalanced, "safe": ProfileSafe, "balanced": ProfileBalanced, "fast": ProfileFast} {
		if got, err := ParseProfile(in); err != nil || got != want {
			t.Errorf("ParseProfile(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseProfile("reckless"); err == nil {
		t.Error("ParseProfile accepted an unknown profile")
	}
	want := map[Profile]profileSetting{ProfileSafe: {0, 10, true}, ProfileBalanced: {3, 25, false}, ProfileFast: {3, 50, false}}
	for p, w := range want {
		if got := p.settings(); got.maxDelete != w.maxDelete || got.checkAccess != w.checkAccess {
			t.Errorf("%s settings = %+v, want %+v", p, got, w)
		}
	}
}

func TestListConflicts(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{
		"note.md", "dir/sub/plan.conflict-20261123-143000-laptop.md", "note.conflict-20261122-090000-cloud.md",
		"README.conflict-20261124-000000-cloud-1", "a.conflict-notadate-x.md", "weird.conflict-20261123-143000-.md",
	} {
		writeLocal(t, root, name, []byte("x"))
	}
	got, err := ListConflicts(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Conflict{
		{Path: "note.conflict-20261122-090000-cloud.md", Original: "note.md", Device: "cloud", Time: time.Date(2026, 11, 22, 9, 0, 0, 0, time.Local), Size: 1},
		{Path: "dir/sub/plan.conflict-20261123-143000-laptop.md", Original: "dir/sub/plan.md", Device: "laptop", Time: time.Date(2026, 11, 23, 14, 30, 0, 0, time.Local), Size: 1},
		{Path: "README.conflict-20261124-000000-cloud-1", Original: "README", Device: "cloud-1", Time: time.Date(2026, 11, 24, 0, 0, 0, 0, time.Local), Size: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ListConflicts =\n%v\nwant\n%v", got, want)
	}
	if _, err := ListConflicts(filepath.Join(root, "missing")); err == nil {
		t.Error("ListConflicts of a missing folder: no error")
	}
}

// snapshot is every file's bytes under a directory.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return out
	}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = fmt.Sprintf("%x", sha256.Sum256(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDryRunPlanChangesNothing(t *testing.T) {
	s3 := newEmbedS3(t)
	p := newEmbedPair(t, s3, "laptop", ProfileBalanced)
	seed(t, p, 12)
	p.write(t, "edit-local.md", "v1")
	p.write(t, "del-local.md", "x")
	p.write(t, "both.md", "v1")
	p.write(t, "del-remote.md", "x")
	p.pass(t, PassOptions{})

	p.write(t, "new-local.md", "new")
	p.write(t, "edit-local.md", "v2 longer")
	if err := os.Remove(filepath.Join(p.local, "del-local.md")); err != nil {
		t.Fatal(err)
	}
	s3.put(t, "new-remote.md", []byte("new there"))
	s3.del(t, "del-remote.md")
	s3.put(t, "both.md", []byte("cloud edit"))
	p.write(t, "both.md", "local edit!")

	work := p.engine.cfg.WorkDir
	beforeLocal, beforeCloud := snapshot(t, p.local), snapshot(t, filepath.Join(s3.root, testBucket))
	beforeWork := snapshot(t, work)
	s3.srv.ResetStats()
	res := p.pass(t, PassOptions{DryRun: true, Trigger: "preview"})
	if st := s3.srv.Stats(); st["PutObject"]+st["DeleteObject"]+st["DeleteObjects"]+st["CopyObject"]+st["CreateMultipartUpload"] != 0 {
		t.Errorf("dry run wrote to the bucket: %v", st)
	}
	assertSame(t, "local folder", snapshot(t, p.local), beforeLocal)
	assertSame(t, "bucket", snapshot(t, filepath.Join(s3.root, testBucket)), beforeCloud)
	afterWork := snapshot(t, work)
	for path, sum := range beforeWork {
		if afterWork[path] != sum {
			t.Errorf("dry run changed %s", path)
		}
	}
	if res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote != 0 {
		t.Errorf("dry run counts %+v", res)
	}
	var plan []string
	for _, c := range res.Plan {
		plan = append(plan, c.String())
	}
	for _, want := range []string{
		"cloud copy new-local.md", "cloud copy edit-local.md", "cloud delete del-local.md",
		"local copy new-remote.md", "local delete del-remote.md", "both conflict both.md",
	} {
		if !strings.Contains(strings.Join(plan, "\n"), want) {
			t.Errorf("plan lacks %q:\n%s", want, strings.Join(plan, "\n"))
		}
	}

	// the real pass then does what the plan said
	res = p.pass(t, PassOptions{})
	if res.Uploaded < 2 || res.Downloaded < 1 || res.DeletedRemote != 1 || res.DeletedLocal != 1 || res.Conflicts != 1 {
		t.Errorf("real pass after the dry run = %+v", res)
	}
	assertContents(t, "bucket", s3.files(t), treeFiles(t, p.local))
}

func TestDryRunFirstPassPlansCopies(t *testing.T) {
	s3 := newEmbedS3(t)
	p := newEmbedPair(t, s3, "laptop", ProfileSafe)
	p.write(t, "a.md", "a")
	p.write(t, "same.md", "differs here")
	s3.put(t, "b.md", []byte("b"))
	s3.put(t, "same.md", []byte("differs there"))
	res := p.pass(t, PassOptions{DryRun: true})
	plan := fmt.Sprint(res.Plan)
	for _, want := range []string{"cloud copy a.md", "local copy b.md", "both conflict same.md"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan %s lacks %q", plan, want)
		}
	}
	if _, err := os.Stat(filepath.Join(p.local, IgnoreFile)); !os.IsNotExist(err) {
		t.Errorf("dry run created %s: %v", IgnoreFile, err)
	}
	if _, err := os.Stat(filepath.Join(p.local, AccessCheckFile)); !os.IsNotExist(err) {
		t.Errorf("dry run created %s: %v", AccessCheckFile, err)
	}
	if !p.engine.NeedsResync() {
		t.Error("dry run made a baseline")
	}
}

func assertSame(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s changed:\n got %v\nwant %v", what, got, want)
	}
}

// TestNoChangePassCost: a pass that finds nothing to do over 10,000 notes
// makes at most ceil(N/1000)+3 requests to the production embedded S3
// endpoint, none of them a HEAD, besides the reachability watch's small
// probes (one per probeEvery of the pass).
func TestNoChangePassCost(t *testing.T) {
	const n = 10000
	if testing.Short() {
		t.Skip("10,000 files: skipped with -short")
	}
	start := time.Now()
	s3 := newEmbedS3Seeded(t, func(dir string) { makeNotes(t, dir, n) })
	p := newEmbedPair(t, s3, "laptop", ProfileBalanced)
	makeNotes(t, p.local, n)
	t.Logf("%d notes on both sides: %s", n, time.Since(start))
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res0, err := p.engine.Pass(ctx, PassOptions{Trigger: "baseline"})
	if err != nil {
		t.Fatalf("baseline: %v", err)
	}
	t.Logf("baseline pass (a resync over identical sides): %s", time.Since(start))
	if !res0.Resync || res0.Uploaded+res0.Downloaded+res0.Conflicts != 0 {
		t.Fatalf("baseline over identical sides = %+v", res0)
	}

	s3.srv.ResetStats()
	start = time.Now()
	res, err := p.engine.Pass(ctx, PassOptions{Trigger: "interval"})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("no-change pass: %v", err)
	}
	st := s3.srv.Stats()
	// the listing pages, three more, and the reachability watch's probes
	// (one per probeEvery while the pass runs: more on a loaded machine)
	limit := int64(math.Ceil(n/1000.0)) + 3 + int64(took/probeEvery)
	t.Logf("no-change pass over %d notes: %d requests %v in %s", n, st["total"], st, took)
	if res.Resync || res.Uploaded+res.Downloaded+res.DeletedLocal+res.DeletedRemote != 0 {
		t.Errorf("no-change pass did something: %+v", res)
	}
	if st["total"] > limit {
		t.Errorf("no-change pass made %d requests, want <= %d: %v", st["total"], limit, st)
	}
	if st["HeadObject"] != 0 {
		t.Errorf("no-change pass made %d HeadObject requests", st["HeadObject"])
	}
	if !res.Unchanged {
		t.Errorf("the no-change pass ran bisync")
	}

	// the same pass with bisync run anyway, then without it again: one
	// run each, printed, not asserted
	p.engine.noUnchangedCheck = true
	start = time.Now()
	if _, err := p.engine.Pass(ctx, PassOptions{Trigger: "interval"}); err != nil {
		t.Fatalf("no-change pass with bisync: %v", err)
	}
	withBisync := time.Since(start)
	p.engine.noUnchangedCheck = false
	start = time.Now()
	if res, err = p.engine.Pass(ctx, PassOptions{Trigger: "interval"}); err != nil || !res.Unchanged {
		t.Fatalf("no-change pass after one with bisync: unchanged=%v, %v", res.Unchanged, err)
	}
	without := time.Since(start)
	t.Logf("FIGURE no-change pass at %d notes (engine and embedded S3 in one process): %s without bisync (the listings compared), %s with bisync run anyway: %.2f×",
		n, without.Round(time.Millisecond), withBisync.Round(time.Millisecond), float64(without)/float64(withBisync))
}

func makeNotes(t testing.TB, root string, n int) {
	t.Helper()
	for i := range n {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("note-%05d.md", i)), fmt.Appendf(nil, "# note %d\n", i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkNoChangePass reports requests and time of a pass that finds
// nothing to do.
func BenchmarkNoChangePass(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			s3 := newEmbedS3Seeded(b, func(dir string) { makeNotes(b, dir, n) })
			p := newEmbedPair(b, s3, "laptop", ProfileBalanced)
			makeNotes(b, p.local, n)
			ctx := context.Background()
			if _, err := p.engine.Pass(ctx, PassOptions{}); err != nil {
				b.Fatal(err)
			}
			s3.srv.ResetStats()
			b.ResetTimer()
			for b.Loop() {
				if _, err := p.engine.Pass(ctx, PassOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(s3.srv.Stats()["total"])/float64(b.N), "requests/pass")
		})
	}
}

// TestKilledPassRecovers: a process killed with SIGKILL in the middle of
// a pass leaves a lock and half-done uploads; the next pass, in another
// process, recovers with no manual step and nothing is lost.
func TestKilledPassRecovers(t *testing.T) {
	s3 := newEmbedS3(t)
	base := t.TempDir()
	local, work := filepath.Join(base, "notes"), filepath.Join(base, "state")
	seedNotes := func(prefix string, n int) {
		for i := range n {
			writeLocal(t, local, fmt.Sprintf("%s/%03d.md", prefix, i), fmt.Appendf(nil, "%s %d", prefix, i))
		}
	}
	seedNotes("seed", 30)
	p := newEmbedPairAt(t, s3, local, work, "laptop", ProfileBalanced)
	p.pass(t, PassOptions{})
	s3.put(t, "from-cloud.md", []byte("cloud note"))
	p.pass(t, PassOptions{}) // a second listing generation (-old) exists now
	seedNotes("new", 400)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "BM_SYNCER_HELPER=1", "BM_SYNCER_ENDPOINT="+s3.url,
		"BM_SYNCER_LOCAL="+local, "BM_SYNCER_WORK="+work)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	s3.srv.ResetStats()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s3.srv.Stats()["PutObject"] < 20 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the helper made no uploads")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	puts := s3.srv.Stats()["PutObject"]
	t.Logf("killed the helper after %d uploads", puts)
	if puts >= 400 {
		t.Fatal("the helper finished before it was killed")
	}
	locks, _ := filepath.Glob(filepath.Join(work, "*.lck"))
	if len(locks) != 1 {
		t.Fatalf("lock files after the kill: %v", locks)
	}

	want := treeFiles(t, local)
	res := p.pass(t, PassOptions{Trigger: "restart"})
	t.Logf("recovery pass: resync=%v uploaded=%d downloaded=%d conflicts=%d", res.Resync, res.Uploaded, res.Downloaded, res.Conflicts)
	if got := treeFiles(t, local); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the local folder changed in recovery: %d files, want %d", len(got), len(want))
	}
	assertContents(t, "bucket", s3.files(t), want)
	if res := p.pass(t, PassOptions{}); res.Resync || res.Uploaded+res.Downloaded != 0 {
		t.Errorf("pass after recovery = %+v", res)
	}
}

// TestHelperProcess is the process TestKilledPassRecovers kills: it runs
// one pass, slowly enough to be caught in the middle.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("BM_SYNCER_HELPER") != "1" {
		t.Skip("helper process for TestKilledPassRecovers")
	}
	signal.Ignore(syscall.SIGPIPE)
	e, err := New(context.Background(), Config{
		LocalDir: os.Getenv("BM_SYNCER_LOCAL"),
		WorkDir:  os.Getenv("BM_SYNCER_WORK"),
		Remote:   Remote{Endpoint: os.Getenv("BM_SYNCER_ENDPOINT"), Region: "us-east-1", AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket},
		Device:   "laptop",
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if prefix := os.Getenv("BM_SYNCER_HELPER_SLOW"); prefix != "" {
		// each file placed under prefix waits a little, so the test that
		// kills this process gets its moment however loaded the machine
		e.beforeReplace = func(_, path string) {
			if strings.HasPrefix(path, prefix) {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	_, err = e.Pass(context.Background(), PassOptions{Trigger: "helper"})
	t.Logf("helper pass ended: %v", err)
}
