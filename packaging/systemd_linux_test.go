package packaging

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basicmachines-co/bm-agent/packaging/sdtest"
)

// TestInstallRealUserSystemd installs, checks and uninstalls the unit with
// a real systemd user instance (private to the test, see sdtest): the unit
// is enabled and its daemon runs (a stand-in that records its arguments
// and waits), Installed says systemd, and uninstall stops it and leaves no
// file and no enablement link.
func TestInstallRealUserSystemd(t *testing.T) {
	if !sdtest.Enter(t) {
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	agent := filepath.Join(dir, "bm agent")
	ran := filepath.Join(dir, "ran")
	script := "#!/bin/sh\necho \"$@ home=$BM_AGENT_HOME\" > '" + ran + "'\nexec sleep 600\n"
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	in := New()
	if in.ConfigDir != os.Getenv("XDG_CONFIG_HOME") || !strings.HasPrefix(in.UnitPath(), os.Getenv("HOME")) {
		t.Fatalf("installer outside the test's home: %s", in.UnitPath())
	}
	res, err := in.Install(ctx, Params{AgentPath: agent, Folder: filepath.Join(dir, "My Notes"), Home: filepath.Join(dir, "home")}, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manager != ManagerSystemd || res.Fallback != "" || !res.Started || len(res.Files) != 1 || res.Files[0] != in.UnitPath() {
		t.Errorf("install: %+v", res)
	}
	wantRan := "run --folder " + filepath.Join(dir, "My Notes") + " home=" + filepath.Join(dir, "home") + "\n"
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(ran)
		if string(b) == wantRan {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unit's daemon ran with %q, want %q (ActiveState %s)", b, wantRan, sdtest.Unit(t, "bm-agent.service", "ActiveState"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := sdtest.Unit(t, "bm-agent.service", "ActiveState"); s != "active" {
		t.Errorf("ActiveState %q, want active", s)
	}
	if s := sdtest.Unit(t, "bm-agent.service", "UnitFileState"); s != "enabled" {
		t.Errorf("UnitFileState %q, want enabled", s)
	}
	if m := in.Installed(ctx); m != ManagerSystemd {
		t.Errorf("Installed = %q, want systemd", m)
	}

	res, err = in.Uninstall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manager != ManagerSystemd || len(res.Files) != 1 || res.Files[0] != in.UnitPath() {
		t.Errorf("uninstall: %+v", res)
	}
	if s := sdtest.Unit(t, "bm-agent.service", "ActiveState"); s == "active" {
		t.Errorf("still active after uninstall")
	}
	link := filepath.Join(in.configDir(), "systemd", "user", "default.target.wants", "bm-agent.service")
	for _, p := range []string{in.UnitPath(), link} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after uninstall", p)
		}
	}
	if m := in.Installed(ctx); m != "" {
		t.Errorf("Installed after uninstall = %q", m)
	}
}
