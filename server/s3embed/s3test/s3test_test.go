package s3test_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/s3embed/s3test"
)

func TestStart(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "notes"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "notes", "seeded.md"), []byte("seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := s3test.Start(t, root, s3test.Key{AccessKey: "AKS3TEST", SecretKey: "s3test-secret-0123456789", Bucket: "notes"})
	if e.Root != root || !strings.HasPrefix(e.URL, "http://127.0.0.1:") {
		t.Fatalf("endpoint = %q over %q", e.URL, e.Root)
	}
	c := e.Client()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("notes"), Key: aws.String("a.md"), Body: strings.NewReader("hello")}); err != nil {
		t.Fatalf("put: %v", err)
	}
	for key, want := range map[string]string{"a.md": "hello", "seeded.md": "seed"} {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("notes"), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		b, err := io.ReadAll(out.Body)
		_ = out.Body.Close()
		if err != nil || string(b) != want {
			t.Errorf("get %s = %q, %v; want %q", key, b, err, want)
		}
	}
	other := s3test.Endpoint{URL: e.URL, Key: s3test.Key{AccessKey: "AKS3TEST", SecretKey: "wrong-secret-0123456789", Bucket: "notes"}}
	if _, err := other.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("notes"), Key: aws.String("a.md")}); err == nil {
		t.Error("get with a wrong secret = nil error")
	}
}

func TestStartTempRoot(t *testing.T) {
	e := s3test.Start(t, "", s3test.Key{AccessKey: "AKS3TEST", SecretKey: "s3test-secret-0123456789", Bucket: "bkt"})
	if e.Root == "" {
		t.Fatal("empty root")
	}
	if _, err := os.Stat(filepath.Join(e.Root, "bkt")); err != nil {
		t.Errorf("bucket dir: %v", err)
	}
}
