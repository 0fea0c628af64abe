// Package miniotest runs a real MinIO server (installed by
// .ci/install.d/20-minio.sh) on loopback for tests: one per test, or one
// per package from TestMain, with a temporary data directory, and makes
// buckets with bucket-scoped keys through the server's own MinIO provider.
package miniotest

import (
	"bytes"
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
	"syscall"
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

// Server is a running MinIO.
type Server struct {
	URL  string
	stop func()
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
		s, err := start(bin, dir)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func start(bin, dir string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	console, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", console, filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+RootUser, "MINIO_ROOT_PASSWORD="+RootPassword,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start minio: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var stopped atomic.Bool
	stop := func() {
		if stopped.Swap(true) {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
	}
	url := "http://" + addr
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return nil, fmt.Errorf("minio exited early: %s", out.String())
		default:
		}
		if resp, err := http.Get(url + "/minio/health/live"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &Server{URL: url, stop: stop}, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("minio not live after 45s: %s", out.String())
}

// Stop ends the server and removes its data.
func (s *Server) Stop() { s.stop() }

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
	bucket = strings.ToLower(fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1_000_000_000, bucketSeq.Add(1)))
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

// Client is an S3 client of the server with key, path style.
func (s *Server) Client(key storage.Key) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(key.AccessKey, key.SecretKey, ""),
	})
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
