package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// The fault suite runs the whole system, bm-server and the bm-agent
// daemon as processes, through what people and machines do to it, and
// checks each case against a ledger of every write (ledger_test.go).
// Every CI run has its short form; `make test-faults` runs it in full
// (BM_FAULTS=full) and prints the figures (lines starting "FIGURE").

// faultSize is how big the chaos run is.
type faultSize struct {
	ops   int           // operations per writer (two writers: here and another device)
	kills int           // SIGKILLs of the daemon
	pause time.Duration // at most this long between a writer's operations
	pool  int           // notes the writers share
}

func chaosSize() faultSize {
	if faultsFull() {
		return faultSize{ops: 5200, kills: 20, pause: 30 * time.Millisecond, pool: 60}
	}
	return faultSize{ops: 350, kills: 4, pause: 30 * time.Millisecond, pool: 24}
}

// TestFaultsChaos: both sides write at once, all the time, on the same
// notes, while the daemon is killed with SIGKILL at random moments and in
// the middle of passes, and restarted. At the end the two sides must hold
// the same notes, no version nobody saw may be lost, no delete may come
// back, and no person may have had to step in.
func TestFaultsChaos(t *testing.T) {
	h := newHarness(t)
	size := chaosSize()
	h.AgentArgs = []string{"--interval", "15s"}
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	l := &ledger{}
	pool := notePool(size.pool)
	// A device in use: its notes synced once (the baseline a new device
	// makes on its first sync; deletes made before there is one cannot be
	// told from notes the other side never had).
	seedNotes := map[string]string{}
	for _, p := range pool {
		body := l.content("local", p)
		full := filepath.Join(a.Folder, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		seedNotes[p] = body
		l.add(ledgerOp{side: "local", path: p, content: body})
	}
	if _, err := harness.Poll(ctx, time.Minute, func() error { return converged(ctx, a, dev, seedNotes) }); err != nil {
		t.Fatal(err)
	}

	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- localWriter(wctx, l, a.Folder, pool, size.ops, size.pause) }()
	go func() { defer wg.Done(); errs <- cloudWriter(wctx, l, dev, h.ServerURL, pool, size.ops, size.pause) }()

	// The killer: half at random moments, half while a pass runs.
	var mu sync.Mutex
	kills, inPass := 0, 0
	killDone := make(chan struct{})
	go func() {
		defer close(killDone)
		for kills < size.kills && wctx.Err() == nil {
			sleepRand(wctx, 3*time.Second)
			mu.Lock()
			cur := a
			mu.Unlock()
			if kills%2 == 1 {
				if _, err := waitState(wctx, cur, 3*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateSyncing }); err == nil {
					inPass++
				}
			}
			if wctx.Err() != nil {
				return
			}
			_ = cur.Process().Signal(syscall.SIGKILL)
			_ = cur.Wait()
			kills++
			next, err := h.StartAgent(ctx, "agent", "BM_AGENT_KEYRING=file")
			if err != nil {
				t.Errorf("restart after kill %d: %v", kills, err)
				return
			}
			mu.Lock()
			a = next
			mu.Unlock()
		}
	}()
	wg.Wait()
	stopWriters()
	<-killDone
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("writers done: %d operations, %d kills (%d in a pass)", l.count(), kills, inPass)

	// It must settle by itself: no command, no resync, no --force.
	start := time.Now()
	manual := 0
	if err := settled(ctx, a, dev, 4*time.Minute); err != nil {
		manual = 1
		t.Errorf("the two sides did not settle by themselves within 4 minutes: %v", err)
	}
	settle := time.Since(start)
	if os.Getenv("BM_FAULTS_DEBUG") != "" {
		b, _ := os.ReadFile(filepath.Join(h.Dir, "agent.log"))
		lines := strings.Split(string(b), "\n")
		var keep []string
		for _, l := range lines {
			if strings.Contains(l, "sync pass") || strings.Contains(l, "msg=state") || strings.Contains(l, "remote change") ||
				strings.Contains(l, "local changes") || strings.Contains(l, "bm-agent running") || strings.Contains(l, "level=ERROR") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 120 {
			keep = keep[len(keep)-120:]
		}
		t.Logf("agent log (passes):\n%s", strings.Join(keep, "\n"))
	}
	present, local, cloud := everything(t, ctx, a, dev)
	res := l.check(present, local, cloud)
	conflicts := 0
	for k := range local {
		if isConflictName(k) {
			conflicts++
		}
	}
	t.Logf("FIGURE operations: %d (both sides writing; %d kills, %d in a pass)", res.ops, kills, inPass)
	t.Logf("FIGURE versions owed (written, not seen by anyone before replaced): %d", res.owed)
	t.Logf("FIGURE versions lost: %d", res.lost)
	t.Logf("FIGURE deletes resurrected: %d", res.resurrected)
	t.Logf("FIGURE manual steps needed: %d", manual)
	t.Logf("FIGURE seconds to settle after the writers stopped: %.1f", settle.Seconds())
	t.Logf("FIGURE conflict files at the end: %d", conflicts)
	if res.lost > 0 {
		t.Errorf("%d versions lost, for example: %v", res.lost, res.lostExamples)
	}
	if res.resurrected > 0 {
		t.Errorf("%d deletes resurrected, for example: %v", res.resurrected, res.resurrectedExamples)
	}
	if res.owed == 0 {
		t.Error("no version was owed: the run tested nothing")
	}
	assertNoSecretsLogged(t, h, a)
}

// settled waits until the daemon is idle, holds nothing, has no file it
// cannot sync, and the folder and the bucket hold the same notes.
func settled(ctx context.Context, a *harness.Agent, d *harness.Device, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := func() error {
			st, err := a.IPC.Status(ctx)
			if err != nil {
				return err
			}
			if st.State != ipc.StateIdle || st.Hold != nil || len(st.NotSyncing) > 0 {
				return fmt.Errorf("state %q (%s), hold %v, not syncing %v", st.State, st.Error, st.Hold, st.NotSyncing)
			}
			local, err := localTree(a.Folder)
			if err != nil {
				return err
			}
			keys, err := bucketKeys(ctx, d)
			if err != nil {
				return err
			}
			cloud := map[string]string{}
			for k, size := range keys {
				cloud[k] = fmt.Sprint(size)
				if l, ok := local[k]; ok && len(l) == int(size) {
					cloud[k] = l // the same size: compare the content below
				}
			}
			for k, v := range local {
				if c, ok := cloud[k]; ok && c == v && len(v) > 0 {
					b, err := d.GetObject(ctx, k)
					if err != nil || string(b) != v {
						cloud[k] = "differs"
					}
				}
			}
			if diff := sameTrees(local, cloud); diff != "" {
				return fmt.Errorf("not in step: %s", diff)
			}
			return nil
		}()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if os.Getenv("BM_FAULTS_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "%s settle: %v\n", time.Now().Format("15:04:05.000"), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// isConflictName reports whether a path is a conflict file's.
func isConflictName(p string) bool {
	for i := 0; i+len(".conflict-") <= len(p); i++ {
		if p[i:i+len(".conflict-")] == ".conflict-" {
			return true
		}
	}
	return false
}
