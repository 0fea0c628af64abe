package e2e

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// TestServerOutage stops bm-server (its API and its S3 endpoint) in the
// middle of a pass and starts it again later: the agent says offline
// within 10 s, `bm-agent sync` answers at once with exit code 7 meanwhile,
// and once the server is back the agent syncs everything by itself.
func TestServerOutage(t *testing.T) {
	h := newHarness(t)
	outage := 8 * time.Second
	if faultsFull() {
		outage = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+outage)
	defer cancel()
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	want := writeNotes(t, a.Folder, "before", 5)
	if _, err := harness.Poll(ctx, 30*time.Second, func() error { return converged(ctx, a, dev, want) }); err != nil {
		t.Fatal(err)
	}

	// a big batch, so a pass is running when the server goes
	for k, v := range writeNotes(t, a.Folder, "during", 600) {
		want[k] = v
	}
	if _, err := waitState(ctx, a, 20*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateSyncing }); err != nil {
		t.Fatal(err)
	}
	if err := h.StopServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	st, err := waitState(ctx, a, 30*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateOffline })
	toOffline := time.Since(down)
	t.Logf("FIGURE seconds to offline: %.1f (state %q: %s)", toOffline.Seconds(), st.State, st.Error)
	if err != nil {
		t.Fatal(err)
	}
	if toOffline > 10*time.Second {
		t.Errorf("offline after %v, want within 10 s", toOffline)
	}

	start := time.Now()
	out, err := h.CLI(ctx, a, "sync")
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(out, "keeps trying") {
		t.Errorf("bm-agent sync while offline: %v:\n%s", err, out)
	}
	if took > 10*time.Second {
		t.Errorf("bm-agent sync while offline took %v, want an answer at once", took)
	}
	t.Logf("bm-agent sync while offline: exit 7 after %v", took.Round(time.Millisecond))

	if rest := outage - time.Since(down); rest > 0 {
		time.Sleep(rest)
	}
	if err := h.RestartServer(ctx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if _, err := harness.Poll(ctx, 2*time.Minute, func() error { return converged(ctx, a, dev, want) }); err != nil {
		t.Fatal(err)
	}
	st, err = waitState(ctx, a, 30*time.Second, func(st ipc.Status) bool { return st.State == ipc.StateIdle })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE seconds to recover: %.1f (after a %v outage)", time.Since(up).Seconds(), outage)
	if st.Hold != nil || st.Error != "" {
		t.Errorf("after the outage: %+v", st)
	}
}
