package mount

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// The test process serves its mounts itself, so it never touches them: a
// Go process that reads or writes its own FUSE mount can wedge its
// runtime (seen here under load: every thread waiting, no goroutine able
// to answer). Every file operation on a mount runs in a child process, as
// a person's editor would.

// readVia reads path with cat.
func readVia(path string) ([]byte, error) {
	out, err := exec.Command("cat", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("cat %s: %w: %s", path, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("cat %s: %w", path, err)
	}
	return out, nil
}

// writeVia writes body to path with a shell redirection.
func writeVia(path string, body []byte) error {
	cmd := exec.Command("sh", "-c", `cat > "$1"`, "sh", path)
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("write %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mkdirVia creates path and its parents with mkdir -p.
func mkdirVia(path string) error {
	if out, err := exec.Command("mkdir", "-p", path).CombinedOutput(); err != nil {
		return fmt.Errorf("mkdir %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// holdOpen keeps path open in a child process until release is called.
func holdOpen(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command("sh", "-c", `exec 3<"$1" || exit 1; echo ready; exec sleep 600`, "sh", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("could not hold %s open: %q %v", path, line, err)
	}
	conn := connOf(path)
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				// its close waits on a server that no longer answers
				abortConn(conn)
				<-done
			}
		})
	}
	t.Cleanup(release)
	return release
}

// connOf is the FUSE connection number of the mount holding path (-1
// when it is on none of ours).
func connOf(path string) int {
	ourMountsMu.Lock()
	defer ourMountsMu.Unlock()
	for mp := range ourMounts {
		if path != mp && !strings.HasPrefix(path, mp+string(filepath.Separator)) {
			continue
		}
		if infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mp)); err == nil && len(infos) > 0 {
			return infos[0].Minor
		}
	}
	return -1
}

// abortConn aborts FUSE connection n through fusectl.
func abortConn(n int) {
	if n < 0 {
		return
	}
	const ctl = "/sys/fs/fuse/connections"
	if entries, _ := os.ReadDir(ctl); len(entries) == 0 {
		_ = exec.Command("mount", "-t", "fusectl", "none", ctl).Run()
	}
	_ = os.WriteFile(filepath.Join(ctl, fmt.Sprint(n), "abort"), []byte("1"), 0o200)
}
