package s3embed_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

const mib = 1 << 20

// withQuota gives bucketA the quota limit (bucketB none), asked on every
// write.
func withQuota(t *testing.T, e *env, limit int64) {
	t.Helper()
	e.srv.SetQuota(func(_ context.Context, bucket string) (int64, error) {
		if bucket == bucketA {
			return limit, nil
		}
		return -1, nil
	}, -1)
}

func usage(t *testing.T, e *env, bucket string) int64 {
	t.Helper()
	n, err := e.srv.BucketUsage(context.Background(), bucket)
	if err != nil {
		t.Fatalf("BucketUsage(%s): %v", bucket, err)
	}
	return n
}

func wantUsage(t *testing.T, e *env, want int64) {
	t.Helper()
	if got := usage(t, e, bucketA); got != want {
		t.Fatalf("usage = %d bytes (%.2f MiB), want %d (%.2f MiB)", got, float64(got)/mib, want, float64(want)/mib)
	}
}

// wantQuotaExceeded checks err is S3's 403 QuotaExceeded.
func wantQuotaExceeded(t *testing.T, what string, err error) {
	t.Helper()
	if status(err) != http.StatusForbidden || code(err) != "QuotaExceeded" {
		t.Fatalf("%s: err = %v (status %d, code %q), want 403 QuotaExceeded", what, err, status(err), code(err))
	}
}

func tryPut(c *s3.Client, key string, size int, fill byte) error {
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucketA), Key: aws.String(key),
		Body: bytes.NewReader(bytes.Repeat([]byte{fill}, size))})
	return err
}

func noTemps(t *testing.T, e *env) {
	t.Helper()
	if ents, _ := os.ReadDir(filepath.Join(e.root, ".s3tmp")); len(ents) != 0 {
		t.Errorf(".s3tmp holds %d files after a refused write", len(ents))
	}
}

// TestQuota drives one bucket to its quota with PUT, overwrites, copies,
// deletes and multipart uploads through a real S3 client.
func TestQuota(t *testing.T) {
	e := newEnv(t)
	const limit = 12 * mib
	withQuota(t, e, limit)
	ctx := context.Background()

	// PUT: up to the limit exactly, then not a byte more.
	if err := tryPut(e.a, "a", 8*mib, 'a'); err != nil {
		t.Fatal(err)
	}
	if err := tryPut(e.a, "b", 4*mib, 'b'); err != nil {
		t.Fatalf("put to exactly the quota: %v", err)
	}
	wantUsage(t, e, limit)
	wantQuotaExceeded(t, "put past the quota", tryPut(e.a, "c", 1, 'c'))
	if _, err := e.a.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("c")}); status(err) != http.StatusNotFound {
		t.Errorf("refused object is there: %v", err)
	}
	noTemps(t, e)

	// Overwrites count the difference.
	if err := tryPut(e.a, "b", 4*mib, 'B'); err != nil {
		t.Fatalf("replacing 4 MiB with 4 MiB at the quota: %v", err)
	}
	wantQuotaExceeded(t, "growing an object past the quota", tryPut(e.a, "b", 4*mib+1, 'b'))
	if got := get(t, e.a, bucketA, "b"); len(got) != 4*mib || got[0] != 'B' {
		t.Errorf("refused overwrite changed the object (%d bytes)", len(got))
	}
	if err := tryPut(e.a, "a", 7*mib, 'a'); err != nil { // shrinks: frees 1 MiB
		t.Fatal(err)
	}
	if err := tryPut(e.a, "c", mib, 'c'); err != nil {
		t.Fatalf("put into the room a shrink freed: %v", err)
	}
	wantUsage(t, e, limit)

	// Copies.
	_, err := e.a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucketA), Key: aws.String("d"), CopySource: aws.String(bucketA + "/c")})
	wantQuotaExceeded(t, "copy past the quota", err)
	if _, err := e.a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucketA), Key: aws.String("b"), CopySource: aws.String(bucketA + "/c")}); err != nil {
		t.Fatalf("copy over a larger object at the quota: %v", err)
	}
	wantUsage(t, e, limit-3*mib)

	// Deletes free room at once.
	if _, err := e.a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucketA), Key: aws.String("a")}); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, e, 2*mib)
	if _, err := e.a.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucketA), Key: aws.String("d"), CopySource: aws.String(bucketA + "/c")}); err != nil {
		t.Fatalf("copy after a delete: %v", err)
	}
	wantUsage(t, e, 3*mib)

	// Multipart: parts count, so they cannot carry more than the quota.
	key := aws.String("big")
	cr, err := e.a.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	part := func(n int32, size int) (*s3.UploadPartOutput, error) {
		return e.a.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(bytes.Repeat([]byte{byte('0' + n)}, size))})
	}
	if _, err := part(1, 5*mib); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, e, 8*mib)
	_, err = part(2, 5*mib)
	wantQuotaExceeded(t, "a part past the quota", err)
	if _, err := part(1, 5*mib); err != nil { // replacing a part counts the difference
		t.Fatalf("re-uploading part 1: %v", err)
	}
	p1, err := part(1, 5*mib)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := part(2, 4*mib)
	if err != nil {
		t.Fatalf("last part into the remaining room: %v", err)
	}
	wantUsage(t, e, limit)
	done, err := e.a.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{ETag: p1.ETag, PartNumber: aws.Int32(1)}, {ETag: p2.ETag, PartNumber: aws.Int32(2)}}}})
	if err != nil {
		t.Fatalf("complete at the quota: %v (%v)", err, done)
	}
	wantUsage(t, e, limit)

	// An aborted upload frees its parts.
	if _, err := e.a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucketA), Key: key}); err != nil {
		t.Fatal(err)
	}
	cr, err = e.a.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part(1, 6*mib); err != nil {
		t.Fatal(err)
	}
	wantQuotaExceeded(t, "put while parts hold the room", tryPut(e.a, "e", 4*mib, 'e'))
	if _, err := e.a.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucketA), Key: key, UploadId: cr.UploadId}); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, e, 3*mib)
	if err := tryPut(e.a, "e", 4*mib, 'e'); err != nil {
		t.Fatalf("put after the abort: %v", err)
	}

	// Another bucket has its own quota (none here).
	put(t, e.b, bucketB, "huge", bytes.Repeat([]byte("x"), 13*mib))
	noTemps(t, e)

	// The usage is the same when the buckets are loaded again from disk.
	before := usage(t, e, bucketA)
	again := newEnvAt(t, e.root)
	if got := usage(t, again, bucketA); got != before {
		t.Errorf("usage after a restart = %d, want %d", got, before)
	}
	t.Logf("FIGURE quota usage of bucket-a: %d of %d bytes", before, int64(limit))
}

// TestQuotaUnknownLength sends chunked bodies with no declared length:
// the room is reserved as the body arrives, and the write is refused when
// it would pass the quota, with nothing stored.
func TestQuotaUnknownLength(t *testing.T) {
	e := newEnv(t)
	withQuota(t, e, 3*mib)
	send := func(key string, size int) (int, string) {
		req, err := http.NewRequest(http.MethodPut, e.url+"/"+bucketA+"/"+key, io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{'u'}, size))))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // chunked transfer encoding
		signV4(t, req, "AKA", "secret-a", "UNSIGNED-PAYLOAD")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := send("fits", 2*mib); st != http.StatusOK {
		t.Fatalf("chunked put within the quota: %d %s", st, body)
	}
	st, body := send("too-big", 2*mib)
	if st != http.StatusForbidden || !bytes.Contains([]byte(body), []byte("<Code>QuotaExceeded</Code>")) {
		t.Fatalf("chunked put past the quota: %d %s", st, body)
	}
	wantUsage(t, e, 2*mib)
	if _, err := e.a.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("too-big")}); status(err) != http.StatusNotFound {
		t.Errorf("refused object is there: %v", err)
	}
	noTemps(t, e)
}

// TestQuotaConcurrentWrites races more PUTs than the quota has room for:
// exactly as many succeed as fit, and the quota is never passed.
func TestQuotaConcurrentWrites(t *testing.T) {
	e := newEnv(t)
	const size, fit, writers = 256 << 10, 5, 16
	withQuota(t, e, fit*size)
	var wg sync.WaitGroup
	var ok, refused, other atomic.Int32
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			err := tryPut(e.a, "k"+strconv.Itoa(i), size, byte('a'+i))
			switch {
			case err == nil:
				ok.Add(1)
			case code(err) == "QuotaExceeded":
				refused.Add(1)
			default:
				other.Add(1)
				t.Errorf("put k%d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != fit || refused.Load() != writers-fit {
		t.Errorf("%d writes succeeded and %d were refused, want %d and %d", ok.Load(), refused.Load(), fit, writers-fit)
	}
	wantUsage(t, e, fit*size)
	t.Logf("FIGURE quota concurrent puts: %d of %d succeeded with room for %d", ok.Load(), writers, fit)
}

// TestQuotaLookup: a failing quota function refuses writes with SlowDown
// until it answers; a cached answer is used for the TTL and ForgetQuota
// drops it.
func TestQuotaLookup(t *testing.T) {
	e := newEnv(t)
	var limit atomic.Int64
	var fail atomic.Bool
	limit.Store(-1)
	fail.Store(true)
	e.srv.SetQuota(func(_ context.Context, bucket string) (int64, error) {
		if fail.Load() {
			return 0, io.ErrUnexpectedEOF
		}
		return limit.Load(), nil
	}, time.Hour)
	if err := tryPut(e.a, "x", 10, 'x'); status(err) != http.StatusServiceUnavailable {
		t.Fatalf("put with the quota unknown: %v, want 503 SlowDown", err)
	}
	fail.Store(false)
	if err := tryPut(e.a, "x", 10, 'x'); err != nil {
		t.Fatal(err)
	}
	limit.Store(5)
	if err := tryPut(e.a, "y", 10, 'y'); err != nil {
		t.Fatalf("cached no-quota answer not used: %v", err)
	}
	e.srv.ForgetQuota(bucketA)
	wantQuotaExceeded(t, "put after ForgetQuota", tryPut(e.a, "z", 10, 'z'))
	fail.Store(true) // the last answer stands in while the lookup fails
	e.srv.ForgetQuota(bucketA)
	if err := tryPut(e.a, "z", 10, 'z'); status(err) != http.StatusServiceUnavailable {
		t.Fatalf("put with the lookup failing and nothing cached: %v", err)
	}
}

// TestExpireUploads ages multipart uploads with an injected clock: those
// begun before the cutoff are aborted, their parts deleted and their room
// freed; a newer one is kept and still completes.
func TestExpireUploads(t *testing.T) {
	e := newEnv(t)
	withQuota(t, e, 100*mib)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var now atomic.Pointer[time.Time]
	now.Store(&t0)
	s3embed.SetClock(e.srv, func() time.Time { return *now.Load() })

	begin := func(key string, size int) (*string, *s3.UploadPartOutput) {
		cr, err := e.a.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		up, err := e.a.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: aws.String(key), UploadId: cr.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader(bytes.Repeat([]byte("p"), size))})
		if err != nil {
			t.Fatal(err)
		}
		return cr.UploadId, up
	}
	oldID, _ := begin("old", 2*mib)
	later := t0.Add(2 * time.Hour)
	now.Store(&later)
	newID, newPart := begin("new", mib)
	wantUsage(t, e, 3*mib)

	n, err := e.srv.ExpireUploads(ctx, t0.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("ExpireUploads = %d, %v; want 1", n, err)
	}
	wantUsage(t, e, mib)
	list, err := e.a.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucketA)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Uploads) != 1 || aws.ToString(list.Uploads[0].UploadId) != aws.ToString(newID) {
		t.Errorf("uploads listed after expiry: %d, want only the new one", len(list.Uploads))
	}
	if ents, _ := os.ReadDir(filepath.Join(e.root, ".s3uploads")); len(ents) != 1 {
		t.Errorf(".s3uploads holds %d uploads, want 1", len(ents))
	}
	_, err = e.a.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucketA), Key: aws.String("old"), UploadId: oldID,
		PartNumber: aws.Int32(2), Body: bytes.NewReader([]byte("late"))})
	if status(err) != http.StatusNotFound {
		t.Errorf("part for an expired upload: %v, want 404 NoSuchUpload", err)
	}
	if _, err := e.a.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucketA), Key: aws.String("new"), UploadId: newID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: newPart.ETag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Fatalf("completing the kept upload: %v", err)
	}
	wantUsage(t, e, mib)
	if n, err := e.srv.ExpireUploads(ctx, later.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("second ExpireUploads = %d, %v; want 0", n, err)
	}
}
