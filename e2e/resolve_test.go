package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// TestResolveEndToEnd: a note changed here and on another device becomes
// a conflict; `bm-agent resolve --keep mine` settles it through the CLI
// and the real daemon: this device's version is the note again, the
// conflict file is gone from the folder and the bucket (so the other
// devices get the result on their next pass), and the version it replaced
// is kept.
func TestResolveEndToEnd(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// the name its person gave this device, which the conflict list shows
	h.PrepareAgent = func(_ *exec.Cmd, a *harness.Agent) error {
		return os.WriteFile(filepath.Join(a.Home, "config.json"), []byte(`{"device_name": "Ada's laptop"}`), 0o600)
	}
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	for name, body := range map[string]string{"note.md": "v1", "seed.md": "so the folder is never empty"} {
		if err := os.WriteFile(filepath.Join(a.Folder, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(what string, fn func() error) { t.Helper(); pollOK(t, ctx, 60*time.Second, what, fn) }
	bucketIs := func(key, want string) func() error { return bucketHolds(ctx, dev, key, want) }
	poll("the first sync", bucketIs("note.md", "v1"))

	// both sides change the note while sync is paused; the other device's
	// edit is the newer one, so this device's becomes the conflict file
	run := func(args ...string) (string, error) { return h.CLI(ctx, a, args...) }
	c := conflictOn(t, ctx, 60*time.Second, run, dev, a.Folder, "note.md", "mine, written here", "theirs, from the other device", nil)
	t.Logf("conflict file %s from %s (%s)", c.Path, c.From, c.Device)
	if c.From != "Ada's laptop" || c.Device != "Ada-s-laptop" {
		t.Errorf("conflict %+v: want this device's version, from \"Ada's laptop\" (label Ada-s-laptop)", c)
	}
	poll("the conflict file in the bucket", func() error {
		_, err := dev.GetObject(ctx, c.Path)
		return err
	})
	// the bucket's copy says who wrote it, for the other devices' lists
	head, err := dev.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dev.Creds.BucketName, Key: &c.Path})
	if err != nil {
		t.Fatal(err)
	}
	if got := head.Metadata["bm-device"]; got != url.PathEscape("Ada's laptop") {
		t.Errorf("the bucket's %s: x-amz-meta-bm-device = %q, want this device's name", c.Path, got)
	}

	out, err := h.CLI(ctx, a, "resolve", "note.md", "--keep", "mine", "--json")
	if err != nil {
		t.Fatalf("resolve: %v: %s", err, out)
	}
	var res ipc.ResolveResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Note != "note.md" || len(res.Removed) != 1 || res.Removed[0] != c.Path {
		t.Fatalf("resolve --json = %s (%v); want note.md with %s removed", out, err, c.Path)
	}
	b, err := os.ReadFile(filepath.Join(a.Folder, "note.md"))
	if err != nil || string(b) != "mine, written here" {
		t.Fatalf("note.md = %q, %v; want this device's version", b, err)
	}
	if _, err := os.Stat(filepath.Join(a.Folder, filepath.FromSlash(c.Path))); err == nil {
		t.Errorf("%s still in the folder", c.Path)
	}
	// the pass the resolve asked for takes it to the bucket
	poll("the resolved note in the bucket", bucketIs("note.md", "mine, written here"))
	poll("the conflict file gone from the bucket", bucketIs(c.Path, ""))

	vs, err := a.IPC.Versions(ctx, ipc.VersionsRequest{Path: "note.md"})
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, v := range vs.Versions {
		kept = kept || (v.Reason == ipc.ReasonResolved && v.Side == ipc.VersionSideLocal)
	}
	if !kept {
		t.Errorf("versions of note.md = %+v; want the replaced one kept as resolved", vs.Versions)
	}
}
