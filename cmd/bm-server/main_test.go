package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/server/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// cli runs bm-server commands in-process against one data dir and keeps a
// transcript of them.
type cli struct {
	t          *testing.T
	dir        string
	env        map[string]string
	transcript bytes.Buffer
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, dir: t.TempDir(), env: map[string]string{}}
}

// run executes args with --data-dir set and returns stdout; an error is
// recorded in the transcript as "error: ...".
func (c *cli) run(args ...string) (string, error) {
	c.t.Helper()
	var out, logs bytes.Buffer
	cmd := newRootCmd(func(k string) string { return c.env[k] }, &logs)
	cmd.SetArgs(append(args, "--data-dir", c.dir))
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	err := cmd.ExecuteContext(context.Background())
	fmt.Fprintf(&c.transcript, "$ bm-server %s\n%s", strings.Join(args, " "), out.String())
	if err != nil {
		fmt.Fprintf(&c.transcript, "error: %v\n", err)
	}
	return out.String(), err
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("bm-server %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (c *cli) store() *store.Store {
	c.t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(c.dir, "bm-server.db"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { st.Close() })
	return st
}

var (
	uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
)

// scrub replaces what changes from run to run: ids become ID-1, ID-2 ...
// (each id keeps its number, same length as a UUID so tables stay aligned)
// and times become a fixed time.
func scrub(s string) string {
	ids := map[string]string{}
	s = uuidRE.ReplaceAllStringFunc(s, func(id string) string {
		if _, ok := ids[id]; !ok {
			ids[id] = fmt.Sprintf("ID-%-33d", len(ids)+1)
			ids[id] = strings.ReplaceAll(ids[id], " ", "x")
		}
		return ids[id]
	})
	return timeRE.ReplaceAllString(s, "2000-01-01T00:00:00Z")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestAdminCommands(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	c.must("migrate")
	c.must("tenant", "create", "--tier", "pro")
	c.env["BM_SERVER_PASSWORD"] = "first password"
	c.must("user", "add", "Ann@Example.com")
	st := c.store()
	tenants, err := st.ListTenants(ctx)
	if err != nil || len(tenants) != 2 {
		t.Fatalf("tenants = %+v, %v", tenants, err)
	}
	pro := tenants[0].ID
	if tenants[0].SubscriptionTier != "pro" {
		pro = tenants[1].ID
	}
	c.must("user", "add", "bob@example.com", "--tenant", pro)
	if _, err := c.run("user", "add", "carl@example.com", "--tenant", "no-such-tenant"); err == nil {
		t.Error("user add into an unknown tenant succeeded")
	}
	c.must("user", "list")
	c.must("user", "list", "--tenant", pro)

	// passwd changes the hash to the new password.
	c.env["BM_SERVER_PASSWORD"] = "second password"
	c.must("user", "passwd", "bob@example.com")
	bob, err := st.AccountByEmail(ctx, "bob@example.com")
	if err != nil || store.CheckPassword(bob.PasswordHash, "second password") != nil {
		t.Errorf("password not changed: %v", err)
	}
	delete(c.env, "BM_SERVER_PASSWORD")
	if _, err := c.run("user", "passwd", "bob@example.com"); err == nil {
		t.Error("passwd without BM_SERVER_PASSWORD succeeded")
	}

	// disable stops sign-in and ends the sessions; enable undoes the first.
	c.must("user", "disable", "bob@example.com")
	if bob, _ := st.AccountByEmail(ctx, "bob@example.com"); bob.DisabledAt == nil {
		t.Error("account not disabled")
	}
	if nb, err := st.SessionsNotBefore(ctx, bob.ID); err != nil || nb.IsZero() {
		t.Errorf("no session cutoff after disable: %v, %v", nb, err)
	}
	c.must("user", "list", "--tenant", pro)
	c.must("user", "enable", "bob@example.com")
	if bob, _ := st.AccountByEmail(ctx, "bob@example.com"); bob.DisabledAt != nil {
		t.Error("account still disabled")
	}
	c.must("user", "logout", "bob@example.com")
	if _, err := c.run("user", "disable", "nobody@example.com"); err == nil {
		t.Error("disabling an unknown account succeeded")
	}

	// Keys: two for the pro tenant; revoke one.
	for i, ak := range []string{"AKTESTKEY001", "AKTESTKEY002"} {
		cred := store.Credential{ID: fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i+1), TenantID: pro, AccessKey: ak, Description: "laptop"}
		if err := st.InsertCredential(ctx, cred); err != nil {
			t.Fatal(err)
		}
	}
	c.must("key", "list")
	c.must("key", "revoke", "00000000-0000-4000-8000-000000000001")
	if cr, _ := st.CredentialByAnyID(ctx, "00000000-0000-4000-8000-000000000001"); cr.RevokedAt == nil || cr.DeletionStatus != store.DeletionCompleted {
		t.Errorf("revoked key = %+v", cr)
	}
	if _, err := c.run("key", "revoke", "nope"); err == nil {
		t.Error("revoking an unknown key succeeded")
	}
	c.must("key", "list", "--all", "--tenant", pro)

	c.must("tenant", "subscription", pro, "canceled")
	if tn, _ := st.TenantByID(ctx, pro); tn.SubscriptionStatus != "canceled" || tn.SubscriptionTier != "pro" {
		t.Errorf("subscription after canceled = %q %q, want canceled pro", tn.SubscriptionStatus, tn.SubscriptionTier)
	}
	c.must("tenant", "subscription", pro, "active", "--tier", "team")
	if tn, _ := st.TenantByID(ctx, pro); tn.SubscriptionStatus != "active" || tn.SubscriptionTier != "team" {
		t.Errorf("subscription after active --tier team = %q %q", tn.SubscriptionStatus, tn.SubscriptionTier)
	}
	if _, err := c.run("tenant", "subscription", pro, "lapsed"); err == nil {
		t.Error("an unknown subscription status was taken")
	}
	if _, err := c.run("tenant", "subscription", "no-such-tenant", "active"); err == nil {
		t.Error("the subscription of an unknown tenant was set")
	}
	c.must("tenant", "suspend", pro)
	if tn, _ := st.TenantByID(ctx, pro); tn.Status != store.TenantSuspended {
		t.Errorf("status after suspend = %q", tn.Status)
	}
	c.must("tenant", "activate", pro)
	c.must("tenant", "delete", pro)
	if tn, _ := st.TenantByID(ctx, pro); tn.Status != store.TenantDeleted {
		t.Errorf("status after delete = %q", tn.Status)
	}
	if n, _ := st.CountActiveCredentials(ctx, pro); n != 0 {
		t.Errorf("%d keys active after tenant delete", n)
	}
	c.must("tenant", "list")
	c.must("audit", "--tenant", pro)

	got := scrub(c.transcript.String())
	if strings.Contains(got, "$2a$") || strings.Contains(got, "second password") {
		t.Error("a password or its hash reached the output")
	}
	golden(t, "admin.golden", got)
}

func TestAdminJSON(t *testing.T) {
	c := newCLI(t)
	c.must("tenant", "create")
	var tenants []map[string]any
	if err := json.Unmarshal([]byte(c.must("tenant", "list", "--json")), &tenants); err != nil || len(tenants) != 1 {
		t.Fatalf("tenant list --json = %v, %v", tenants, err)
	}
	if tenants[0]["status"] != "active" || tenants[0]["subscription_tier"] != "basic" {
		t.Errorf("tenant = %v", tenants[0])
	}
	// migrate reports the newest migration: the highest version of the
	// files (NNNNN_name.sql; numbers may be skipped).
	migrations, _ := filepath.Glob("../../server/store/migrations/sqlite/*.sql")
	newest := 0
	for _, f := range migrations {
		n, _ := strconv.Atoi(strings.SplitN(filepath.Base(f), "_", 2)[0])
		newest = max(newest, n)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(c.must("migrate", "--json")), &m); err != nil || newest == 0 ||
		m["version"] != float64(newest) || m["dialect"] != "sqlite" {
		t.Errorf("migrate --json = %v, %v", m, err)
	}
	for _, args := range [][]string{{"user", "list", "--json"}, {"key", "list", "--json"}, {"audit", "--json"}} {
		var v []map[string]any
		if err := json.Unmarshal([]byte(c.must(args...)), &v); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	golden(t, "json.golden", scrub(c.transcript.String()))
}

// TestConfigFileAndEnv checks that the admin commands read the data dir from
// the environment and the database from a config file, flags winning.
func TestConfigFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "from-file.db")
	cfgPath := filepath.Join(dir, "bm.yaml")
	if err := os.WriteFile(cfgPath, []byte("db: "+dbPath+"\naddr: 127.0.0.1:9999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BM_SERVER_CONFIG": cfgPath, "BM_SERVER_DATA_DIR": dir}
	var out bytes.Buffer
	cmd := newRootCmd(func(k string) string { return env[k] }, &out)
	cmd.SetArgs([]string{"migrate"})
	cmd.SetOut(&out)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Errorf("database from the config file not created: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bm-server.db")); err == nil {
		t.Error("default database created despite the config file")
	}

	// A flag beats the file.
	flagDB := filepath.Join(dir, "from-flag.db")
	cmd = newRootCmd(func(k string) string { return env[k] }, &out)
	cmd.SetArgs([]string{"migrate", "--db", "sqlite://" + flagDB})
	cmd.SetOut(&out)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(flagDB); err != nil {
		t.Errorf("database from the flag not created: %v", err)
	}

	// An unknown key in the file is an error.
	if err := os.WriteFile(cfgPath, []byte("dbb: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = newRootCmd(func(k string) string { return env[k] }, &out)
	cmd.SetArgs([]string{"migrate"})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "dbb") {
		t.Errorf("unknown config key: err = %v", err)
	}
}

// TestServeShutsDown runs the root command (the server) and cancels it.
func TestServeShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	cmd := newRootCmd(func(string) string { return "" }, &logs)
	cmd.SetArgs([]string{"--addr", "127.0.0.1:0", "--s3-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-json"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if !strings.Contains(logs.String(), `"msg":"bm-server listening"`) {
		t.Errorf("no JSON listening line in logs:\n%s", logs.String())
	}
}

// TestStorageSettingsReachEveryCommand: the storage settings are read by
// the server and by the admin commands that touch the provider, and the
// admin credentials come from the environment only.
func TestStorageSettingsReachEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--addr", "127.0.0.1:0", "--s3-addr", "127.0.0.1:0"},
		{"tenant", "create"},
	} {
		c := newCLI(t)
		c.env["BM_SERVER_STORAGE"] = "minio"
		c.env["BM_SERVER_STORAGE_ENDPOINT"] = "http://127.0.0.1:1"
		_, err := c.run(args...)
		if err == nil || !strings.Contains(err.Error(), "BM_SERVER_STORAGE_ACCESS_KEY") {
			t.Errorf("bm-server %s with minio and no credentials: err = %v", strings.Join(args, " "), err)
		}
	}
	// A credential given as a flag is not a flag.
	c := newCLI(t)
	if _, err := c.run("tenant", "create", "--storage-secret-key", "x"); err == nil || !strings.Contains(err.Error(), "unknown flag") {
		t.Errorf("--storage-secret-key: err = %v, want unknown flag", err)
	}
}

// TestServeReadsSecretsFromEnv: the storage webhook secret in the
// environment enables the webhook route (401 without it, not 404).
func TestServeReadsSecretsFromEnv(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"BM_SERVER_STORAGE_WEBHOOK_SECRET": "shared-secret-from-env"}
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	cmd := newRootCmd(func(k string) string { return env[k] }, &logs)
	cmd.SetArgs([]string{"--addr", addr, "--s3-addr", "127.0.0.1:0", "--data-dir", t.TempDir()})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	url := "http://" + addr + "/webhooks/storage/some-tenant"
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
		if err != nil {
			continue
		}
		resp.Body.Close()
		code = resp.StatusCode
		break
	}
	if code != http.StatusUnauthorized {
		t.Errorf("POST %s without the secret = %d, want 401", url, code)
	}
	if strings.Contains(logs.String(), "shared-secret-from-env") {
		t.Error("the secret is in the logs")
	}
}
