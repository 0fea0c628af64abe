package minio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/internal/syncbuf"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/minio"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
	"github.com/basicmachines-co/bm-agent/server/storage/storagetest"
)

// These tests run against a real MinIO server (.ci/install.d/20-minio.sh
// installs it) that TestMain starts on 127.0.0.1 with a temporary data
// directory, once for the package.

const (
	rootUser     = miniotest.RootUser
	rootPassword = miniotest.RootPassword
)

var (
	minioURL string // the running server, "" when none
	minioErr error  // why there is none
)

func TestMain(m *testing.M) {
	srv, err := miniotest.StartServer()
	minioErr = err
	if srv != nil {
		minioURL = srv.URL
	}
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	cluster.Stop()
	os.Exit(code)
}

// needMinIO skips the test when no MinIO server could be started, or fails
// it under CI, where the server must be there.
func needMinIO(t *testing.T) {
	t.Helper()
	if minioURL == "" {
		miniotest.Need(t, minioErr)
	}
}

func newProvider(t *testing.T) *minio.Provider {
	t.Helper()
	needMinIO(t)
	p, err := minio.New(minio.Config{Endpoint: minioURL, AccessKey: rootUser, SecretKey: rootPassword})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keyClient(url string, key storage.Key) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""),
	})
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// uniq makes bucket names unique per test so tests share one server.
func uniq(t *testing.T, s string) string {
	return strings.ToLower(fmt.Sprintf("%s-%d", s, time.Now().UnixNano()%1_000_000_000))
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	p := newProvider(t)
	if p.Name() != "minio" {
		t.Errorf("Name() = %q", p.Name())
	}
	if u, r := p.Endpoint(); u != minioURL || r != "us-east-1" {
		t.Errorf("Endpoint() = %q, %q", u, r)
	}
	own, other := uniq(t, "tenant-a"), uniq(t, "tenant-b")
	for _, b := range []string{own, other, own} {
		if err := p.CreateBucket(ctx, b); err != nil {
			t.Fatalf("CreateBucket(%s): %v", b, err)
		}
	}
	names, err := p.ListBuckets(ctx)
	if err != nil || !slices.Contains(names, own) || !slices.Contains(names, other) {
		t.Fatalf("ListBuckets = %v, %v", names, err)
	}
	if _, err := p.MintKey(ctx, "no-such-bucket"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("MintKey(missing) = %v, want ErrNotFound", err)
	}

	key, err := p.MintKey(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	if key.AccessKey == "" || key.SecretKey == "" || key.Ref != key.AccessKey {
		t.Fatalf("key = {%s, Ref %s}", key.AccessKey, key.Ref)
	}
	if err := p.TestKey(ctx, key, own); err != nil {
		t.Errorf("TestKey(own) = %v", err)
	}
	if err := p.TestKey(ctx, key, other); err == nil {
		t.Error("TestKey(other bucket) = nil")
	}

	c := keyClient(minioURL, key)
	// read, write, list and delete in its own bucket
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(own), Key: aws.String("notes/a.md"),
		Body: strings.NewReader("hello")}); err != nil {
		t.Fatalf("PutObject(own) = %v", err)
	}
	got, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(own), Key: aws.String("notes/a.md")})
	if err != nil {
		t.Fatalf("GetObject(own) = %v", err)
	}
	body, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(body) != "hello" {
		t.Errorf("GetObject body = %q", body)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(own), Key: aws.String("notes/b.md"),
		CopySource: aws.String(own + "/notes/a.md")}); err != nil {
		t.Errorf("CopyObject(own) = %v", err)
	}
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(own)})
	if err != nil || aws.ToInt32(list.KeyCount) != 2 {
		t.Errorf("ListObjectsV2(own) = %v objects, %v", aws.ToInt32(list.KeyCount), err)
	}
	for _, k := range []string{"notes/a.md", "notes/b.md"} {
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(own), Key: aws.String(k)}); err != nil {
			t.Errorf("DeleteObject(own) = %v", err)
		}
	}

	// nothing elsewhere, no bucket administration
	denied := map[string]error{}
	_, denied["put other"] = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(other), Key: aws.String("x"), Body: strings.NewReader("x")})
	_, denied["list other"] = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(other)})
	_, denied["get other"] = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(other), Key: aws.String("x")})
	_, denied["create bucket"] = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(uniq(t, "tenant-c"))})
	_, denied["delete own bucket"] = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(own)})
	_, denied["delete other bucket"] = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(other)})
	_, denied["bucket policy"] = c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(own)})
	for what, err := range denied {
		if apiCode(err) != "AccessDenied" {
			t.Errorf("%s with the key = %v, want AccessDenied", what, err)
		}
	}
	if lb, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
		for _, b := range lb.Buckets {
			if aws.ToString(b.Name) == other {
				t.Errorf("the key sees bucket %s", other)
			}
		}
	}

	if err := p.RevokeKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := p.TestKey(ctx, key, own); err == nil {
		t.Error("TestKey(revoked) = nil")
	}
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(own)}); apiCode(err) != "InvalidAccessKeyId" {
		t.Errorf("list with a revoked key = %v, want InvalidAccessKeyId", err)
	}
	if err := p.RevokeKey(ctx, key); err != nil {
		t.Errorf("second RevokeKey = %v", err)
	}
	if err := p.RevokeKey(ctx, storage.Key{AccessKey: "NEVERMINTED0123"}); err != nil {
		t.Errorf("RevokeKey(unknown) = %v", err)
	}

	for _, b := range []string{own, other} {
		if err := p.DeleteBucket(ctx, b); err != nil {
			t.Errorf("DeleteBucket(%s) = %v", b, err)
		}
	}
	if err := p.DeleteBucket(ctx, own); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteBucket(missing) = %v, want ErrNotFound", err)
	}
	names, _ = p.ListBuckets(ctx)
	if slices.Contains(names, own) {
		t.Errorf("bucket %s still listed", own)
	}
}

// TestKeysAreIndependent: two keys of one bucket; revoking one leaves the
// other working (one key per device).
func TestKeysAreIndependent(t *testing.T) {
	ctx := context.Background()
	p := newProvider(t)
	b := uniq(t, "tenant-k")
	if err := p.CreateBucket(ctx, b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.DeleteBucket(ctx, b) })
	k1, err := p.MintKey(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := p.MintKey(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if k1.AccessKey == k2.AccessKey {
		t.Fatal("two mints gave the same key")
	}
	if err := p.RevokeKey(ctx, k1); err != nil {
		t.Fatal(err)
	}
	if err := p.TestKey(ctx, k2, b); err != nil {
		t.Errorf("TestKey(k2) after revoking k1 = %v", err)
	}
	if err := p.TestKey(ctx, k1, b); err == nil {
		t.Error("TestKey(k1) after revoke = nil")
	}
	_ = p.RevokeKey(ctx, k2)
}

// TestAgentSyncsWithMintedKey runs the agent's sync engine (rclone's s3
// backend, built as agent/syncer builds it: provider Other, path style,
// no bucket check) against MinIO with a minted key: a local note goes up,
// an object put in the bucket comes down.
func TestAgentSyncsWithMintedKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	p := newProvider(t)
	b := uniq(t, "tenant-sync")
	if err := p.CreateBucket(ctx, b); err != nil {
		t.Fatal(err)
	}
	key, err := p.MintKey(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.RevokeKey(context.Background(), key) })

	dir := t.TempDir()
	local := filepath.Join(dir, "notes")
	if err := os.MkdirAll(filepath.Join(local, "projects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, "projects", "plan.md"), []byte("# plan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	url, region := p.Endpoint()
	logs := &syncbuf.Buffer{} // a log sink for the sync engine
	e, err := syncer.New(ctx, syncer.Config{
		LocalDir: local,
		Remote:   syncer.Remote{Endpoint: url, Region: region, AccessKey: key.AccessKey, SecretKey: key.SecretKey, Bucket: b},
		WorkDir:  filepath.Join(dir, "state"),
		Device:   "test",
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Pass(ctx, syncer.PassOptions{Trigger: "test"})
	if err != nil {
		t.Fatalf("first pass: %v\n%s", err, logs.String())
	}
	if res.Uploaded != 1 {
		t.Errorf("first pass uploaded %d files, want 1", res.Uploaded)
	}
	c := keyClient(url, key)
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range list.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	if !slices.Equal(keys, []string{"projects/plan.md"}) {
		t.Errorf("bucket holds %v, want [projects/plan.md]", keys)
	}

	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("from-web.md"),
		Body: strings.NewReader("from elsewhere")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pass(ctx, syncer.PassOptions{Trigger: "test"}); err != nil {
		t.Fatalf("second pass: %v\n%s", err, logs.String())
	}
	if data, err := os.ReadFile(filepath.Join(local, "from-web.md")); err != nil || string(data) != "from elsewhere" {
		t.Errorf("downloaded note = %q, %v", data, err)
	}
	if strings.Contains(logs.String(), key.SecretKey) {
		t.Error("the secret key appeared in the sync log")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     minio.Config
		wantErr bool
		url     string
	}{
		{"ok", minio.Config{Endpoint: "http://127.0.0.1:9000/", AccessKey: "a", SecretKey: "s"}, false, "http://127.0.0.1:9000"},
		{"public", minio.Config{Endpoint: "http://127.0.0.1:9000", PublicEndpoint: "https://s3.example.com/", AccessKey: "a", SecretKey: "s"}, false, "https://s3.example.com"},
		{"no scheme", minio.Config{Endpoint: "127.0.0.1:9000", AccessKey: "a", SecretKey: "s"}, true, ""},
		{"path", minio.Config{Endpoint: "http://127.0.0.1:9000/x", AccessKey: "a", SecretKey: "s"}, true, ""},
		{"no creds", minio.Config{Endpoint: "http://127.0.0.1:9000"}, true, ""},
		{"notify ARN", minio.Config{Endpoint: "http://127.0.0.1:9000", AccessKey: "a", SecretKey: "s", NotifyARN: "arn:minio:sqs::bm:webhook"}, false, "http://127.0.0.1:9000"},
		{"bad notify ARN", minio.Config{Endpoint: "http://127.0.0.1:9000", AccessKey: "a", SecretKey: "s", NotifyARN: "webhook:bm"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := minio.New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if u, r := p.Endpoint(); u != tt.url || r != "us-east-1" {
				t.Errorf("Endpoint() = %q, %q", u, r)
			}
		})
	}
}

// TestNotifyARNUnknownTarget: with a NotifyARN that names no target of
// the server, CreateBucket fails and says so (MinIO refuses the rule), so
// a misconfigured deployment does not make buckets nobody hears about.
// (server's TestMinIOWebhook covers a configured target.)
func TestNotifyARNUnknownTarget(t *testing.T) {
	needMinIO(t)
	p, err := minio.New(minio.Config{Endpoint: minioURL, AccessKey: rootUser, SecretKey: rootPassword, NotifyARN: "arn:minio:sqs::nosuchtarget:webhook"})
	if err != nil {
		t.Fatal(err)
	}
	err = p.CreateBucket(context.Background(), uniq(t, "notify"))
	if err == nil || !strings.Contains(err.Error(), "arn:minio:sqs::nosuchtarget:webhook") {
		t.Errorf("CreateBucket with an unknown target = %v, want an error naming the ARN", err)
	}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, newProvider(t), storagetest.Options{})
}

// TestMultipartWithKey checks the policy's multipart actions: a key can
// start, list, complete and abort multipart uploads in its bucket, as
// rclone does for large files.
// keyedBucket makes a bucket named after name and a client with a key
// minted for it (revoked when the test ends).
func keyedBucket(t *testing.T, p *minio.Provider, name string) (string, *s3.Client) {
	t.Helper()
	ctx := context.Background()
	b := uniq(t, name)
	if err := p.CreateBucket(ctx, b); err != nil {
		t.Fatal(err)
	}
	key, err := p.MintKey(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.RevokeKey(context.Background(), key) })
	return b, keyClient(minioURL, key)
}

func TestMultipartWithKey(t *testing.T) {
	ctx := context.Background()
	p := newProvider(t)
	b, c := keyedBucket(t, p, "tenant-mp")

	up := func(name string) string {
		t.Helper()
		mu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(b), Key: aws.String(name)})
		if err != nil {
			t.Fatalf("CreateMultipartUpload = %v", err)
		}
		return aws.ToString(mu.UploadId)
	}
	part := func(name, id string) *string {
		t.Helper()
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b), Key: aws.String(name), UploadId: aws.String(id),
			PartNumber: aws.Int32(1), Body: strings.NewReader("part one"), ContentLength: aws.Int64(8)})
		if err != nil {
			t.Fatalf("UploadPart = %v", err)
		}
		return out.ETag
	}

	done := up("big.bin")
	etag := part("big.bin", done)
	if parts, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(b), Key: aws.String("big.bin"), UploadId: aws.String(done)}); err != nil || len(parts.Parts) != 1 {
		t.Errorf("ListParts = %v, %v", parts, err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("big.bin"),
		UploadId: aws.String(done), MultipartUpload: &s3types.CompletedMultipartUpload{
			Parts: []s3types.CompletedPart{{ETag: etag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Errorf("CompleteMultipartUpload = %v", err)
	}

	aborted := up("partial.bin")
	part("partial.bin", aborted)
	if ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(b)}); err != nil || len(ups.Uploads) != 1 {
		t.Errorf("ListMultipartUploads = %v, %v", ups, err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(b), Key: aws.String("partial.bin"),
		UploadId: aws.String(aborted)}); err != nil {
		t.Errorf("AbortMultipartUpload = %v", err)
	}
	for _, k := range []string{"big.bin"} {
		if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String(k)}); err != nil {
			t.Errorf("DeleteObject = %v", err)
		}
	}
	if err := p.DeleteBucket(ctx, b); err != nil {
		t.Errorf("DeleteBucket = %v", err)
	}
}

// TestBucketQuota: a hard quota set through the provider holds a minted
// key's writes to it; removing it lets them through.
func TestBucketQuota(t *testing.T) {
	ctx := context.Background()
	p := newProvider(t)
	b, c := keyedBucket(t, p, "tenant-quota")
	put := func(n int) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("big.bin"), Body: bytes.NewReader(make([]byte, n))})
		return err
	}
	if err := p.SetBucketQuota(ctx, b, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := put(2 << 20); err == nil {
		t.Fatal("a 2 MiB object was stored in a bucket with a 1 MiB quota")
	} else {
		t.Logf("MinIO refused the write past its quota: %s", apiCode(err))
	}
	if err := p.SetBucketQuota(ctx, b, storage.Unlimited); err != nil {
		t.Fatal(err)
	}
	if err := put(2 << 20); err != nil {
		t.Fatalf("put after the quota was removed: %v", err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("big.bin")}); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteBucket(ctx, b); err != nil {
		t.Errorf("DeleteBucket = %v", err)
	}
}
