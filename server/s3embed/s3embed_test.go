package s3embed_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

// keyring is a KeyResolver over a map; keys can be added or revoked.
type keyring struct {
	mu   sync.Mutex
	keys map[string][2]string // access -> {secret, bucket}
}

func (k *keyring) ResolveKey(ctx context.Context, access string) (string, string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.keys[access]
	return v[0], v[1], ok
}

func (k *keyring) set(access, secret, bucket string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[access] = [2]string{secret, bucket}
}

func (k *keyring) revoke(access string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, access)
}

type env struct {
	srv  *s3embed.Server
	url  string
	root string
	keys *keyring
	a, b *s3.Client // keys of bucket-a and bucket-b
}

const (
	bucketA = "bucket-a"
	bucketB = "bucket-b"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	return newEnvAt(t, root)
}

func newEnvAt(t *testing.T, root string) *env {
	t.Helper()
	keys := &keyring{keys: map[string][2]string{}}
	srv, err := s3embed.New(root, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, b := range []string{bucketA, bucketB} {
		if err := srv.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	keys.set("AKA", "secret-a", bucketA)
	keys.set("AKB", "secret-b", bucketB)
	return &env{
		srv: srv, url: hs.URL, root: root, keys: keys,
		a: newClient(hs.URL, "AKA", "secret-a"),
		b: newClient(hs.URL, "AKB", "secret-b"),
	}
}

func newClient(url, access, secret string) *s3.Client {
	return newClientRegion(url, access, secret, "us-east-1")
}

func newClientRegion(url, access, secret, region string) *s3.Client {
	return s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(url),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(access, secret, ""),
		Retryer:      aws.NopRetryer{},
	})
}

// signV4 signs req with SigV4 for access and secret in us-east-1 now,
// with payload hash hash (also set as X-Amz-Content-Sha256).
func signV4(t testing.TB, req *http.Request, access, secret, hash string) {
	t.Helper()
	req.Header.Set("X-Amz-Content-Sha256", hash)
	creds := aws.Credentials{AccessKeyID: access, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hash, "s3", "us-east-1", time.Now()); err != nil {
		t.Fatalf("sign: %v", err)
	}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// status returns the HTTP status of an SDK error (0 if none).
func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func put(t *testing.T, c *s3.Client, bucket, key string, body []byte) *s3.PutObjectOutput {
	t.Helper()
	out, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
	return out
}

func get(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestObjectRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	body := []byte("# note\nhello world\n")
	out, err := e.a.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucketA), Key: aws.String("notes/hello.md"), Body: bytes.NewReader(body),
		ContentType: aws.String("text/markdown"),
		Metadata:    map[string]string{"mtime": "1700000000.123456789"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.ETag), `"`+md5hex(body)+`"`; got != want {
		t.Errorf("put ETag = %s, want %s", got, want)
	}
	if got := get(t, e.a, bucketA, "notes/hello.md"); !bytes.Equal(got, body) {
		t.Errorf("get = %q", got)
	}

	head, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("notes/hello.md")})
	if err != nil {
		t.Fatal(err)
	}
	if got := head.Metadata["mtime"]; got != "1700000000.123456789" {
		t.Errorf("metadata mtime = %q", got)
	}
	if aws.ToString(head.ContentType) != "text/markdown" || aws.ToInt64(head.ContentLength) != int64(len(body)) {
		t.Errorf("head type %q length %d", aws.ToString(head.ContentType), aws.ToInt64(head.ContentLength))
	}
	if got, want := aws.ToString(head.ETag), `"`+md5hex(body)+`"`; got != want {
		t.Errorf("head ETag = %s, want %s", got, want)
	}

	// Range
	rg, err := e.a.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketA), Key: aws.String("notes/hello.md"), Range: aws.String("bytes=2-5")})
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(rg.Body)
	rg.Body.Close()
	if string(part) != "note" {
		t.Errorf("range = %q, want %q", part, "note")
	}

	// Copy keeps content and metadata
	if _, err := e.a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucketA), Key: aws.String("copy/hello.md"), CopySource: aws.String(bucketA + "/notes/hello.md")}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, e.a, bucketA, "copy/hello.md"); !bytes.Equal(got, body) {
		t.Errorf("copy content = %q", got)
	}
	ch, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("copy/hello.md")})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata["mtime"] != "1700000000.123456789" {
		t.Errorf("copy lost metadata: %v", ch.Metadata)
	}

	// Overwrite, then delete
	put(t, e.a, bucketA, "notes/hello.md", []byte("v2"))
	if got := get(t, e.a, bucketA, "notes/hello.md"); string(got) != "v2" {
		t.Errorf("overwrite = %q", got)
	}
	if _, err := e.a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucketA), Key: aws.String("notes/hello.md")}); err != nil {
		t.Fatal(err)
	}
	_, err = e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("notes/hello.md")})
	if status(err) != http.StatusNotFound {
		t.Errorf("head after delete: %v", err)
	}
	// Deleting a missing key is fine
	if _, err := e.a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucketA), Key: aws.String("nope")}); err != nil {
		t.Errorf("delete missing: %v", err)
	}
	// The deleted note's directory is pruned, so "notes" can now be a file.
	put(t, e.a, bucketA, "notes", []byte("file where a dir was"))

	// Multi-delete
	for i := range 3 {
		put(t, e.a, bucketA, fmt.Sprintf("md/%d", i), []byte{byte(i)})
	}
	del, err := e.a.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucketA), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
		{Key: aws.String("md/0")}, {Key: aws.String("md/1")}, {Key: aws.String("md/2")}, {Key: aws.String("md/missing")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(del.Deleted) != 4 || len(del.Errors) != 0 {
		t.Errorf("multi-delete: %d deleted, %d errors", len(del.Deleted), len(del.Errors))
	}
	lo, err := e.a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucketA), Prefix: aws.String("md/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(lo.Contents) != 0 {
		t.Errorf("after multi-delete %d objects remain", len(lo.Contents))
	}
}

func TestEmptyObjectAndDirMarker(t *testing.T) {
	e := newEnv(t)
	put(t, e.a, bucketA, "empty.md", nil)
	if got := get(t, e.a, bucketA, "empty.md"); len(got) != 0 {
		t.Errorf("empty object = %q", got)
	}
	put(t, e.a, bucketA, "folder/", nil)
	put(t, e.a, bucketA, "folder/inside.md", []byte("x"))
	lo, err := e.a.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucketA), Prefix: aws.String("folder/")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range lo.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	if !slices.Equal(keys, []string{"folder/", "folder/inside.md"}) {
		t.Errorf("keys = %v", keys)
	}
	// A key cannot be both a file and a directory on this server.
	_, err = e.a.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("empty.md/child"), Body: strings.NewReader("x")})
	if status(err) != http.StatusBadRequest {
		t.Errorf("put under a file: %v", err)
	}
}

func TestListing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// 1100 keys in dir/, plus a few elsewhere, written in parallel.
	var want []string
	for i := range 1100 {
		want = append(want, fmt.Sprintf("dir/%04d.md", i))
	}
	others := []string{"a.md", "dir2/x.md", "dir/sub/y.md", "dir/sub/z.md", "dir/sub2/w.md", "zz.md"}
	all := append(slices.Clone(want), others...)
	var wg sync.WaitGroup
	errs := make(chan error, len(all))
	sem := make(chan struct{}, 8)
	for _, k := range all {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := e.a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String(k), Body: strings.NewReader(k)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	e.srv.ResetStats()
	// Full listing of all keys, paginated (default page 1000).
	var got []string
	pages := 0
	p := s3.NewListObjectsV2Paginator(e.a, &s3.ListObjectsV2Input{Bucket: aws.String(bucketA)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range page.Contents {
			got = append(got, aws.ToString(o.Key))
			if aws.ToString(o.ETag) != `"`+md5hex([]byte(aws.ToString(o.Key)))+`"` {
				t.Fatalf("ETag of %s = %s", aws.ToString(o.Key), aws.ToString(o.ETag))
			}
		}
	}
	sorted := slices.Clone(all)
	slices.Sort(sorted)
	if !slices.Equal(got, sorted) {
		t.Fatalf("listing: got %d keys, want %d (sorted)", len(got), len(sorted))
	}
	if pages != 2 {
		t.Errorf("pages = %d, want 2", pages)
	}
	if st := e.srv.Stats(); st["ListObjectsV2"] != 2 || st["total"] != 2 || st["HeadObject"] != 0 {
		t.Errorf("stats = %v", st)
	}

	tests := []struct {
		name, prefix, delim string
		maxKeys             int32
		wantKeys, wantPfx   []string
	}{
		{"root delimited", "", "/", 1000, []string{"a.md", "zz.md"}, []string{"dir/", "dir2/"}},
		{"sub delimited", "dir/sub", "/", 1000, nil, []string{"dir/sub/", "dir/sub2/"}},
		{"sub dir", "dir/sub/", "/", 1000, []string{"dir/sub/y.md", "dir/sub/z.md"}, nil},
		{"prefix only", "dir/sub", "", 1000, []string{"dir/sub/y.md", "dir/sub/z.md", "dir/sub2/w.md"}, nil},
		{"small pages", "dir/", "/", 7, want[:1100], []string{"dir/sub/", "dir/sub2/"}},
		{"no match", "nothing/", "/", 1000, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := &s3.ListObjectsV2Input{Bucket: aws.String(bucketA), Prefix: aws.String(tc.prefix), MaxKeys: aws.Int32(tc.maxKeys)}
			if tc.delim != "" {
				in.Delimiter = aws.String(tc.delim)
			}
			var keys, pfx []string
			p := s3.NewListObjectsV2Paginator(e.a, in)
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n := len(page.Contents) + len(page.CommonPrefixes); n > int(tc.maxKeys) {
					t.Fatalf("page of %d entries > max %d", n, tc.maxKeys)
				}
				for _, o := range page.Contents {
					keys = append(keys, aws.ToString(o.Key))
				}
				for _, cp := range page.CommonPrefixes {
					pfx = append(pfx, aws.ToString(cp.Prefix))
				}
			}
			if !slices.Equal(keys, tc.wantKeys) {
				t.Errorf("keys: got %d %.5v, want %d %.5v", len(keys), keys, len(tc.wantKeys), tc.wantKeys)
			}
			if !slices.Equal(pfx, tc.wantPfx) {
				t.Errorf("prefixes = %v, want %v", pfx, tc.wantPfx)
			}
		})
	}

	// V1 listing with a marker, as rclone's "Other" provider does.
	v1, err := e.a.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String(bucketA), Prefix: aws.String("dir/"), Marker: aws.String("dir/1097.md"), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	var v1keys []string
	for _, o := range v1.Contents {
		v1keys = append(v1keys, aws.ToString(o.Key))
	}
	if !slices.Equal(v1keys, []string{"dir/1098.md", "dir/1099.md"}) || len(v1.CommonPrefixes) != 2 {
		t.Errorf("v1 after marker: %v, %d prefixes", v1keys, len(v1.CommonPrefixes))
	}
	if e.srv.Stats()["ListObjects"] != 1 {
		t.Errorf("ListObjects count = %d", e.srv.Stats()["ListObjects"])
	}
}

func TestMultipart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	part1 := bytes.Repeat([]byte("0123456789abcdef"), (5<<20)/16) // 5 MiB
	part2 := []byte("tail of the object")
	key := aws.String("big/file.bin")
	cr, err := e.a.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: key, Metadata: map[string]string{"mtime": "42"}})
	if err != nil {
		t.Fatal(err)
	}
	var parts []types.CompletedPart
	for i, body := range [][]byte{part1, part2} {
		up, err := e.a.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(up.ETag) != `"`+md5hex(body)+`"` {
			t.Errorf("part %d ETag = %s", i+1, aws.ToString(up.ETag))
		}
		parts = append(parts, types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	// Wrong ETag is refused
	_, err = e.a.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: aws.String(`"00"`), PartNumber: aws.Int32(1)}}}})
	if status(err) != http.StatusBadRequest {
		t.Errorf("complete with bad etag: %v", err)
	}
	done, err := e.a.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		t.Fatal(err)
	}
	whole := append(slices.Clone(part1), part2...)
	if got, want := aws.ToString(done.ETag), multipartETag(part1, part2); got != want {
		t.Errorf("complete ETag = %s, want S3's %s", got, want)
	}
	if got := get(t, e.a, bucketA, *key); !bytes.Equal(got, whole) {
		t.Errorf("multipart content differs (%d bytes, want %d)", len(got), len(whole))
	}
	head, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if head.Metadata["mtime"] != "42" {
		t.Errorf("multipart metadata = %v", head.Metadata)
	}
	// No part files or temp files are left behind.
	for _, d := range []string{".s3uploads", ".s3tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(e.root, d)); len(ents) != 0 {
			t.Errorf("%s not empty: %d entries", d, len(ents))
		}
	}

	// A small non-last part is refused; abort cleans up.
	cr2, err := e.a.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String("small")})
	if err != nil {
		t.Fatal(err)
	}
	var small []types.CompletedPart
	for i := range 2 {
		up, err := e.a.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: aws.String("small"), UploadId: cr2.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: strings.NewReader("tiny")})
		if err != nil {
			t.Fatal(err)
		}
		small = append(small, types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	_, err = e.a.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String("small"), UploadId: cr2.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: small}})
	if status(err) != http.StatusBadRequest {
		t.Errorf("complete with small part: %v", err)
	}
	if _, err := e.a.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String("small"), UploadId: cr2.UploadId}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.root, ".s3uploads")); len(ents) != 0 {
		t.Errorf("abort left %d upload dirs", len(ents))
	}
	// The other bucket's key cannot touch this upload.
	_, err = e.b.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId, PartNumber: aws.Int32(1), Body: strings.NewReader("x")})
	if status(err) != http.StatusForbidden {
		t.Errorf("foreign upload part: %v", err)
	}
}

func TestScopeAndAuth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	put(t, e.b, bucketB, "secret.md", []byte("b's note"))
	put(t, e.a, bucketA, "mine.md", []byte("a's note"))

	wrong := newClient(e.url, "AKA", "not-the-secret")
	unknown := newClient(e.url, "AKX", "whatever")
	e.keys.set("AKR", "secret-r", bucketA)
	revoked := newClient(e.url, "AKR", "secret-r")
	if _, err := revoked.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mine.md")}); err != nil {
		t.Fatalf("key before revocation: %v", err)
	}
	e.keys.revoke("AKR")

	listA := func(c *s3.Client) error {
		_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucketA)})
		return err
	}
	tests := []struct {
		name     string
		call     func() error
		wantCode string
	}{
		{"list other bucket", func() error {
			_, err := e.a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucketB)})
			return err
		}, "AccessDenied"},
		{"get other bucket", func() error {
			_, err := e.a.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketB), Key: aws.String("secret.md")})
			return err
		}, "AccessDenied"},
		{"put other bucket", func() error {
			_, err := e.a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketB), Key: aws.String("x"), Body: strings.NewReader("x")})
			return err
		}, "AccessDenied"},
		{"copy from other bucket", func() error {
			_, err := e.a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucketA), Key: aws.String("stolen"), CopySource: aws.String(bucketB + "/secret.md")})
			return err
		}, "AccessDenied"},
		{"create bucket", func() error {
			_, err := e.a.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("new-bucket")})
			return err
		}, "AccessDenied"},
		{"delete own bucket", func() error {
			_, err := e.a.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucketA)})
			return err
		}, "AccessDenied"},
		{"wrong secret", func() error { return listA(wrong) }, "SignatureDoesNotMatch"},
		{"unknown key", func() error { return listA(unknown) }, "InvalidAccessKeyId"},
		{"revoked key", func() error { return listA(revoked) }, "InvalidAccessKeyId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status(err) != http.StatusForbidden || code(err) != tc.wantCode {
				t.Errorf("got status %d code %q (%v), want 403 %s", status(err), code(err), err, tc.wantCode)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(e.root, bucketA, "stolen")); err == nil {
		t.Error("cross-bucket copy wrote an object")
	}
	if _, err := os.Stat(filepath.Join(e.root, "new-bucket")); err == nil {
		t.Error("scoped key created a bucket")
	}

	// Unsigned requests are refused.
	for _, u := range []string{e.url + "/", e.url + "/" + bucketA + "/mine.md"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous GET %s = %d", u, resp.StatusCode)
		}
	}

	if d := e.srv.Stats()["denied"]; d < int64(len(tests)) {
		t.Errorf("denied count = %d, want >= %d", d, len(tests))
	}
}

func TestPresignedGet(t *testing.T) {
	e := newEnv(t)
	put(t, e.a, bucketA, "p.md", []byte("presigned"))
	ps := s3.NewPresignClient(e.a)
	req, err := ps.PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucketA), Key: aws.String("p.md")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(req.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "presigned" {
		t.Errorf("presigned GET = %d %q", resp.StatusCode, b)
	}
	// Tampering with the URL breaks it.
	resp, err = http.Get(strings.Replace(req.URL, "p.md", "q.md", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("tampered presigned GET = %d", resp.StatusCode)
	}
}

func TestPathTraversalRejected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, key := range []string{"../escape.md", "a/../../escape.md", "a/./b", "a//b", "./x", ".."} {
		t.Run(key, func(t *testing.T) {
			_, err := e.a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String(key), Body: strings.NewReader("x")})
			if err == nil {
				t.Fatalf("put %q succeeded", key)
			}
			if s := status(err); s != http.StatusBadRequest && s != http.StatusForbidden && s != http.StatusNotFound {
				t.Errorf("put %q: status %d: %v", key, s, err)
			}
			_, err = e.a.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketA), Key: aws.String(key)})
			if err == nil {
				t.Errorf("get %q succeeded", key)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.root), "escape.md")); err == nil {
		t.Error("a file escaped the root")
	}
	if _, err := os.Stat(filepath.Join(e.root, "escape.md")); err == nil {
		t.Error("a file escaped the bucket")
	}
}

func TestPersistenceAndOutOfBandFiles(t *testing.T) {
	root := t.TempDir()
	e := newEnvAt(t, root)
	put(t, e.a, bucketA, "keep.md", []byte("kept"))
	if _, err := e.a.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("meta.md"),
		Body: strings.NewReader("m"), Metadata: map[string]string{"mtime": "7"}}); err != nil {
		t.Fatal(err)
	}
	// A file dropped into the bucket directory while the server is down.
	if err := os.WriteFile(filepath.Join(root, bucketA, "dropped.md"), []byte("dropped"), 0o600); err != nil {
		t.Fatal(err)
	}
	e2 := newEnvAt(t, root)
	lo, err := e2.a.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucketA)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range lo.Contents {
		keys = append(keys, aws.ToString(o.Key))
		if aws.ToString(o.Key) == "dropped.md" && aws.ToString(o.ETag) != `"`+md5hex([]byte("dropped"))+`"` {
			t.Errorf("dropped ETag = %s", aws.ToString(o.ETag))
		}
	}
	if !slices.Equal(keys, []string{"dropped.md", "keep.md", "meta.md"}) {
		t.Errorf("keys after restart = %v", keys)
	}
	head, err := e2.a.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("meta.md")})
	if err != nil {
		t.Fatal(err)
	}
	if head.Metadata["mtime"] != "7" {
		t.Errorf("metadata after restart = %v", head.Metadata)
	}
}

func TestAdminBuckets(t *testing.T) {
	keys := &keyring{keys: map[string][2]string{}}
	srv, err := s3embed.New(t.TempDir(), keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 { // idempotent
		if err := srv.CreateBucket(ctx, "tenant-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.CreateBucket(ctx, "Bad_Name"); err == nil {
		t.Error("invalid bucket name accepted")
	}
	if err := srv.CreateBucket(ctx, "tenant-2"); err != nil {
		t.Fatal(err)
	}
	names, err := srv.ListBuckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"tenant-1", "tenant-2"}) {
		t.Errorf("buckets = %v", names)
	}
	if err := srv.DeleteBucket(ctx, "tenant-2"); err != nil {
		t.Fatal(err)
	}
	if err := srv.DeleteBucket(ctx, "tenant-2"); !errors.Is(err, s3embed.ErrNoSuchBucket) {
		t.Errorf("delete missing bucket: %v", err)
	}
	// A non-empty bucket is not deleted.
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	keys.set("AK1", "s1", "tenant-1")
	put(t, newClient(hs.URL, "AK1", "s1"), "tenant-1", "x.md", []byte("x"))
	if err := srv.DeleteBucket(ctx, "tenant-1"); !errors.Is(err, s3embed.ErrBucketNotEmpty) {
		t.Errorf("delete non-empty bucket: %v", err)
	}
}

func TestOnKeyUsed(t *testing.T) {
	keys := &keyring{keys: map[string][2]string{"AK1": {"s1", "tenant-1"}}}
	srv, err := s3embed.New(t.TempDir(), keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	used := map[string]int{}
	srv.OnKeyUsed = func(ak string) { mu.Lock(); used[ak]++; mu.Unlock() }
	if err := srv.CreateBucket(context.Background(), "tenant-1"); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	put(t, newClient(hs.URL, "AK1", "s1"), "tenant-1", "x.md", []byte("x"))
	_, _ = newClient(hs.URL, "AK1", "bad").ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("tenant-1")})
	mu.Lock()
	defer mu.Unlock()
	if used["AK1"] != 1 {
		t.Errorf("OnKeyUsed calls = %v, want AK1 once (the refused request does not count)", used)
	}
}

// Conditional writes are what the sync engine relies on to never replace
// a version it did not see: If-Match replaces only the version named,
// If-None-Match: * creates only, and the check is atomic with the write
// (of many writers holding the same ETag, exactly one wins).
func TestConditionalWrites(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v1 := put(t, e.a, bucketA, "note.md", []byte("v1"))
	cond := func(ifMatch, ifNoneMatch, body string) error {
		in := &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("note.md"), Body: strings.NewReader(body)}
		if ifMatch != "" {
			in.IfMatch = aws.String(ifMatch)
		}
		if ifNoneMatch != "" {
			in.IfNoneMatch = aws.String(ifNoneMatch)
		}
		_, err := e.a.PutObject(ctx, in)
		return err
	}
	if err := cond("", "*", "create only"); status(err) != http.StatusPreconditionFailed {
		t.Errorf("If-None-Match * over an object = %v, want 412", err)
	}
	if err := cond(aws.ToString(v1.ETag), "", "v2"); err != nil {
		t.Fatalf("If-Match of the current ETag = %v", err)
	}
	if err := cond(aws.ToString(v1.ETag), "", "v3"); status(err) != http.StatusPreconditionFailed {
		t.Errorf("If-Match of a replaced ETag = %v, want 412", err)
	}
	if got := string(get(t, e.a, bucketA, "note.md")); got != "v2" {
		t.Errorf("note.md = %q after the refused writes", got)
	}
	cur := put(t, e.a, bucketA, "note.md", []byte("base"))
	const writers = 16
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// bodies big enough that every writer is still sending when
			// the first one commits
			body := fmt.Sprintf("writer %d\n", i) + strings.Repeat("x", 4<<20)
			if cond(aws.ToString(cur.ETag), "", body) == nil {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Errorf("%d of %d writers holding one ETag replaced the object, want exactly 1", won.Load(), writers)
	}
	_, err := e.a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("new.md"), Body: strings.NewReader("x"), IfNoneMatch: aws.String("*")})
	if err != nil {
		t.Errorf("If-None-Match * of a new key = %v", err)
	}
}

// TestOnChange: every request that changed a bucket's objects and
// succeeded is reported once, with its bucket, key and operation; reads,
// refused requests, failed writes and the steps of a multipart upload
// before its completion are not.
func TestOnChange(t *testing.T) {
	keys := &keyring{keys: map[string][2]string{"AKA": {"secret-a", bucketA}, "AKB": {"secret-b", bucketB}}}
	srv, err := s3embed.New(t.TempDir(), keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []s3embed.Change
	srv.OnChange = func(c s3embed.Change) { mu.Lock(); got = append(got, c); mu.Unlock() }
	ctx := context.Background()
	for _, b := range []string{bucketA, bucketB} {
		if err := srv.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	a, b := newClient(hs.URL, "AKA", "secret-a"), newClient(hs.URL, "AKB", "secret-b")
	take := func() []s3embed.Change {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	expect := func(what string, want ...s3embed.Change) {
		t.Helper()
		if g := take(); !slices.Equal(g, want) {
			t.Errorf("%s: changes %+v, want %+v", what, g, want)
		}
	}
	change := func(bucket, ak, op, key string) s3embed.Change {
		return s3embed.Change{Bucket: bucket, AccessKey: ak, Op: op, Key: key}
	}

	put(t, a, bucketA, "a.md", []byte("a"))
	expect("put", change(bucketA, "AKA", "PutObject", "a.md"))
	put(t, a, bucketA, "dir/a b+é%.md", []byte("a"))
	expect("put of an escaped name", change(bucketA, "AKA", "PutObject", "dir/a b+é%.md"))
	get(t, a, bucketA, "a.md")
	if _, err := a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("a.md")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucketA)}); err != nil {
		t.Fatal(err)
	}
	expect("get, head, list")

	if _, err := a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucketA), Key: aws.String("b.md"), CopySource: aws.String(bucketA + "/a.md")}); err != nil {
		t.Fatal(err)
	}
	expect("copy", change(bucketA, "AKA", "CopyObject", "b.md"))
	if _, err := a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucketA), Key: aws.String("b.md")}); err != nil {
		t.Fatal(err)
	}
	expect("delete", change(bucketA, "AKA", "DeleteObject", "b.md"))
	put(t, a, bucketA, "c.md", []byte("c"))
	take()
	if _, err := a.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucketA), Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: aws.String("c.md")}}}}); err != nil {
		t.Fatal(err)
	}
	expect("multi-delete", change(bucketA, "AKA", "DeleteObjects", ""))

	key := aws.String("big.bin")
	cr, err := a.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	up, err := a.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("part"))})
	if err != nil {
		t.Fatal(err)
	}
	expect("multipart create and part")
	if _, err := a.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: up.ETag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Fatal(err)
	}
	expect("multipart complete", change(bucketA, "AKA", "CompleteMultipartUpload", "big.bin"))

	// Failed and refused writes change nothing.
	if _, err := a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("a.md"), Body: bytes.NewReader([]byte("x")), IfNoneMatch: aws.String("*")}); status(err) != http.StatusPreconditionFailed {
		t.Fatalf("create-only put over an object = %v, want 412", err)
	}
	if _, err := a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketB), Key: aws.String("x.md"), Body: bytes.NewReader([]byte("x"))}); err == nil {
		t.Fatal("a put into another bucket succeeded")
	}
	if _, err := newClient(hs.URL, "AKA", "wrong").PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("x.md"), Body: bytes.NewReader([]byte("x"))}); err == nil {
		t.Fatal("a put with a wrong secret succeeded")
	}
	expect("failed and refused writes")

	put(t, b, bucketB, "b.md", []byte("b"))
	expect("another key's bucket", change(bucketB, "AKB", "PutObject", "b.md"))
}
