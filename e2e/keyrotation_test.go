package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// TestRevokedKeyIsReplaced: when the agent's bucket-scoped key is revoked
// behind its back (here by another device of the same tenant, through the
// tenant API), the next pass fails at S3, and the agent mints a new key,
// keeps it, and syncs the note written meanwhile within 30 s, with the
// replacement in its history and the doctor content with the new key.
func TestRevokedKeyIsReplaced(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	// A baseline first: one note synced with the original key.
	before := writeNotes(t, a.Folder, "before", 3)
	if _, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a, dev, before) }); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	old := storedKey(t, a)

	// Revoke the agent's key with the other device's token.
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, h.ServerURL+tenantapi.PathMountCredentials+"/"+old.CredentialID, nil)
	req.Header.Set("Authorization", "Bearer "+dev.Token.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s: %s", resp.Status, body)
	}
	oldS3 := harness.NewS3Client(tenantapi.MountCredentials{AccessKey: old.AccessKey, SecretKey: old.SecretKey,
		EndpointURL: old.Endpoint, Region: old.Region, BucketName: old.Bucket})
	if _, err := harness.Poll(ctx, 15*time.Second, func() error {
		_, err := oldS3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &old.Bucket})
		if isStatus(err, "InvalidAccessKeyId", "AccessDenied") {
			return nil
		}
		return fmt.Errorf("the revoked key still lists the bucket: %v", err)
	}); err != nil {
		t.Fatal(err)
	}

	note := "# written after the revoke\n"
	if err := os.WriteFile(filepath.Join(a.Folder, "after-revoke.md"), []byte(note), 0o600); err != nil {
		t.Fatal(err)
	}
	took, err := harness.Poll(ctx, 30*time.Second, func() error {
		b, err := dev.GetObject(ctx, "after-revoke.md")
		if err != nil {
			return err
		}
		if string(b) != note {
			return errors.New("wrong content in the bucket")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the note did not reach the bucket through a new key: %v", err)
	}
	t.Logf("note in the bucket %v after the write, through a new key", took.Round(time.Millisecond))

	cur := storedKey(t, a)
	if cur.AccessKey == old.AccessKey || cur.CredentialID == old.CredentialID {
		t.Errorf("the stored key is still the revoked one")
	}
	// The history is written when a pass ends, just after its uploads.
	var hist ipc.History
	if _, err := harness.Poll(ctx, 10*time.Second, func() error {
		if hist, err = a.IPC.History(ctx, 50); err != nil {
			return err
		}
		var rejected, replaced bool
		for _, p := range hist.Passes {
			rejected = rejected || strings.Contains(p.Error, "revoked or rejected")
			replaced = replaced || (p.Trigger == "key-replaced" && p.Error == "")
		}
		if !rejected || !replaced {
			return errors.New("want a pass refused for the key and a key-replaced pass")
		}
		return nil
	}); err != nil {
		t.Errorf("history %+v: %v", hist.Passes, err)
	}
	before["after-revoke.md"] = note
	if _, err := harness.Poll(ctx, 10*time.Second, func() error { return converged(ctx, a, dev, before) }); err != nil {
		t.Errorf("after the key was replaced: %v", err)
	}
	rep, err := a.IPC.Doctor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range rep.Checks {
		if c.Name == "S3 reachable" {
			found = true
			if !c.OK || c.Warn {
				t.Errorf("doctor S3 check with the new key: %+v", c)
			}
		}
	}
	if !found {
		t.Error("no S3 check in the doctor's report")
	}
	h.Stop()
	assertNoSecretsLogged(t, h, a)
	if log, err := os.ReadFile(filepath.Join(h.Dir, "agent.log")); err != nil || strings.Contains(string(log), old.SecretKey) {
		t.Errorf("the agent's log contains the revoked key's secret (or is unreadable: %v)", err)
	}
}
