//go:build unix

package syncer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// asUser runs the calling test again in a child process as the "nobody"
// user when this one is root (CI's tests run as root, and root reads
// files whatever their permissions); as any other user it returns false
// and the caller runs the test itself. It returns true when the child
// ran (and passed) in its place.
func asUser(t *testing.T) bool {
	t.Helper()
	if os.Getenv("BM_SYNCER_AS_USER") == "1" || os.Getuid() != 0 {
		return false
	}
	// The test binary sits in a dir only root may enter: copy it out.
	dir, err := os.MkdirTemp("", "bm-asuser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "syncer.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BM_SYNCER_AS_USER=1", "HOME="+dir, "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("as user nobody:\n%s", out)
	if err != nil {
		t.Fatalf("the test as user nobody: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not run as user nobody")
	}
	return true
}
