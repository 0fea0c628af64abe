package packaging

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeSystemctl records the commands: there is no systemd user instance to
// talk to in a test, so the service manager is the boundary faked here; the
// unit itself is checked by systemd-analyze in TestSystemdUnitVerifies.
type fakeSystemctl struct {
	calls []string
	fail  string
}

func (f *fakeSystemctl) run(_ context.Context, name string, args ...string) ([]byte, error) {
	c := name + " " + strings.Join(args, " ")
	f.calls = append(f.calls, c)
	if f.fail != "" && strings.Contains(c, f.fail) {
		return []byte("Failed to connect to bus"), errors.New("exit status 1")
	}
	return nil, nil
}

func TestInstallUninstallLinux(t *testing.T) {
	cfg := t.TempDir()
	f := &fakeSystemctl{}
	in := &Installer{HomeDir: t.TempDir(), ConfigDir: cfg, Run: f.run}
	p := Params{AgentPath: "/usr/bin/bm-agent", TrayPath: "/usr/bin/bm-tray", Folder: "/n"}
	res, err := in.Install(context.Background(), p, true)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{filepath.Join(cfg, "systemd/user/bm-agent.service"), filepath.Join(cfg, "autostart/bm-tray.desktop")}
	if !reflect.DeepEqual(res.Files, wantFiles) {
		t.Errorf("files %v, want %v", res.Files, wantFiles)
	}
	wantCalls := []string{"systemctl --user daemon-reload", "systemctl --user enable --now bm-agent.service"}
	if !reflect.DeepEqual(f.calls, wantCalls) {
		t.Errorf("calls %v, want %v", f.calls, wantCalls)
	}
	unit, _ := os.ReadFile(wantFiles[0])
	if !strings.Contains(string(unit), `--folder "/n"`) {
		t.Errorf("unit:\n%s", unit)
	}

	f.calls = nil
	res, err = in.Uninstall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Files, wantFiles) {
		t.Errorf("removed %v, want %v", res.Files, wantFiles)
	}
	for _, p := range wantFiles {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there", p)
		}
	}
	wantCalls = []string{"systemctl --user disable --now bm-agent.service", "systemctl --user daemon-reload"}
	if !reflect.DeepEqual(f.calls, wantCalls) {
		t.Errorf("calls %v, want %v", f.calls, wantCalls)
	}
	// Nothing installed: uninstall is a quiet no-op.
	f.calls = nil
	if _, err := in.Uninstall(context.Background()); err != nil || len(f.calls) != 0 {
		t.Errorf("second uninstall: %v, calls %v", err, f.calls)
	}
}

func TestInstallReportsServiceManagerFailure(t *testing.T) {
	f := &fakeSystemctl{fail: "enable"}
	in := &Installer{HomeDir: t.TempDir(), ConfigDir: t.TempDir(), Run: f.run}
	_, err := in.Install(context.Background(), Params{AgentPath: "/b"}, false)
	if err == nil || !strings.Contains(err.Error(), "Failed to connect to bus") {
		t.Fatalf("want the systemctl output in the error, got %v", err)
	}
}
