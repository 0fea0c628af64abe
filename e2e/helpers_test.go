package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// startServerAgent starts a server with the account email and an agent
// named "agent" on the file keyring, not yet logged in; it returns the
// agent and the account's password.
func startServerAgent(t *testing.T, ctx context.Context, h *harness.Harness, email string, env ...string) (*harness.Agent, string) {
	t.Helper()
	pw := harness.RandomPassword()
	if err := h.StartServer(ctx, email, pw); err != nil {
		t.Fatal(err)
	}
	a, err := h.StartAgent(ctx, "agent", append([]string{"BM_AGENT_KEYRING=file"}, env...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a, pw
}

// stopAgent ends a with SIGTERM and fails the test unless it exits with
// code 0 within limit; it returns how long that took.
func stopAgent(t *testing.T, a *harness.Agent, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := a.Process().Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("bm-agent exited with %v after SIGTERM, want exit code 0", err)
		}
	case <-time.After(limit):
		_ = a.Process().Kill()
		t.Fatalf("bm-agent still running %s after SIGTERM", limit)
	}
	return time.Since(start)
}

// agentSecretsFile is the agent's 0600 fallback store, item by item.
func agentSecretsFile(t *testing.T, a *harness.Agent) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.Home, cloudapi.SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// storedKey reads the device's S3 key from the file store.
func storedKey(t *testing.T, a *harness.Agent) *cloudapi.S3Key {
	t.Helper()
	var k cloudapi.S3Key
	if err := json.Unmarshal(agentSecretsFile(t, a)["s3-key"], &k); err != nil || k.AccessKey == "" {
		t.Fatalf("no s3 key in the secrets file: %v", err)
	}
	return &k
}

// agentSecrets are the agent's S3 secret and OAuth tokens from its file
// store, by name, each checked to be there.
func agentSecrets(t *testing.T, a *harness.Agent) map[string]string {
	t.Helper()
	m := agentSecretsFile(t, a)
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(m["tokens"], &tok); err != nil {
		t.Fatalf("tokens in the secrets file: %v", err)
	}
	secrets := map[string]string{
		"the agent's S3 secret":     storedKey(t, a).SecretKey,
		"the agent's access token":  tok.AccessToken,
		"the agent's refresh token": tok.RefreshToken,
	}
	for name, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("%s missing from the store (%d chars)", name, len(s))
		}
	}
	return secrets
}

// faultsFull reports whether the fault suite runs in full (make
// test-faults: BM_FAULTS=full), with its longer outages and more
// operations, rather than the short form every CI run has.
func faultsFull() bool { return os.Getenv("BM_FAULTS") == "full" }

// pollOK polls fn for up to d and fails the test, saying what, if it
// never returns nil.
func pollOK(t *testing.T, ctx context.Context, d time.Duration, what string, fn func() error) {
	t.Helper()
	if _, err := harness.Poll(ctx, d, fn); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// bucketHolds checks that the bucket's key holds want (want "": that the
// key is gone), as the device d reads it.
func bucketHolds(ctx context.Context, d *harness.Device, key, want string) func() error {
	return func() error {
		b, err := d.GetObject(ctx, key)
		switch {
		case want == "" && err == nil:
			return fmt.Errorf("%s still in the bucket", key)
		case want == "":
			return nil
		case err != nil || string(b) != want:
			return fmt.Errorf("bucket %s = %q, %v; want %q", key, b, err, want)
		}
		return nil
	}
}

// conflictOn makes a conflict on the note path of folder, the way two
// devices do between passes: with syncing paused (`bm-agent pause`
// through run, which runs a bm-agent command; paused, if set, is called
// then) it writes mine there, then, a second later so that it is the
// newer, theirs through the other device d; it resumes and syncs until
// `bm-agent conflicts --json` lists one conflict, within timeout, and
// returns it (this device's version, the loser).
func conflictOn(t *testing.T, ctx context.Context, timeout time.Duration, run func(args ...string) (string, error),
	d *harness.Device, folder, path, mine, theirs string, paused func()) ipc.Conflict {
	t.Helper()
	if _, err := run("pause"); err != nil {
		t.Fatal(err)
	}
	if paused != nil {
		paused()
	}
	if err := os.WriteFile(filepath.Join(folder, filepath.FromSlash(path)), []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := d.PutObject(ctx, path, []byte(theirs)); err != nil {
		t.Fatal(err)
	}
	if _, err := run("resume"); err != nil {
		t.Fatal(err)
	}
	var cs ipc.Conflicts
	pollOK(t, ctx, timeout, "the conflict", func() error {
		if _, err := run("sync"); err != nil {
			return err
		}
		out, err := run("conflicts", "--json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &cs); err != nil {
			return err
		}
		if len(cs.Conflicts) != 1 {
			return fmt.Errorf("conflicts: %s", out)
		}
		return nil
	})
	return cs.Conflicts[0]
}
