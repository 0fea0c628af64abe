package syncer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/agent/versions"
	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/s3embed/s3test"
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/operations"
)

// embedS3 is the production embedded S3 endpoint (server/s3embed) on a
// loopback port, over a temp dir.
type embedS3 struct {
	srv  *s3embed.Server
	url  string
	root string
	fs   fs.Fs // an rclone view of the bucket, to play "another device"
}

func newEmbedS3(t testing.TB) *embedS3 {
	t.Helper()
	return newEmbedS3Seeded(t, nil)
}

// newEmbedS3Seeded lets seed write object files straight into the bucket's
// directory before the endpoint starts; the endpoint builds their
// metadata (size, MD5, mtime) when it first loads the bucket. Uploading
// 10,000 objects one by one would take most of the test's time budget.
func newEmbedS3Seeded(t testing.TB, seed func(bucketDir string)) *embedS3 {
	t.Helper()
	root := t.TempDir()
	if seed != nil {
		dir := filepath.Join(root, testBucket)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		seed(dir)
	}
	ep := s3test.Start(t, root, s3test.Key{AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket})
	e := &embedS3{srv: ep.Server, url: ep.URL, root: root}
	SetupRclone()
	var err error
	if e.fs, err = newRemoteFs(context.Background(), e.remote()); err != nil {
		t.Fatal(err)
	}
	if seed != nil {
		// The endpoint indexes a seeded bucket on its first request (an MD5
		// per object); do that here, not in the engine's first pass.
		if _, err := e.fs.List(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *embedS3) remote() Remote {
	return Remote{Endpoint: e.url, Region: "us-east-1", AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}
}

// newEmbedPair makes an engine over a fresh notes folder for the bucket.
func newEmbedPair(t testing.TB, s3 *embedS3, device string, profile Profile) *pair {
	t.Helper()
	dir := t.TempDir()
	local := filepath.Join(dir, "notes")
	if err := os.Mkdir(local, 0o755); err != nil {
		t.Fatal(err)
	}
	return newEmbedPairAt(t, s3, local, filepath.Join(dir, "state"), device, profile)
}

func newEmbedPairAt(t testing.TB, s3 *embedS3, local, work, device string, profile Profile) *pair {
	t.Helper()
	return newTestPair(t, Config{LocalDir: local, Remote: s3.remote(), WorkDir: work, Device: device, Profile: profile})
}

// put writes an object through S3 (server modtime: now).
func (e *embedS3) put(t testing.TB, name string, body []byte) {
	t.Helper()
	_, err := operations.Rcat(context.Background(), e.fs, name, io.NopCloser(bytes.NewReader(body)), time.Now(), nil)
	if err != nil {
		t.Fatalf("cloud put %s: %v", name, err)
	}
}

func (e *embedS3) del(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	o, err := e.fs.NewObject(ctx, name)
	if err == nil {
		err = operations.DeleteFile(ctx, o)
	}
	if err != nil {
		t.Fatalf("cloud delete %s: %v", name, err)
	}
}

func (e *embedS3) rename(t testing.TB, from, to string) {
	t.Helper()
	ctx := context.Background()
	o, err := e.fs.NewObject(ctx, from)
	if err == nil {
		_, err = operations.Move(ctx, e.fs, nil, to, o)
	}
	if err != nil {
		t.Fatalf("cloud rename %s: %v", from, err)
	}
}

// files reads the bucket's objects from the endpoint's directory.
// files is the bucket's content by key, without the version store.
func (e *embedS3) files(t testing.TB) map[string]string {
	t.Helper()
	out := treeFiles(t, filepath.Join(e.root, testBucket))
	for k := range out {
		if versions.IsVersionKey(k) {
			delete(out, k)
		}
	}
	return out
}

// treeFiles reads every regular file under root by slash path (skipping
// the notes folder's own ignore file); files over 64 KiB are summarized
// as "sha256:<hex>".
func treeFiles(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if _, err := os.Stat(root); os.IsNotExist(err) {
		return out
	}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == IgnoreFile {
			return nil
		}
		b, err := os.ReadFile(path)
		if len(b) > 64<<10 {
			b = []byte(fmt.Sprintf("sha256:%x", sha256.Sum256(b)))
		}
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
