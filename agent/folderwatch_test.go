package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/agent/watch"
)

// The notes folder removed and put back: the status says it is gone while
// it is, and afterwards a change in the folder starts a pass at once, as
// before (the watch used to be gone for good, and changes waited for the
// interval, silently).
func TestFolderRemovedAndRestoredIsWatchedAgain(t *testing.T) {
	old := rearmEvery
	rearmEvery = 50 * time.Millisecond
	t.Cleanup(func() { rearmEvery = old })
	d := testDaemon(t, t.TempDir()) // an hour's interval: only a watch starts a pass soon
	eng := &fakeEngine{passed: make(chan int, 64)}
	runLoop(t, d, eng)
	ctx := context.Background()
	waitFor(t, "the startup pass", func() bool { return eng.count() >= 1 })

	if err := os.RemoveAll(d.cfg.Folder); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the status to say the folder is gone", func() bool {
		return strings.Contains(d.Status(ctx).Watcher, "is gone")
	})
	if err := os.Mkdir(d.cfg.Folder, 0o700); err != nil { // restored: a new folder in its place
		t.Fatal(err)
	}
	waitFor(t, "the watch to be back", func() bool { return d.Status(ctx).Watcher == "" })
	before := eng.count()
	time.Sleep(300 * time.Millisecond) // the pass the re-arm asks for, if any, is over
	before = max(before, eng.count())
	if err := os.WriteFile(filepath.Join(d.cfg.Folder, "after.md"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a pass for the change", func() bool { return eng.count() > before })
	if opt := eng.lastOpt(); opt.Trigger != "watch" {
		t.Errorf("the pass after the change ran for %q, want watch", opt.Trigger)
	}
}

func TestOthersChanges(t *testing.T) {
	ours := syncer.Result{LocalChanged: true, LocalWrites: []string{"a.md", "dir/b.md", "dir/b.md.1234abcd" + syncer.PartialSuffix, "x.conflict-20261202-101010-laptop.md"}}
	for _, tc := range []struct {
		name  string
		batch watch.Batch
		res   syncer.Result
		want  bool
	}{
		{"nothing", watch.Batch{}, ours, false},
		{"only the pass's writes", watch.Batch{Count: 3, Paths: []string{"a.md", "dir", "dir/b.md"}}, ours, false},
		{"a person's edit among them", watch.Batch{Count: 2, Paths: []string{"a.md", "notes/mine.md"}}, ours, true},
		{"the watcher overflowed", watch.Batch{Overflow: true}, ours, true},
		{"too many paths to list", watch.Batch{Count: 2000, Truncated: true, Paths: []string{"a.md"}}, ours, true},
		{"a pass that wrote nothing", watch.Batch{Count: 1, Paths: []string{"a.md"}}, syncer.Result{}, true},
	} {
		if got := othersChanges(tc.batch, tc.res); got != tc.want {
			t.Errorf("%s: othersChanges = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The watcher ignores the engine's partial downloads (their name comes
// from the engine, the ignore rule from the watcher).
func TestWatcherIgnoresPartialDownloads(t *testing.T) {
	if name := "dir/a.md.1234abcd" + syncer.PartialSuffix; !watch.DefaultIgnore(name) {
		t.Errorf("the watcher does not ignore %s", name)
	}
}
