//go:build linux

package tray

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartDaemon starts a stand-in bm-agent found on PATH (no service is
// installed here): it must get `run --socket PATH` for a socket that is not
// the default, and run in a session of its own, detached from the tray.
func TestStartDaemon(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := "#!/bin/sh\nread -r stat < /proc/$$/stat\necho \"$* | $$ | $stat\" > " + out + ".tmp && mv " + out + ".tmp " + out + "\n"
	if err := os.WriteFile(filepath.Join(dir, "bm-agent"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config")) // no systemd unit there
	sock := filepath.Join(dir, "agent.sock")
	if err := StartDaemon(t.Context(), sock); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if got, err = os.ReadFile(out); err == nil {
			break
		}
	}
	parts := strings.Split(strings.TrimSpace(string(got)), " | ")
	if len(parts) != 3 {
		t.Fatalf("the stand-in wrote %q", got)
	}
	if want := "run --socket " + sock; parts[0] != want {
		t.Errorf("bm-agent got %q, want %q", parts[0], want)
	}
	// /proc/PID/stat: pid (comm) state ppid pgrp session ...
	f := strings.Fields(parts[2][strings.LastIndexByte(parts[2], ')')+1:])
	if len(f) < 4 {
		t.Fatalf("stat %q", parts[2])
	}
	if sid, pid := f[3], parts[1]; sid != pid {
		t.Errorf("bm-agent runs in session %s, want its own (%s)", sid, pid)
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if own := strings.Fields(string(self[strings.LastIndexByte(string(self), ')')+1:])); len(own) > 3 && own[3] == f[3] {
		t.Errorf("bm-agent shares the tray's session %s", own[3])
	}
}
