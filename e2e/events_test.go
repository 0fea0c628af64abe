package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/e2e/harness"
	"github.com/basicmachines-co/bm-agent/ipc"
)

// TestRemoteChangeEvents: two agents (two homes, two folders, two device
// names) logged in to the same account, both with a one-hour interval: a
// note written in the first agent's folder reaches the second's within 10
// s, carried by the server's change events, with no manual sync.
func TestRemoteChangeEvents(t *testing.T) {
	h := newHarness(t)
	h.AgentArgs = []string{"--interval", "1h", "--debug"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const email = "events@example.com"
	pw := harness.RandomPassword()
	if err := h.StartServer(ctx, email, pw); err != nil {
		t.Fatal(err)
	}
	var agents []*harness.Agent
	for _, name := range []string{"agent", "agent2"} {
		home := filepath.Join(h.Dir, name)
		if err := os.MkdirAll(home, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg, _ := json.Marshal(map[string]any{"device": name + "-device", "debounce": "200ms", "max_wait": "2s"})
		if err := os.WriteFile(filepath.Join(home, "config.json"), cfg, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := h.StartAgent(ctx, name, "BM_AGENT_KEYRING=file")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Login(ctx, a, email, pw); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(h.Dir, "agent2.log"))
			t.Logf("---- agent2.log ----\n%s", b)
		}
	})
	// Both agents finish their startup pass before the note is written.
	for _, a := range agents {
		if _, err := harness.Poll(ctx, 60*time.Second, func() error {
			st, err := a.IPC.Status(ctx)
			if err != nil {
				return err
			}
			if st.LastSync == nil || st.State != "idle" {
				return errString("agent " + a.Home + " not idle after a pass: " + string(st.State))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	body := []byte("# from agent 1\nwritten at " + time.Now().Format(time.RFC3339Nano) + "\n")
	if err := os.WriteFile(filepath.Join(agents[0].Folder, "from-one.md"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	took, err := harness.Poll(ctx, 10*time.Second, func() error {
		got, err := os.ReadFile(filepath.Join(agents[1].Folder, "from-one.md"))
		if err != nil {
			return err
		}
		if string(got) != string(body) {
			return errString("content differs")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the note did not reach agent 2 within 10 s: %v", err)
	}
	t.Logf("agent 1 folder -> agent 2 folder: %s", took.Round(time.Millisecond))
	// The file is in place before the pass that wrote it is over and in
	// the history: wait for the record.
	var h2 ipc.History
	if _, err := harness.Poll(ctx, 10*time.Second, func() error {
		if h2, err = agents[1].IPC.History(ctx, 5); err != nil {
			return err
		}
		for _, p := range h2.Passes {
			if p.Trigger == "remote" && p.Downloaded > 0 {
				return nil
			}
		}
		return errString("no pass triggered by a remote event that downloaded")
	}); err != nil {
		t.Errorf("agent 2: %v: %+v", err, h2.Passes)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
