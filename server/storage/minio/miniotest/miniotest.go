// Package miniotest runs a real MinIO server (installed by
// .ci/install.d/20-minio.sh) on loopback for tests: one per test, or one
// per package from TestMain, with a temporary data directory, and makes
// buckets with bucket-scoped keys through the server's own MinIO provider.
// StartCluster runs a distributed (erasure-coded) MinIO of several
// processes instead; see cluster.go.
package miniotest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/minio"
)

// Root credentials of every server this package starts.
const (
	RootUser     = "bmtestadmin"
	RootPassword = "bmtestadmin-secret-0123"
	// Region is the region the server answers to.
	Region = "us-east-1"
)

// startTimeout bounds how long a server (or a cluster) may take to come up.
const startTimeout = 45 * time.Second

// Server is a running MinIO: a single-drive server of its own, or one node
// of a Cluster.
type Server struct {
	URL string
	// node is how the process is (re)started and where it runs now.
	node *node
	// dir is the data directory Stop removes ("" for a cluster's node,
	// whose cluster owns it).
	dir string
	// ready is the health path that says the server serves requests.
	ready string
}

// ErrNoMinIO: the minio binary is not on PATH.
var ErrNoMinIO = errors.New("minio binary not on PATH (install it with .ci/install.d/20-minio.sh)")

// Start runs a MinIO until the test ends. Without the binary the test is
// skipped, or fails under CI (where it must be installed).
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer()
	if err != nil {
		Need(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Need skips t because err says there is no MinIO, or fails it under CI.
func Need(t testing.TB, err error) {
	t.Helper()
	testenv.Require(t, "MinIO", err)
}

// StartServer runs a MinIO until Stop (for TestMain).
func StartServer() (*Server, error) {
	bin, err := exec.LookPath("minio")
	if err != nil {
		return nil, ErrNoMinIO
	}
	dir, err := os.MkdirTemp("", "bm-minio-test-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port taken between pick and bind
		addrs, err := freeAddrs(2)
		if err != nil {
			lastErr = err
			continue
		}
		s := &Server{
			URL:   "http://" + addrs[0],
			node:  newNode(bin, addrs[0], addrs[1], nil, filepath.Join(dir, "data")),
			dir:   dir,
			ready: "/minio/health/live",
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		err = s.start(ctx)
		cancel()
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// start starts the process and waits until it answers its health path.
func (s *Server) start(ctx context.Context) error {
	if err := s.node.start(); err != nil {
		return err
	}
	if err := s.waitHealthy(ctx, s.ready); err != nil {
		s.node.stop()
		return err
	}
	return nil
}

// waitHealthy waits until the server answers path (a /minio/health/...
// route) with 200, the process ends or ctx does.
func (s *Server) waitHealthy(ctx context.Context, path string) error {
	for {
		if !s.node.running() {
			return fmt.Errorf("minio %s exited early: %s", s.URL, s.node.output())
		}
		if s.Healthy(ctx, path) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("minio %s not healthy (%s): %w: %s", s.URL, path, ctx.Err(), s.node.output())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Healthy reports whether the server answers path (e.g.
// "/minio/health/cluster") with 200 now.
func (s *Server) Healthy(ctx context.Context, path string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop ends the server and removes its data (a cluster's node keeps its
// drives: Restart brings it back).
func (s *Server) Stop() {
	s.node.stop()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// Kill ends the server at once (SIGKILL), as a crashed machine would; its
// data stays for Restart.
func (s *Server) Kill() { s.node.kill() }

// Restart starts a stopped or killed server again on the same address
// with the same data, and waits until it is live (a cluster's node may
// need longer to rejoin: see Cluster.WaitReady).
func (s *Server) Restart(ctx context.Context) error {
	s.node.stop() // in case it still runs
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := s.node.start(); err != nil {
		return err
	}
	return s.waitHealthy(ctx, "/minio/health/live")
}

// Provider is bm-server's MinIO storage provider for the server, with the
// root credentials.
func (s *Server) Provider(t testing.TB) *minio.Provider {
	t.Helper()
	p, err := minio.New(minio.Config{Endpoint: s.URL, AccessKey: RootUser, SecretKey: RootPassword})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var bucketSeq atomic.Uint64

// Bucket creates a fresh bucket (its name begins with prefix) and mints a
// key scoped to it, as bm-server does for a tenant.
func (s *Server) Bucket(t testing.TB, prefix string) (bucket string, key storage.Key) {
	t.Helper()
	p := s.Provider(t)
	bucket = BucketName(prefix)
	ctx := context.Background()
	if err := p.CreateBucket(ctx, bucket); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	key, err := p.MintKey(ctx, bucket)
	if err != nil {
		t.Fatalf("mint key for %s: %v", bucket, err)
	}
	return bucket, key
}

// BucketName is a fresh bucket name beginning with prefix.
func BucketName(prefix string) string {
	return strings.ToLower(fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1_000_000_000, bucketSeq.Add(1)))
}

// Client is an S3 client of the server with key, path style.
func (s *Server) Client(key storage.Key) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""),
	})
}

// freeAddrs picks n distinct free loopback addresses.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are picked, so they differ
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
