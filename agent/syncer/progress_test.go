package syncer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

// revocableKeys is a KeyResolver whose keys can be revoked.
type revocableKeys struct {
	mu   sync.Mutex
	keys map[string][2]string // access -> secret, bucket
}

func (k *revocableKeys) ResolveKey(_ context.Context, access string) (string, string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.keys[access]
	return v[0], v[1], ok
}

func (k *revocableKeys) revoke(access string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, access)
}

// newRevocableS3 is the embedded S3 endpoint with testKey for testBucket,
// revocable through the returned keys.
func newRevocableS3(t *testing.T) (string, *revocableKeys) {
	t.Helper()
	keys := &revocableKeys{keys: map[string][2]string{testKey: {testSecret, testBucket}}}
	srv, err := s3embed.New(t.TempDir(), keys, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateBucket(context.Background(), testBucket); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL, keys
}

func newEngineAt(t *testing.T, r Remote) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	local := filepath.Join(dir, "notes")
	if err := os.Mkdir(local, 0o755); err != nil {
		t.Fatal(err)
	}
	p := newTestPair(t, Config{LocalDir: local, Remote: r, WorkDir: filepath.Join(dir, "state"), Device: "laptop"})
	return p.engine, p.local
}

// TestPassReportsProgress: a pass that uploads 200 notes reports its own
// progress while it runs, rising to the totals, and once at the end.
func TestPassReportsProgress(t *testing.T) {
	old := progressEvery
	progressEvery = 10 * time.Millisecond
	t.Cleanup(func() { progressEvery = old })

	url, _ := newRevocableS3(t)
	e, local := newEngineAt(t, Remote{Endpoint: url, AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket})
	const n = 200
	body := bytes.Repeat([]byte("lorem ipsum dolor sit amet\n"), 600) // ~16 KiB
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(local, fmt.Sprintf("note-%03d.md", i)), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var got []Progress
	res, err := e.Pass(context.Background(), PassOptions{Trigger: "test", Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != n {
		t.Fatalf("uploaded %d, want %d", res.Uploaded, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 2 {
		t.Fatalf("%d progress calls, want several", len(got))
	}
	last := got[len(got)-1]
	if last.FilesDone != last.FilesTotal || last.FilesTotal < n {
		t.Errorf("final progress files %d/%d, want %d/%d or more", last.FilesDone, last.FilesTotal, n, n)
	}
	if last.BytesDone != last.BytesTotal || last.BytesTotal < int64(n*len(body)) {
		t.Errorf("final progress bytes %d/%d, want at least %d", last.BytesDone, last.BytesTotal, n*len(body))
	}
	distinct := map[int]bool{}
	for i, p := range got {
		if i > 0 && p.FilesDone < got[i-1].FilesDone {
			t.Errorf("files done went down: %d after %d", p.FilesDone, got[i-1].FilesDone)
		}
		if p.FilesDone > p.FilesTotal || p.BytesDone > p.BytesTotal {
			t.Errorf("progress past its total: %+v", p)
		}
		distinct[p.FilesDone] = true
	}
	if len(distinct) < 2 {
		t.Errorf("files done never rose during the pass: %d calls, all at %d", len(got), last.FilesDone)
	}

	// A pass with nothing to do still reports once, at zero.
	got = got[:0]
	mu.Unlock()
	if _, err := e.Pass(context.Background(), PassOptions{Trigger: "test", Progress: func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p)
	}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) == 0 || got[len(got)-1].FilesTotal != 0 {
		t.Errorf("no-change pass progress: %+v", got)
	}
}

// TestCheck: Check accepts a good key, names a revoked or wrong key
// ErrKeyRejected, and an unreachable endpoint ErrOffline with its address;
// a pass with a revoked key fails with ErrKeyRejected too.
func TestCheck(t *testing.T) {
	url, keys := newRevocableS3(t)
	good := Remote{Endpoint: url, AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}
	e, local := newEngineAt(t, good)
	ctx := context.Background()
	if err := e.Check(ctx); err != nil {
		t.Fatalf("good key: %v", err)
	}

	wrong := good
	wrong.SecretKey = "not-the-secret-0000"
	if err := CheckRemote(ctx, wrong); !errors.Is(err, ErrKeyRejected) {
		t.Errorf("wrong secret: %v, want ErrKeyRejected", err)
	}

	// An endpoint that hangs up on every connection: the port stays ours
	// for the whole test, so no other test's server can answer on it (a
	// closed port could be taken by one in the meantime).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed := "http://" + ln.Addr().String()
	off := good
	off.Endpoint = closed
	if err := CheckRemote(ctx, off); !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), closed) {
		t.Errorf("closed endpoint: %v, want ErrOffline naming %s", err, closed)
	}

	if err := os.WriteFile(filepath.Join(local, "a.md"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pass(ctx, PassOptions{Trigger: "test"}); err != nil {
		t.Fatalf("pass with a good key: %v", err)
	}
	keys.revoke(testKey)
	err = e.Check(ctx)
	if !errors.Is(err, ErrKeyRejected) {
		t.Fatalf("revoked key: %v, want ErrKeyRejected", err)
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("the secret is in the error: %v", err)
	}
	if err := os.WriteFile(filepath.Join(local, "b.md"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pass(ctx, PassOptions{Trigger: "test"}); !errors.Is(err, ErrKeyRejected) {
		t.Errorf("pass with a revoked key: %v, want ErrKeyRejected", err)
	}
}
