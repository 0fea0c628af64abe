package e2e

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/cloudapi"
	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
	"github.com/basicmachines-co/bm-agent/tenantapi"
)

// loginWaitStatus polls a's status until ok accepts it.
func loginWaitStatus(ctx context.Context, a *harness.Agent, timeout time.Duration, ok func(ipc.Status) bool) (ipc.Status, error) {
	var st ipc.Status
	_, err := harness.Poll(ctx, timeout, func() error {
		var err error
		if st, err = a.IPC.Status(ctx); err != nil {
			return err
		}
		if !ok(st) {
			return errors.New("state " + string(st.State) + " " + st.Error)
		}
		return nil
	})
	return st, err
}

// TestLoginSurvivesRestart: after one login, a restarted daemon (same
// home) is logged in and syncing again without any login step.
func TestLoginSurvivesRestart(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const email = "restart@example.com"
	a, pw := startServerAgent(t, ctx, h, email)
	st, err := h.Login(ctx, a, email, pw)
	if err != nil {
		t.Fatal(err)
	}
	if st.Account != email || st.SubscriptionStatus != "active" || st.SubscriptionTier == "" || st.Devices < 1 {
		t.Errorf("status after login lacks the account's details: %+v", st)
	}
	if _, err := loginWaitStatus(ctx, a, 60*time.Second, func(st ipc.Status) bool { return st.LastSync != nil }); err != nil {
		t.Fatal("first pass:", err)
	}
	key := storedKey(t, a)
	stopAgent(t, a, 15*time.Second)

	a2, err := h.StartAgent(ctx, "agent", "BM_AGENT_KEYRING=file")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a2.Folder, "after-restart.md"), []byte("# after restart\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err = loginWaitStatus(ctx, a2, 60*time.Second, func(st ipc.Status) bool {
		return st.LoggedIn && st.LastSync != nil && st.LastSync.Error == "" && st.LastSync.Uploaded > 0
	})
	if err != nil {
		t.Fatalf("restarted agent did not resume syncing without a login: %v (%+v)", err, st)
	}
	if st.Account != email || st.LoginURL != "" {
		t.Errorf("restarted agent: account %q, login url %q", st.Account, st.LoginURL)
	}
	if k := storedKey(t, a2); k.AccessKey != key.AccessKey {
		t.Error("the restart minted a new key instead of reusing the stored one")
	}
}

// TestDeviceLoginAndLogout runs `bm-agent login --device` as a person on a
// headless machine would, approves the code on the server's page, then
// logs out: the secrets are gone and the old key is refused by S3.
func TestDeviceLoginAndLogout(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const email = "device@example.com"
	a, pw := startServerAgent(t, ctx, h, email)
	out, err := h.DeviceLogin(ctx, a, email, pw)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"/oauth2/device?user_code=", "Logged in as " + email} {
		if !strings.Contains(out, want) {
			t.Errorf("login --device output lacks %q:\n%s", want, out)
		}
	}
	st, err := loginWaitStatus(ctx, a, 60*time.Second, func(st ipc.Status) bool { return st.LoggedIn && st.LastSync != nil })
	if err != nil {
		t.Fatalf("not syncing after the device login: %v (%+v)", err, st)
	}
	status, err := h.CLI(ctx, a, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"logged in as " + email, "subscription active", "Devices:  1"} {
		if !strings.Contains(status, want) {
			t.Errorf("bm-agent status lacks %q:\n%s", want, status)
		}
	}
	key := storedKey(t, a)
	s3c := harness.NewS3Client(tenantapi.MountCredentials{EndpointURL: key.Endpoint, Region: key.Region, AccessKey: key.AccessKey, SecretKey: key.SecretKey})
	if _, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &key.Bucket}); err != nil {
		t.Fatalf("the device's key before logout: %v", err)
	}

	if out, err := h.CLI(ctx, a, "logout"); err != nil || !strings.Contains(out, "Logged out") {
		t.Fatalf("logout: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(a.Home, cloudapi.SecretsFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("secrets file after logout: %v, want gone", err)
	}
	_, err = s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &key.Bucket})
	if !isStatus(err, "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") {
		t.Errorf("the revoked key at the S3 endpoint: %v, want a 403", err)
	}
	st, err = a.IPC.Status(ctx)
	if err != nil || st.LoggedIn || st.State != ipc.StateLoggedOut {
		t.Errorf("status after logout: %+v %v", st, err)
	}
}
