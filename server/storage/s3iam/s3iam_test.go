package s3iam_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/s3iam"
	"github.com/basicmachines-co/bm-agent/server/storage/storagetest"
)

// These tests run against a stand-in for Tigris/AWS (see standIn): no
// real S3 or IAM endpoint is reachable from here.

const (
	adminKey    = "ADMINKEY"
	adminSecret = "admin-secret"
)

// setup returns a provider configured like Tigris (region "auto", path
// style) whose S3 and IAM endpoints are the stand-in's.
func setup(t *testing.T) (*s3iam.Provider, *standIn) {
	t.Helper()
	si := newStandIn(t, adminKey, s3iam.TigrisRegion)
	cfg := s3iam.Tigris(adminKey, adminSecret)
	cfg.S3Endpoint = si.s3Server.URL
	cfg.IAMEndpoint = si.iamServer.URL
	cfg.PathStyle = true
	p, err := s3iam.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, si
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	p, si := setup(t)
	if p.Name() != "s3" {
		t.Errorf("Name() = %q", p.Name())
	}
	if u, r := p.Endpoint(); u != si.s3Server.URL || r != "auto" {
		t.Errorf("Endpoint() = %q, %q", u, r)
	}
	for _, b := range []string{"tenant-a", "tenant-b", "tenant-a"} {
		if err := p.CreateBucket(ctx, b); err != nil {
			t.Fatalf("CreateBucket(%s): %v", b, err)
		}
	}
	names, err := p.ListBuckets(ctx)
	if err != nil || !slices.Equal(names, []string{"tenant-a", "tenant-b"}) {
		t.Fatalf("ListBuckets = %v, %v", names, err)
	}

	// a key for a missing bucket: not found, and nothing created in IAM
	if _, err := p.MintKey(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("MintKey(missing) = %v, want ErrNotFound", err)
	}
	if c := si.takeCalls(); len(c) != 0 {
		t.Errorf("MintKey(missing) made IAM calls %v", c)
	}

	key, err := p.MintKey(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	if c := si.takeCalls(); !slices.Equal(c, []string{"CreateUser", "CreatePolicy", "AttachUserPolicy", "CreateAccessKey"}) {
		t.Errorf("mint calls = %v", c)
	}
	if key.AccessKey == "" || key.SecretKey == "" {
		t.Fatalf("key = %+v", key)
	}
	if strings.Contains(key.Ref, key.SecretKey) {
		t.Error("Ref contains the secret")
	}
	ref, err := url.ParseQuery(key.Ref)
	if err != nil || ref.Get("key") != key.AccessKey || !strings.HasPrefix(ref.Get("user"), "bm-agent-tenant-a-") ||
		ref.Get("policy") != "arn:aws:iam::123456789012:policy/"+ref.Get("user") {
		t.Errorf("Ref = %q", key.Ref)
	}
	checkPolicy(t, si, ref.Get("policy"), "tenant-a")

	if err := p.TestKey(ctx, key, "tenant-a"); err != nil {
		t.Errorf("TestKey(own bucket) = %v", err)
	}
	if err := p.TestKey(ctx, key, "tenant-b"); apiCode(err) != "AccessDenied" {
		t.Errorf("TestKey(other bucket) = %v, want AccessDenied", err)
	}
	// the key writes into its bucket and cannot create one
	kc := s3.New(s3.Options{
		Region: "auto", BaseEndpoint: aws.String(si.s3Server.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""),
	})
	if _, err := kc.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("tenant-a"), Key: aws.String("note.md"),
		Body: strings.NewReader("hello")}); err != nil {
		t.Errorf("PutObject with key = %v", err)
	}
	if _, err := kc.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("tenant-c")}); apiCode(err) != "AccessDenied" {
		t.Errorf("CreateBucket with key = %v, want AccessDenied", err)
	}

	if err := p.RevokeKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if c := si.takeCalls(); !slices.Equal(c, []string{"ListAccessKeys", "DeleteAccessKey", "DetachUserPolicy", "DeletePolicy", "DeleteUser"}) {
		t.Errorf("revoke calls = %v", c)
	}
	if u, pol, k := si.counts(); u+pol+k != 0 {
		t.Errorf("after revoke: %d users, %d policies, %d keys left", u, pol, k)
	}
	if err := p.TestKey(ctx, key, "tenant-a"); apiCode(err) != "InvalidAccessKeyId" {
		t.Errorf("TestKey(revoked) = %v, want InvalidAccessKeyId", err)
	}
	if err := p.RevokeKey(ctx, key); err != nil {
		t.Errorf("second RevokeKey = %v", err)
	}
	if err := p.RevokeKey(ctx, storage.Key{AccessKey: "AKIAX", Ref: "garbage"}); err == nil {
		t.Error("RevokeKey(bad ref) = nil")
	}

	if err := p.DeleteBucket(ctx, "tenant-b"); err != nil {
		t.Errorf("DeleteBucket = %v", err)
	}
	if err := p.DeleteBucket(ctx, "tenant-b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteBucket(missing) = %v, want ErrNotFound", err)
	}
	if err := p.DeleteBucket(ctx, "tenant-a"); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteBucket(not empty) = %v, want an error", err)
	}
}

// checkPolicy checks the stored policy: exactly the object and listing
// actions, on exactly the bucket and its objects.
func checkPolicy(t *testing.T, si *standIn, arn, bucket string) {
	t.Helper()
	si.mu.Lock()
	pol := si.policies[arn]
	si.mu.Unlock()
	if pol == nil {
		t.Fatalf("policy %s not stored", arn)
	}
	got := map[string][]string{}
	for _, st := range pol.doc.Statement {
		if st.Effect != "Allow" {
			t.Errorf("statement effect %q", st.Effect)
		}
		for _, res := range st.Resource {
			acts := append(got[res], st.Action...)
			slices.Sort(acts)
			got[res] = acts
		}
	}
	want := map[string][]string{
		"arn:aws:s3:::" + bucket:        {"s3:ListBucket", "s3:ListBucketMultipartUploads"},
		"arn:aws:s3:::" + bucket + "/*": {"s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"},
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("policy grants %s, want %s", gj, wj)
	}
}

func TestMintFailureIsUndone(t *testing.T) {
	tests := []struct {
		failAt string
		undo   []string
	}{
		{"CreatePolicy", []string{"ListAccessKeys", "DeleteUser"}},
		{"AttachUserPolicy", []string{"ListAccessKeys", "DetachUserPolicy", "DeletePolicy", "DeleteUser"}},
		{"CreateAccessKey", []string{"ListAccessKeys", "DetachUserPolicy", "DeletePolicy", "DeleteUser"}},
	}
	for _, tt := range tests {
		t.Run(tt.failAt, func(t *testing.T) {
			ctx := context.Background()
			p, si := setup(t)
			if err := p.CreateBucket(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			si.failOn(tt.failAt, 1)
			key, err := p.MintKey(ctx, "b")
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("MintKey = %v, want the injected failure", err)
			}
			if key != (storage.Key{}) {
				t.Errorf("key after an undone failure = %+v, want zero", key)
			}
			calls := si.takeCalls()
			i := slices.Index(calls, tt.failAt)
			if i < 0 || !slices.Equal(calls[i+1:], tt.undo) {
				t.Errorf("calls = %v, want %s then %v", calls, tt.failAt, tt.undo)
			}
			if u, pol, k := si.counts(); u+pol+k != 0 {
				t.Errorf("left behind: %d users, %d policies, %d keys", u, pol, k)
			}
		})
	}
}

func TestMintFailureLeftoversRevocable(t *testing.T) {
	ctx := context.Background()
	p, si := setup(t)
	if err := p.CreateBucket(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	si.failOn("CreateAccessKey", 1)
	si.failOn("DeleteUser", 1) // the undo fails too
	key, err := p.MintKey(ctx, "b")
	if err == nil {
		t.Fatal("MintKey succeeded")
	}
	if key.Ref == "" || key.SecretKey != "" {
		t.Fatalf("key = %+v, want only a Ref naming the leftovers", key)
	}
	if u, _, _ := si.counts(); u != 1 {
		t.Fatalf("%d users left, want 1", u)
	}
	if err := p.RevokeKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if u, pol, k := si.counts(); u+pol+k != 0 {
		t.Errorf("after revoke: %d users, %d policies, %d keys", u, pol, k)
	}
}

func TestRevokeRetryConverges(t *testing.T) {
	for _, step := range []string{"ListAccessKeys", "DeleteAccessKey", "DetachUserPolicy", "DeletePolicy", "DeleteUser"} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			p, si := setup(t)
			if err := p.CreateBucket(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			key, err := p.MintKey(ctx, "b")
			if err != nil {
				t.Fatal(err)
			}
			si.failOn(step, 1)
			if err := p.RevokeKey(ctx, key); err == nil {
				t.Fatal("RevokeKey succeeded despite the failure")
			}
			if err := p.TestKey(ctx, key, "b"); step != "ListAccessKeys" && step != "DeleteAccessKey" && err == nil {
				t.Error("key still works after a revoke that got past DeleteAccessKey")
			}
			if err := p.RevokeKey(ctx, key); err != nil {
				t.Fatalf("retried RevokeKey = %v", err)
			}
			if u, pol, k := si.counts(); u+pol+k != 0 {
				t.Errorf("after retry: %d users, %d policies, %d keys", u, pol, k)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name     string
		cfg      s3iam.Config
		wantErr  bool
		endpoint string
		region   string
	}{
		{"no credentials", s3iam.Config{S3Endpoint: "http://127.0.0.1:1"}, true, "", ""},
		{"bad endpoint", s3iam.Config{S3Endpoint: "ftp://x", AccessKey: "a", SecretKey: "very-secret-value"}, true, "", ""},
		{"aws default", s3iam.Config{Region: "eu-west-1", AccessKey: "a", SecretKey: "s"}, false, "https://s3.eu-west-1.amazonaws.com", "eu-west-1"},
		{"aws no region", s3iam.Config{AccessKey: "a", SecretKey: "s"}, false, "https://s3.us-east-1.amazonaws.com", "us-east-1"},
		{"tigris", s3iam.Tigris("a", "s"), false, "https://fly.storage.tigris.dev", "auto"},
		{"public endpoint", s3iam.Config{S3Endpoint: "http://10.0.0.1:9000/", PublicEndpoint: "https://s3.example.com/", AccessKey: "a", SecretKey: "s"},
			false, "https://s3.example.com", "us-east-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s3iam.New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), tt.cfg.SecretKey) && tt.cfg.SecretKey != "" {
					t.Error("error shows the secret")
				}
				return
			}
			if u, r := p.Endpoint(); u != tt.endpoint || r != tt.region {
				t.Errorf("Endpoint() = %q, %q, want %q, %q", u, r, tt.endpoint, tt.region)
			}
		})
	}
	if c := s3iam.Tigris("a", "s"); c.IAMEndpoint != "https://iam.storage.tigris.dev" {
		t.Errorf("Tigris IAM endpoint = %q", c.IAMEndpoint)
	}
}

func TestConformance(t *testing.T) {
	p, _ := setup(t)
	storagetest.Run(t, p, storagetest.Options{})
}
