package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/embedded"
)

// fakeIndex is the store's view of keys: bucket and active flag.
type fakeIndex struct {
	mu      sync.Mutex
	lookups int
	keys    map[string]struct {
		bucket string
		active bool
	}
}

func (f *fakeIndex) LookupKey(ctx context.Context, ak string) (storage.KeyRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	k, ok := f.keys[ak]
	if !ok {
		return storage.KeyRecord{}, storage.ErrNotFound
	}
	return storage.KeyRecord{TenantID: "tenant-of-" + k.bucket, Bucket: k.bucket, Description: "bm-agent on laptop", Active: k.active}, nil
}

// calls is the number of lookups so far.
func (f *fakeIndex) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

func (f *fakeIndex) record(ak, bucket string, active bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[ak] = struct {
		bucket string
		active bool
	}{bucket, active}
}

var master = []byte("0123456789abcdef0123456789abcdef")

func setup(t *testing.T) (*embedded.Provider, *fakeIndex, string) {
	t.Helper()
	idx := &fakeIndex{keys: map[string]struct {
		bucket string
		active bool
	}{}}
	// The endpoint resolves keys through the provider, and the provider
	// needs the endpoint: build the provider first, then the server.
	var handler http.Handler = http.NotFoundHandler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	p := embedded.New(nil, master, idx, hs.URL, "", nil)
	srv, err := s3embed.New(t.TempDir(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.SetServer(srv)
	handler = srv.Handler()
	return p, idx, hs.URL
}

func TestProviderKeys(t *testing.T) {
	ctx := context.Background()
	p, idx, url := setup(t)
	if p.Name() != "embedded" {
		t.Errorf("name = %q", p.Name())
	}
	if u, r := p.Endpoint(); u != url || r != "us-east-1" {
		t.Errorf("endpoint = %q %q", u, r)
	}
	for _, b := range []string{"tenant-a", "tenant-b"} {
		if err := p.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.CreateBucket(ctx, "tenant-a"); err != nil {
		t.Errorf("create existing bucket: %v", err)
	}
	if names, err := p.ListBuckets(ctx); err != nil || strings.Join(names, ",") != "tenant-a,tenant-b" {
		t.Errorf("buckets = %v, %v", names, err)
	}
	if _, err := p.MintKey(ctx, "no-such-bucket"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("mint for missing bucket: %v", err)
	}

	key, err := p.MintKey(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^bmk_[A-Z2-7]{20}$`).MatchString(key.AccessKey) {
		t.Errorf("access key %q has the wrong shape", key.AccessKey)
	}
	other, _ := p.MintKey(ctx, "tenant-a")
	if other.AccessKey == key.AccessKey || other.SecretKey == key.SecretKey {
		t.Error("two mints gave the same key")
	}

	// Minted but not recorded in the store: refused.
	if err := p.TestKey(ctx, key, "tenant-a"); err == nil {
		t.Error("unrecorded key accepted")
	}
	idx.record(key.AccessKey, "tenant-a", true)
	if err := p.TestKey(ctx, key, "tenant-a"); err != nil {
		t.Errorf("recorded key refused: %v", err)
	}
	// Scoped to its bucket.
	if err := p.TestKey(ctx, key, "tenant-b"); err == nil {
		t.Error("key of tenant-a listed tenant-b")
	}
	// Wrong secret.
	bad := key
	bad.SecretKey = other.SecretKey
	if err := p.TestKey(ctx, bad, "tenant-a"); err == nil {
		t.Error("wrong secret accepted")
	}
	// Real traffic with the key works: put and get.
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""), Retryer: aws.NopRetryer{}})
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("tenant-a"), Key: aws.String("n.md"), Body: bytes.NewReader([]byte("n"))}); err != nil {
		t.Fatal(err)
	}
	// Revocation: the store's flag decides, and the provider call drops
	// the key from the cache, so it takes effect on the next request.
	idx.record(key.AccessKey, "tenant-a", false)
	if err := p.RevokeKey(ctx, key); err != nil {
		t.Errorf("revoke: %v", err)
	}
	if err := p.RevokeKey(ctx, storage.Key{AccessKey: "bmk_GONE"}); err != nil {
		t.Errorf("revoke unknown: %v", err)
	}
	if err := p.TestKey(ctx, key, "tenant-a"); err == nil {
		t.Error("revoked key still works")
	}

	// Buckets: non-empty refused, missing is ErrNotFound.
	if err := p.DeleteBucket(ctx, "tenant-a"); err == nil {
		t.Error("non-empty bucket deleted")
	}
	if err := p.DeleteBucket(ctx, "tenant-b"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteBucket(ctx, "tenant-b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("delete missing bucket: %v", err)
	}
}

func TestResolveKey(t *testing.T) {
	ctx := context.Background()
	idx := &fakeIndex{keys: map[string]struct {
		bucket string
		active bool
	}{}}
	idx.record("bmk_AAAAAAAAAAAAAAAAAAAA", "tenant-a", true)
	idx.record("bmk_BBBBBBBBBBBBBBBBBBBB", "tenant-a", false)
	idx.record("AKIA_NOT_OURS", "tenant-a", true)
	p := embedded.New(nil, master, idx, "http://127.0.0.1:1", "eu-west-1", nil)
	if _, r := p.Endpoint(); r != "eu-west-1" {
		t.Errorf("region = %q", r)
	}
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"active", "bmk_AAAAAAAAAAAAAAAAAAAA", true},
		{"inactive", "bmk_BBBBBBBBBBBBBBBBBBBB", false},
		{"unknown", "bmk_CCCCCCCCCCCCCCCCCCCC", false},
		{"foreign prefix", "AKIA_NOT_OURS", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			secret, bucket, ok := p.ResolveKey(ctx, tc.key)
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if ok && (bucket != "tenant-a" || secret == "") {
				t.Errorf("bucket %q secret empty %v", bucket, secret == "")
			}
		})
	}
	// The secret is a pure function of master key and access key.
	s1, _, _ := p.ResolveKey(ctx, "bmk_AAAAAAAAAAAAAAAAAAAA")
	s2, _, _ := embedded.New(nil, master, idx, "", "", nil).ResolveKey(ctx, "bmk_AAAAAAAAAAAAAAAAAAAA")
	s3, _, _ := embedded.New(nil, []byte("another master key, 32 bytes...."), idx, "", "", nil).ResolveKey(ctx, "bmk_AAAAAAAAAAAAAAAAAAAA")
	if s1 != s2 || s1 == s3 {
		t.Error("secret derivation is not deterministic per master key")
	}
	// Without a usable master key nothing is accepted or minted.
	weak := embedded.New(nil, []byte("short"), idx, "", "", nil)
	if _, _, ok := weak.ResolveKey(ctx, "bmk_AAAAAAAAAAAAAAAAAAAA"); ok {
		t.Error("short master key accepted a key")
	}
	if _, err := weak.MintKey(ctx, "tenant-a"); err == nil {
		t.Error("short master key minted a key")
	}
}

type failingIndex struct{}

func (failingIndex) LookupKey(context.Context, string) (storage.KeyRecord, error) {
	return storage.KeyRecord{}, errors.New("database is locked")
}

// TestLogsThroughInjectedLogger: a failed key lookup is logged through the
// logger the provider was built with.
func TestLogsThroughInjectedLogger(t *testing.T) {
	var buf bytes.Buffer
	p := embedded.New(nil, []byte("a master key of 32 bytes........"), failingIndex{}, "", "", slog.New(slog.NewTextHandler(&buf, nil)))
	if _, _, ok := p.ResolveKey(t.Context(), embedded.AccessKeyPrefix+"AAAAAAAAAAAAAAAAAAAA"); ok {
		t.Fatal("a key resolved through a failing index")
	}
	if got := buf.String(); !strings.Contains(got, "key lookup failed") || !strings.Contains(got, "component=storage/embedded") {
		t.Errorf("log = %q, want the failed lookup with the provider's component", got)
	}
}

// TestKeyCache: what the store says of a key is asked once per TTL; a
// revocation through RevokeKey is seen by the very next request; unknown
// keys are never cached; a zero TTL asks every time.
func TestKeyCache(t *testing.T) {
	ctx := context.Background()
	const ak = "bmk_AAAAAAAAAAAAAAAAAAAA"
	idx := &fakeIndex{keys: map[string]struct {
		bucket string
		active bool
	}{}}
	idx.record(ak, "tenant-a", true)
	p := embedded.New(nil, master, idx, "http://127.0.0.1:1", "", nil)

	for range 5 {
		if _, b, ok := p.ResolveKey(ctx, ak); !ok || b != "tenant-a" {
			t.Fatalf("ResolveKey = %q %v", b, ok)
		}
	}
	if n := idx.calls(); n != 1 {
		t.Errorf("5 requests asked the store %d times, want 1", n)
	}
	if rec, ok := p.KeyRecord(ctx, ak); !ok || rec.TenantID != "tenant-of-tenant-a" || rec.Description != "bm-agent on laptop" || !rec.Active {
		t.Errorf("KeyRecord = %+v %v", rec, ok)
	}

	// Revoked in the store only: the cache still answers (the TTL bounds
	// it); through RevokeKey: refused at once.
	idx.record(ak, "tenant-a", false)
	if _, _, ok := p.ResolveKey(ctx, ak); !ok {
		t.Error("the cached key was refused before its TTL without an invalidation")
	}
	if err := p.RevokeKey(ctx, storage.Key{AccessKey: ak}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := p.ResolveKey(ctx, ak); ok {
		t.Error("a key revoked through RevokeKey was accepted on the next request")
	}
	// The revoked state is cached too: no query per refused request.
	before := idx.calls()
	p.ResolveKey(ctx, ak)
	if idx.calls() != before {
		t.Error("a known revoked key asked the store again within the TTL")
	}

	// Unknown keys are not cached.
	before = idx.calls()
	for range 3 {
		if _, _, ok := p.ResolveKey(ctx, "bmk_UNKNOWNUNKNOWNUNKN"); ok {
			t.Fatal("unknown key accepted")
		}
	}
	if n := idx.calls() - before; n != 3 {
		t.Errorf("3 requests with an unknown key asked the store %d times, want 3", n)
	}

	// The TTL ends a cached answer.
	const bk = "bmk_BBBBBBBBBBBBBBBBBBBB"
	p.SetKeyCacheTTL(50 * time.Millisecond)
	idx.record(bk, "tenant-a", true)
	if _, _, ok := p.ResolveKey(ctx, bk); !ok {
		t.Fatal("active key refused")
	}
	idx.record(bk, "tenant-a", false)
	time.Sleep(80 * time.Millisecond)
	if _, _, ok := p.ResolveKey(ctx, bk); ok {
		t.Error("a key revoked in the store was accepted after the TTL")
	}

	// No cache: every request asks.
	p.SetKeyCacheTTL(0)
	idx.record(bk, "tenant-a", true)
	before = idx.calls()
	for range 3 {
		p.ResolveKey(ctx, bk)
	}
	if n := idx.calls() - before; n != 3 {
		t.Errorf("without the cache 3 requests asked the store %d times, want 3", n)
	}
}

// blockingIndex answers a lookup only when told to.
type blockingIndex struct {
	*fakeIndex
	asked, answer chan struct{}
}

func (b blockingIndex) LookupKey(ctx context.Context, ak string) (storage.KeyRecord, error) {
	rec, err := b.fakeIndex.LookupKey(ctx, ak)
	b.asked <- struct{}{}
	<-b.answer
	return rec, err
}

// TestKeyCacheRevokeDuringLookup: a lookup that read the store before a
// revocation and returns after it does not put the key back in the cache.
func TestKeyCacheRevokeDuringLookup(t *testing.T) {
	ctx := context.Background()
	const ak = "bmk_AAAAAAAAAAAAAAAAAAAA"
	fi := &fakeIndex{keys: map[string]struct {
		bucket string
		active bool
	}{}}
	fi.record(ak, "tenant-a", true)
	idx := blockingIndex{fakeIndex: fi, asked: make(chan struct{}), answer: make(chan struct{})}
	p := embedded.New(nil, master, idx, "http://127.0.0.1:1", "", nil)
	done := make(chan bool)
	go func() {
		_, _, ok := p.ResolveKey(ctx, ak)
		done <- ok
	}()
	<-idx.asked // the store said "active"
	fi.record(ak, "tenant-a", false)
	if err := p.RevokeKey(ctx, storage.Key{AccessKey: ak}); err != nil {
		t.Fatal(err)
	}
	close(idx.answer)
	<-done // that request may pass: it began before the revocation
	go func() {
		for range idx.asked {
		}
	}()
	if _, _, ok := p.ResolveKey(ctx, ak); ok {
		t.Error("the key revoked during a lookup was cached as active")
	}
	close(idx.asked)
}

// TestUsageAndUploadExpiry: the provider reports the endpoint's bucket
// usage (storage.UsageReporter) and expires its multipart uploads for the
// lifecycle worker.
func TestUsageAndUploadExpiry(t *testing.T) {
	ctx := context.Background()
	p, idx, url := setup(t)
	if err := p.CreateBucket(ctx, "tenant-a"); err != nil {
		t.Fatal(err)
	}
	key, err := p.MintKey(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	idx.record(key.AccessKey, "tenant-a", true)
	var ur storage.UsageReporter = p
	for bucket, want := range map[string]error{"tenant-a": nil, "no-such-bucket": storage.ErrNotFound} {
		if n, err := ur.BucketUsage(ctx, bucket); !errors.Is(err, want) || n != 0 {
			t.Errorf("usage of %s before any write = %d, %v; want 0, %v", bucket, n, err, want)
		}
	}
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""), Retryer: aws.NopRetryer{}})
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("tenant-a"), Key: aws.String("a.md"), Body: strings.NewReader("hello")}); err != nil {
		t.Fatal(err)
	}
	cr, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("tenant-a"), Key: aws.String("big")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("tenant-a"), Key: aws.String("big"), UploadId: cr.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 100))}); err != nil {
		t.Fatal(err)
	}
	if n, err := ur.BucketUsage(ctx, "tenant-a"); err != nil || n != 105 {
		t.Errorf("usage = %d, %v; want 105 (an object of 5 bytes and a part of 100)", n, err)
	}
	if n, err := p.ExpireUploads(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("ExpireUploads an hour back = %d, %v; want 0", n, err)
	}
	if n, err := p.ExpireUploads(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("ExpireUploads = %d, %v; want 1", n, err)
	}
	if n, err := ur.BucketUsage(ctx, "tenant-a"); err != nil || n != 5 {
		t.Errorf("usage after expiry = %d, %v; want 5", n, err)
	}
}
