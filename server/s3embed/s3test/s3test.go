// Package s3test starts the embedded S3 endpoint (server/s3embed) on a
// loopback port for tests, with one key that may use one bucket.
package s3test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

// Region is the region the endpoint answers to.
const Region = "us-east-1"

// Key is an S3 key pair scoped to Bucket. It is the endpoint's key
// resolver: it knows AccessKey and no other key.
type Key struct {
	AccessKey, SecretKey, Bucket string
}

// ResolveKey implements s3embed.KeyResolver.
func (k Key) ResolveKey(_ context.Context, access string) (secret, bucket string, ok bool) {
	if access != k.AccessKey {
		return "", "", false
	}
	return k.SecretKey, k.Bucket, true
}

// Endpoint is a running embedded S3 endpoint.
type Endpoint struct {
	URL    string
	Root   string // the directory the buckets are served from
	Server *s3embed.Server
	Key    Key
}

// Start serves the buckets under root (a fresh temp dir when root is "")
// on a loopback port until the test ends, and creates key.Bucket. Objects
// written under root/BUCKET before Start are served as the bucket's.
// Each of setup is called with the server before it serves (to set its
// quotas, say).
func Start(t testing.TB, root string, key Key, setup ...func(*s3embed.Server)) *Endpoint {
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	srv, err := s3embed.New(root, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(srv)
	}
	if err := srv.CreateBucket(context.Background(), key.Bucket); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &Endpoint{URL: hs.URL, Root: root, Server: srv, Key: key}
}

// Client is an S3 client of the endpoint with its key, path style.
func (e *Endpoint) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(e.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(e.Key.AccessKey, e.Key.SecretKey, ""),
	})
}
