package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
)

// TestVersionsAndRestore is the way back for a person, end to end: a note
// another device overwrote and one it deleted are listed by `bm-agent
// versions` and brought back by `bm-agent restore`, through the CLI and
// the real daemon and server, and the restored notes reach the bucket.
func TestVersionsAndRestore(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { versionsAndRestore(t, newHarness(t), "") })
	t.Run("minio", func(t *testing.T) {
		srv := miniotest.Start(t)
		h := newHarness(t)
		h.ServerArgs = []string{"--storage", "minio", "--storage-endpoint", srv.URL}
		h.ServerEnv = []string{"BM_SERVER_STORAGE_ACCESS_KEY=" + miniotest.RootUser, "BM_SERVER_STORAGE_SECRET_KEY=" + miniotest.RootPassword}
		versionsAndRestore(t, h, srv.URL)
	})
}

// versionsAndRestore runs the test on h's server; its devices must get
// S3 endpoint wantS3 ("": any).
func versionsAndRestore(t *testing.T, h *harness.Harness, wantS3 string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	if wantS3 != "" && dev.Creds.EndpointURL != wantS3 {
		t.Fatalf("the device's S3 endpoint is %s, want %s", dev.Creds.EndpointURL, wantS3)
	}
	for name, body := range map[string]string{"note.md": "v1 written here", "other.md": "another note", "seed.md": "so the folder is never empty"} {
		if err := os.WriteFile(filepath.Join(a.Folder, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitBucket := func(key, want string) {
		t.Helper()
		pollOK(t, ctx, 30*time.Second, "the bucket's "+key, bucketHolds(ctx, dev, key, want))
	}
	waitLocal := func(name, want string) {
		t.Helper()
		if _, err := harness.Poll(ctx, 30*time.Second, func() error {
			b, err := os.ReadFile(filepath.Join(a.Folder, name))
			if want == "" {
				if err == nil {
					return fmt.Errorf("%s still in the folder", name)
				}
				return nil
			}
			if err != nil || string(b) != want {
				return fmt.Errorf("local %s = %q, %v; want %q", name, b, err, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitBucket("note.md", "v1 written here")
	waitBucket("other.md", "another note")
	start := time.Now().Add(-time.Second)

	// another device overwrites one note and deletes the other
	if err := dev.PutObject(ctx, "note.md", []byte("v2 from the other device")); err != nil {
		t.Fatal(err)
	}
	if err := dev.DeleteObject(ctx, "other.md"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.IPC.Sync(ctx, ipc.SyncRequest{Wait: true}); err != nil {
		t.Fatal(err)
	}
	waitLocal("note.md", "v2 from the other device")
	waitLocal("other.md", "")

	out, err := h.CLI(ctx, a, "versions", "note.md", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var vs ipc.Versions
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("versions --json: %v: %s", err, out)
	}
	if len(vs.Versions) != 1 || vs.Versions[0].Reason != ipc.ReasonOverwritten || vs.Versions[0].Side != ipc.VersionSideLocal || vs.DaysKept != 30 {
		t.Fatalf("versions note.md = %+v", vs)
	}
	// the path may be given as the person sees it: a path into the folder
	out, err = h.CLI(ctx, a, "versions", filepath.Join(a.Folder, "note.md"))
	if err != nil || !strings.Contains(out, "overwritten") || !strings.Contains(out, vs.Versions[0].ID) {
		t.Fatalf("versions (text) = %v:\n%s", err, out)
	}
	t.Logf("bm-agent versions:\n%s", out)

	out, err = h.CLI(ctx, a, "restore", "note.md")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bm-agent restore:\n%s", out)
	waitLocal("note.md", "v1 written here")
	waitBucket("note.md", "v1 written here")
	vs2, err := a.IPC.Versions(ctx, ipc.VersionsRequest{Path: "note.md"})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, v := range vs2.Versions {
		reasons[v.Reason] = true
	}
	if !reasons[ipc.ReasonRestored] || !reasons[ipc.ReasonOverwritten] {
		t.Errorf("after the restore: %+v; want the replaced note kept as restored, and the bucket's v2 kept as overwritten", vs2.Versions)
	}

	// a burst of deletes undone in one command
	out, err = h.CLI(ctx, a, "versions", "--deleted", "--since", time.Since(start).Round(time.Second).String())
	if err != nil || !strings.Contains(out, "other.md") {
		t.Fatalf("versions --deleted = %v:\n%s", err, out)
	}
	out, err = h.CLI(ctx, a, "restore", "--deleted", "--since", "10m")
	if err != nil || !strings.Contains(out, "other.md") {
		t.Fatalf("restore --deleted = %v:\n%s", err, out)
	}
	waitLocal("other.md", "another note")
	waitBucket("other.md", "another note")

	// what cannot be done says so, with the error exit code
	out, err = h.CLI(ctx, a, "restore", "never-was.md")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "no version of never-was.md is kept") {
		t.Errorf("restore of a note with no versions = %v:\n%s", err, out)
	}
	out, err = h.CLI(ctx, a, "restore", "note.md", "--version", "l00000000")
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "bm-agent versions") {
		t.Errorf("restore of an unknown version = %v:\n%s", err, out)
	}
	out, err = h.CLI(ctx, a, "restore", "/etc/passwd")
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("restore of a path outside the folder = %v:\n%s", err, out)
	}
}
