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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/embedded"
)

// fakeIndex is the store's view of keys: bucket and active flag.
type fakeIndex struct {
	mu   sync.Mutex
	keys map[string]struct {
		bucket string
		active bool
	}
}

func (f *fakeIndex) LookupAccessKey(ctx context.Context, ak string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[ak]
	if !ok {
		return "", false, storage.ErrNotFound
	}
	return k.bucket, k.active, nil
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
	// Revocation: the provider call is a no-op, the store's flag decides,
	// and it takes effect on the next request (nothing cached).
	if err := p.RevokeKey(ctx, key); err != nil {
		t.Errorf("revoke: %v", err)
	}
	if err := p.RevokeKey(ctx, storage.Key{AccessKey: "bmk_GONE"}); err != nil {
		t.Errorf("revoke unknown: %v", err)
	}
	idx.record(key.AccessKey, "tenant-a", false)
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

func (failingIndex) LookupAccessKey(context.Context, string) (string, bool, error) {
	return "", false, errors.New("database is locked")
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
