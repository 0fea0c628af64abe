//go:build linux

package mount

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/basicmachines-co/bm-agent/agent/syncer"
	"github.com/basicmachines-co/bm-agent/internal/syncbuf"
	"github.com/basicmachines-co/bm-agent/internal/testenv"
	"github.com/basicmachines-co/bm-agent/server/s3embed/s3test"
)

// The orphan test re-runs this test binary as a child that mounts and is
// then killed, as a crashed daemon would be.
const childEnv = "BM_MOUNT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMount())
	}
	stop := watchdog(5 * time.Minute)
	code := m.Run()
	stop()
	abortOurMounts() // nothing of ours may outlive the process
	os.Exit(code)
}

// childMount mounts what the environment says, prints "ready" and waits
// to be killed.
func childMount() int {
	mgr := NewManager(os.Getenv("BM_STATE"), slog.New(slog.DiscardHandler))
	err := mgr.Mount(context.Background(), Config{
		MountPoint: os.Getenv("BM_MOUNT"),
		CacheDir:   os.Getenv("BM_CACHE"),
		Remote:     syncer.Remote{Endpoint: os.Getenv("BM_ENDPOINT"), AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket},
		Profile:    ProfileFast,
	})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	select {}
}

// requireFUSE skips (or, under CI, fails) when this machine cannot mount.
func requireFUSE(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real FUSE mount: skipped in -short mode")
	}
	testenv.Require(t, "a FUSE mount (install fuse3, allow /dev/fuse)", checkPlatform())
}

// s3env is an embedded S3 endpoint on loopback with one bucket.
type s3env struct {
	url    string
	client *s3.Client
}

func newS3(t *testing.T) *s3env {
	t.Helper()
	e := s3test.Start(t, "", s3test.Key{AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket})
	return &s3env{url: e.URL, client: e.Client()}
}

func (e *s3env) remote() syncer.Remote {
	return syncer.Remote{Endpoint: e.url, Region: "us-east-1", AccessKey: testKey, SecretKey: testSecret, Bucket: testBucket}
}

func (e *s3env) get(key string) (string, error) {
	out, err := e.client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		return "", err
	}
	defer func() { _ = out.Body.Close() }()
	b, err := io.ReadAll(out.Body)
	return string(b), err
}

func (e *s3env) put(t *testing.T, key, body string) {
	t.Helper()
	_, err := e.client.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String(key), Body: strings.NewReader(body),
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newManager(t *testing.T, stateDir string) (*Manager, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	mgr := NewManager(stateDir, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		if err := mgr.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if strings.Contains(logs.String(), testSecret) {
			t.Errorf("the secret key appeared in the log")
		}
	})
	return mgr, logs
}

// eventually polls fn until it returns nil or the time is up.
func eventually(t *testing.T, within time.Duration, what string, fn func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = fn(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, within, err)
	return 0
}

func mounted(t *testing.T, mp string) bool {
	t.Helper()
	ok, err := isMounted(mp)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// These tests mount for real through FUSE (Debian package fuse3).

func TestMountWriteReadBothWaysAndUnmount(t *testing.T) {
	requireFUSE(t)
	env := newS3(t)
	dir := t.TempDir()
	mp := mountPoint(t, dir)
	state := filepath.Join(dir, "state")
	mgr, _ := newManager(t, state)
	env.put(t, "before.md", "already there")

	ctx := context.Background()
	err := mgr.Mount(ctx, Config{
		MountPoint: mp, Remote: env.remote(), CacheDir: filepath.Join(dir, "cache"),
		Profile: ProfileFast, SyncFolder: filepath.Join(dir, "notes"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !mounted(t, mp) {
		t.Fatal("mount point not in /proc/self/mountinfo")
	}
	st := mgr.Status()
	if !st.Mounted || st.MountPoint != mp || st.Profile != "fast" || st.Bucket != testBucket || st.Since.IsZero() {
		t.Errorf("status = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(state, stateFile)); err != nil {
		t.Errorf("mount record: %v", err)
	}
	if err := mgr.Mount(ctx, Config{MountPoint: filepath.Join(dir, "other"), Remote: env.remote()}); !errors.Is(err, ErrAlreadyMounted) {
		t.Errorf("second mount: %v, want ErrAlreadyMounted", err)
	}

	// an object that was there before the mount is readable at once
	if b, err := readVia(filepath.Join(mp, "before.md")); err != nil || string(b) != "already there" {
		t.Errorf("read before.md = %q, %v", b, err)
	}

	// write through the mount, read through S3 after the write-back delay
	if err := mkdirVia(filepath.Join(mp, "dir", "sub")); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"hello.md": "hello from the mount", "dir/sub/deep note.md": "é unicode ✓"}
	for name, body := range files {
		if err := writeVia(filepath.Join(mp, filepath.FromSlash(name)), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range files {
		took := eventually(t, 15*time.Second, "upload of "+name, func() error {
			got, err := env.get(name)
			if err == nil && got != body {
				err = fmt.Errorf("got %q", got)
			}
			return err
		})
		t.Logf("%s reached S3 after %v (write-back 1s)", name, took.Round(10*time.Millisecond))
	}

	// put through S3, read through the mount once the listing expires
	env.put(t, "dir/from-s3.md", "hello from S3")
	took := eventually(t, 20*time.Second, "from-s3.md through the mount", func() error {
		b, err := readVia(filepath.Join(mp, "dir", "from-s3.md"))
		if err == nil && string(b) != "hello from S3" {
			err = fmt.Errorf("got %q", b)
		}
		return err
	})
	t.Logf("from-s3.md visible through the mount after %v (dir cache 5s)", took.Round(10*time.Millisecond))

	// a file written just before unmounting is uploaded before Unmount returns
	if err := writeVia(filepath.Join(mp, "last.md"), []byte("written last")); err != nil {
		t.Fatal(err)
	}
	uctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := mgr.Unmount(uctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("unmount took %v", time.Since(start).Round(10*time.Millisecond))
	if got, err := env.get("last.md"); err != nil || got != "written last" {
		t.Errorf("last.md after unmount = %q, %v", got, err)
	}
	if mounted(t, mp) {
		t.Error("mount point still in /proc/self/mountinfo after unmount")
	}
	if st := mgr.Status(); st.Mounted || st.Error != "" {
		t.Errorf("status after unmount = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(state, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount record after unmount: %v", err)
	}
	if err := mgr.Unmount(ctx); !errors.Is(err, ErrNotMounted) {
		t.Errorf("second unmount: %v, want ErrNotMounted", err)
	}
}

func TestOrphanedMountIsCleanedAtStart(t *testing.T) {
	requireFUSE(t)
	env := newS3(t)
	dir := t.TempDir()
	mp := mountPoint(t, dir)
	state := filepath.Join(dir, "state")

	// a "daemon" mounts, then dies without unmounting
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", "BM_STATE="+state, "BM_MOUNT="+mp,
		"BM_CACHE="+filepath.Join(dir, "cache"), "BM_ENDPOINT="+env.url)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// if the test failed half way, do not leave a mount behind
		if ok, _ := isMounted(mp); ok {
			_ = lazyUnmount(context.Background(), mp)
		}
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatalf("child mount: %q", line)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	if !mounted(t, mp) {
		t.Fatal("the killed mount should still be listed")
	}
	_, err = os.Stat(mp)
	t.Logf("stat of the orphaned mount point: %v", err)
	if !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("stat of the orphan = %v, want ENOTCONN", err)
	}

	mgr, logs := newManager(t, state)
	if err := mgr.CleanupOrphans(context.Background()); err != nil {
		t.Fatal(err)
	}
	if mounted(t, mp) {
		t.Fatal("orphaned mount still listed after CleanupOrphans")
	}
	if _, err := os.Stat(filepath.Join(state, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount record after cleanup: %v", err)
	}
	if !strings.Contains(logs.String(), "detaching orphaned mount") {
		t.Errorf("cleanup not logged:\n%s", logs)
	}

	// the mount point is usable again
	if err := mgr.Mount(context.Background(), Config{
		MountPoint: mp, Remote: env.remote(), CacheDir: filepath.Join(dir, "cache"), Profile: ProfileFast,
	}); err != nil {
		t.Fatal(err)
	}

	// unmounted behind the daemon's back: status says so
	if out, err := exec.Command(fusermount, "-u", mp).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v: %s", err, out)
	}
	eventually(t, 5*time.Second, "status after external unmount", func() error {
		if st := mgr.Status(); st.Mounted || !strings.Contains(st.Error, "outside") {
			return fmt.Errorf("status = %+v", st)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(state, stateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount record after external unmount: %v", err)
	}
}

func TestBusyMountUnmountFailsAndCloseDetaches(t *testing.T) {
	requireFUSE(t)
	env := newS3(t)
	env.put(t, "open.md", "kept open")
	dir := t.TempDir()
	mp := mountPoint(t, dir)
	mgr, _ := newManager(t, filepath.Join(dir, "state"))
	if err := mgr.Mount(context.Background(), Config{
		MountPoint: mp, Remote: env.remote(), CacheDir: filepath.Join(dir, "cache"), Profile: ProfileSafe,
	}); err != nil {
		t.Fatal(err)
	}
	if st := mgr.Status(); st.Profile != "safe" {
		t.Errorf("status = %+v", st)
	}
	release := holdOpen(t, filepath.Join(mp, "open.md")) // another program has the file open
	err := mgr.Unmount(context.Background())
	if err == nil || !strings.Contains(err.Error(), "close the files") {
		t.Fatalf("unmount with an open file = %v, want a busy error", err)
	}
	if st := mgr.Status(); !st.Mounted || !mounted(t, mp) {
		t.Fatalf("a refused unmount must leave the mount: %+v", st)
	}
	if err := mgr.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if mounted(t, mp) {
		t.Error("still listed after Close")
	}
	release()
	if st := mgr.Status(); st.Mounted {
		t.Errorf("status after close = %+v", st)
	}
}
