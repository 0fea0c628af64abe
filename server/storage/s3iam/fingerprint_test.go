package s3iam_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// bucketFingerprinter is lifecycle.BucketFingerprinter, restated so that
// the test does not pull in the lifecycle package's store.
type bucketFingerprinter interface {
	BucketFingerprint(ctx context.Context, bucket string) (string, error)
}

// TestBucketFingerprint runs against the stand-in (see standIn): its
// ListObjectsV2 pages at 1,000 objects like S3 does.
func TestBucketFingerprint(t *testing.T) {
	ctx := context.Background()
	p, si := setup(t)
	var fp bucketFingerprinter = p
	const bucket = "tenant-fp"
	if err := p.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	admin := s3.New(s3.Options{
		Region: "auto", BaseEndpoint: aws.String(si.s3Server.URL), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(adminKey, adminSecret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	put := func(key, body string) func() error {
		return func() error {
			_, err := admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
			return err
		}
	}
	del := func(key string) func() error {
		return func() error {
			_, err := admin.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			return err
		}
	}

	empty, err := fp.BucketFingerprint(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(empty, "v1-0-") {
		t.Errorf("empty bucket fingerprint = %q, want v1-0-...", empty)
	}
	// 2,500 objects: three pages
	si.seed(bucket, "bulk/", 2500)
	si.listCalls()

	steps := []struct {
		name    string
		change  func() error // nil: nothing changes
		changed bool
	}{
		{"seeded", nil, true}, // compared with the empty bucket
		{"nothing", nil, false},
		{"put", put("notes/a.md", "hello"), true},
		{"nothing again", nil, false},
		{"overwrite same size", put("notes/a.md", "HELLO"), true},
		{"put in the last page", put("zz/last.md", "x"), true},
		{"delete in the last page", del("zz/last.md"), true},
		{"delete in the first page", del("bulk/0000007"), true},
		{"overwrite same content", put("notes/a.md", "HELLO"), true}, // newer LastModified
	}
	prev := empty
	for _, st := range steps {
		if st.change != nil {
			if err := st.change(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		got, err := fp.BucketFingerprint(ctx, bucket)
		if err != nil {
			t.Fatalf("%s: BucketFingerprint = %v", st.name, err)
		}
		if changed := got != prev; changed != st.changed {
			t.Errorf("%s: fingerprint %q -> %q, changed = %t, want %t", st.name, prev, got, changed, st.changed)
		}
		prev = got
	}
	if n := si.listCalls(); n != 3*len(steps) {
		t.Errorf("%d ListObjectsV2 requests for %d fingerprints of ~2,500 objects, want 3 each", n, len(steps))
	}
	if !strings.HasPrefix(prev, "v1-2500-") { // 2,500 + a.md - bulk/0000007
		t.Errorf("final fingerprint = %q, want v1-2500-...", prev)
	}

	if _, err := fp.BucketFingerprint(ctx, "no-such-bucket"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("BucketFingerprint(missing) = %v, want ErrNotFound", err)
	}
}
