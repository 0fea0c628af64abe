package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/agent/versions"
	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// startLoggedIn starts a server and a logged-in agent named "agent" (its
// log is printed when the test fails) with the file keyring.
func startLoggedIn(t *testing.T, ctx context.Context, h *harness.Harness, env ...string) (*harness.Agent, *harness.Device, string, string) {
	t.Helper()
	const email = "a@example.com"
	a, pw := startServerAgent(t, ctx, h, email, env...)
	if _, err := h.Login(ctx, a, email, pw); err != nil {
		t.Fatal(err)
	}
	dev, err := h.NewDevice(ctx, email, pw)
	if err != nil {
		t.Fatal(err)
	}
	return a, dev, email, pw
}

// writeNotes writes n notes under dir/prefix and returns their contents by
// slash path.
func writeNotes(t *testing.T, dir, prefix string, n int) map[string]string {
	t.Helper()
	notes := map[string]string{}
	for i := 0; i < n; i++ {
		rel := fmt.Sprintf("%s/%03d/note %d.md", prefix, i/100, i)
		body := fmt.Sprintf("# note %d\n%s\n", i, strings.Repeat("lorem ipsum ", 50))
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		notes[rel] = body
	}
	return notes
}

// localTree reads every file under dir by slash path.
func localTree(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	return out, err
}

// bucketKeys lists the device's bucket with their sizes (the notes: the
// version store left out).
func bucketKeys(ctx context.Context, d *harness.Device) (map[string]int64, error) {
	out := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(d.S3, &s3.ListObjectsV2Input{Bucket: &d.Creds.BucketName})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			if !versions.IsVersionKey(*o.Key) {
				out[*o.Key] = *o.Size
			}
		}
	}
	return out, nil
}

// converged checks that the folder and the bucket hold the same files and
// that every note in want is in both with its content.
func converged(ctx context.Context, a *harness.Agent, d *harness.Device, want map[string]string) error {
	local, err := localTree(a.Folder)
	if err != nil {
		return err
	}
	remote, err := bucketKeys(ctx, d)
	if err != nil {
		return err
	}
	for rel, body := range want {
		if local[rel] != body {
			return fmt.Errorf("local %q: missing or changed", rel)
		}
		if remote[rel] != int64(len(body)) {
			return fmt.Errorf("bucket %q: missing or wrong size", rel)
		}
	}
	for rel := range local {
		if _, ok := remote[rel]; !ok && rel != ".bmignore" {
			return fmt.Errorf("%q is local only", rel)
		}
	}
	for rel := range remote {
		if _, ok := local[rel]; !ok {
			return fmt.Errorf("%q is in the bucket only", rel)
		}
	}
	return nil
}

func waitState(ctx context.Context, a *harness.Agent, timeout time.Duration, ok func(ipc.Status) bool) (ipc.Status, error) {
	var st ipc.Status
	_, err := harness.Poll(ctx, timeout, func() error {
		var err error
		st, err = a.IPC.Status(ctx)
		if err != nil {
			return err
		}
		if !ok(st) {
			return fmt.Errorf("state %q (%s)", st.State, st.Error)
		}
		return nil
	})
	return st, err
}

// TestSIGTERMInAPass stops the daemon with SIGTERM in the middle of a pass:
// it must exit 0 within 10 s with the cancelled pass in its history, and a
// restart must finish the job with nothing lost.
func TestSIGTERMInAPass(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h.AgentArgs = []string{"--interval", "2s"}
	// Every pass first waits 2 s in state "syncing": a window for the signal.
	a, dev, _, _ := startLoggedIn(t, ctx, h, "BM_AGENT_TEST_PASS_DELAY=2s")
	if _, err := waitState(ctx, a, 30*time.Second, func(st ipc.Status) bool { return st.LastSync != nil }); err != nil {
		t.Fatal("first pass:", err)
	}
	want := writeNotes(t, a.Folder, "term", 200)
	if _, err := waitState(ctx, a, 20*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateSyncing }); err != nil {
		t.Fatal("no pass started:", err)
	}
	took := stopAgent(t, a, 10*time.Second)
	t.Logf("bm-agent exited %s after SIGTERM", took.Round(time.Millisecond))

	// The cancelled pass is in the history, which survives the restart.
	b, err := os.ReadFile(filepath.Join(a.Home, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var last ipc.PassSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if !last.Cancelled {
		t.Fatalf("last history entry is not the cancelled pass: %s", lines[len(lines)-1])
	}

	a2, err := h.StartAgent(ctx, "agent", "BM_AGENT_KEYRING=file")
	if err != nil {
		t.Fatal(err)
	}
	if took, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a2, dev, want) }); err != nil {
		t.Fatalf("not converged %s after the restart: %v", took, err)
	}
	out, err := h.CLI(ctx, a2, "history", "--limit", "50")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "cancelled (daemon stopped)") {
		t.Errorf("bm-agent history does not show the cancelled pass:\n%s", out)
	}
}

// TestSIGKILLInAPass kills the daemon in the middle of a pass that uploads
// many notes: the restart must recover by itself (stale lock, listings)
// with both trees equal and nothing lost. It also greps everything the
// daemon logged (at debug level) for its secrets.
func TestSIGKILLInAPass(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h.AgentArgs = []string{"--interval", "2s", "--debug"}
	a, dev, _, _ := startLoggedIn(t, ctx, h)

	// A baseline, so the killed pass is a normal bisync run with listings.
	want := writeNotes(t, a.Folder, "base", 5)
	if _, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a, dev, want) }); err != nil {
		t.Fatal("baseline:", err)
	}
	more := writeNotes(t, a.Folder, "kill", 1500)
	for k, v := range more {
		want[k] = v
	}
	remoteBody := "# from another device\n"
	if err := dev.PutObject(ctx, "remote/other device.md", []byte(remoteBody)); err != nil {
		t.Fatal(err)
	}
	want["remote/other device.md"] = remoteBody
	if _, err := waitState(ctx, a, 20*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateSyncing }); err != nil {
		t.Fatal("no pass started:", err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := a.Process().Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	remote, _ := bucketKeys(ctx, dev)
	t.Logf("killed mid-pass with %d of %d objects in the bucket", len(remote), len(want))

	a2, err := h.StartAgent(ctx, "agent", "BM_AGENT_KEYRING=file")
	if err != nil {
		t.Fatal(err)
	}
	took, err := harness.Poll(ctx, 45*time.Second, func() error { return converged(ctx, a2, dev, want) })
	if err != nil {
		st, _ := a2.IPC.Status(ctx)
		t.Fatalf("not converged %s after the restart: %v (state %q %s)", took, err, st.State, st.Error)
	}
	t.Logf("converged %s after the restart", took.Round(time.Millisecond))
	if st, err := waitState(ctx, a2, 20*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateIdle }); err != nil {
		t.Fatalf("not idle after recovery: %v", err)
	} else if st.Hold != nil {
		t.Fatalf("recovery left a hold: %+v", st.Hold)
	}
	out, err := h.CLI(ctx, a2, "conflicts", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var cs ipc.Conflicts
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("conflicts --json: %v\n%s", err, out)
	}
	if len(cs.Conflicts) != 0 {
		t.Errorf("recovery made conflict files out of identical notes: %+v", cs.Conflicts)
	}

	if _, err := h.CLI(ctx, a2, "pause", "--for", "1h"); err != nil {
		t.Fatal(err)
	}
	// paused at once; a pass already running (a change event woke it)
	// finishes first, and the state says so until then
	if st, err := a2.IPC.Status(ctx); err != nil || !st.Paused || st.PausedUntil == nil || (st.State != ipc.StatePaused && st.State != ipc.StateSyncing) {
		t.Fatalf("after pause --for 1h: %+v, %v", st, err)
	}
	if _, err := waitState(ctx, a2, 20*time.Second, func(st ipc.Status) bool { return st.State == ipc.StatePaused }); err != nil {
		t.Fatalf("not paused after pause --for 1h: %v", err)
	}
	if _, err := h.CLI(ctx, a2, "resume"); err != nil {
		t.Fatal(err)
	}
	if st, err := a2.IPC.Status(ctx); err != nil || st.Paused {
		t.Fatalf("after resume: %+v, %v", st, err)
	}

	h.Stop()
	assertNoSecretsLogged(t, h, a2)
}

// assertNoSecretsLogged greps the agent's whole log for its S3 secret and
// its OAuth tokens (read from its 0600 fallback store).
func assertNoSecretsLogged(t *testing.T, h *harness.Harness, a *harness.Agent) {
	t.Helper()
	secrets := agentSecrets(t, a)
	log, err := os.ReadFile(filepath.Join(h.Dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(log) < 1000 {
		t.Fatalf("the agent logged only %d bytes: nothing to check", len(log))
	}
	for name, s := range secrets {
		if bytes.Contains(log, []byte(s)) {
			t.Errorf("the agent's log contains %s", name)
		}
		// A token's signature alone is a secret too.
		if i := strings.LastIndex(s, "."); i > 0 && len(s)-i > 16 && bytes.Contains(log, []byte(s[i+1:])) {
			t.Errorf("the agent's log contains the signature of %s", name)
		}
	}
	t.Logf("%d bytes of daemon log hold no secret", len(log))
}

// TestQuickPassForAnEdit: with the change events live, a note edited in
// the folder reaches the bucket through a quick pass (the watcher's path
// alone, listing neither side), a note another device writes comes down
// the same way (the key its change event names), and a delete there gets
// a full pass; the sides end in step.
func TestQuickPassForAnEdit(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	want := writeNotes(t, a.Folder, "notes", 30)
	if _, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a, dev, want) }); err != nil {
		t.Fatal("baseline:", err)
	}
	// the full pass the change events start when they come up, then edits
	quickSeen := false
	for i := range 5 {
		body := fmt.Sprintf("# edit %d %s\n", i, strings.Repeat("+", i)) // a size of its own: converged compares sizes
		if err := os.WriteFile(filepath.Join(a.Folder, "notes", "note-003.md"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		want["notes/note-003.md"] = body
		if _, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a, dev, want) }); err != nil {
			t.Fatalf("edit %d: %v", i, err)
		}
		if b, err := dev.GetObject(ctx, "notes/note-003.md"); err != nil || string(b) != body {
			t.Fatalf("edit %d: the bucket has %q, %v", i, b, err)
		}
		hist, err := a.IPC.History(ctx, 5)
		if err != nil {
			t.Fatal(err)
		}
		if p := hist.Passes[0]; p.Quick {
			if p.Uploaded != 1 || p.Trigger != "watch" {
				t.Fatalf("quick pass %+v, want the watcher's with 1 upload", p)
			}
			quickSeen = true
			break
		}
		time.Sleep(time.Second)
	}
	if !quickSeen {
		t.Fatal("no edit went through a quick pass")
	}
	// another device's write: the embedded S3's change event names its
	// key, and a quick pass over that key alone brings it
	if err := dev.PutObject(ctx, "notes/note-004.md", []byte("# from the other device\n")); err != nil {
		t.Fatal(err)
	}
	want["notes/note-004.md"] = "# from the other device\n"
	if _, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a, dev, want) }); err != nil {
		t.Fatal("the other device's change:", err)
	}
	if p := passThat(t, ctx, a, "downloaded the write", func(p ipc.PassSummary) bool { return p.Downloaded > 0 }); !p.Quick || p.Downloaded != 1 || p.Trigger != "remote" {
		t.Errorf("the pass that brought the other device's write: %+v; want a quick one (trigger remote) with 1 download", p)
	}
	// a delete there: a full pass, with its checks
	if err := dev.DeleteObject(ctx, "notes/000/note 5.md"); err != nil {
		t.Fatal(err)
	}
	delete(want, "notes/000/note 5.md")
	if _, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a, dev, want) }); err != nil {
		t.Fatal("the other device's delete:", err)
	}
	took := passThat(t, ctx, a, "took the delete", func(p ipc.PassSummary) bool { return p.DeletedLocal > 0 })
	if took.Quick || took.DeletedLocal != 1 {
		t.Errorf("the pass that took the other device's delete: %+v; want a full one with 1 local delete", took)
	}
}

// passThat waits for one of a's last three passes to be one that what
// says (the folder can be in step a moment before the pass that made it
// so is recorded) and returns it.
func passThat(t *testing.T, ctx context.Context, a *harness.Agent, what string, is func(ipc.PassSummary) bool) ipc.PassSummary {
	t.Helper()
	var found ipc.PassSummary
	if _, err := harness.Poll(ctx, 30*time.Second, func() error {
		hist, err := a.IPC.History(ctx, 3)
		if err != nil {
			return err
		}
		for _, p := range hist.Passes {
			if is(p) {
				found = p
				return nil
			}
		}
		return fmt.Errorf("no pass that %s recorded yet: %+v", what, hist.Passes)
	}); err != nil {
		t.Fatal(err)
	}
	return found
}
