package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
)

// TestOwnWritesStartNoPass: a pass that downloads many files writes them
// into the watched folder; those writes are the engine's own and must not
// start another pass, while a person's write afterwards does.
func TestOwnWritesStartNoPass(t *testing.T) {
	h := newHarness(t)
	h.AgentArgs = []string{"--interval", "1h"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, dev, _, _ := startLoggedIn(t, ctx, h)
	if _, err := h.CLI(ctx, a, "sync"); err != nil { // the baseline
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		if err := dev.PutObject(ctx, fmt.Sprintf("from cloud/note %02d.md", i), []byte(fmt.Sprintf("# note %d\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.CLI(ctx, a, "sync"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.Folder, "from cloud", fmt.Sprintf("note %02d.md", n-1))); err != nil {
		t.Fatalf("the pass did not download the notes: %v", err)
	}
	// Debounce is 1 s and a burst waits at most 10 s: a pass started by
	// the download's own writes would have started well within 12 s.
	time.Sleep(12 * time.Second)
	hist, err := a.IPC.History(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	// The notes came down in the manual pass, or in one the bucket's
	// change event started before it; after that, no pass the download's
	// writes started.
	downloaded := -1
	for i, p := range hist.Passes {
		if p.Downloaded == n {
			downloaded = i
			break
		}
	}
	if downloaded < 0 {
		t.Fatalf("no pass downloaded the %d notes: %+v", n, hist.Passes)
	}
	for _, p := range hist.Passes[:downloaded] {
		if p.Trigger == "watch" || p.Uploaded+p.Downloaded > 0 {
			t.Fatalf("a pass after the download: %+v; want none the engine's own writes started", p)
		}
	}

	// The control: a person's write does start a pass.
	if err := os.WriteFile(filepath.Join(a.Folder, "mine.md"), []byte("# mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := harness.Poll(ctx, 15*time.Second, func() error {
		hist, err := a.IPC.History(ctx, 5)
		if err != nil {
			return err
		}
		if p := hist.Passes[0]; p.Trigger != "watch" || p.Uploaded != 1 {
			return fmt.Errorf("latest pass %+v", p)
		}
		return nil
	}); err != nil {
		t.Fatalf("no watch pass for a person's write: %v", err)
	}
}
