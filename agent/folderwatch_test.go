package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
