package mount

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

// A FUSE mount is served by this very test process. If a test fails while
// one of its own goroutines waits on the mount (t.TempDir's removal walking
// into it, a stat in a check) and the server has stopped, that syscall
// never returns, and at exit the process cannot die either: the FUSE
// connection only goes away when the process's last thread does. These
// guards keep a failing mount test from hanging the whole run.

var (
	ourMountsMu sync.Mutex
	ourMounts   = map[string]bool{}
)

// mountPoint names the mount point under dir and detaches whatever is
// still mounted there when the test ends, before dir is removed.
func mountPoint(t *testing.T, dir string) string {
	t.Helper()
	mp := filepath.Join(dir, "mnt")
	ourMountsMu.Lock()
	ourMounts[mp] = true
	ourMountsMu.Unlock()
	t.Cleanup(func() { _ = syscall.Unmount(mp, syscall.MNT_DETACH) })
	return mp
}

// watchdog aborts the FUSE connections of this process's mounts if the
// tests have not finished by the deadline, so blocked syscalls fail with
// ENOTCONN and the process can report and exit instead of hanging.
func watchdog(deadline time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(deadline):
			fmt.Fprintf(os.Stderr, "mount tests still running after %s: aborting their FUSE connections\n", deadline)
			abortOurMounts()
		}
	}()
	return func() { close(done) }
}

// abortOurMounts aborts the FUSE connection behind each of our mount
// points still listed, through the fusectl file system (mounted here if
// needed; tests run as root where FUSE is available).
func abortOurMounts() {
	const ctl = "/sys/fs/fuse/connections"
	if entries, _ := os.ReadDir(ctl); len(entries) == 0 {
		_ = exec.Command("mount", "-t", "fusectl", "none", ctl).Run()
	}
	ourMountsMu.Lock()
	defer ourMountsMu.Unlock()
	for mp := range ourMounts {
		infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mp))
		if err != nil {
			continue
		}
		for _, info := range infos {
			// the connection's number is the mount's device minor
			_ = os.WriteFile(filepath.Join(ctl, fmt.Sprint(info.Minor), "abort"), []byte("1"), 0o200)
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
}
