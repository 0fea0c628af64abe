package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "bm-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/bm-agent", "../cmd/bm-server")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
			return 1
		}
		binDir = dir
		return m.Run()
	}())
}

func newHarness(t *testing.T) *harness.Harness {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binaries")
	}
	// Short path: unix sockets have a ~104 byte limit.
	dir, err := os.MkdirTemp("", "bm-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness.Harness{Bin: binDir, Dir: dir}
	t.Cleanup(func() {
		h.Stop()
		if t.Failed() {
			for _, f := range []string{"bm-server.log", "agent.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("---- %s ----\n%s", f, b)
			}
		}
		os.RemoveAll(dir)
	})
	return h
}

func isStatus(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

// TestEndToEnd runs bm-server and bm-agent as processes and checks the
// whole loop: OAuth login, a bucket-scoped key, two-way sync, deletes both
// ways, tenant isolation and no secret in the database.
func TestEndToEnd(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const emailA, emailB = "a@example.com", "b@example.com"
	pwA, pwB := harness.RandomPassword(), harness.RandomPassword()
	if err := h.AddUser(ctx, emailB, pwB); err != nil {
		t.Fatal(err)
	}
	if err := h.StartServer(ctx, emailA, pwA); err != nil {
		t.Fatal(err)
	}
	a, err := h.StartAgent(ctx, "agent", "BM_AGENT_KEYRING=file")
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.Login(ctx, a, emailA, pwA)
	if err != nil {
		t.Fatal(err)
	}
	if st.TenantID == "" || st.Bucket == "" {
		t.Fatalf("status after login lacks tenant or bucket: %+v", st)
	}
	out, err := h.CLI(ctx, a, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"logged in as " + emailA, st.TenantID, st.Bucket, a.Folder} {
		if !strings.Contains(out, want) {
			t.Errorf("bm-agent status lacks %q:\n%s", want, out)
		}
	}

	dev, err := h.NewDevice(ctx, emailA, pwA)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Creds.BucketName != st.Bucket {
		t.Fatalf("device bucket %q, agent bucket %q", dev.Creds.BucketName, st.Bucket)
	}

	// A note that stays, so the deletes below are never of the last file
	// (bisync treats an emptied side as something to restore, not delete).
	if err := os.MkdirAll(a.Folder, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.Folder, "keep.md"), []byte("# keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Wait for the first pass (the baseline) so the write below is a change.
	if _, err := harness.Poll(ctx, 30*time.Second, func() error {
		s, err := a.IPC.Status(ctx)
		if err != nil {
			return err
		}
		if s.LastSync == nil {
			return errors.New("no pass yet")
		}
		return nil
	}); err != nil {
		t.Fatal("first pass:", err)
	}

	t.Run("local write reaches the bucket within 10s without a trigger", func(t *testing.T) {
		body := []byte("# local note\n")
		if err := os.MkdirAll(filepath.Join(a.Folder, "sub dir"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(a.Folder, "sub dir", "local note.md"), body, 0o600); err != nil {
			t.Fatal(err)
		}
		took, err := harness.Poll(ctx, 10*time.Second, func() error {
			got, err := dev.GetObject(ctx, "sub dir/local note.md")
			if err == nil && !bytes.Equal(got, body) {
				return fmt.Errorf("content %q", got)
			}
			return err
		})
		if err != nil {
			t.Fatalf("not in the bucket after %s: %v", took, err)
		}
		t.Logf("local write reached the bucket in %s", took)
	})

	t.Run("object put through S3 reaches the folder after bm-agent sync", func(t *testing.T) {
		body := []byte("# remote note\n")
		if err := dev.PutObject(ctx, "remote note.md", body); err != nil {
			t.Fatal(err)
		}
		if _, err := h.CLI(ctx, a, "sync"); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(a.Folder, "remote note.md"))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("after sync: %q, %v", got, err)
		}
	})

	t.Run("local delete deletes the object", func(t *testing.T) {
		if err := os.Remove(filepath.Join(a.Folder, "sub dir", "local note.md")); err != nil {
			t.Fatal(err)
		}
		if _, err := harness.Poll(ctx, 15*time.Second, func() error {
			_, err := dev.GetObject(ctx, "sub dir/local note.md")
			if err == nil {
				return errors.New("still in the bucket")
			}
			if isStatus(err, "NoSuchKey", "NotFound") {
				return nil
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("remote delete deletes the file", func(t *testing.T) {
		if err := dev.DeleteObject(ctx, "remote note.md"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.CLI(ctx, a, "sync"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(a.Folder, "remote note.md")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("file still there after the object was deleted: %v", err)
		}
	})

	t.Run("tenant A's key gets 403 on tenant B's bucket", func(t *testing.T) {
		devB, err := h.NewDevice(ctx, emailB, pwB)
		if err != nil {
			t.Fatal(err)
		}
		if devB.Creds.BucketName == dev.Creds.BucketName {
			t.Fatal("tenants share a bucket")
		}
		key := "x.md"
		_, err = dev.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(devB.Creds.BucketName), Key: &key})
		if !isStatus(err, "AccessDenied") {
			t.Fatalf("get on the other tenant's bucket: want AccessDenied, got %v", err)
		}
		_, err = dev.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(devB.Creds.BucketName), Key: &key, Body: strings.NewReader("x")})
		if !isStatus(err, "AccessDenied") {
			t.Fatalf("put on the other tenant's bucket: want AccessDenied, got %v", err)
		}
		_, err = dev.S3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(devB.Creds.BucketName)})
		if !isStatus(err, "AccessDenied") {
			t.Fatalf("list of the other tenant's bucket: want AccessDenied, got %v", err)
		}
	})

	t.Run("the database holds no secret", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(h.Dir, "server", "bm-server.db*"))
		if len(files) == 0 {
			t.Fatal("no database file")
		}
		secrets := agentSecrets(t, a)
		secrets["the harness device's S3 secret"] = dev.Creds.SecretKey
		if len(dev.Creds.SecretKey) < 16 {
			t.Fatalf("the harness device's S3 secret missing from the test's view (%d chars)", len(dev.Creds.SecretKey))
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for name, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s contains %s", filepath.Base(f), name)
				}
			}
		}
	})
}
