package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/internal/testenv"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// The fault suite's named cases, each on a fresh server and daemon, each
// ending with both sides in step and the ledger's check (ledger_test.go).

// faultRun is one case: a logged-in daemon, another device, a ledger.
type faultRun struct {
	t   *testing.T
	ctx context.Context
	h   *harness.Harness
	a   *harness.Agent
	dev *harness.Device
	l   *ledger
}

func newFaultRun(t *testing.T, notes int) *faultRun {
	t.Helper()
	h := newHarness(t)
	h.AgentArgs = []string{"--interval", "10s"}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	r := &faultRun{t: t, ctx: ctx, h: h, a: a, dev: dev, l: &ledger{}}
	for i := range notes {
		r.writeLocal(fmt.Sprintf("notes/n%02d.md", i))
	}
	r.settle("the first sync")
	return r
}

// writeLocal saves a new version of path in the folder, as an editor does.
func (r *faultRun) writeLocal(path string) string {
	r.t.Helper()
	full := filepath.Join(r.a.Folder, filepath.FromSlash(path))
	base, _ := os.ReadFile(full)
	body := r.l.content("local", path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.l.add(ledgerOp{side: "local", path: path, content: body, base: string(base)})
	return body
}

// writeCloud saves a new version of path in the bucket, as another device
// does, and tells the server.
func (r *faultRun) writeCloud(path string) string {
	r.t.Helper()
	base, _ := r.dev.GetObject(r.ctx, path)
	body := r.l.content("cloud", path)
	if err := r.dev.PutObject(r.ctx, path, []byte(body)); err != nil {
		r.t.Fatal(err)
	}
	r.l.add(ledgerOp{side: "cloud", path: path, content: body, base: string(base)})
	_ = r.dev.NotifySync(r.ctx, r.h.ServerURL)
	return body
}

// deleteLocal deletes path from the folder.
func (r *faultRun) deleteLocal(path string) {
	r.t.Helper()
	full := filepath.Join(r.a.Folder, filepath.FromSlash(path))
	base, err := os.ReadFile(full)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.Remove(full); err != nil {
		r.t.Fatal(err)
	}
	r.l.add(ledgerOp{side: "local", path: path, base: string(base), delete: true})
}

// settle waits for both sides to be in step by themselves.
func (r *faultRun) settle(what string) time.Duration {
	r.t.Helper()
	start := time.Now()
	if err := settled(r.ctx, r.a, r.dev, 90*time.Second); err != nil {
		r.t.Fatalf("%s: the sides did not settle: %v", what, err)
	}
	return time.Since(start)
}

// check runs the ledger's check and prints the case's figures.
func (r *faultRun) check(name string, manual int) {
	r.t.Helper()
	present, local, cloud := everything(r.t, r.ctx, r.a, r.dev)
	if diff := sameTrees(local, cloud); diff != "" {
		r.t.Errorf("%s: the two sides differ: %s", name, diff)
	}
	res := r.l.check(present, local, cloud)
	r.t.Logf("FIGURE %s: %d operations, %d versions owed, %d lost, %d deletes resurrected, %d manual steps", name, res.ops, res.owed, res.lost, res.resurrected, manual)
	if res.lost > 0 {
		r.t.Errorf("%s: %d versions lost: %v", name, res.lost, res.lostExamples)
	}
	if res.resurrected > 0 {
		r.t.Errorf("%s: %d deletes resurrected: %v", name, res.resurrected, res.resurrectedExamples)
	}
}

// status waits for the daemon's status to match ok.
func (r *faultRun) status(what string, timeout time.Duration, ok func(ipc.Status) bool) ipc.Status {
	r.t.Helper()
	st, err := waitState(r.ctx, r.a, timeout, ok)
	if err != nil {
		r.t.Fatalf("%s: %v (status %+v)", what, err, st)
	}
	return st
}

// TestFaultsFolder: the notes folder emptied, removed, and covered by an
// empty mount (an unmounted drive's mount point). Nothing is deleted in the
// bucket for it, the status says what happened and what to do, and the
// advice works.
func TestFaultsFolder(t *testing.T) {
	r := newFaultRun(t, 20)
	before, err := bucketKeys(r.ctx, r.dev)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() {
		t.Helper()
		if before, err = bucketKeys(r.ctx, r.dev); err != nil {
			t.Fatal(err)
		}
	}
	unchanged := func(what string) {
		t.Helper()
		now, err := bucketKeys(r.ctx, r.dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(now) != len(before) {
			t.Fatalf("%s: the bucket holds %d notes, had %d: deletes went through", what, len(now), len(before))
		}
	}

	// emptied: held, and `bm-agent sync --resync` (the advice) refills it
	entries, _ := os.ReadDir(r.a.Folder)
	for _, e := range entries {
		if e.Name() != ".bmignore" {
			os.RemoveAll(filepath.Join(r.a.Folder, e.Name()))
		}
	}
	st := r.status("emptied", 30*time.Second, func(st ipc.Status) bool { return st.Hold != nil && st.Hold.Reason == ipc.HoldLocalEmpty })
	if !strings.Contains(st.Hold.Message, "bm-agent sync --resync") {
		t.Errorf("the empty-folder hold does not say how to refill the folder: %s", st.Hold.Message)
	}
	unchanged("emptied")
	if out, err := r.h.CLI(r.ctx, r.a, "sync", "--resync"); err != nil {
		t.Fatalf("the hold's advice, bm-agent sync --resync, failed: %v\n%s", err, out)
	}
	r.settle("after the advised resync")
	unchanged("after the advised resync")

	// removed: held; put back, it syncs by itself (the watch comes back)
	snapshot()
	parked := r.a.Folder + ".parked"
	if err := os.Rename(r.a.Folder, parked); err != nil {
		t.Fatal(err)
	}
	st = r.status("removed", 30*time.Second, func(st ipc.Status) bool { return st.Hold != nil && st.Hold.Reason == ipc.HoldLocalMissing })
	if !strings.Contains(st.Watcher, "is gone") {
		t.Errorf("the status does not say the folder is gone: watcher %q", st.Watcher)
	}
	unchanged("removed")
	if err := os.Rename(parked, r.a.Folder); err != nil {
		t.Fatal(err)
	}
	r.status("put back", 30*time.Second, func(st ipc.Status) bool { return st.Hold == nil && st.Watcher == "" })
	r.writeLocal("notes/after-put-back.md")
	r.settle("after the folder came back")

	// covered by an empty mount: held; uncovered, it syncs by itself
	snapshot()
	if err := mountTmpfs(r.a.Folder, "1m"); testenv.Optional(t, "a tmpfs mount over the folder, for the empty-mount case (CI runs as root)", err) {
		st = r.status("covered", 30*time.Second, func(st ipc.Status) bool { return st.Hold != nil })
		t.Logf("covered by an empty mount: %s", st.Hold.Message)
		unchanged("covered")
		if err := unmount(r.a.Folder); err != nil {
			t.Fatal(err)
		}
		r.status("uncovered", 60*time.Second, func(st ipc.Status) bool { return st.Hold == nil && st.State == ipc.StateIdle })
		r.writeLocal("notes/after-unmount.md")
		r.settle("after the mount went")
	}
	r.check("folder emptied, removed, covered", 0)
}

// TestFaultsMassDelete: deletes over the profile's limit are held until
// `bm-agent sync --force`; under it they go through; every deleted note
// can be brought back with `bm-agent restore --deleted`.
func TestFaultsMassDelete(t *testing.T) {
	r := newFaultRun(t, 40)
	start := time.Now().Add(-time.Second)
	for i := range 4 { // 10%: under balanced's 25%
		r.deleteLocal(fmt.Sprintf("notes/n%02d.md", i))
	}
	r.settle("deletes under the limit")
	if keys, _ := bucketKeys(r.ctx, r.dev); len(keys) != 36 {
		t.Errorf("after deleting 4 of 40: %d in the bucket, want 36", len(keys))
	}
	for i := 4; i < 18; i++ { // 14 of 36: over the limit
		r.deleteLocal(fmt.Sprintf("notes/n%02d.md", i))
	}
	st := r.status("held", 30*time.Second, func(st ipc.Status) bool { return st.Hold != nil && st.Hold.Reason == ipc.HoldMaxDelete })
	if st.Hold.Deletes != 14 || !strings.Contains(st.Hold.Message, "--force") {
		t.Errorf("hold = %+v", st.Hold)
	}
	if keys, _ := bucketKeys(r.ctx, r.dev); len(keys) != 36 {
		t.Fatalf("held, yet the bucket went from 36 to %d", len(keys))
	}
	out, err := r.h.CLI(r.ctx, r.a, "sync")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 6 {
		t.Errorf("bm-agent sync while held: %v, want exit code 6\n%s", err, out)
	}
	if out, err := r.h.CLI(r.ctx, r.a, "sync", "--force"); err != nil {
		t.Fatalf("sync --force: %v\n%s", err, out)
	}
	r.settle("after sync --force")
	if keys, _ := bucketKeys(r.ctx, r.dev); len(keys) != 22 {
		t.Errorf("after sync --force: %d in the bucket, want 22", len(keys))
	}
	out, err = r.h.CLI(r.ctx, r.a, "restore", "--deleted", "--since", time.Since(start).Round(time.Second).String())
	if err != nil {
		t.Fatalf("restore --deleted: %v\n%s", err, out)
	}
	r.settle("after restore --deleted")
	// the person brought them back: new writes of the deleted versions
	for i := range 18 {
		p := fmt.Sprintf("notes/n%02d.md", i)
		if b, err := os.ReadFile(filepath.Join(r.a.Folder, filepath.FromSlash(p))); err == nil {
			r.l.add(ledgerOp{side: "local", path: p, content: string(b)})
		}
	}
	if keys, _ := bucketKeys(r.ctx, r.dev); len(keys) != 40 {
		t.Errorf("after restore --deleted: %d in the bucket, want all 40 back", len(keys))
	}
	r.check("mass delete", 1) // sync --force: the confirmation the hold asks for
}

// TestFaultsConflictsInOneSecond: one note changed on both sides twice
// within a second: every version is kept, under names of their own.
func TestFaultsConflictsInOneSecond(t *testing.T) {
	r := newFaultRun(t, 12)
	start := time.Now()
	for range 2 {
		// both sides change it while no pass runs, then one pass meets both
		if err := r.a.IPC.Pause(r.ctx); err != nil {
			t.Fatal(err)
		}
		r.status("paused", 10*time.Second, func(st ipc.Status) bool { return st.State == ipc.StatePaused })
		r.writeLocal("notes/n00.md")
		r.writeCloud("notes/n00.md")
		if err := r.a.IPC.Resume(r.ctx); err != nil {
			t.Fatal(err)
		}
		sum, err := r.a.IPC.Sync(r.ctx, ipc.SyncRequest{Wait: true})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Conflicts != 1 {
			t.Logf("the pass after both changes: %+v", sum)
		}
	}
	t.Logf("two conflicts in %v", time.Since(start).Round(time.Millisecond))
	r.settle("after two conflicts")
	local, _ := localTree(r.a.Folder)
	n := 0
	for k := range local {
		if strings.HasPrefix(k, "notes/n00.conflict-") {
			n++
		}
	}
	if n != 2 {
		b, _ := os.ReadFile(filepath.Join(r.h.Dir, "agent.log"))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "n00") || strings.Contains(l, "sync pass\"") {
				t.Log(l)
			}
		}
		t.Errorf("%d conflict files of n00.md, want 2: %v", n, keysOf(local))
	}
	r.check("conflicts twice in a second", 0)
}

// TestFaultsClockJump: every file's time jumps (a clock or time zone
// change, a tool that touched them all) while some notes are deleted: the
// deleted stay deleted, the rest stays, nobody is asked anything.
func TestFaultsClockJump(t *testing.T) {
	r := newFaultRun(t, 30)
	later := time.Now().Add(5 * time.Hour)
	filepath.WalkDir(r.a.Folder, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			os.Chtimes(p, later, later)
		}
		return nil
	})
	r.deleteLocal("notes/n03.md")
	r.deleteLocal("notes/n17.md")
	r.writeLocal("notes/n20.md")
	if _, err := r.a.IPC.Sync(r.ctx, ipc.SyncRequest{Wait: true}); err != nil {
		t.Fatal(err)
	}
	r.settle("after the clock jump")
	r.check("clock jump", 0)
}

// TestFaultsFileFolderSwap: a folder replaced by a file of the same name
// here, a file by a folder in the bucket: the rest syncs, the status lists
// the two with what to do, and `bm-agent sync` (as the status says) gets
// them through once the sides agree.
func TestFaultsFileFolderSwap(t *testing.T) {
	r := newFaultRun(t, 12)
	r.writeLocal("swap-here/a.md")
	r.writeCloud("swap-there")
	r.settle("before the swap")
	if err := os.RemoveAll(filepath.Join(r.a.Folder, "swap-here")); err != nil {
		t.Fatal(err)
	}
	r.writeLocal("swap-here")
	if err := r.dev.DeleteObject(r.ctx, "swap-there"); err != nil {
		t.Fatal(err)
	}
	r.writeCloud("swap-there/b.md")
	r.writeLocal("notes/unrelated.md")
	st := r.status("the swap listed", 60*time.Second, func(st ipc.Status) bool { return len(st.NotSyncing) > 0 && st.State == ipc.StateIdle })
	for _, f := range st.NotSyncing {
		t.Logf("not syncing: %s (%s): %s", f.Path, f.Reason, f.Advice)
		if f.Reason != ipc.FailKindClash {
			t.Errorf("%s: reason %q, want a file/folder clash", f.Path, f.Reason)
		}
	}
	if keys, _ := bucketKeys(r.ctx, r.dev); keys["notes/unrelated.md"] == 0 {
		t.Error("the rest did not sync")
	}
	// They are tried again in a minute by themselves; `bm-agent sync`
	// (the status's other advice) does it now.
	for range 3 {
		if _, err := r.h.CLI(r.ctx, r.a, "sync"); err == nil {
			if st, _ := r.a.IPC.Status(r.ctx); len(st.NotSyncing) == 0 {
				break
			}
		}
	}
	r.settle("after the swap")
	r.check("file/folder swap", 0)
}

// TestFaultsHostileNames: notes with names people and other tools make:
// spaces, accents, punctuation, a name that looks like a path, one full
// of dots, names that differ in case only, a very long one. (Names that
// begin with a dot never sync: Basic Memory's ignore rules.) Each syncs, or is listed with what to do;
// nothing else waits for them.
func TestFaultsHostileNames(t *testing.T) {
	r := newFaultRun(t, 12)
	names := []string{
		"with space/and  two.md", "ünïcödé/日本語.md", "emoji 📝.md", "pct%2Fslash.md", "back\\slash.md",
		"quote\"and'apostrophe.md", "tab\tname.md", "trailing space .md", "dots..in...it.md", "UPPER.MD", "upper.md",
		"[brackets]{braces}(parens)*star?.md", strings.Repeat("long", 60) + ".md",
	}
	for i, n := range names {
		if i%2 == 0 {
			r.writeCloud(n)
		} else {
			r.writeLocal(n)
		}
	}
	r.writeLocal("notes/plain.md")
	r.settle("after the hostile names")
	r.check("hostile names", 0)
}

// TestFaultsTwoDaemons: a second daemon on one state dir (another socket)
// is refused, and says why; the first goes on.
func TestFaultsTwoDaemons(t *testing.T) {
	r := newFaultRun(t, 5)
	cmd := exec.CommandContext(r.ctx, filepath.Join(r.h.Bin, "bm-agent"), "run", "--folder", r.a.Folder, "--socket", filepath.Join(r.h.Dir, "second.sock"))
	cmd.Env = r.a.Env
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "another bm-agent daemon is running with this state dir") {
		t.Fatalf("a second daemon on the same state dir: %v\n%s", err, out)
	}
	r.writeLocal("notes/after.md")
	r.settle("after the refused second daemon")
	r.check("two daemons", 0)
}

// TestFaultsFullDisk: the disk holding the notes folder fills up: the
// status says so (nothing is lost), and once there is room the notes
// arrive by themselves.
func TestFaultsFullDisk(t *testing.T) {
	r := newFaultRun(t, 5)
	// the folder moves onto a small file system of its own
	mnt := r.a.Folder
	parked := mnt + ".parked"
	if err := os.Rename(mnt, parked); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mountTmpfs(mnt, "2m"); err != nil {
		os.Remove(mnt)
		os.Rename(parked, mnt)
		testenv.Require(t, "a small tmpfs mount (CI runs as root)", err)
	}
	t.Cleanup(func() { unmount(mnt) })
	if out, err := exec.Command("cp", "-a", parked+"/.", mnt+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy the notes onto the small disk: %v %s", err, out)
	}
	r.status("back on the small disk", 60*time.Second, func(st ipc.Status) bool { return st.Hold == nil && st.State == ipc.StateIdle })
	filler := filepath.Join(mnt, ".filler")
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k", "count=40").CombinedOutput(); err != nil && !strings.Contains(string(out), "No space") {
		t.Fatalf("fill the disk: %v %s", err, out)
	}
	r.writeCloud("notes/big.md")
	big := strings.Repeat("a note that does not fit ", 40000) // ~1 MB
	if err := r.dev.PutObject(r.ctx, "notes/huge.md", []byte(big)); err != nil {
		t.Fatal(err)
	}
	r.l.add(ledgerOp{side: "cloud", path: "notes/huge.md", content: big})
	_ = r.dev.NotifySync(r.ctx, r.h.ServerURL)
	st := r.status("the disk is full", 60*time.Second, func(st ipc.Status) bool { return strings.Contains(st.Error, "disk is full") })
	t.Logf("full disk: %s", st.Error)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r.settle("after room was made")
	r.check("full disk", 0)
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
