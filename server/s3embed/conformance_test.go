package s3embed_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// multipartETag is S3's ETag of an object uploaded in parts: the MD5 of
// the concatenated binary MD5s of the parts, a dash and the part count.
func multipartETag(parts ...[]byte) string {
	h := md5.New()
	for _, p := range parts {
		s := md5.Sum(p)
		h.Write(s[:])
	}
	return fmt.Sprintf(`"%x-%d"`, h.Sum(nil), len(parts))
}

// uploadParts makes key of bucket-a by a multipart upload of parts and
// returns the ETag CompleteMultipartUpload answered.
func uploadParts(t *testing.T, e *env, key string, parts ...[]byte) string {
	t.Helper()
	ctx := context.Background()
	cr, err := e.a.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	for i, p := range parts {
		up, err := e.a.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: aws.String(key), UploadId: cr.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	out, err := e.a.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String(key), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ETag)
}

// TestMultipartETag: an object made by a multipart upload has S3's
// md5(part md5s)-N ETag in the CompleteMultipartUpload answer, on HEAD
// and GET, in both listings and after a restart; conditions naming that
// ETag hold (If-Match, If-None-Match, the copy source's, a conditional
// write); single-PUT and copied objects keep the plain MD5.
func TestMultipartETag(t *testing.T) {
	root := t.TempDir()
	e := newEnvAt(t, root)
	ctx := context.Background()
	p1 := bytes.Repeat([]byte("part one "), (5<<20)/9+1)
	p2 := []byte("the last part")
	want := multipartETag(p1, p2)
	if got := uploadParts(t, e, "mp.bin", p1, p2); got != want {
		t.Fatalf("CompleteMultipartUpload ETag = %s, want %s", got, want)
	}
	put(t, e.a, bucketA, "single.md", []byte("single"))
	wantSingle := `"` + md5hex([]byte("single")) + `"`

	checkAll := func(e *env, when string) {
		t.Helper()
		head, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin")})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(head.ETag); got != want {
			t.Errorf("%s: HEAD ETag = %s, want %s", when, got, want)
		}
		g, err := e.a.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin"), Range: aws.String("bytes=0-9")})
		if err != nil {
			t.Fatal(err)
		}
		g.Body.Close()
		if got := aws.ToString(g.ETag); got != want {
			t.Errorf("%s: GET ETag = %s, want %s", when, got, want)
		}
		v2, err := e.a.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucketA)})
		if err != nil {
			t.Fatal(err)
		}
		v1, err := e.a.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String(bucketA)})
		if err != nil {
			t.Fatal(err)
		}
		wantList := map[string]string{"mp.bin": want, "single.md": wantSingle}
		for name, objs := range map[string][]types.Object{"v2": v2.Contents, "v1": v1.Contents} {
			for _, o := range objs {
				if w, ok := wantList[aws.ToString(o.Key)]; ok && aws.ToString(o.ETag) != w {
					t.Errorf("%s: listing %s ETag of %s = %s, want %s", when, name, aws.ToString(o.Key), aws.ToString(o.ETag), w)
				}
			}
		}
		sh, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("single.md")})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(sh.ETag) != wantSingle {
			t.Errorf("%s: single PUT ETag = %s, want %s", when, aws.ToString(sh.ETag), wantSingle)
		}
	}
	checkAll(e, "after upload")

	// Conditions naming the multipart ETag.
	if _, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin"), IfMatch: aws.String(want)}); err != nil {
		t.Errorf("HEAD If-Match its ETag: %v", err)
	}
	if _, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin"), IfNoneMatch: aws.String(want)}); status(err) != http.StatusNotModified {
		t.Errorf("HEAD If-None-Match its ETag: %v, want 304", err)
	}
	if _, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin"), IfMatch: aws.String(`"` + md5hex(p1) + `-2"`)}); status(err) != http.StatusPreconditionFailed {
		t.Errorf("HEAD If-Match another ETag: %v, want 412", err)
	}
	if _, err := e.a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucketA), Key: aws.String("copy.bin"), CopySource: aws.String(bucketA + "/mp.bin"), CopySourceIfMatch: aws.String(want)}); err != nil {
		t.Errorf("copy If-Match the source's ETag: %v", err)
	}
	if h, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("copy.bin")}); err != nil || aws.ToString(h.ETag) != `"`+md5hex(bytes.Join([][]byte{p1, p2}, nil))+`"` {
		t.Errorf("a copy is one part, ETag its MD5: %v %v", h, err)
	}
	checkAll(newEnvAt(t, root), "after a restart")
	if _, err := e.a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin"), Body: strings.NewReader("v2"), IfMatch: aws.String(want)}); err != nil {
		t.Errorf("PUT If-Match the multipart ETag: %v", err)
	}
	if _, err := e.a.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin"), Body: strings.NewReader("v3"), IfMatch: aws.String(want)}); status(err) != http.StatusPreconditionFailed {
		t.Errorf("PUT If-Match the replaced multipart ETag: %v, want 412", err)
	}
}

// TestListBucketsScoped: a bucket-scoped key listing the buckets sees its
// own bucket only (as MinIO lists the buckets a key's policy allows), not
// a 403 and never another tenant's bucket name. Before, it was a 403.
func TestListBucketsScoped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		c    *s3.Client
		want string
	}{{"key of bucket-a", e.a, bucketA}, {"key of bucket-b", e.b, bucketB}} {
		out, err := tc.c.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err != nil {
			t.Errorf("%s: ListBuckets: %v", tc.name, err)
			continue
		}
		var names []string
		for _, b := range out.Buckets {
			names = append(names, aws.ToString(b.Name))
		}
		if len(names) != 1 || names[0] != tc.want {
			t.Errorf("%s: ListBuckets = %v, want [%s]", tc.name, names, tc.want)
		}
	}
	// A key whose bucket is gone lists nothing.
	e.keys.set("AKG", "secret-g", "gone-bucket")
	out, err := newClient(e.url, "AKG", "secret-g").ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(out.Buckets) != 0 {
		t.Errorf("key of a missing bucket: %v %v, want an empty list", out, err)
	}
	// Bucket-level writes on the root stay refused.
	req, _ := http.NewRequest(http.MethodDelete, e.url+"/", nil)
	signWithScope(req, "AKA", "secret-a", goodScope(time.Now()), time.Now(), "UNSIGNED-PAYLOAD")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("DELETE / = %d, want 403", resp.StatusCode)
	}
}

// signedPut is a PUT of key in bucket-a signed for an unsigned payload.
func signedPut(t *testing.T, e *env, key string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, e.url+"/"+bucketA+"/"+key, nil)
	if err != nil {
		t.Fatal(err)
	}
	signWithScope(req, "AKA", "secret-a", goodScope(time.Now()), time.Now(), "UNSIGNED-PAYLOAD")
	return req
}

// TestLongKeyRefusedBeforeBody: a key with a segment over 255 bytes (a
// name the file system cannot hold) is a 400 XMinioInvalidObjectName, as
// MinIO answers, and a key over 1024 bytes a 400 KeyTooLongError, both
// before the body is read (a client sending Expect: 100-continue gets the
// 400 instead of a 100). Before, the body was received and the write
// failed with a 500.
func TestLongKeyRefusedBeforeBody(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("x", 256)
	tests := []struct{ name, key, code string }{
		{"segment of 256 bytes", "notes/" + long + ".md", "XMinioInvalidObjectName"},
		{"last segment of 256 bytes", "notes/" + long, "XMinioInvalidObjectName"},
		{"key of 1025 bytes", strings.Repeat("abcd/", 205), "KeyTooLongError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := rawPut(t, signedPut(t, e, tc.key), 50<<20, nil, false, true)
			if a.status == http.StatusContinue {
				t.Fatal("the server asked for the body (100 Continue) of a key it cannot store")
			}
			got := parseErr(a.body)
			if a.status != http.StatusBadRequest || got.Code != tc.code {
				t.Errorf("status %d code %q, want 400 %s", a.status, got.Code, tc.code)
			}
			// The SDK, which sends the body at once, gets the same.
			_, err := e.a.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String(tc.key), Body: strings.NewReader("x")})
			if status(err) != http.StatusBadRequest || code(err) != tc.code {
				t.Errorf("sdk put: %v, want 400 %s", err, tc.code)
			}
			_, err = e.a.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String(tc.key)})
			if status(err) != http.StatusBadRequest {
				t.Errorf("sdk create multipart upload: %v, want 400", err)
			}
		})
	}
	// 255 bytes is fine.
	put(t, e.a, bucketA, "notes/"+long[:255], []byte("ok"))
}

// TestShortBodyIsIncomplete: a body that ends before its Content-Length
// is a 400 IncompleteBody (S3's answer) and stores nothing, for a PUT and
// an upload part. Before, it was a 500.
func TestShortBodyIsIncomplete(t *testing.T) {
	e := newEnv(t)
	put(t, e.a, bucketA, "note.md", []byte("before"))
	a := rawPut(t, signedPut(t, e, "note.md"), 1000, bytes.Repeat([]byte("x"), 100), true, false)
	if got := parseErr(a.body); a.status != http.StatusBadRequest || got.Code != "IncompleteBody" {
		t.Errorf("short PUT: status %d code %q, want 400 IncompleteBody", a.status, got.Code)
	}
	if got := get(t, e.a, bucketA, "note.md"); string(got) != "before" {
		t.Errorf("the short PUT replaced the object with %q", got)
	}

	cr, err := e.a.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String("mp.bin")})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, e.url+"/"+bucketA+"/mp.bin?partNumber=1&uploadId="+aws.ToString(cr.UploadId), nil)
	signWithScope(req, "AKA", "secret-a", goodScope(time.Now()), time.Now(), "UNSIGNED-PAYLOAD")
	a = rawPut(t, req, 1000, bytes.Repeat([]byte("x"), 10), true, false)
	if got := parseErr(a.body); a.status != http.StatusBadRequest || got.Code != "IncompleteBody" {
		t.Errorf("short UploadPart: status %d code %q, want 400 IncompleteBody", a.status, got.Code)
	}
	if n := tmpEntriesExcept(t, e.root, aws.ToString(cr.UploadId)); n != 0 {
		t.Errorf("%d temp files left", n)
	}
}

// tmpEntriesExcept counts temp files and part files (other than the
// upload's own directory).
func tmpEntriesExcept(t *testing.T, root, upload string) int {
	t.Helper()
	n := 0
	ents, _ := os.ReadDir(filepath.Join(root, ".s3tmp"))
	n += len(ents)
	parts, _ := os.ReadDir(filepath.Join(root, ".s3uploads", upload))
	n += len(parts)
	return n
}

// TestRequestIDs: every answer carries x-amz-request-id, and every error
// body its RequestId, the same value: refusals of the signature check and
// of the scope check (made before the S3 library) as well as the
// library's own. Before, the refusals had no RequestId.
func TestRequestIDs(t *testing.T) {
	e := newEnv(t)
	put(t, e.a, bucketA, "note.md", []byte("x"))
	signed := func(method, path string) *http.Request {
		req, _ := http.NewRequest(method, e.url+path, nil)
		signWithScope(req, "AKA", "secret-a", goodScope(time.Now()), time.Now(), "UNSIGNED-PAYLOAD")
		return req
	}
	badSig := signed(http.MethodGet, "/"+bucketA+"/note.md")
	badSig.Header.Set("Authorization", strings.Replace(badSig.Header.Get("Authorization"), "Signature=", "Signature=00", 1))
	tests := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"anonymous", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, e.url+"/"+bucketA+"/note.md", nil)
			return r
		}(), http.StatusForbidden},
		{"bad signature", badSig, http.StatusForbidden},
		{"other bucket", signed(http.MethodGet, "/"+bucketB+"/note.md"), http.StatusForbidden},
		{"no such key", signed(http.MethodGet, "/"+bucketA+"/missing.md"), http.StatusNotFound},
		{"found", signed(http.MethodGet, "/"+bucketA+"/note.md"), http.StatusOK},
		{"head", signed(http.MethodHead, "/"+bucketA+"/note.md"), http.StatusOK},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		resp, err := http.DefaultClient.Do(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("x-amz-request-id")
		if resp.StatusCode != tc.want || id == "" {
			t.Errorf("%s: status %d, x-amz-request-id %q; want %d and an id", tc.name, resp.StatusCode, id, tc.want)
		}
		if seen[id] {
			t.Errorf("%s: request id %q repeated", tc.name, id)
		}
		seen[id] = true
		if tc.want >= 400 {
			if got := parseErr(body); got.RequestID != id {
				t.Errorf("%s: body RequestId %q, header %q", tc.name, got.RequestID, id)
			}
		}
	}
}
