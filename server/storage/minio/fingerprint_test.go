package minio_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/minio"
)

// bucketFingerprinter is lifecycle.BucketFingerprinter, restated so that
// the test does not pull in the lifecycle package's store.
type bucketFingerprinter interface {
	BucketFingerprint(ctx context.Context, bucket string) (string, error)
}

var _ bucketFingerprinter = (*minio.Provider)(nil)

// listCounter counts the ListObjectsV2 requests that go through it.
type listCounter struct {
	n atomic.Int64
}

func (c *listCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Query().Get("list-type") == "2" {
		c.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestBucketFingerprint(t *testing.T) {
	ctx := context.Background()
	needMinIO(t)
	lists := &listCounter{}
	p, err := minio.New(minio.Config{Endpoint: minioURL, AccessKey: rootUser, SecretKey: rootPassword, Transport: lists})
	if err != nil {
		t.Fatal(err)
	}
	bucket := uniq(t, "tenant-fp")
	if err := p.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	admin := keyClient(minioURL, storage.Key{AccessKey: rootUser, SecretKey: rootPassword})
	put := func(key, body string) error {
		_, err := admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
		return err
	}
	del := func(key string) error {
		_, err := admin.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		return err
	}
	take := func() int64 { return lists.n.Swap(0) }

	empty, err := p.BucketFingerprint(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(empty, "v1-0-") {
		t.Errorf("empty bucket fingerprint = %q, want v1-0-...", empty)
	}
	// 1,001 objects: two pages of ListObjectsV2
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 8)
		errs = make([]error, 1001)
	)
	for i := range errs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = put(fmt.Sprintf("bulk/%05d", i), fmt.Sprint(i))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("seeding: %v", err)
	}
	take()

	steps := []struct {
		name    string
		change  func() error // nil: nothing changes
		changed bool
		objects int // in the bucket after the change
	}{
		{"seeded", nil, true, 1001}, // compared with the empty bucket
		{"nothing", nil, false, 1001},
		{"put", func() error { return put("notes/a.md", "hello") }, true, 1002},
		{"nothing again", nil, false, 1002},
		{"overwrite same size", func() error { return put("notes/a.md", "HELLO") }, true, 1002},
		{"delete", func() error { return del("notes/a.md") }, true, 1001},
		{"delete in the first page", func() error { return del("bulk/00007") }, true, 1000},
		{"put back", func() error { return put("bulk/00007", "7") }, true, 1001},               // same content, newer
		{"overwrite same content", func() error { return put("bulk/00007", "7") }, true, 1001}, // newer LastModified
	}
	prev := empty
	var wantLists int64
	for _, st := range steps {
		wantLists += int64(max(1, (st.objects+999)/1000))
		if st.change != nil {
			if err := st.change(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		got, err := p.BucketFingerprint(ctx, bucket)
		if err != nil {
			t.Fatalf("%s: BucketFingerprint = %v", st.name, err)
		}
		if changed := got != prev; changed != st.changed {
			t.Errorf("%s: fingerprint %q -> %q, changed = %t, want %t", st.name, prev, got, changed, st.changed)
		}
		if want := fmt.Sprintf("v1-%d-", st.objects); !strings.HasPrefix(got, want) {
			t.Errorf("%s: fingerprint %q, want %s...", st.name, got, want)
		}
		prev = got
	}
	if n := take(); n != wantLists {
		t.Errorf("%d ListObjectsV2 requests for %d fingerprints, want %d (one per 1,000 objects)", n, len(steps), wantLists)
	}

	if _, err := p.BucketFingerprint(ctx, uniq(t, "no-such-bucket")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("BucketFingerprint(missing) = %v, want ErrNotFound", err)
	}
}
