//go:build unix

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// nobody is the user the daemon runs as in TestFaultsUnreadable: root
// reads any file whatever its permissions, and a person's daemon is not
// root.
const nobody = 65534

// chownTree gives dir and everything in it to uid.
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFaultsUnreadable: a note and a folder the daemon's user may not
// read. The daemon syncs everything else, the status lists the two with
// the fix, nothing is deleted in the bucket for them, and once they are
// readable again they sync by themselves.
func TestFaultsUnreadable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the daemon as another user: needs root (CI is)")
	}
	h := newHarness(t)
	h.AgentArgs = []string{"--interval", "10s"}
	for _, d := range []string{h.Dir, h.Bin} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.PrepareAgent = func(cmd *exec.Cmd, a *harness.Agent) error {
		if err := os.MkdirAll(a.Folder, 0o755); err != nil {
			return err
		}
		chownTree(t, a.Home, nobody)
		chownTree(t, a.Folder, nobody)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	r := &faultRun{t: t, ctx: ctx, h: h, a: a, dev: dev, l: &ledger{}}
	for _, n := range []string{"notes/a.md", "notes/b.md", "private/kept.md", "locked.md"} {
		r.writeLocal(n)
	}
	chownTree(t, a.Folder, nobody)
	r.settle("the first sync")

	r.writeLocal("locked.md")
	r.writeLocal("private/new.md")
	r.writeLocal("notes/c.md")
	chownTree(t, a.Folder, nobody)
	locked, private := filepath.Join(a.Folder, "locked.md"), filepath.Join(a.Folder, "private")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0); err != nil {
		t.Fatal(err)
	}
	r.writeCloud("notes/theirs.md")
	st := r.status("the unreadable listed", 60*time.Second, func(st ipc.Status) bool {
		return len(st.NotSyncing) == 2 && st.State == ipc.StateIdle
	})
	for _, f := range st.NotSyncing {
		t.Logf("not syncing: %s (%s): %s", f.Path, f.Reason, f.Advice)
		if f.Reason != ipc.FailPermission || !strings.Contains(f.Advice, "permissions") {
			t.Errorf("%s: %+v, want a permission failure with the fix", f.Path, f)
		}
	}
	keys, err := bucketKeys(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if keys["notes/c.md"] == 0 || keys["private/kept.md"] == 0 {
		t.Errorf("the rest did not sync, or the bucket's copy went: %v", keys)
	}
	if b, err := os.ReadFile(filepath.Join(a.Folder, "notes", "theirs.md")); err != nil || len(b) == 0 {
		t.Errorf("the other device's note did not arrive: %v", err)
	}

	if err := os.Chmod(private, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(locked, 0o644); err != nil {
		t.Fatal(err)
	}
	// tried again within a minute by themselves; `bm-agent sync` does it now
	if out, err := h.CLI(ctx, a, "sync"); err != nil {
		t.Fatalf("sync: %v\n%s", err, out)
	}
	r.settle("once readable")
	r.check("unreadable entries", 0)
}
