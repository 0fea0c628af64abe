package packaging

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

func TestSystemdUnitQuoting(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		want []string
	}{
		{"plain", Params{AgentPath: "/usr/bin/bm-agent"}, []string{`ExecStart="/usr/bin/bm-agent" run` + "\n"}},
		{"folder with spaces and specials", Params{AgentPath: "/opt/bm agent/bm-agent", Folder: `/home/me/My Notes 100%$`},
			[]string{`ExecStart="/opt/bm agent/bm-agent" run --folder "/home/me/My Notes 100%%$$"`}},
		{"home and env", Params{AgentPath: "/b", Home: "/h", Env: map[string]string{"Z": "1", "BASIC_MEMORY_CLOUD_HOST": `http://127.0.0.1:8787`}},
			[]string{"Environment=\"BM_AGENT_HOME=/h\"\nEnvironment=\"BASIC_MEMORY_CLOUD_HOST=http://127.0.0.1:8787\"\nEnvironment=\"Z=1\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := SystemdUnit(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("unit lacks %q:\n%s", w, b)
				}
			}
		})
	}
	for _, bad := range []Params{{AgentPath: "bm-agent"}, {AgentPath: "/b", Env: map[string]string{"A=B": "x"}}} {
		if _, err := SystemdUnit(bad); err == nil {
			t.Errorf("%+v: want an error", bad)
		}
	}
}

// TestSystemdUnitVerifies checks the rendered unit with the real
// systemd-analyze, against a real executable.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	testenv.Require(t, "systemd-analyze (Debian package systemd)", err)
	dir := t.TempDir()
	agent := filepath.Join(dir, "bm agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit, err := SystemdUnit(Params{AgentPath: agent, Folder: filepath.Join(dir, "My Notes"), Home: dir,
		Env: map[string]string{"BASIC_MEMORY_CLOUD_HOST": "https://cloud.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ServiceName+".service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), ServiceName) {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
	// The check can fail: a unit with a bad key is refused.
	bad := strings.Replace(string(unit), "Restart=on-failure", "Restart=sometimes", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command(analyze, "verify", path).CombinedOutput()
	if !strings.Contains(strings.ToLower(string(out)), "restart specifier") {
		t.Errorf("systemd-analyze accepted a bad Restart= value:\n%s", out)
	}
}

func TestLaunchdPlistIsXML(t *testing.T) {
	b, err := LaunchdPlist(Params{AgentPath: "/Applications/Basic Memory.app/bm-agent", Folder: "/Users/me/Notes & <stuff>", Home: "/h",
		Env: map[string]string{"BASIC_MEMORY_CLOUD_HOST": "https://x"}})
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(strings.NewReader(string(b)))
	dec.Strict = true
	var strs []string
	var inString bool
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("plist is not well-formed XML: %v\n%s", err, b)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			inString = v.Name.Local == "string"
		case xml.CharData:
			if inString {
				strs = append(strs, string(v))
			}
		case xml.EndElement:
			inString = false
		}
	}
	want := []string{"com.basicmemory.bm-agent", "/Applications/Basic Memory.app/bm-agent", "run", "--folder", "/Users/me/Notes & <stuff>", "/h", "https://x", "Background"}
	if strings.Join(strs, "|") != strings.Join(want, "|") {
		t.Errorf("plist strings:\n got %q\nwant %q", strs, want)
	}
}

func TestTrayDesktopEntry(t *testing.T) {
	b, err := TrayDesktopEntry(Params{AgentPath: "/b", TrayPath: "/opt/bm/bm tray"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `Exec="/opt/bm/bm tray"`) || !strings.HasPrefix(string(b), "[Desktop Entry]\n") {
		t.Errorf("desktop entry:\n%s", b)
	}
	if strings.Contains(string(b), "Icon=") {
		t.Errorf("an entry with no icon named has one:\n%s", b)
	}
	b, err = TrayDesktopEntry(Params{AgentPath: "/b", TrayPath: "/usr/bin/bm-tray", Icon: "basic-memory"})
	if err != nil || !strings.Contains(string(b), "\nIcon=basic-memory\nCategories=Utility;\n") {
		t.Errorf("desktop entry with an icon: %v\n%s", err, b)
	}
	if _, err := TrayDesktopEntry(Params{AgentPath: "/b"}); err == nil {
		t.Error("an entry without a tray path must be refused")
	}
}
