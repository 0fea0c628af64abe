// Package storagetest is a conformance suite for storage.Provider
// implementations: every provider's tests call Run against a real or
// stand-in service, so the embedded endpoint, MinIO and S3 + IAM all honour
// the same contract (buckets come and go, a minted key reads, writes, lists
// and deletes in its own bucket and nowhere else, a revoked key stops
// working, revoking twice is fine).
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

// Options adapts the suite to a provider.
type Options struct {
	// Activate, when set, is called after MintKey: providers whose keys
	// work only once the server's store records them (embedded) record the
	// key there.
	Activate func(key storage.Key, bucket string)
	// Deactivate, when set, is called before RevokeKey (embedded: the
	// store's revoked flag).
	Deactivate func(key storage.Key)
	// BucketPrefix starts every bucket name the suite makes; empty means
	// "conf". Names get a unique suffix, so suites can share a server.
	BucketPrefix string
}

var seq atomic.Int64

func (o Options) bucket(kind string) string {
	prefix := o.BucketPrefix
	if prefix == "" {
		prefix = "conf"
	}
	return strings.ToLower(fmt.Sprintf("%s-%s-%d-%d", prefix, kind, time.Now().UnixNano()%1_000_000, seq.Add(1)))
}

// Run runs the suite against p as subtests of t.
func Run(t *testing.T, p storage.Provider, opt Options) {
	t.Run("Buckets", func(t *testing.T) { testBuckets(t, p, opt) })
	t.Run("MintMissingBucket", func(t *testing.T) {
		if _, err := p.MintKey(context.Background(), opt.bucket("missing")); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("MintKey(missing bucket) = %v, want storage.ErrNotFound", err)
		}
	})
	t.Run("KeyScope", func(t *testing.T) { testKeyScope(t, p, opt) })
}

func testBuckets(t *testing.T, p storage.Provider, opt Options) {
	ctx := context.Background()
	b := opt.bucket("b")
	if err := p.CreateBucket(ctx, b); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	if err := p.CreateBucket(ctx, b); err != nil {
		t.Errorf("CreateBucket(existing) = %v, want nil", err)
	}
	names, err := p.ListBuckets(ctx)
	if err != nil || !slices.Contains(names, b) {
		t.Errorf("ListBuckets = %v, %v; want it to contain %s", names, err, b)
	}
	if err := p.DeleteBucket(ctx, b); err != nil {
		t.Fatalf("DeleteBucket: %v", err)
	}
	if err := p.DeleteBucket(ctx, b); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteBucket(deleted) = %v, want storage.ErrNotFound", err)
	}
	names, err = p.ListBuckets(ctx)
	if err != nil || slices.Contains(names, b) {
		t.Errorf("ListBuckets after delete = %v, %v", names, err)
	}
}

// Client is an S3 client for key at p's endpoint (path style).
func Client(p storage.Provider, key storage.Key) *s3.Client {
	url, region := p.Endpoint()
	return s3.New(s3.Options{
		Region:                     region,
		BaseEndpoint:               aws.String(url),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           1,
	})
}

func testKeyScope(t *testing.T, p storage.Provider, opt Options) {
	ctx := context.Background()
	own, other := opt.bucket("own"), opt.bucket("other")
	for _, b := range []string{own, other} {
		if err := p.CreateBucket(ctx, b); err != nil {
			t.Fatalf("CreateBucket(%s): %v", b, err)
		}
	}
	t.Cleanup(func() {
		for _, b := range []string{own, other} {
			_ = p.DeleteBucket(context.Background(), b)
		}
	})
	key, err := p.MintKey(ctx, own)
	if err != nil {
		t.Fatalf("MintKey: %v", err)
	}
	if key.AccessKey == "" || key.SecretKey == "" {
		t.Fatalf("MintKey gave an empty key (access key %q)", key.AccessKey)
	}
	if key.Ref != "" && strings.Contains(key.Ref, key.SecretKey) {
		t.Error("Ref contains the secret")
	}
	if opt.Activate != nil {
		opt.Activate(key, own)
	}
	if err := p.TestKey(ctx, key, own); err != nil {
		t.Errorf("TestKey(own bucket) = %v", err)
	}
	if err := p.TestKey(ctx, key, other); err == nil {
		t.Error("TestKey(other bucket) = nil, want an error")
	}

	c := Client(p, key)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(own), Key: aws.String("dir/note.md"),
		Body: strings.NewReader("hello"), ContentLength: aws.Int64(5)}); err != nil {
		t.Fatalf("PutObject(own) = %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(own), Key: aws.String("dir/note.md")})
	if err != nil {
		t.Fatalf("GetObject(own) = %v", err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(body) != "hello" {
		t.Errorf("GetObject body = %q", body)
	}
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(own)})
	if err != nil || len(list.Contents) != 1 || aws.ToString(list.Contents[0].Key) != "dir/note.md" {
		t.Errorf("ListObjectsV2(own) = %v, %v", list, err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(own), Key: aws.String("dir/note.md")}); err != nil {
		t.Errorf("DeleteObject(own) = %v", err)
	}

	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(other), Key: aws.String("x"),
		Body: strings.NewReader("x"), ContentLength: aws.Int64(1)}); err == nil {
		t.Error("PutObject(other bucket) with the key = nil, want an error")
	}
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(other)}); err == nil {
		t.Error("ListObjectsV2(other bucket) with the key = nil, want an error")
	}
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(opt.bucket("new"))}); err == nil {
		t.Error("CreateBucket with the key = nil, want an error")
	}

	if opt.Deactivate != nil {
		opt.Deactivate(key)
	}
	if err := p.RevokeKey(ctx, key); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if err := p.TestKey(ctx, key, own); err == nil {
		t.Error("TestKey(revoked) = nil, want an error")
	}
	if err := p.RevokeKey(ctx, key); err != nil {
		t.Errorf("RevokeKey(revoked) = %v, want nil", err)
	}
}
