package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/basicmachines-co/bm-agent/internal/testenv"
)

// maxServerExposure is the goal for bm-server's unit: `systemd-analyze
// security` rates 0 (locked down) to 10 (unprotected); under 3 is "OK".
const maxServerExposure = 3.0

// TestServerUnitHardened renders bm-server's system unit, checks it with
// `systemd-analyze verify`, and scores it with `systemd-analyze security
// --offline=true` (the unit file alone, no running systemd needed).
func TestServerUnitHardened(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	testenv.Require(t, "systemd-analyze (Debian package systemd)", err)
	dir := t.TempDir()
	server := filepath.Join(dir, "bm server")
	if err := os.WriteFile(server, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit, err := ServerUnit(ServerParams{ServerPath: server})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=bm-server", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/lib/bm-server", `ExecStart="` + server + `" --data-dir /var/lib/bm-server`} {
		if !strings.Contains(string(unit), want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
	path := filepath.Join(dir, "bm-server.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
	score := exposure(t, analyze, path)
	t.Logf("FIGURE bm-server.service: systemd-analyze security exposure %.1f (goal under %.1f)", score, maxServerExposure)
	if score >= maxServerExposure {
		out, _ := exec.Command(analyze, "security", "--offline=true", path).CombinedOutput()
		t.Errorf("exposure %.1f, want under %.1f:\n%s", score, maxServerExposure, out)
	}
	// The score can fail: the same unit without its sandbox rates far worse.
	var bare []string
	for _, line := range strings.Split(string(unit), "\n") {
		if !strings.Contains(line, "=") || strings.HasPrefix(line, "ExecStart=") || strings.HasPrefix(line, "Description=") {
			bare = append(bare, line)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(bare, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := exposure(t, analyze, path); s < 9 {
		t.Errorf("an unsandboxed unit scored %.1f: the check cannot tell", s)
	}
}

var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// exposure is `systemd-analyze security --offline=true`'s overall score of
// the unit at path.
func exposure(t *testing.T, analyze, path string) float64 {
	t.Helper()
	// It exits non-zero only past --threshold (default 100): any error is real.
	out, err := exec.Command(analyze, "security", "--offline=true", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=true: %v\n%s", err, out)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure in:\n%s", out)
	}
	f, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
