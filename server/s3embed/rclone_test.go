package s3embed_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"testing"
	"time"

	_ "github.com/rclone/rclone/backend/s3" // registers the "s3" backend
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/config/configmap"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/fs/object"
	"github.com/rclone/rclone/fs/operations"
)

// rcloneFs is rclone's s3 backend on bucket-a of e with its key, path
// style, never checking the bucket (as the agent configures it), plus
// settings.
func rcloneFs(t *testing.T, e *env, name string, settings configmap.Simple) fs.Fs {
	t.Helper()
	info, err := fs.Find("s3")
	if err != nil {
		t.Fatal(err)
	}
	m := configmap.Simple{
		"env_auth":          "false",
		"access_key_id":     "AKA",
		"secret_access_key": "secret-a",
		"endpoint":          e.url,
		"region":            "us-east-1",
		"force_path_style":  "true",
		"no_check_bucket":   "true",
	}
	maps.Copy(m, settings)
	f, err := info.NewFs(context.Background(), name, bucketA, fs.ConfigMap(info.Prefix, info.Options, "", m))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRclone drives rclone's s3 backend, configured in code as the agent
// does (path style, no_check_bucket, a bucket-scoped key), against the
// endpoint: put with a modtime, list, read back, modtime preserved, and no
// per-object HEAD while listing.
func TestRclone(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	f := rcloneFs(t, e, "embedded", configmap.Simple{"provider": "Other", "list_version": "2"})

	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	body := []byte("# from rclone\n")
	if _, err := operations.Rcat(ctx, f, "notes/rclone.md", io.NopCloser(bytes.NewReader(body)), mtime, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := operations.Rcat(ctx, f, "notes/other.md", io.NopCloser(bytes.NewReader([]byte("x"))), mtime, nil); err != nil {
		t.Fatal(err)
	}

	e.srv.ResetStats()
	entries, err := f.List(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Remote())
	}
	if len(names) != 2 || names[0] != "notes/other.md" || names[1] != "notes/rclone.md" {
		t.Fatalf("rclone listing = %v", names)
	}
	if st := e.srv.Stats(); st["HeadObject"] != 0 || st["ListObjectsV2"] != 1 {
		t.Errorf("listing made requests %v, want one ListObjectsV2 and no HeadObject", st)
	}

	obj, err := f.NewObject(ctx, "notes/rclone.md")
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.ModTime(ctx); !got.Equal(mtime) {
		t.Errorf("modtime = %v, want %v", got, mtime)
	}
	if obj.Size() != int64(len(body)) {
		t.Errorf("size = %d", obj.Size())
	}
	rc, err := obj.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Errorf("content = %q", got)
	}
	// And the object is visible to the SDK with rclone's mtime metadata.
	if md := get(t, e.a, bucketA, "notes/rclone.md"); !bytes.Equal(md, body) {
		t.Errorf("sdk read %q", md)
	}

	// A big streamed upload goes multipart.
	e.srv.ResetStats()
	big := bytes.Repeat([]byte("0123456789"), 650_000) // 6.5 MB
	bigObj, err := operations.Rcat(ctx, f, "big.bin", io.NopCloser(bytes.NewReader(big)), mtime, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := e.srv.Stats(); st["CompleteMultipartUpload"] != 1 || st["UploadPart"] < 2 {
		t.Errorf("big upload requests = %v, want multipart", st)
	}
	if bigObj.Size() != int64(len(big)) || !bigObj.ModTime(ctx).Equal(mtime) {
		t.Errorf("big object size %d modtime %v", bigObj.Size(), bigObj.ModTime(ctx))
	}
	if got := get(t, e.a, bucketA, "big.bin"); !bytes.Equal(got, big) {
		t.Errorf("big object content differs")
	}

	if err := operations.DeleteFile(ctx, obj); err != nil {
		t.Fatal(err)
	}
	if _, err := f.NewObject(ctx, "notes/rclone.md"); err == nil {
		t.Error("object still there after delete")
	}
}

// TestRcloneMultipartETag uploads a file of known size in parts with
// rclone's s3 backend set as the agent sets it (provider Other, no_head,
// ListObjectsV2; see agent/syncer.NewRemoteFs), to plain provider Other,
// and to provider Minio, which checks the multipart ETag against the parts it sent (as do
// rclone's AWS, Ceph, Wasabi, GCS and most other providers): both uploads
// succeed and verify, and the object reads back. Before, the server's
// whole-file MD5 ETag made the Minio upload fail as corrupted.
func TestRcloneMultipartETag(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), (11<<20)/16) // 11 MiB: 3 parts of 5 MiB
	for _, tc := range []struct {
		name, provider string
		extra          configmap.Simple
	}{
		{"agent", "Other", configmap.Simple{"no_head": "true", "list_version": "2"}},
		{"Other", "Other", nil},
		{"Minio", "Minio", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := configmap.Simple{"provider": tc.provider, "upload_cutoff": "5Mi", "chunk_size": "5Mi"}
			maps.Copy(m, tc.extra)
			f := rcloneFs(t, e, "embedded-"+tc.name, m)
			e.srv.ResetStats()
			name := "mp-" + tc.name + ".bin"
			src := object.NewStaticObjectInfo(name, time.Now(), int64(len(body)), true, map[hash.Type]string{hash.MD5: md5hex(body)}, nil)
			obj, err := f.Put(ctx, bytes.NewReader(body), src)
			if err != nil {
				t.Fatalf("multipart put: %v", err)
			}
			if st := e.srv.Stats(); st["CompleteMultipartUpload"] != 1 || st["UploadPart"] != 3 {
				t.Errorf("requests %v, want a multipart upload of 3 parts", st)
			}
			if got, err := obj.Hash(ctx, hash.MD5); err != nil || got != md5hex(body) {
				t.Errorf("rclone's md5 of the object = %q, %v", got, err)
			}
			if got := get(t, e.a, bucketA, name); !bytes.Equal(got, body) {
				t.Error("content differs")
			}
		})
	}
}
