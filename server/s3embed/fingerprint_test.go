package s3embed_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

func TestBucketFingerprint(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	fp := func(bucket string) string {
		t.Helper()
		v, err := e.srv.BucketFingerprint(ctx, bucket)
		if err != nil {
			t.Fatalf("fingerprint %s: %v", bucket, err)
		}
		return v
	}
	empty := fp(bucketA)
	if again := fp(bucketA); again != empty {
		t.Errorf("fingerprint changed without a write: %q then %q", empty, again)
	}
	otherBefore := fp(bucketB)

	steps := []struct {
		name string
		do   func()
	}{
		{"put", func() { put(t, e.a, bucketA, "notes/a.md", []byte("one")) }},
		{"overwrite, same size", func() { put(t, e.a, bucketA, "notes/a.md", []byte("two")) }},
		{"put another", func() { put(t, e.a, bucketA, "notes/b.md", []byte("b")) }},
		{"delete", func() {
			if _, err := e.a.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucketA), Key: aws.String("notes/b.md")}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	seen := map[string]string{empty: "empty"}
	for _, st := range steps {
		st.do()
		got := fp(bucketA)
		if prev, dup := seen[got]; dup {
			t.Errorf("after %s the fingerprint %q equals the one after %s", st.name, got, prev)
		}
		seen[got] = st.name
	}
	if got := fp(bucketB); got != otherBefore {
		t.Errorf("writes to %s changed %s's fingerprint: %q then %q", bucketA, bucketB, otherBefore, got)
	}
	if _, err := e.srv.BucketFingerprint(ctx, "no-such-bucket"); !errors.Is(err, s3embed.ErrNoSuchBucket) {
		t.Errorf("missing bucket: err = %v, want ErrNoSuchBucket", err)
	}
}

// TestBucketFingerprintBusy: between a write landing and OnChange
// returning, the bucket's fingerprint is ErrBucketBusy (a fallback pass
// then would announce what OnChange is about to announce); other buckets
// and the bucket afterwards answer as usual.
func TestBucketFingerprintBusy(t *testing.T) {
	ctx := context.Background()
	keys := &keyring{keys: map[string][2]string{"AKA": {"secret-a", bucketA}}}
	srv, err := s3embed.New(t.TempDir(), keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{bucketA, bucketB} {
		if err := srv.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	var during, other error
	srv.OnChange = func(s3embed.Change) {
		_, during = srv.BucketFingerprint(ctx, bucketA)
		_, other = srv.BucketFingerprint(ctx, bucketB)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	put(t, newClient(hs.URL, "AKA", "secret-a"), bucketA, "a.md", []byte("a"))
	if !errors.Is(during, s3embed.ErrBucketBusy) {
		t.Errorf("fingerprint while the write is announced: err = %v, want ErrBucketBusy", during)
	}
	if other != nil {
		t.Errorf("another bucket's fingerprint meanwhile: %v", other)
	}
	if _, err := srv.BucketFingerprint(ctx, bucketA); err != nil {
		t.Errorf("fingerprint after the write: %v", err)
	}
}
